"""The case map of benchmarks/published.py: every published case is mapped, and every mapped command runs.

The published set itself (published-dev.yaml) lives outside the repository; without it the tests that need its
case ids are skipped, and the map is still checked on its own.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load_bench():
    spec = importlib.util.spec_from_file_location("published_bench", ROOT / "benchmarks" / "published.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


bench = _load_bench()
CASES, CONFIGS = bench.load_case_map()


def _published() -> dict:
    path = bench.find_published()
    if path is None or not path.is_file():
        pytest.skip("published-dev.yaml not found (shared/ beside the checkout, or $GPUPLAN_PUBLISHED)")
    pytest.importorskip("yaml")
    return bench.load_published(path)


def test_case_map_is_well_formed() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)), "duplicate case ids"
    for case in CASES:
        if case.not_expressible:
            assert case.command is None and case.not_expressible.strip(), case.id
            continue
        assert case.command in bench.COMMANDS, case.id
        assert case.key and case.unit in bench.UNIT_FACTOR, case.id
        if case.model and case.model.startswith("config:"):
            assert case.model.removeprefix("config:") in CONFIGS, case.id


def test_every_published_case_is_mapped() -> None:
    published = _published()
    mapped = {c.id for c in CASES}
    assert sorted(set(published) - mapped) == []
    assert sorted(mapped - set(published)) == []


@pytest.fixture(scope="module")
def config_paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return bench.write_configs(CONFIGS, tmp_path_factory.mktemp("configs"))


@pytest.mark.parametrize("case", [c for c in CASES if not c.not_expressible], ids=lambda c: c.id)
def test_mapped_command_returns_a_finite_number(case, config_paths: dict[str, str]) -> None:
    if not case.refused:
        value = bench.evaluate(case, config_paths)
        assert math.isfinite(value) and value > 0
        return
    # plan refuses a layout its memory engine says does not fit: the refusal is the measured state
    with pytest.raises((ValueError, LookupError), match="no layout"):
        bench.evaluate(case, config_paths)


def _stored() -> tuple[list, list]:
    import json

    data = json.loads((ROOT / "benchmarks" / "results" / "published.json").read_text(encoding="utf-8"))
    rows = [bench.Row(**r) for r in data["rows"]]
    return rows, [bench.Summary(**s) for s in data["summary"]]


def test_the_docs_show_the_stored_results() -> None:
    """docs/accuracy-published.md holds the table `published.py --markdown` renders from the stored results, and
    README's summary rows carry the same figures."""
    rows, summaries = _stored()
    doc = (ROOT / "docs" / "accuracy-published.md").read_text(encoding="utf-8")
    for line in bench.render_markdown(rows, summaries).splitlines():
        if line.startswith("|"):  # the table and the summary (the commands list below them is prose)
            assert line in doc, f"docs/accuracy-published.md is stale: {line[:160]}"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    by_group = {s.group: s for s in summaries}
    for group, title in (("train-memory-measured", "training memory"), ("inference-memory-measured",
                                                                         "inference memory")):
        s = by_group[group]
        assert f"| {title} | {s.compared} | {s.median_abs_error_pct:.1f} % | {s.within_5_pct} |" in readme, title


def test_the_stored_estimates_are_what_gpuplan_answers_now() -> None:
    """Every stored gpuplan figure is reproduced by the current engine (so the stored table cannot go stale)."""
    published = _published()
    rows, _ = _stored()
    fresh = {r.id: r for r in bench.run_all(CASES, CONFIGS, published)}
    for r in rows:
        now = fresh[r.id]
        assert now.status == r.status, r.id
        if r.estimate is not None:
            assert now.estimate == pytest.approx(r.estimate, rel=1e-9), r.id


def test_the_measurements_outside_the_dev_set_are_in_the_docs_as_the_script_prints_them() -> None:
    """benchmarks/published_more.toml carries its own measurements and sources (no external file): its table,
    commands and sources in docs/accuracy-published.md are what `published.py --more --markdown` prints now."""
    cases, configs, published = bench.load_more()
    assert [c.id for c in cases] == list(published)
    for pid, entry in published.items():
        assert entry["group"] in bench.GROUP_TITLE, pid
        assert {"ref", "locator", "url", "commit"} <= set(entry["source"]), pid
    rows = bench.run_all(cases, configs, published)
    assert all(r.status == "ok" and r.error_pct is not None for r in rows)
    assert all(r.reason != "(no reason recorded)" for r in rows), "a row beyond ±5 % needs its reason"
    doc = (ROOT / "docs" / "accuracy-published.md").read_text(encoding="utf-8")
    text = bench.render_markdown(rows, bench.summarize(rows)) + "\n" + bench.render_sources(published)
    for line in text.splitlines():
        if line.strip():
            assert line in doc, f"docs/accuracy-published.md is stale: {line[:160]}"
    (s,) = [x for x in bench.summarize(rows) if x.compared]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert (f"| training memory, outside the development set | {s.compared} | {s.median_abs_error_pct:.1f} % | "
            f"{s.within_5_pct} |") in readme


def test_the_docs_give_the_stored_reason_of_every_row_beyond_tolerance() -> None:
    rows, _ = _stored()
    doc = (ROOT / "docs" / "accuracy-published.md").read_text(encoding="utf-8")
    for line in bench.render_reasons(rows).splitlines():
        assert line in doc, f"docs/accuracy-published.md is stale: {line[:160]}"
