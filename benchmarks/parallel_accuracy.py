"""Per-rank accuracy of gpuplan's parallel layouts: FSDP2 and DTensor tensor parallelism, estimate vs trace.

The measured side is ``gpuplan.verify.distributed`` (``measure_fsdp2_step`` / ``measure_tp_step``): the real
Hugging Face model built on fake tensors under a fake process group, ``fully_shard`` / ``parallelize_module``
applied as a user would, the steady-state (second) training step traced with FSDPMemTracker / MemTracker and
every storage rounded to the CUDA allocator's 512 B. The estimate is ``gpuplan.train.engine.estimate_training``
with the matching ``TrainConfig`` (``dp=W, zero=3`` for FSDP2, ``tp=W`` for TP; ``--framework torch``).

Three matrices: calibration and layer-dominated (``cases()``, batch 2 x seq 1024; the engine's FSDP2/TP rules
were written from them) and held-out (``heldout_cases()``: other model families, shapes, vocabularies,
batch x seq and world sizes, traced once and never used to write a rule).

    python benchmarks/parallel_accuracy.py             # compare with the stored traces, write docs/accuracy-parallel.md
    python benchmarks/parallel_accuracy.py --trace     # re-trace every row first (about 11 minutes on 2 cores)
    python benchmarks/parallel_accuracy.py --only qwen2-0.5b --trace
    python benchmarks/parallel_accuracy.py --trace --only 'v2048|v4096'   # the layer-dominated rows (5 minutes)
    python benchmarks/parallel_accuracy.py --trace --heldout              # only the held-out rows (1 minute)
    python benchmarks/parallel_accuracy.py --alive 'fsdp2 llama-2048x4-v2048 W4 bf16 noAC raf=False'
        # one row re-traced: what is alive at each phase's peak, by module and op, beside the estimate's phases

Exit status 1 when a row is outside ±2 %.

Stored traces: ``benchmarks/results/parallel_measured.json`` (calibration and layer-dominated rows) and
``benchmarks/results/parallel_heldout.json`` (held-out rows, each with its config.json dict, batch, seq and the
date, commit and library versions it was traced with), exact bytes, produced by ``--trace`` with torch
2.13.0+cpu and transformers 5.23.0.
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from parallel_cases import (BATCH, HELDOUT_CONFIGS, PRECISIONS, SEQ, case_id, cases, config_of,  # noqa: E402
                            heldout_cases, matrix_of)
from parallel_report import TOLERANCE_PCT, TRACER, report  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MEASURED = ROOT / "benchmarks" / "results" / "parallel_measured.json"
HELDOUT_MEASURED = ROOT / "benchmarks" / "results" / "parallel_heldout.json"
DOC = ROOT / "docs" / "accuracy-parallel.md"


def _measure(c: dict, alive: bool = False) -> dict:
    from gpuplan.verify.distributed import measure_fsdp2_step, measure_tp_step

    cfg = config_of(c)
    batch, seq = c.get("batch", BATCH), c.get("seq", SEQ)
    if c["layout"] == "fsdp2":
        return measure_fsdp2_step(cfg, world_size=c["world_size"], batch=batch, seq=seq, recompute=c["recompute"],
                                  reshard_after_forward=c["reshard_after_forward"], alive=alive,
                                  **PRECISIONS[c["precision"]][0])
    return measure_tp_step(cfg, world_size=c["world_size"], batch=batch, seq=seq, dtype=c["precision"],
                           recompute=c["recompute"], alive=alive)


def _provenance() -> dict:
    """When and from which commit a held-out row was traced, and which files of the tracer that ran (the imported
    ``gpuplan.verify`` package) differ from that commit's."""
    import torch
    import transformers

    import gpuplan.verify

    def git(*args: str, stdin: str | None = None) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, input=stdin,
                              check=False).stdout

    committed = {}  # file name -> blob id at HEAD
    for line in git("ls-tree", "HEAD", TRACER + "/").splitlines():
        meta, _, path = line.partition("\t")
        committed[Path(path).name] = meta.split()[2]
    files = sorted(Path(gpuplan.verify.__file__).parent.glob("*.py"))
    ran = git("hash-object", "--stdin-paths", stdin="\n".join(str(f) for f in files) + "\n").split()
    changed = sorted(f.name for f, blob in zip(files, ran) if committed.get(f.name) != blob)
    return {"date": datetime.date.today().isoformat(), "commit": git("rev-parse", "--short", "HEAD").strip(),
            "tracer_changes": [f"{TRACER}/{name}" for name in changed],
            "torch": torch.__version__, "transformers": transformers.__version__}


def trace(c: dict) -> dict:
    """Run the fake-process-group trace of one case; keep the numbers the report uses."""
    t0 = time.perf_counter()
    r = _measure(c)
    out = {**c, "peak_bytes": r["peak_bytes"], "peak_phase": r["peak_phase"],
           "phase_peak_bytes": {k: v["peak_bytes"] for k, v in r["phases"].items()}, "at_peak": r["at_peak"]}
    if matrix_of(c) == "held-out":
        out.update(hf_config=config_of(c), phase_module={k: v.get("module", "") for k, v in r["phases"].items()},
                   trace_s=round(time.perf_counter() - t0, 1), traced=_provenance())
    return out


def train_config(c: dict):
    """The ``TrainConfig`` matching a case."""
    from gpuplan.train.config import TrainConfig

    common = dict(batch=c.get("batch", BATCH), seq=c.get("seq", SEQ), precision=PRECISIONS[c["precision"]][1],
                  framework="torch", recompute="full" if c["recompute"] else "none",
                  attention=c.get("attention", "sdpa"))
    if c["layout"] == "fsdp2":
        return TrainConfig(dp=c["world_size"], zero=3, reshard_after_forward=c["reshard_after_forward"], **common)
    return TrainConfig(tp=c["world_size"], **common)


def estimate(c: dict):
    from gpuplan.model.hf_config import spec_from_config
    from gpuplan.train.engine import estimate_training

    return estimate_training(spec_from_config(config_of(c), name=c["config"]), train_config(c))


def compare(rows: list[dict]) -> list[dict]:
    out = []
    for m in rows:
        if "hf_config" in m and m["hf_config"] != HELDOUT_CONFIGS.get(m["config"]):
            raise SystemExit(f"{case_id(m)}: stored with another config.json than HELDOUT_CONFIGS; re-trace it")
        t0 = time.perf_counter()
        r = estimate(m)
        ms = (time.perf_counter() - t0) * 1e3
        est = r.memory.allocated_peak_bytes
        ph = {p.name: p.bytes for p in r.phases}
        est_ph = {"forward": ph["forward"], "optimizer": ph["optimizer step"],
                  "backward": max(v for k, v in ph.items() if k not in ("forward", "optimizer step"))}
        got = m["phase_peak_bytes"]
        out.append({"id": case_id(m), "matrix": matrix_of(m),
                    "phase_error_pct": {k: 100.0 * (est_ph[k] - got[k]) / got[k] for k in est_ph},
                    "measured_bytes": m["peak_bytes"], "measured_phase": m["peak_phase"],
                    "estimate_bytes": est, "estimate_phase": r.memory.peak_phase,
                    "error_pct": 100.0 * (est - m["peak_bytes"]) / m["peak_bytes"], "estimate_ms": ms,
                    "measured_phase_bytes": m["phase_peak_bytes"]})
    return out


def alive_report(case: str) -> str:
    """One row re-traced with the live storages at each phase peak (activations and temporaries by the module and
    op that made them), beside the estimate's phases."""
    every = cases() + heldout_cases()
    c = next((x for x in every if case_id(x) == case), None)
    if c is None:
        raise SystemExit(f"no row {case!r}; rows: " + "; ".join(case_id(x) for x in every))
    r = _measure(c, alive=True)
    lines = [f"# {case}", "", "estimate phases: " + ", ".join(f"{p.name} {p.bytes:,}" for p in estimate(c).phases)]
    for phase, rec in r["phases"].items():
        lines += ["", f"## {phase} peak {rec['peak_bytes']:,} B in {rec.get('module') or '-'}", "",
                  "| bytes | count | category | module | op |", "|---:|---:|---|---|---|"]
        lines += [f"| {a['bytes']:,} | {a['count']} | {a['category']} | {a['module']} | {a['op']} |"
                  for a in rec["alive"]]
    return "\n".join(lines) + "\n"


def _load(path: Path) -> list[dict]:
    if not path.exists():
        return []
    data = json.loads(path.read_text())
    return data["rows"] if isinstance(data, dict) else data


def _save(by_id: dict) -> None:
    MEASURED.write_text(json.dumps([by_id[case_id(x)] for x in cases() if case_id(x) in by_id], indent=1) + "\n")
    held = [by_id[case_id(x)] for x in heldout_cases() if case_id(x) in by_id]
    if held:
        HELDOUT_MEASURED.write_text(json.dumps({
            "description": "Held-out rows of benchmarks/parallel_accuracy.py: per-rank traces of "
                           "gpuplan.verify.distributed (bytes), each with the config.json dict, batch, seq and "
                           "the date, commit and library versions it was traced with.",
            "rows": held}, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trace", action="store_true", help="re-trace the rows (needs torch + transformers)")
    ap.add_argument("--only", default="", help="regex over case ids")
    ap.add_argument("--heldout", action="store_true", help="with --trace: re-trace only held-out rows")
    ap.add_argument("--no-doc", action="store_true", help="print only, do not rewrite docs/accuracy-parallel.md")
    ap.add_argument("--alive", metavar="CASE", help="re-trace one row (its case id) and list what is alive at each "
                    "phase's peak")
    a = ap.parse_args(argv)
    if a.alive:
        print(alive_report(a.alive), end="")
        return 0
    by_id = {case_id(m): m for m in _load(MEASURED) + _load(HELDOUT_MEASURED)}
    every = cases() + heldout_cases()
    wanted = [c for c in every if re.search(a.only, case_id(c))]
    if a.trace:
        for c in wanted:
            if a.heldout and matrix_of(c) != "held-out":
                continue
            t0 = time.perf_counter()
            by_id[case_id(c)] = trace(c)
            print(f"traced {case_id(c)}: {by_id[case_id(c)]['peak_bytes']:,} B ({time.perf_counter() - t0:.0f} s)",
                  flush=True)
            _save(by_id)
    rows = [by_id[case_id(c)] for c in wanted if case_id(c) in by_id]
    results = compare(rows)
    text = report(results, [by_id[case_id(c)] for c in heldout_cases() if case_id(c) in by_id])
    print(text)
    if not a.no_doc and not a.only:
        DOC.write_text(text)
    outside = [r["id"] for r in results if abs(r["error_pct"]) > TOLERANCE_PCT]
    print("all rows within tolerance" if not outside else "outside tolerance: " + "; ".join(outside),
          file=sys.stderr)
    return 0 if not outside else 1


if __name__ == "__main__":
    sys.exit(main())
