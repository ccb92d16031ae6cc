"""Latency of parallel-layout estimates: in-process per estimate, and `gpuplan train ... --per-rank` end to end.

Run: python benchmarks/bench_parallel.py     (target for the CLI command: well under a second)
"""

from __future__ import annotations

import subprocess
import sys
import time

from gpuplan.model.presets import find_preset
from gpuplan.parallel.layout import resolve_layout
from gpuplan.train.config import TrainConfig
from gpuplan.train.engine import estimate_training

from bench_train import mean_seconds  # sibling script: run as python benchmarks/bench_parallel.py

CASES = [
    ("llama-3.1-8b", TrainConfig(dp=8, zero=3)),
    ("llama-3.1-8b", TrainConfig(dp=8, zero=3, framework="deepspeed", offload="optimizer")),
    ("llama-3.1-70b", TrainConfig(gpus=64, tp=8, pp=4, zero=1)),
    ("llama-3.1-70b", TrainConfig(gpus=1024, tp=8, pp=16, framework="megatron", zero=1, sp=True, recompute="selective")),
    ("llama-3.1-405b", TrainConfig(gpus=2048, tp=8, pp=16, vpp=2, microbatches=32, framework="megatron", zero=1,
                                   sp=True)),
    ("mixtral-8x7b-v0.1", TrainConfig(dp=8, ep=8, zero=1, framework="megatron")),
    ("deepseek-v3", TrainConfig(gpus=2048, tp=4, pp=16, ep=64, framework="megatron", zero=1, recompute="full")),
]
CLI = [sys.executable, "-m", "gpuplan", "train", "llama-3.1-70b", "--gpus", "64", "--tp", "8", "--pp", "4",
       "--zero", "1", "--per-rank"]


def main() -> None:
    print(f"{'model':18s} {'layout':58s} {'first ms':>9s} {'new batch ms':>13s}")
    for name, cfg in CASES:
        spec = find_preset(name).spec()
        first = mean_seconds(lambda: estimate_training(spec, cfg), 1)
        batches = iter(range(2, 10_000))
        varied = mean_seconds(lambda: estimate_training(spec, cfg.with_(batch=next(batches))), 20)
        lay = resolve_layout(spec, cfg)
        label = (f"{cfg.framework} gpus={lay.world} dp={lay.dp} tp={lay.tp} pp={lay.pp} vpp={lay.vpp} ep={lay.ep} "
                 f"zero={lay.zero}")
        print(f"{name:18s} {label:58s} {first * 1e3:9.2f} {varied * 1e3:13.2f}")
    runs = []
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run(CLI, check=True, capture_output=True)
        runs.append(time.perf_counter() - t0)
    print(f"\n`{' '.join(['gpuplan'] + CLI[3:])}`: best of 3 {min(runs):.2f} s wall (process start included)")


if __name__ == "__main__":
    main()
