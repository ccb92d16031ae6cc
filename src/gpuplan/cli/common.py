"""Shared CLI plumbing: model arguments, JSON vs table output, count parsing."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any, Callable, Sequence

from gpuplan.errors import InputError
from gpuplan.limits import count_bound
from gpuplan.model.spec import ModelSpec
from gpuplan.units import parse_count


def count(field: str) -> Callable[[str], int]:
    """argparse type for counts written 7e9, 7B, 2T or 128k: whole numbers from 1 up to the option's bound in
    gpuplan.limits (the web API states the same bounds); errors name the option."""
    bound = count_bound(field)

    def parse(text: str) -> int:
        try:
            value = parse_count(text, field, bound)
        except InputError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{field}={text!r}: must be >= 1")
        return value

    parse.__name__ = field
    return parse


def real(field: str, *, above: float | None = None, at_least: float | None = None, below: float | None = None,
         at_most: float | None = None, scale: float = 1.0, as_int: bool = False) -> Callable[[str], float]:
    """argparse type for a real number within bounds; the error names the option, the value and the range.
    ``scale`` converts the unit typed (e.g. MiB) to the unit stored (bytes)."""
    bounds = ((">", above), (">=", at_least), ("<", below), ("<=", at_most))
    rules = [f"{op} {v:g}" for op, v in bounds if v is not None]
    checks = ((float.__gt__, above), (float.__ge__, at_least), (float.__lt__, below), (float.__le__, at_most))

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{field}={text!r}: must be a number") from None
        ok = math.isfinite(value) and all(cmp(value, v) for cmp, v in checks if v is not None)
        if not ok:
            raise argparse.ArgumentTypeError(f"{field}={text!r}: must be " + (" and ".join(rules) or "finite"))
        return int(value * scale) if as_int else value * scale

    parse.__name__ = field
    # The range in JSON Schema's words (gt, ge, lt, le), for the web API's request schema.
    limits = (("gt", above), ("ge", at_least), ("lt", below), ("le", at_most))
    parse.bounds = {k: v for k, v in limits if v is not None}  # type: ignore[attr-defined]
    return parse


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="?", help="preset id, Hugging Face id, or path to a config.json (or its folder)")
    g = parser.add_argument_group("model from raw dimensions (instead of MODEL)")
    g.add_argument("--layers", type=count("--layers"), help="number of transformer layers")
    g.add_argument("--hidden", type=count("--hidden"), help="hidden size")
    g.add_argument("--heads", type=count("--heads"), help="attention heads")
    g.add_argument("--kv-heads", type=count("--kv-heads"), help="key/value heads (GQA/MQA); default = heads")
    g.add_argument("--head-dim", type=count("--head-dim"), help="head dimension; default hidden/heads")
    g.add_argument("--ffn", type=count("--ffn"), help="MLP intermediate size; default 8h/3 rounded to 256 (gated)")
    g.add_argument("--vocab", type=count("--vocab"), help="vocabulary size (default 32000)")
    g.add_argument("--experts", type=count("--experts"), help="routed experts per layer (MoE)")
    g.add_argument("--top-k", type=count("--top-k"), help="experts per token (MoE)")
    g.add_argument("--params", type=count("--params"),
                   help="parameter count only (7e9, 7B): enough for time and for model states")


def model_from_args(args: argparse.Namespace, *, allow_params_only: bool = False) -> ModelSpec | None:
    """Resolve MODEL or the raw dimensions; ``None`` means only ``--params`` was given."""
    from gpuplan.model.resolve import resolve_model, spec_from_dims

    dims = {k: getattr(args, k, None) for k in ("layers", "hidden", "heads")}
    if args.model:
        if any(dims.values()):
            raise InputError("model", args.model, "give MODEL or --layers/--hidden/--heads, not both")
        return resolve_model(args.model)
    if any(dims.values()):
        missing = [f"--{k}" for k, v in dims.items() if not v]
        if missing:
            raise InputError(missing[0], None, "is required with raw dimensions (--layers, --hidden and --heads)")
        return spec_from_dims(layers=args.layers, hidden=args.hidden, heads=args.heads, kv_heads=args.kv_heads,
                              ffn=args.ffn, vocab=args.vocab or 32000, head_dim=args.head_dim,
                              experts=args.experts or 0, top_k=args.top_k or 0)
    if getattr(args, "params", None):
        if allow_params_only:
            return None
        raise InputError("--params", args.params, "is not enough for this command: give MODEL or the dimensions")
    raise InputError("model", None, "missing: give a preset id (see `gpuplan models`), a config.json path, "
                     "or --layers/--hidden/--heads")


def add_output_arguments(parser: argparse.ArgumentParser, *, explain: bool = False) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON (bytes, FLOP, seconds)")
    if explain:
        parser.add_argument("--explain", action="store_true", help="print each number with its formula and source")


def print_json(payload: Any) -> None:
    """Print ``payload``. JSON has no Infinity or NaN: inputs that would lead to one are refused where they enter
    the core, so a non-finite number here is a bug, reported loudly (exit 1, naming the key) rather than printed
    as text that other JSON readers reject."""
    try:
        text = json.dumps(payload, indent=2, ensure_ascii=False, allow_nan=False)
    except ValueError:
        raise ValueError(f"the result holds a non-finite number at {_non_finite_key(payload)!r}") from None
    sys.stdout.write(text + "\n")


def _non_finite_key(payload: Any, path: str = "") -> str:
    """The JSON path of the first non-finite number in ``payload`` (for the error message)."""
    if isinstance(payload, float) and not math.isfinite(payload):
        return path or "value"
    items = payload.items() if isinstance(payload, dict) else enumerate(payload) if isinstance(
        payload, (list, tuple)) else ()
    for key, value in items:
        found = _non_finite_key(value, f"{path}.{key}" if path else str(key))
        if found:
            return found
    return ""


def display_width(text: str) -> int:
    """Terminal columns of ``text``: East Asian wide and fullwidth characters (Chinese) take two."""
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def finish_estimate(args: argparse.Namespace, command: str, payload: dict[str, Any], render: Callable[[], str],
                    fits: bool | None) -> int:
    """Print an estimate as JSON (with ``advice`` under --advise) or as text (then the advice); the exit code is 3
    when --check was given and it does not fit. Shared by ``train`` and ``infer``."""
    from gpuplan.advise import attach_advice, print_advice

    if args.json:
        attach_advice(args, command, payload)
        print_json(payload)
    else:
        print(render())
        if getattr(args, "advise", False):
            print_advice(args, command)
    return 3 if getattr(args, "check", False) and fits is False else 0


def render_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None) -> str:
    """Plain-text table; ``align`` is one char per column ('l' or 'r'), default: first left, rest right.
    Widths are terminal columns, so Chinese labels line up."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(display_width(r[i]) for r in cells) for i in range(len(headers))]
    align = align or "l" + "r" * (len(headers) - 1)

    def pad(c: str, w: int, a: str) -> str:
        fill = " " * (w - display_width(c))
        return c + fill if a == "l" else fill + c

    lines = []
    for n, r in enumerate(cells):
        lines.append("  ".join(pad(c, w, a) for c, w, a in zip(r, widths, align)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
