"""JSON without NaN or Infinity, in and out. JSON has no such numbers, but Python's ``json`` reads the literals
``NaN``, ``Infinity`` and ``-Infinity``, reads ``1e999`` as infinity, and writes them back unless told not to."""

from __future__ import annotations

import json
import math
from typing import Any

NON_FINITE_RULE = "must be a finite number (JSON has no NaN or Infinity; numbers must be below 1.8e308)"


class NonFiniteNumber(ValueError):
    """A request holds NaN, Infinity or an overflowing number at ``field`` ('body' when it cannot be found)."""

    def __init__(self, field: str, value: str) -> None:
        super().__init__(f"{field}={value}: {NON_FINITE_RULE}")
        self.field, self.value = field, value


class _Literal(Exception):
    def __init__(self, literal: str) -> None:
        self.literal = literal


def _refuse(literal: str) -> Any:
    raise _Literal(literal)


# One decoder built once: json.loads with any keyword builds a new decoder per call (microseconds on the hot path).
# parse_constant runs only when a body holds one of the literals, so valid bodies pay nothing.
_STRICT = json.JSONDecoder(parse_constant=_refuse)
_LENIENT = json.JSONDecoder()


def _text(data: bytes | bytearray | str) -> str:
    """Bytes decoded as ``json.loads`` decodes them (UTF-8/16/32 detected)."""
    if isinstance(data, str):
        if data.startswith("\ufeff"):
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", data, 0)
        return data
    return data.decode(json.detect_encoding(data), "surrogatepass")


def loads(data: bytes | bytearray | str) -> Any:
    """``json.loads`` that refuses NaN, Infinity and -Infinity with :class:`NonFiniteNumber` naming the field.
    Overflowing numbers (``1e999``) still decode to infinity: the request models and :func:`find_non_finite`
    refuse those."""
    text = _text(data)
    try:
        return _STRICT.decode(text)
    except _Literal as exc:
        where = find_non_finite(_LENIENT.decode(text))  # error path only: decode again to find the key
        raise NonFiniteNumber(where[0] if where else "body", exc.literal) from None


def show(value: float) -> str:
    """A non-finite float as JSON text can carry it: 'NaN', 'Infinity' or '-Infinity'."""
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def echo(value: Any) -> Any:
    """``value`` safe to put in a JSON reply: non-finite floats become their names."""
    if isinstance(value, float) and not math.isfinite(value):
        return show(value)
    return value


def find_non_finite(obj: Any, prefix: str = "") -> tuple[str, float] | None:
    """The first non-finite float in a decoded JSON value: its path ('config.rope_scaling.factor', 'items[2]') and
    the value; None when there is none. Iterative, so deep nesting cannot overflow the stack."""
    stack: list[tuple[str, Any]] = [(prefix, obj)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                return path or "body", item
        elif isinstance(item, dict):
            stack.extend((f"{path}.{k}" if path else str(k), v) for k, v in reversed(list(item.items())))
        elif isinstance(item, (list, tuple)):
            stack.extend((f"{path}[{i}]", v) for i, v in reversed(list(enumerate(item))))
    return None
