"""gpuplan's step-time model against published iteration times and throughputs (docs/time-model.md).

    python benchmarks/published_time.py              # the table and the summary
    python benchmarks/published_time.py --markdown   # the tables of docs/time-model.md

Rows: the throughput / step-time cases of the published set (published-dev.yaml: --published PATH, or
$GPUPLAN_PUBLISHED, or ../shared beside the checkout), each timed by the `gpuplan plan` command of
benchmarks/published_cases.toml with the published layout pinned (benchmarks/published.py runs them); and the
pre-training GPU-hours of DeepSeek-V3 from `gpuplan plan` with its published schedule, precision and batch.
Nothing is fitted: every efficiency and bandwidth is gpuplan's default, every behaviour an option with a source.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import published as bench  # noqa: E402  (benchmarks/published.py: the case map and its runner)

GROUP = "throughput-measured"
TOLERANCE_PCT = 10.0
OPTIMISTIC_PCT = 15.0

# DeepSeek-V3 technical report (arXiv:2412.19437): Table 1, 2,664K H800 GPU-hours of pre-training on 14.8T tokens;
# section 3.2: 2,048 H800, DualPipe, FP8 mixed precision (section 3.3); section 4.2: batch 15,360 sequences of 4,096
# tokens after the ramp over the first 469B tokens.
DEEPSEEK = {"gpu": "h800", "gpus": 2048, "tokens": 14_800_000_000_000, "seq": 4096, "global_batch": 15360,
            "schedule": "dualpipe", "precision": "fp8", "top": 1}
DEEPSEEK_GPU_HOURS = 2_664_000


@dataclass(frozen=True)
class TimeRow:
    id: str
    stack: str
    quantity: str
    unit: str
    measured: float | None
    estimate: float | None
    error_pct: float | None
    optimism_pct: float | None  # how much faster gpuplan says the run goes than it went (+: optimistic)
    status: str
    reason: str


def optimism(estimate: float, measured: float, unit: str) -> float:
    """+x %: gpuplan predicts x % more speed than was measured (a shorter time or a higher throughput)."""
    return 100.0 * ((measured / estimate if unit == "s" else estimate / measured) - 1.0)


def time_rows(published: dict) -> list[TimeRow]:
    cases, configs = bench.load_case_map()
    by_id = {c.id: c for c in cases}
    rows = []
    with tempfile.TemporaryDirectory(prefix="gpuplan-time-") as tmp:
        paths = bench.write_configs(configs, Path(tmp))
        for pid, entry in published.items():
            if entry["group"] != GROUP:
                continue
            r = bench.run_case(by_id[pid], entry, paths)
            case = by_id[pid]
            opt = None if r.estimate is None else optimism(r.estimate, r.measured, r.unit)
            beyond = r.error_pct is not None and abs(r.error_pct) > TOLERANCE_PCT
            reason = r.reason if r.status != "ok" else (case.reason if beyond else "")
            rows.append(TimeRow(pid, r.stack, entry["published"]["quantity"], r.unit or "", r.measured, r.estimate,
                                r.error_pct, opt, r.status, reason))
    return rows


# DeepSeek's own layout (section 3.2: 16-way pipeline parallelism with DualPipe, 64-way expert parallelism over 8
# nodes, ZeRO-1 data parallelism, no tensor parallelism; section 3.2.3: no full recomputation), micro-batch 1.
DEEPSEEK_LAYOUT = "tp=1,pp=16,dp=128,ep=64,mb=1,zero=1,recompute=none"


def deepseek_row() -> TimeRow:
    from gpuplan import api

    out = api.run("plan", "deepseek-v3", **DEEPSEEK, compare=[DEEPSEEK_LAYOUT])
    plan = out["plans"][0]
    est = plan["gpu_hours"]
    err = bench.error_pct(est, DEEPSEEK_GPU_HOURS)
    layout = (f"TP{plan['tp']} PP{plan['pp']} DP{plan['dp']} EP{plan['ep']} mb{plan['micro_batch']} recompute "
              f"{plan['recompute']}")
    own = next(a for a in out["alternatives"] if a["label"].startswith("requested "))
    own_hours = own["days"] * 24 * DEEPSEEK["gpus"]
    own_gib = own["memory_total_bytes"] / 2**30
    reason = (f"plan's layout {layout}. DeepSeek's own layout (TP1 PP16 DP128 EP64, no full recomputation) needs "
              f"{own_gib:,.1f} GiB per GPU in the memory engine, which models none of the report's savings "
              "(section 3.2.3: RMSNorm and MLA up-projections recomputed, the EMA in host memory; section 3.3: "
              "activations cached in FP8), so plan times full recomputation. Timed as DeepSeek ran it, without "
              f"recomputation, the step-time model gives {own_hours:,.0f} GPU-hours "
              f"({bench.error_pct(own_hours, DEEPSEEK_GPU_HOURS):+.1f} %). The FP8 kernels run at the rates of "
              "DeepSeek's published training profile (benchmarks/deepseek_profile.py), which balances routing; not "
              "modelled: routing load imbalance, the smaller batches of the ramp over the first 469B tokens "
              "(section 4.2)")
    return TimeRow("deepseek-v3-pretraining-gpu-hours", "DeepSeek-V3 (DualPipe, FP8)", "pre-training GPU-hours",
                   "GPU-hours", float(DEEPSEEK_GPU_HOURS), est, err, optimism(est, DEEPSEEK_GPU_HOURS, "s"), "ok",
                   reason)


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    return f"{value:,.0f} {unit}" if abs(value) >= 1000 else f"{value:.4g} {unit}"


def fmt_pct(value: float | None, status: str) -> str:
    return status if value is None else f"{value:+.1f} %"


def summary(rows: list[TimeRow]) -> str:
    errs = [r for r in rows if r.error_pct is not None]
    med = statistics.median(abs(r.error_pct) for r in errs) if errs else float("nan")
    opt = [r for r in errs if r.optimism_pct > OPTIMISTIC_PCT]
    return (f"{len(rows)} rows, {len(errs)} compared: median |error| {med:.1f} %, within ±{TOLERANCE_PCT:g} % "
            f"{sum(abs(r.error_pct) <= TOLERANCE_PCT for r in errs)}, optimistic by more than {OPTIMISTIC_PCT:g} % "
            f"{len(opt)} ({', '.join(r.id for r in opt) or 'none'}; each with its reason), refused "
            f"{sum(r.status != 'ok' for r in rows)}")


def render_markdown(rows: list[TimeRow], extra: list[TimeRow]) -> str:
    out = [f"| case | stack | quantity | measured | gpuplan | error | speed vs measured | reason (beyond "
           f"±{TOLERANCE_PCT:g} %) |", "|---|---|---|---:|---:|---:|---:|---|"]
    for r in rows + extra:
        reason = f"{r.status}: {r.reason}" if r.status != "ok" else r.reason
        out.append(f"| `{r.id}` | {r.stack} | {r.quantity} | {fmt(r.measured, r.unit)} | {fmt(r.estimate, r.unit)} "
                   f"| {fmt_pct(r.error_pct, r.status)} | {fmt_pct(r.optimism_pct, r.status)} | {reason} |")
    out += ["", "Throughput / step-time rows: " + summary(rows) + "."]
    return "\n".join(out)


def render_text(rows: list[TimeRow], extra: list[TimeRow]) -> str:
    head = f"{'case':<40} {'measured':>20} {'gpuplan':>20} {'error':>9} {'speed':>9}  reason"
    lines = [head, "-" * len(head)]
    for r in rows + extra:
        lines.append(f"{r.id:<40} {fmt(r.measured, r.unit):>20} {fmt(r.estimate, r.unit):>20} "
                     f"{fmt_pct(r.error_pct, r.status):>9} {fmt_pct(r.optimism_pct, r.status):>9}  {r.reason}")
    return "\n".join(lines + ["", summary(rows)])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--published", help="published-dev.yaml (default: $GPUPLAN_PUBLISHED or ../shared)")
    ap.add_argument("--markdown", action="store_true", help="print the markdown tables of docs/time-model.md")
    args = ap.parse_args(argv)
    source = bench.find_published(args.published)
    if source is None or not source.is_file():
        print("published-dev.yaml not found: give --published PATH or set GPUPLAN_PUBLISHED", file=sys.stderr)
        return 2
    rows = time_rows(bench.load_published(source))
    extra = [deepseek_row()]
    print(render_markdown(rows, extra) if args.markdown else render_text(rows, extra))
    return 0


if __name__ == "__main__":
    sys.exit(main())
