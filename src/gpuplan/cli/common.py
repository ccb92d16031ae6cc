"""Shared CLI plumbing: JSON output, and an estimate printed as JSON or as text with its advice."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any, Callable


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


def finish_estimate(args: argparse.Namespace, command: str, payload: dict[str, Any], render: Callable[[], str],
                    fits: bool | None) -> int:
    """Print an estimate as JSON (with ``advice`` under --advise) or as text (then the advice); the exit code is 3
    when --check was given and it does not fit. Shared by ``train`` and ``infer``."""
    from gpuplan.advise import attach_advice
    from gpuplan.cli.advice import print_advice

    if args.json:
        attach_advice(args, command, payload)
        print_json(payload)
    else:
        print(render())
        if getattr(args, "advise", False):
            print_advice(args, command)
    return 3 if getattr(args, "check", False) and fits is False else 0
