"""Latency of one training-memory estimate, in-process (target: <= 1 ms).

Run: python benchmarks/bench_train.py
"""

from __future__ import annotations

import time

from gpuplan.model.presets import find_preset
from gpuplan.train.config import TrainConfig
from gpuplan.train.engine import estimate_training

CASES = [
    ("llama-3.1-8b", TrainConfig(batch=1, seq=2048)),
    ("llama-3.1-70b", TrainConfig(batch=1, seq=4096, recompute="full")),
    ("qwen2.5-7b", TrainConfig(batch=4, seq=2048, method="lora")),
    ("mixtral-8x7b-v0.1", TrainConfig(batch=1, seq=4096, method="qlora")),
    ("qwen3-30b-a3b", TrainConfig(batch=2, seq=4096, precision="amp-bf16")),
    ("deepseek-v3", TrainConfig(batch=1, seq=4096, recompute="full")),
]


def mean_seconds(fn, repeat: int) -> float:
    """Mean wall time of ``fn()`` over ``repeat`` calls (also used by bench_parallel.py)."""
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t0) / repeat


def main() -> None:
    print(f"{'model':20s} {'config':44s} {'first ms':>9s} {'warm ms':>9s} {'new batch ms':>13s}")
    for name, cfg in CASES:
        spec = find_preset(name).spec()
        first = mean_seconds(lambda: estimate_training(spec, cfg), 1)
        warm = mean_seconds(lambda: estimate_training(spec, cfg), 200)
        batches = iter(range(2, 10_000))
        varied = mean_seconds(lambda: estimate_training(spec, cfg.with_(batch=next(batches))), 200)
        label = f"b{cfg.batch} s{cfg.seq} {cfg.precision} {cfg.method} rc={cfg.recompute}"
        print(f"{name:20s} {label:44s} {first * 1e3:9.2f} {warm * 1e3:9.3f} {varied * 1e3:13.3f}")
    print("first = cold (tensor table, layer caches built); warm = same config again; new batch = a batch never "
          "seen (what --max-batch and the advisor do)")


if __name__ == "__main__":
    main()
