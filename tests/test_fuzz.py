"""A few hundred generated inputs (benchmarks/fuzz.py) sent to the CLI, the Python API and the web API: every
answer is a finite result or a refusal that names the field; never a traceback, an exit 1, an HTTP 500, a non-JSON
body or a non-finite number. ``python benchmarks/fuzz.py`` runs over 10,000."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import fuzz  # noqa: E402


@pytest.mark.parametrize("seed", [11, 12])
def test_generated_inputs_never_break_a_surface(seed):
    tally = fuzz.fuzz(120, seed)
    assert not tally.failures, "\n".join(f"{o.surface} {o.command} {o.model!r} {o.opts!r}: {o.detail}"
                                         for o in tally.failures[:10])
    # the generator reaches both sides on every surface
    for surface in fuzz.SURFACES:
        assert tally.counts.get(f"{surface} ok", 0) > 10 and tally.counts.get(f"{surface} refused", 0) > 10


def test_a_non_finite_number_or_negative_size_is_caught():
    assert fuzz._finite({"memory": {"total_bytes": float("inf")}}) == "memory.total_bytes = inf"
    assert "negative" in fuzz._finite({"a": [{"weights_bytes": -1}]})
    assert fuzz._finite({"a": 1.5, "b": [1, "x", None, True]}) is None
