"""Hybrid sharding (HSDP) traces against gpuplan's estimate: the matrix, the stored traces and the table.

Each row is one steady-state training step (AdamW foreach, SDPA) of a Hugging Face model on fake tensors under a
fake process group, ``fully_shard`` per decoder layer + root on a 2-D (dp_replicate × dp_shard) mesh
(``gpuplan.verify.distributed.measure_fsdp2_step(replicate=R)``), rank 0. The estimate is ``estimate_training``
with ``dp=W, zero=3, dp_shard=W/R`` (``--framework torch``); fp32-shard/bf16-compute is ``--precision amp-bf16``
(MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32)). Not in either number: CUDA context, NCCL buffers,
allocator reserve.

    python tests/hsdp_reference.py            # the table from the stored traces (tests/data/hsdp_traces.json)
    python tests/hsdp_reference.py --trace    # re-trace every row first (about 2 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

from gpuplan.verify.reference_configs import TRACE_CONFIGS, TRACE_PRECISIONS

DATA = Path(__file__).resolve().parent / "data" / "hsdp_traces.json"
BATCH, SEQ = 2, 1024

CONFIGS = {name: TRACE_CONFIGS[name] for name in ("llama-2048x8", "llama-2048x4-v2048", "qwen2-896x6-v151937-tied")}
PRECISIONS = {name: TRACE_PRECISIONS[name] for name in ("bf16", "fp32-shard/bf16-compute")}


def cases() -> list[dict]:
    """W = 8 as 2 × 4 and 4 × 2 (replicate × shard) for every model, precision, checkpointing and
    reshard_after_forward; W = 16 as 2 × 8 and 4 × 4 for the first model in bf16."""
    out = []
    for name, (world, rep), prec, rc, raf in itertools.product(CONFIGS, ((8, 2), (8, 4)), PRECISIONS,
                                                                (False, True), (True, False)):
        out.append(dict(config=name, world_size=world, replicate=rep, precision=prec, recompute=rc,
                        reshard_after_forward=raf))
    for rep, raf in itertools.product((2, 4), (True, False)):
        out.append(dict(config="llama-2048x8", world_size=16, replicate=rep, precision="bf16", recompute=False,
                        reshard_after_forward=raf))
    return out


def label(c: dict) -> str:
    shard = c["world_size"] // c["replicate"]
    return (f"hsdp {c['config']} W{c['world_size']} {c['replicate']}x{shard} {c['precision']} "
            f"{'AC' if c['recompute'] else 'noAC'} raf={c['reshard_after_forward']}")


def train_config(c: dict):
    from gpuplan.train.config import TrainConfig

    return TrainConfig(batch=BATCH, seq=SEQ, framework="torch", precision=PRECISIONS[c["precision"]][1],
                       dp=c["world_size"], zero=3, dp_shard=c["world_size"] // c["replicate"],
                       recompute="full" if c["recompute"] else "none",
                       reshard_after_forward=c["reshard_after_forward"])


def estimate(c: dict) -> dict:
    """The estimate's allocated peak, its phase and the phase peaks compared with the trace's three phases."""
    from gpuplan.model.hf_config import spec_from_config
    from gpuplan.train.engine import estimate_training

    r = estimate_training(spec_from_config(dict(CONFIGS[c["config"]])), train_config(c))
    ph = {p.name: p.bytes for p in r.phases}
    return {"peak_bytes": r.memory.allocated_peak_bytes, "peak_phase": r.memory.peak_phase,
            "phases": {"forward": ph["forward"], "optimizer": ph["optimizer step"],
                       "backward": max(v for k, v in ph.items() if k not in ("forward", "optimizer step"))}}


def trace(c: dict) -> dict:
    from gpuplan.verify.distributed import measure_fsdp2_step

    m = measure_fsdp2_step(dict(CONFIGS[c["config"]]), world_size=c["world_size"], replicate=c["replicate"],
                           batch=BATCH, seq=SEQ, recompute=c["recompute"],
                           reshard_after_forward=c["reshard_after_forward"], **PRECISIONS[c["precision"]][0])
    return {**c, "peak_bytes": m["peak_bytes"], "peak_phase": m["peak_phase"],
            "phases": {k: v["peak_bytes"] for k, v in m["phases"].items()},
            "all_reduce_held_bytes": max(v["all_reduce_held"] for v in m["phases"].values())}


def load() -> list[dict]:
    return json.loads(DATA.read_text(encoding="utf-8"))["rows"]


def error_pct(estimate_bytes: int, measured_bytes: int) -> float:
    return (estimate_bytes - measured_bytes) / measured_bytes * 100


def table(rows: list[dict]) -> str:
    out = ["| case | measured bytes | measured phase | estimate bytes | estimate phase | error | forward | backward "
           "| optimizer |", "|---|---:|---|---:|---|---:|---:|---:|---:|"]
    for m in rows:
        e = estimate(m)
        phases = " | ".join(f"{error_pct(e['phases'][k], m['phases'][k]):+.2f} %"
                            for k in ("forward", "backward", "optimizer"))
        out.append(f"| {label(m)} | {m['peak_bytes']:,} | {m['peak_phase']} | {e['peak_bytes']:,} | "
                   f"{e['peak_phase']} | {error_pct(e['peak_bytes'], m['peak_bytes']):+.3f} % | {phases} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trace", action="store_true", help="re-trace every row and store the numbers")
    args = ap.parse_args(argv)
    if args.trace:
        import torch
        import transformers

        rows = [trace(c) for c in cases()]
        DATA.parent.mkdir(exist_ok=True)
        DATA.write_text(json.dumps({"torch": torch.__version__, "transformers": transformers.__version__,
                                    "batch": BATCH, "seq": SEQ, "rows": rows}, indent=1) + "\n", encoding="utf-8")
    rows = load()
    print(table(rows))
    worst = max(abs(error_pct(estimate(m)["peak_bytes"], m["peak_bytes"])) for m in rows)
    print(f"\n{len(rows)} rows; max |error| {worst:.3f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
