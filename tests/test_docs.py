"""The command outputs shown in README.md and docs/*.md are what gpuplan prints now.

tools/docs_outputs.py runs every ``$ gpuplan ...`` block; a failure here means an output (or a prose figure
quoted from one) changed: run ``python tools/docs_outputs.py --write``, then reread the prose around each
rewritten block.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("docs_outputs", ROOT / "tools" / "docs_outputs.py")
docs_outputs = importlib.util.module_from_spec(_spec)
sys.modules["docs_outputs"] = docs_outputs  # dataclasses look their module up there
_spec.loader.exec_module(docs_outputs)


@pytest.fixture(scope="module")
def cache() -> dict:
    return {}


@pytest.fixture(scope="module")
def report(cache):
    return docs_outputs.check(docs_outputs.doc_paths(ROOT), cache)


def test_every_shown_output_is_current(report):
    stale = [f.problem for f in report.stale]
    assert not stale, ("stale outputs (python tools/docs_outputs.py --write, then fix the prose):\n\n"
                       + "\n\n".join(stale))


def test_prose_figures_are_printed_by_a_shown_command(report):
    assert not report.prose, "\n".join(report.prose)


def test_the_pages_with_commands_are_all_found(report):
    """A parser that silently finds nothing would pass every check above."""
    checked: dict[str, int] = {}
    for f in report.findings:
        checked[f.block.path.name] = checked.get(f.block.path.name, 0) + 1
    assert checked.get("README.md", 0) >= 5
    assert checked.get("examples.md", 0) >= 45


def test_skipped_blocks_say_why(report):
    for block in report.skipped:
        assert len(block.skip) > 10, f"{block.path.name}:{block.fence + 1}: a skip needs its reason"
    assert {b.commands[0].command.split()[1] for b in report.skipped} <= {"verify", "serve"}


def _copy(tmp_path: Path, name: str = "examples.md") -> Path:
    target = tmp_path / name
    shutil.copy(ROOT / "docs" / name, target)
    return target


def _replace_once(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count(old) >= 1, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_a_changed_recorded_number_is_reported_and_rewritten(tmp_path, cache):
    page = _copy(tmp_path)
    original = page.read_text(encoding="utf-8")
    _replace_once(page, "weights                              3.73 GiB", "weights                              3.74 GiB")
    report = docs_outputs.check([page], cache)
    assert len(report.stale) == 1
    assert "-weights                              3.74 GiB" in report.stale[0].problem
    assert "+weights                              3.73 GiB" in report.stale[0].problem
    assert docs_outputs.write(report) == []
    assert page.read_text(encoding="utf-8") == original


def test_a_changed_line_of_a_trimmed_output_is_reported_and_rewritten(tmp_path, cache):
    page = _copy(tmp_path)
    original = page.read_text(encoding="utf-8")
    _replace_once(page, "days                         101.44  solved for", "days                         101.45  solved for")
    report = docs_outputs.check([page], cache)
    assert [f.shown.command for f in report.stale] == [
        "gpuplan time --params 70B --tokens 2T --gpu a800 --gpus 1024 --mfu 0.3"]
    assert docs_outputs.write(report) == []
    assert page.read_text(encoding="utf-8") == original


def test_a_changed_prose_figure_is_reported(tmp_path, cache):
    page = _copy(tmp_path)
    _replace_once(page, "answer batch 18 at seq 1024", "answer batch 18 (33.93 GiB) at seq 1024")
    report = docs_outputs.check([page], cache)
    assert not report.stale
    assert len(report.prose) == 1 and "33.93 GiB" in report.prose[0]


def test_an_output_of_only_ellipses_checks_nothing_and_is_reported(tmp_path, cache):
    page = tmp_path / "page.md"
    page.write_text("```\n$ gpuplan params llama-3.1-8b\n...\n```\n", encoding="utf-8")
    assert len(docs_outputs.check([page], cache).stale) == 1


def test_a_skip_comment_is_honoured_and_reported(tmp_path, cache):
    page = tmp_path / "page.md"
    page.write_text("<!-- docs: skip needs a GPU -->\n```\n$ gpuplan verify x --device cuda\nanything\n```\n",
                    encoding="utf-8")
    report = docs_outputs.check([page], cache)
    assert not report.findings and [b.skip for b in report.skipped] == ["needs a GPU"]


def test_a_non_gpuplan_command_in_a_checked_block_is_an_error(tmp_path, cache):
    page = tmp_path / "page.md"
    page.write_text("```\n$ gpuplan params llama-3.1-8b\n...\n\n$ curl -s localhost:8000\n{}\n```\n",
                    encoding="utf-8")
    with pytest.raises(ValueError, match="docs: skip"):
        docs_outputs.check([page], cache)


@pytest.mark.parametrize("recorded, ok", [
    (["a", "b", "c"], True),
    (["a", "c"], False),              # a line left out without a marker
    (["a", "...", "c"], True),
    (["...", "b", "..."], True),
    (["a", "...", "b", "c"], True),   # ... may stand for no line at all
    (["...", "a"], False),            # without a trailing marker the output must end with the shown lines
    (["b", "..."], False),            # without a leading marker it must start with them
    (["a", "...", "c", "...", "b"], False),  # order matters
    (["..."], True),
])
def test_ellipsis_rule(recorded, ok):
    assert (docs_outputs.align(recorded, ["a", "b", "c"]) is not None) is ok


def test_rewrite_keeps_the_trimming_and_follows_changed_figures():
    recorded = ["head 1", "...", "days 76.08 solved for", "..."]
    actual = ["head 1", "x", "days 80.51 solved for", "y", "z"]
    assert docs_outputs.rewrite(recorded, actual) == ["head 1", "...", "days 80.51 solved for", "..."]
    assert docs_outputs.rewrite(["head 1", "...", "gone"], actual) is None
