"""Check or rewrite the command outputs shown in README.md and docs/*.md.

A shown command is a fenced block whose first line is ``$ gpuplan ...``. Inside such a block every line that
starts with ``$ `` begins a command (a trailing ``\\`` continues it on the next line) and the lines up to the next
command, or the end of the block, are its recorded output. A command that exits with a status other than 0 ends
its output with ``(exit status N)``. stdout and stderr are recorded together, as a terminal shows them.

Trimmed outputs: a recorded line that is exactly ``...`` stands for any run of output lines, including none.
Every other recorded line must appear in the output, in the same order and identical; consecutive recorded lines
must be consecutive in the output, and an output without a leading (trailing) ``...`` must start (end) with the
recorded lines.

A block that cannot be run here (it needs the network, a GPU, or prints timings) is marked by an HTML comment on
the line before its fence, ``<!-- docs: skip REASON -->``; it is reported with its reason, never run.

Figures in prose: on a page that shows commands, a figure written as ``12.34 GiB`` outside its code blocks must
appear in the output of one of that page's commands, so prose that quotes a shown output goes stale together with it. A figure that is
derived rather than printed is exempted by listing it in ``<!-- docs: derived 12.34 GiB, ... -->`` on that page.

    python tools/docs_outputs.py --check     # exit 1 and a diff per stale block
    python tools/docs_outputs.py --write     # rewrite the recorded outputs in place
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import io
import os
import re
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ELLIPSIS = "..."
_FENCE = re.compile(r"^(```+|~~~+)")
_SKIP = re.compile(r"^<!--\s*docs:\s*skip\s+(.+?)\s*-->\s*$")
_DERIVED = re.compile(r"<!--\s*docs:\s*derived\s+(.+?)\s*-->", re.S)
_GIB = re.compile(r"(?<![\d.,])(\d{1,3}(?:,\d{3})*\.\d+) GiB")
# Environment that fixes what the commands print: English text, no progress bars, no Hugging Face downloads.
_ENV = {"GPUPLAN_LANG": "en", "GPUPLAN_NO_PROGRESS": "1", "HF_HUB_OFFLINE": "1"}


@dataclass
class Shown:
    """One command of a block and the output recorded under it (line numbers are 0-based, end exclusive)."""

    command: str
    out_start: int
    out_end: int
    recorded: list[str]


@dataclass
class Block:
    path: Path
    fence: int  # line number of the opening fence
    commands: list[Shown]
    skip: str | None = None


@dataclass
class Finding:
    """What checking one command found: ``problem`` is None when the recorded output matches."""

    block: Block
    shown: Shown
    problem: str | None = None
    rewritten: list[str] | None = None  # the recorded output as --write would leave it
    seconds: float = 0.0


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    skipped: list[Block] = field(default_factory=list)
    prose: list[str] = field(default_factory=list)  # stale prose figures, one message each

    @property
    def stale(self) -> list[Finding]:
        return [f for f in self.findings if f.problem]


def doc_paths(root: Path = ROOT) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def _fenced_regions(lines: list[str]) -> list[tuple[int, int]]:
    """(opening, closing) line numbers of every fenced block."""
    regions, start, marker = [], None, ""
    for i, line in enumerate(lines):
        m = _FENCE.match(line)
        if not m:
            continue
        if start is None:
            start, marker = i, m.group(1)
        elif line.strip() == marker:
            regions.append((start, i))
            start = None
    return regions


def _skip_reason(lines: list[str], fence: int) -> str | None:
    """The reason of a ``<!-- docs: skip ... -->`` comment on the nearest non-blank line above the fence."""
    i = fence - 1
    while i >= 0 and not lines[i].strip():
        i -= 1
    m = _SKIP.match(lines[i].strip()) if i >= 0 else None
    return m.group(1) if m else None


def _split_commands(lines: list[str], first: int, last: int) -> list[Shown]:
    """The commands of the block body lines[first:last], each with its recorded output."""
    shown: list[Shown] = []
    i = first
    while i < last:
        if not lines[i].startswith("$ "):
            raise ValueError(f"line {i + 1}: expected a '$ ' command line, found {lines[i]!r}")
        parts = [lines[i][2:]]
        while parts[-1].endswith("\\") and i + 1 < last:
            parts[-1] = parts[-1][:-1]
            i += 1
            parts.append(lines[i])
        command = " ".join(p.strip() for p in parts)
        i += 1
        start = i
        while i < last and not lines[i].startswith("$ "):
            i += 1
        end = i
        while end > start and not lines[end - 1].strip():  # a blank line separates commands; not output
            end -= 1
        shown.append(Shown(command, start, end, lines[start:end]))
    return shown


def parse(path: Path) -> list[Block]:
    """Every shown-command block of one markdown file."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks = []
    for start, end in _fenced_regions(lines):
        if start + 1 >= end or not lines[start + 1].startswith("$ gpuplan"):
            continue
        try:
            commands = _split_commands(lines, start + 1, end)
        except ValueError as exc:
            raise ValueError(f"{path.name}:{start + 1}: {exc}") from None
        blocks.append(Block(path, start, commands, _skip_reason(lines, start)))
    return blocks


def run_command(command: str) -> list[str]:
    """What ``command`` prints (stdout and stderr as one stream), run in-process through gpuplan's CLI main."""
    argv = shlex.split(command)
    if not argv or argv[0] != "gpuplan":
        raise ValueError(f"not a gpuplan command (mark its block '<!-- docs: skip REASON -->'): {command}")
    from gpuplan.cli.main import main

    buffer = io.StringIO()
    saved = {k: os.environ.get(k) for k in _ENV}
    os.environ.update(_ENV)
    try:
        with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
            code = main(argv[1:])
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    out = [line.rstrip() for line in buffer.getvalue().splitlines()]
    while out and not out[-1]:
        out.pop()
    if code:
        out.append(f"(exit status {code})")
    return out


def _segments(recorded: list[str]) -> list[list[str]]:
    """The recorded lines split at ``...``: n markers give n + 1 segments (empty at a leading/trailing marker)."""
    segs: list[list[str]] = [[]]
    for line in recorded:
        if line.strip() == ELLIPSIS:
            segs.append([])
        else:
            segs[-1].append(line)
    return segs


def _label(line: str) -> str:
    """A line without its figures: which line of the output it is, whatever numbers it now carries."""
    blanked = re.sub(r"-{2,}", "--", re.sub(r"\d+", "#", line))  # rule lines widen with their table
    return re.sub(r"\s+", " ", blanked).strip()


def align(recorded: list[str], actual: list[str], key=lambda s: s) -> list[list[int]] | None:
    """For each segment of ``recorded``, the output lines it matches (compared by ``key``), or None.

    Glob matching with ``...`` as the wildcard: the first segment is anchored at the start, the last at the end,
    and each middle segment takes its leftmost place, which leaves the most room for the segments after it."""
    segs = _segments(recorded)
    keys = [key(a) for a in actual]

    def at(seg: list[str], pos: int) -> bool:
        return pos + len(seg) <= len(keys) and all(key(s) == keys[pos + j] for j, s in enumerate(seg))

    if len(segs) == 1:
        return [list(range(len(actual)))] if len(segs[0]) == len(actual) and at(segs[0], 0) else None
    first, *middle, last = segs
    if not at(first, 0):
        return None
    places = [list(range(len(first)))]
    pos = len(first)
    for seg in middle:
        while pos + len(seg) <= len(keys) and not at(seg, pos):
            pos += 1
        if pos + len(seg) > len(keys):
            return None
        places.append(list(range(pos, pos + len(seg))))
        pos += len(seg)
    tail = len(keys) - len(last)
    if tail < pos or not at(last, tail):
        return None
    places.append(list(range(tail, len(keys))))
    return places


def rewrite(recorded: list[str], actual: list[str]) -> list[str] | None:
    """The recorded output brought up to date, keeping its trimming: None when a shown line has no counterpart.

    An untrimmed output is replaced whole. In a trimmed one each shown line is found again by its label (the line
    with its figures blanked) and replaced by the line printed now; the ``...`` markers stay where they are."""
    if not any(line.strip() == ELLIPSIS for line in recorded):
        return list(actual)
    places = align(recorded, actual) or align(recorded, actual, key=_label)
    if places is None:
        return None
    out: list[str] = []
    for n, seg in enumerate(places):
        if n:
            out.append(ELLIPSIS)
        out.extend(actual[i] for i in seg)
    return out


Cache = dict[str, tuple[list[str], float]]  # command -> (output, seconds it took)


def check_block(block: Block, cache: Cache) -> list[Finding]:
    findings = []
    for shown in block.commands:
        if shown.command not in cache:
            t0 = time.perf_counter()
            output = run_command(shown.command)
            cache[shown.command] = (output, time.perf_counter() - t0)
        actual, seconds = cache[shown.command]
        finding = Finding(block, shown, seconds=seconds)
        if actual and all(line.strip() == ELLIPSIS for line in shown.recorded):
            finding.problem = f"{block.path.name}:{shown.out_start} $ {shown.command}\n  shows no output line: nothing to check"
        elif align(shown.recorded, actual) is None:
            finding.rewritten = rewrite(shown.recorded, actual)
            new = finding.rewritten if finding.rewritten is not None else actual
            diff = difflib.unified_diff(shown.recorded, new, "recorded", "printed now", lineterm="", n=1)
            where = f"{block.path.name}:{shown.out_start} $ {shown.command}"
            note = "" if finding.rewritten is not None else (
                "\n  (--write cannot place every shown line: edit this block by hand)")
            finding.problem = f"{where}\n" + "\n".join(diff) + note
        findings.append(finding)
    return findings


def _prose_figures(lines: list[str], regions: list[tuple[int, int]]) -> list[tuple[int, str]]:
    """(line number, figure) of every ``N.NN GiB`` outside the fenced blocks and HTML comments."""
    inside = {i for a, b in regions for i in range(a, b + 1)}
    found = []
    for i, line in enumerate(lines):
        if i in inside:
            continue
        text = re.sub(r"<!--.*?-->", "", line)
        found.extend((i, m.group(1)) for m in _GIB.finditer(text))
    return found


def check_prose(path: Path, outputs: list[list[str]]) -> list[str]:
    """Prose GiB figures of one page that none of its commands print (and that are not declared derived)."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    printed = {m.group(1) for out in outputs for line in out for m in _GIB.finditer(line)}
    derived = {m.group(1) for d in _DERIVED.finditer(text) for m in _GIB.finditer(d.group(1))}
    return [f"{path.name}:{i + 1}: {fig} GiB is printed by none of this page's commands"
            for i, fig in _prose_figures(lines, _fenced_regions(lines))
            if fig not in printed and fig not in derived]


def check(paths: list[Path], cache: Cache | None = None) -> Report:
    """Run every shown command of ``paths`` (each distinct command once, through ``cache``) and compare."""
    report = Report()
    cache = {} if cache is None else cache
    for path in paths:
        blocks = parse(path)
        outputs = []
        for block in blocks:
            if block.skip:
                report.skipped.append(block)
                continue
            findings = check_block(block, cache)
            report.findings.extend(findings)
            outputs.extend(cache[f.shown.command][0] for f in findings)
        if outputs:  # a page without commands quotes other sources; its figures are not checked here
            report.prose.extend(check_prose(path, outputs))
    return report


def write(report: Report) -> list[Finding]:
    """Rewrite every stale output that can be placed; the findings that could not be are returned."""
    by_path: dict[Path, list[Finding]] = {}
    for f in report.stale:
        by_path.setdefault(f.block.path, []).append(f)
    left = []
    for path, findings in by_path.items():
        lines = path.read_text(encoding="utf-8").splitlines()
        for f in sorted(findings, key=lambda f: f.shown.out_start, reverse=True):
            if f.rewritten is None:
                left.append(f)
                continue
            lines[f.shown.out_start:f.shown.out_end] = f.rewritten
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return left


def _summary(report: Report) -> str:
    n_blocks = len({(f.block.path, f.block.fence) for f in report.findings})
    seconds = {f.shown.command: f.seconds for f in report.findings}
    slow = sorted(((s, c) for c, s in seconds.items()), reverse=True)[:3]
    lines = [f"{n_blocks} blocks, {len(report.findings)} commands checked in {sum(seconds.values()):.1f} s; "
             f"{len(report.stale)} stale; "
             f"{len(report.skipped)} blocks skipped; {len(report.prose)} stale prose figures"]
    lines += [f"  skipped {b.path.name}:{b.fence + 1} ({b.commands[0].command}): {b.skip}" for b in report.skipped]
    lines += [f"  slowest {s:.2f} s: {c}" for s, c in slow]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="report stale outputs (exit 1), change nothing")
    mode.add_argument("--write", action="store_true", help="rewrite stale outputs in place")
    parser.add_argument("paths", nargs="*", type=Path, help="markdown files (default: README.md, docs/*.md)")
    args = parser.parse_args(argv)
    paths = args.paths or doc_paths()
    report = check(paths)
    if args.write:
        left = write(report)
        for f in left:
            print(f.problem, end="\n\n")
        for msg in report.prose:
            print(msg)
        print(f"rewrote {len(report.stale) - len(left)} outputs; {len(left)} need a hand edit")
        print(_summary(report))
        return 1 if left or report.prose else 0
    for f in report.stale:
        print(f.problem, end="\n\n")
    for msg in report.prose:
        print(msg)
    print(_summary(report))
    return 1 if report.stale or report.prose else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    sys.exit(main())
