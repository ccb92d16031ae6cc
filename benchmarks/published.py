"""gpuplan against numbers published from real GPUs and real training and serving stacks.

    python benchmarks/published.py                         # the table and the summary
    python benchmarks/published.py --json benchmarks/results/published.json
    python benchmarks/published.py --markdown              # the table of docs/accuracy-published.md

The measured values come from the published set (published-dev.yaml: --published PATH, or $GPUPLAN_PUBLISHED,
or ../shared next to the checkout); how each case maps to a gpuplan command is benchmarks/published_cases.toml.
Every command runs in-process through gpuplan.api with the engine's defaults: nothing here is fitted.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CASE_MAP = HERE / "published_cases.toml"
TOLERANCE_PCT = 5.0
COMMANDS = ("train", "infer", "plan")

# Unit of a published value -> factor to gpuplan's base unit (bytes, seconds, tokens/s, TFLOP/s, tokens, blocks).
UNIT_FACTOR = {"bytes": 1.0, "MiB": 2.0**20, "GiB": 2.0**30, "GB": 1e9, "s": 1.0, "tokens/s/GPU": 1.0,
               "TFLOP/s/GPU": 1.0, "tokens": 1.0, "blocks": 1.0}
GROUP_TITLE = {"train-memory-measured": "training memory", "inference-memory-measured": "inference memory",
               "throughput-measured": "throughput / step time", "inference-kvcache-measured": "vLLM KV blocks",
               "fit-limit-measured": "longest sequence that fits", "micro-exact": "exact micro cases"}


@dataclass(frozen=True)
class CaseMap:
    id: str
    stack: str
    command: str | None
    model: str | None
    args: dict[str, Any]
    key: str | None
    unit: str | None
    derive: str | None
    note: str
    reason: str
    not_expressible: str | None
    refused: bool  # gpuplan is expected to refuse the published configuration (the refusal is the finding)


@dataclass
class Row:
    id: str
    group: str
    stack: str
    measured: float | None
    published_unit: str
    unit: str | None
    estimate: float | None
    error_pct: float | None
    command: str
    key: str | None
    note: str
    reason: str
    status: str  # "ok" | "not expressible" | "refused" (expected, a finding) | "failed" (unexpected)
    extra: dict[str, Any] = field(default_factory=dict)


def load_case_map(path: Path = CASE_MAP) -> tuple[list[CaseMap], dict[str, dict[str, Any]]]:
    """The [[case]] entries and the [config.NAME] model configs of the case map."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    cases = [CaseMap(id=c["id"], stack=c.get("stack", ""), command=c.get("command"), model=c.get("model"),
                     args=dict(c.get("args", {})), key=c.get("key"), unit=c.get("unit"), derive=c.get("derive"),
                     note=c.get("note", ""), reason=c.get("reason", ""), not_expressible=c.get("not_expressible"),
                     refused=bool(c.get("refused", False)))
             for c in data.get("case", [])]
    return cases, dict(data.get("config", {}))


MORE = HERE / "published_more.toml"


def load_more(path: Path = MORE) -> tuple[list[CaseMap], dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Measurements outside the development set: each [[case]] carries its mapping (as published_cases.toml) and
    the measurement itself (group, published, source). Returns (cases, configs, published entries by id)."""
    cases, configs = load_case_map(path)
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    entries = {c["id"]: {"id": c["id"], "group": c["group"], "published": dict(c["published"]),
                         "source": dict(c["source"])} for c in data.get("case", [])}
    return cases, configs, entries


def render_sources(published: dict[str, dict[str, Any]]) -> str:
    """Where each measurement of the extra set was published."""
    out = ["Sources:", ""]
    for pid, e in published.items():
        src = e["source"]
        out.append(f"- `{pid}`: {src['ref']} ({src['locator']}; {src['url']}, commit {src['commit'][:10]}): "
                   f"{e['published']['value']} {e['published']['unit']}, {e['published']['quantity']}")
    return "\n".join(out)


def find_published(explicit: str | None = None) -> Path | None:
    """The published set: the path given, $GPUPLAN_PUBLISHED, or shared/published-dev.yaml beside the checkout."""
    if explicit:
        return Path(explicit)
    if os.environ.get("GPUPLAN_PUBLISHED"):
        return Path(os.environ["GPUPLAN_PUBLISHED"])
    # the checkout may be a worktree one level deeper than the folder that holds shared/
    for up in (HERE.parent.parent, HERE.parent.parent.parent):
        candidate = up / "shared" / "published-dev.yaml"
        if candidate.is_file():
            return candidate
    return None


def load_published(path: Path) -> dict[str, dict[str, Any]]:
    import yaml  # only the published set needs PyYAML; the case map is TOML

    entries = yaml.safe_load(path.read_text(encoding="utf-8"))
    return {e["id"]: e for e in entries}


def write_configs(configs: dict[str, dict[str, Any]], folder: Path) -> dict[str, str]:
    """Write each [config.NAME] as folder/NAME/config.json; gpuplan takes the path as MODEL."""
    paths = {}
    for name, cfg in configs.items():
        target = folder / name / "config.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(cfg), encoding="utf-8")
        paths[name] = str(target)
    return paths


def resolve_model(model: str | None, config_paths: dict[str, str]) -> str | None:
    if model and model.startswith("config:"):
        return config_paths[model.removeprefix("config:")]
    return model


def dig(payload: Any, key: str) -> Any:
    """The value at a dotted path; numeric parts index lists (plans.0.step_s)."""
    value = payload
    for part in key.split("."):
        if isinstance(value, list):
            if not part.isdigit() or int(part) >= len(value):
                raise KeyError(key)
            value = value[int(part)]
        else:
            value = value[part]
    return value


def peak_tflops(gpu: str, dtype: str = "bf16") -> float:
    from gpuplan import api

    return api.gpus(gpu)[0]["peak_flop_per_s"][dtype] / 1e12


def command_line(case: CaseMap) -> str:
    """The `gpuplan ...` command line equivalent to the case's API call (for the docs)."""
    if case.command is None:
        return ""
    parts = ["gpuplan", case.command]
    if case.model:
        parts.append(case.model.removeprefix("config:") + "/config.json" if case.model.startswith("config:")
                     else case.model)
    for name, value in case.args.items():
        flag = "--" + name.replace("_", "-")
        if value is True:
            parts.append(flag)
        elif isinstance(value, list):
            parts += [flag, ",".join(map(str, value))]
        else:
            parts += [flag, str(value)]
    return " ".join(parts + ["--json"])


def evaluate(case: CaseMap, config_paths: dict[str, str]) -> float:
    """gpuplan's number for a case, in the base unit of its published value."""
    from gpuplan import api

    assert case.command in COMMANDS and case.key, case.id
    result = api.run(case.command, resolve_model(case.model, config_paths), **case.args)
    if case.command == "plan" and not result.get("plans"):
        raise LookupError("no layout passes the memory engine: " + "; ".join(result.get("why", [])[:1]))
    value = float(dig(result, case.key))
    if case.derive == "mfu_to_tflops":
        value *= peak_tflops(case.args["gpu"])
    elif case.derive:
        raise ValueError(f"{case.id}: unknown derive {case.derive!r}")
    return value


def error_pct(estimate: float | None, measured: float | None) -> float | None:
    if estimate is None or not measured:
        return None
    return 100.0 * (estimate - measured) / measured


def run_case(case: CaseMap, entry: dict[str, Any], config_paths: dict[str, str]) -> Row:
    published = entry["published"]
    row = Row(id=case.id, group=entry["group"], stack=case.stack, measured=None,
              published_unit=str(published["unit"]), unit=case.unit, estimate=None, error_pct=None,
              command=command_line(case), key=case.key, note=case.note, reason="", status="ok")
    if case.not_expressible:
        row.status, row.reason = "not expressible", case.not_expressible
        return row
    assert case.unit in UNIT_FACTOR, f"{case.id}: unit {case.unit!r}"
    row.measured = float(published["value"]) * UNIT_FACTOR[case.unit]
    try:
        row.estimate = evaluate(case, config_paths)
    except Exception as exc:  # one case that gpuplan refuses must not hide the others
        row.status = "refused" if case.refused else "failed"
        row.reason = f"{exc}" + (f" Why: {case.reason}" if case.reason else "")
        return row
    row.error_pct = error_pct(row.estimate, row.measured)
    if row.error_pct is not None and abs(row.error_pct) > TOLERANCE_PCT:
        row.reason = case.reason or "(no reason recorded)"
    return row


def run_all(cases: list[CaseMap], configs: dict[str, dict[str, Any]],
            published: dict[str, dict[str, Any]]) -> list[Row]:
    """Every published case, in the published set's order; a case missing from the map fails loudly."""
    by_id = {c.id: c for c in cases}
    missing = [pid for pid in published if pid not in by_id]
    if missing:
        raise SystemExit(f"cases without a mapping in {CASE_MAP.name}: {', '.join(missing)}")
    with tempfile.TemporaryDirectory(prefix="gpuplan-published-") as tmp:
        paths = write_configs(configs, Path(tmp))
        return [run_case(by_id[pid], entry, paths) for pid, entry in published.items()]


@dataclass(frozen=True)
class Summary:
    group: str
    cases: int
    compared: int
    median_abs_error_pct: float | None
    within_5_pct: int
    under_5_pct: int  # estimate below the measurement by more than 5 %: the OOM (or optimism) risk
    over_5_pct: int
    not_expressible: int  # not expressible, refused or failed


def summarize(rows: list[Row]) -> list[Summary]:
    groups = list(dict.fromkeys([g for g in GROUP_TITLE] + [r.group for r in rows]))
    out = []
    for group in groups:
        members = [r for r in rows if r.group == group]
        if not members:
            continue
        errs = [r.error_pct for r in members if r.error_pct is not None]
        out.append(Summary(group=group, cases=len(members), compared=len(errs),
                           median_abs_error_pct=statistics.median(abs(e) for e in errs) if errs else None,
                           within_5_pct=sum(abs(e) <= TOLERANCE_PCT for e in errs),
                           under_5_pct=sum(e < -TOLERANCE_PCT for e in errs),
                           over_5_pct=sum(e > TOLERANCE_PCT for e in errs),
                           not_expressible=sum(r.status != "ok" for r in members)))
    return out


def fmt_value(value: float | None, unit: str | None) -> str:
    """A value in the published unit (the row's base-unit value divided back)."""
    if value is None or unit is None:
        return "—"
    shown = value / UNIT_FACTOR[unit]
    if abs(shown) >= 1000:
        return f"{shown:,.0f} {unit}"
    return f"{shown:.4g} {unit}"


def fmt_err(row: Row) -> str:
    if row.status == "not expressible":
        return "not expressible"
    if row.status in ("refused", "failed"):
        return row.status
    return f"{row.error_pct:+.1f} %"


def render_text(rows: list[Row], summaries: list[Summary]) -> str:
    head = f"{'case':<46} {'group':<27} {'measured':>16} {'gpuplan':>16} {'error':>9}  stack / reason"
    lines = [head, "-" * len(head)]
    for r in rows:
        tail = r.stack
        if r.status != "ok":
            tail += f" | {r.status}: {r.reason}"
        elif r.reason:
            tail += f" | {r.reason}"
        lines.append(f"{r.id:<46} {r.group:<27} {fmt_value(r.measured, r.unit):>16} "
                     f"{fmt_value(r.estimate, r.unit):>16} {fmt_err(r):>9}  {tail}")
    lines.append("")
    lines += [summary_line(s) for s in summaries]
    return "\n".join(lines)


def summary_line(s: Summary) -> str:
    med = "—" if s.median_abs_error_pct is None else f"{s.median_abs_error_pct:.1f} %"
    return (f"{GROUP_TITLE.get(s.group, s.group)} ({s.group}): {s.cases} cases, {s.compared} compared, "
            f"median |error| {med}, within ±5 % {s.within_5_pct}, under −5 % {s.under_5_pct}, "
            f"over +5 % {s.over_5_pct}, not expressible or refused {s.not_expressible}")


def render_markdown(rows: list[Row], summaries: list[Summary]) -> str:
    out = ["| case | group | stack | measured | gpuplan | error | reason (beyond ±5 %) |",
           "|---|---|---|---:|---:|---:|---|"]
    for r in rows:
        reason = f"{r.status}: {r.reason}" if r.status != "ok" else r.reason
        out.append(f"| `{r.id}` | {GROUP_TITLE.get(r.group, r.group)} | {r.stack} | {fmt_value(r.measured, r.unit)}"
                   f" | {fmt_value(r.estimate, r.unit)} | {fmt_err(r)} | {reason} |")
    out += ["", "| group | cases | compared | median \\|error\\| | within ±5 % | under −5 % | over +5 % |"
            " not expressible or refused |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for s in summaries:
        med = "—" if s.median_abs_error_pct is None else f"{s.median_abs_error_pct:.1f} %"
        out.append(f"| {GROUP_TITLE.get(s.group, s.group)} | {s.cases} | {s.compared} | {med} | {s.within_5_pct} |"
                   f" {s.under_5_pct} | {s.over_5_pct} | {s.not_expressible} |")
    out += ["", "Commands (MODEL `NAME/config.json` is the `[config.NAME]` table of the case map "
            "written as a config.json):", ""]
    for r in rows:
        out.append(f"- `{r.id}`: " + (f"`{r.command}` → `{r.key}`" if r.command else "—")
                   + (f". {r.note}" if r.note else ""))
    return "\n".join(out)


def render_reasons(rows: list[Row]) -> str:
    """The bullet list of docs/accuracy-published.md's "Why the rows beyond ±5 % miss": every row beyond the
    tolerance (or not compared) with its reason."""
    out = []
    for r in rows:
        if r.status == "ok" and not r.reason:
            continue
        out.append(f"- **`{r.id}`** ({fmt_err(r)}): {r.reason}")
    return "\n".join(out)


def to_json(rows: list[Row], summaries: list[Summary], source: Path) -> dict[str, Any]:
    import gpuplan

    def clean(x: Any) -> Any:  # JSON has no NaN/inf
        return None if isinstance(x, float) and not math.isfinite(x) else x

    return {"gpuplan_version": getattr(gpuplan, "__version__", None), "published_set": source.name,
            "tolerance_pct": TOLERANCE_PCT,
            "rows": [{k: clean(v) for k, v in asdict(r).items()} for r in rows],
            "summary": [asdict(s) for s in summaries]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--published", help="published-dev.yaml (default: $GPUPLAN_PUBLISHED or ../shared)")
    ap.add_argument("--json", metavar="OUT", help="also write the raw results to OUT")
    ap.add_argument("--markdown", action="store_true", help="print the markdown table and summary for the docs")
    ap.add_argument("--more", action="store_true",
                    help="the measurements outside the development set (benchmarks/published_more.toml)")
    args = ap.parse_args(argv)
    if args.more:
        cases, configs, published = load_more()
        rows = run_all(cases, configs, published)
        summaries = summarize(rows)
        text = render_markdown(rows, summaries) + "\n\n" + render_sources(published) if args.markdown \
            else render_text(rows, summaries)
        print(text)
        if args.json:
            Path(args.json).write_text(json.dumps(to_json(rows, summaries, MORE), indent=1) + "\n",
                                       encoding="utf-8")
        return 0
    source = find_published(args.published)
    if source is None or not source.is_file():
        print("published-dev.yaml not found: give --published PATH or set GPUPLAN_PUBLISHED", file=sys.stderr)
        return 2
    cases, configs = load_case_map()
    rows = run_all(cases, configs, load_published(source))
    summaries = summarize(rows)
    print(render_markdown(rows, summaries) if args.markdown else render_text(rows, summaries))
    if args.json:
        Path(args.json).write_text(json.dumps(to_json(rows, summaries, source), indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
