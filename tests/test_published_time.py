"""benchmarks/published_time.py: the step-time table of docs/time-model.md is what the script prints when the
published set is present, and its summary meets the accuracy the docs claim."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load():
    spec = importlib.util.spec_from_file_location("published_time", ROOT / "benchmarks" / "published_time.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


bench = _load()


@pytest.fixture(scope="module")
def rows():
    path = bench.bench.find_published()
    if path is None or not path.is_file():
        pytest.skip("published-dev.yaml not found (shared/ beside the checkout, or $GPUPLAN_PUBLISHED)")
    pytest.importorskip("yaml")
    return bench.time_rows(bench.bench.load_published(path)), [bench.deepseek_row()]


def test_the_docs_table_is_what_the_script_prints(rows):
    doc = (ROOT / "docs" / "time-model.md").read_text(encoding="utf-8")
    for line in bench.render_markdown(*rows).splitlines():
        if line.strip():
            assert line in doc, f"docs/time-model.md is stale: {line[:160]}"


def test_every_row_beyond_tolerance_has_a_reason(rows):
    timed, extra = rows
    for r in timed + extra:
        if r.status != "ok" or abs(r.error_pct) > bench.TOLERANCE_PCT:
            assert len(r.reason) > 40, r.id


def test_median_error_within_ten_percent(rows):
    import statistics

    timed, _ = rows
    errs = [abs(r.error_pct) for r in timed if r.error_pct is not None]
    assert len(errs) >= 5
    assert statistics.median(errs) <= bench.TOLERANCE_PCT


def test_optimism_sign():
    assert bench.optimism(1.0, 1.1, "s") > 0  # a shorter predicted step is optimistic
    assert bench.optimism(110.0, 100.0, "tokens/s/GPU") > 0
    assert bench.optimism(90.0, 100.0, "tokens/s/GPU") < 0
