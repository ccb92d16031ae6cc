"""Unit parsing and display. Inside gpuplan everything is bytes, FLOP, seconds and dollars;
conversions happen here and in the data loaders only."""

from __future__ import annotations

import math
import re

from gpuplan.errors import InputError

KiB = 1024
MiB = 1024**2
GiB = 1024**3
TiB = 1024**4
KB = 10**3
MB = 10**6
GB = 10**9
TB = 10**12

SECONDS_PER_HOUR = 3600
SECONDS_PER_DAY = 86400

_SUFFIX = {"": 1, "k": 10**3, "m": 10**6, "b": 10**9, "g": 10**9, "t": 10**12, "p": 10**15}
_COUNT_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([kmbgtp]?)\s*$", re.IGNORECASE)


def parse_count(text: str | int | float, field: str = "count", maximum: int | None = None) -> int:
    """Parse a count such as ``7e9``, ``7B``, ``2T``, ``128k`` or ``4096`` into an int.

    Suffixes are decimal (k=1e3, M=1e6, B/G=1e9, T=1e12, P=1e15); ``128k`` as a context length is 128,000
    (write 131072 for the binary value). The text is read exactly (``0.1k`` is 100), a count must be a whole
    number (``2.5`` is refused, never rounded) and at most ``maximum`` (default 2^53 - 1, the largest integer
    JSON keeps exact).
    """
    from decimal import Decimal, DecimalException, localcontext

    from gpuplan.limits import MAX_SAFE_INT

    if isinstance(text, bool):
        raise InputError(field, text, "must be a number such as 7e9, 7B, 2T or 128k")
    if isinstance(text, int):
        value = Decimal(text)
    elif isinstance(text, float):
        if not math.isfinite(text):
            raise InputError(field, text, "must be a finite number")
        value = Decimal(text)
    else:
        m = _COUNT_RE.match(str(text))
        if not m:
            raise InputError(field, text, "must be a number such as 7e9, 7B, 2T or 128k")
        try:
            with localcontext(prec=60):  # exact for every count that passes the bound below
                value = Decimal(m.group(1)) * _SUFFIX[m.group(2).lower()]
        except DecimalException:  # an exponent beyond any context: far above any bound
            raise InputError(field, text, "must be a finite count") from None
    bound = MAX_SAFE_INT if maximum is None else maximum
    if value > bound:  # compared before int(): 1e999999999 must not become a billion-digit integer
        raise InputError(field, text, f"must be at most {bound:,}" + (" (2^53 - 1)" if bound == MAX_SAFE_INT else ""))
    if value != value.to_integral_value():
        raise InputError(field, text, "must be a whole number (counts are not rounded)")
    return int(value)


def parse_positive_count(text: str | int | float, field: str) -> int:
    value = parse_count(text, field)
    if value < 1:
        raise InputError(field, text, "must be >= 1")
    return value


def format_bytes(n_bytes: int | float, unit: str = "GiB", digits: int = 2) -> str:
    """Format bytes as GiB (binary, default) or GB (decimal), always labelled with the unit used."""
    div = {"GiB": GiB, "MiB": MiB, "TiB": TiB, "GB": GB, "MB": MB, "TB": TB, "B": 1}[unit]
    return f"{n_bytes / div:,.{digits}f} {unit}"


def format_count(n: int | float, digits: int = 2) -> str:
    """Decimal count: 8.03B, 405.85B, 1.2T, 70.55M."""
    n = float(n)
    for div, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.{digits}f}{suffix}"
    return f"{n:.0f}"


def format_flop(n_flop: float) -> str:
    """FLOP counts in scientific notation, e.g. 8.40e+23 FLOP."""
    return f"{n_flop:.3g} FLOP"


def format_seconds(seconds: float) -> str:
    if seconds >= SECONDS_PER_DAY:
        return f"{seconds / SECONDS_PER_DAY:,.1f} days"
    if seconds >= SECONDS_PER_HOUR:
        return f"{seconds / SECONDS_PER_HOUR:,.1f} h"
    if seconds >= 1:
        return f"{seconds:,.2f} s"
    return f"{seconds * 1000:,.2f} ms"
