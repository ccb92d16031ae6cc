"""Speed of the layout search: Llama 3.1 405B on 16,384 H100 at seq 8192 (target: the whole search in <= 1 s).

    python benchmarks/bench_plan.py [--repeat 3]

Prints the wall time of each full search (timing every layout, lazy memory checks, the explanation's
alternatives), the number of layouts timed, the memory-engine calls and the winner. Each run starts with cold
caches (step-time stage cache and memory cache cleared), as a fresh `gpuplan plan` process would.
"""

from __future__ import annotations

import argparse
import time

from gpuplan.compute import steptime
from gpuplan.compute.comm import default_network
from gpuplan.compute.flops import training_flops
from gpuplan.compute.published import llama31_405b
from gpuplan.compute.steptime import Workload, make_device
from gpuplan.hardware.catalog import get_gpu
from gpuplan.plan.explain import alternatives, describe
from gpuplan.plan.memory import engine_shards_layouts
from gpuplan.plan.candidates import SearchContext, Target
from gpuplan.plan.search import search


def one_run(spec, gpu, seq: int, global_batch: int, gpus: int):
    for cache in (steptime._stage, steptime._stage_layers, steptime._micro_parts, steptime._micro_compute):
        cache.cache_clear()
    dev, _ = make_device(gpu)
    net = default_network(gpu)
    flops = training_flops(spec, seq=seq)
    ctx = SearchContext(spec=spec, gpu=gpu, dev=dev, net=net, work=Workload(seq, global_batch),
                        flop_per_token=flops.model_flop_per_token,
                        target=Target(gpus=gpus, tokens=15_600_000_000_000), rank="time")
    t0 = time.perf_counter()
    res = search(ctx, top=5)
    alts = alternatives(res.plans[0], res) if res.plans else []
    return time.perf_counter() - t0, res, alts


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--gpus", type=int, default=16384)
    ap.add_argument("--global-batch", type=int, default=2048, help="sequences (2048 x 8192 = 16M tokens, Llama 3)")
    args = ap.parse_args()
    spec, gpu = llama31_405b(), get_gpu("h100-sxm")
    print(f"memory engine models parallel layouts: {engine_shards_layouts(spec)}")
    print("| run | wall s | layouts timed | memory-engine calls | ruled out without a call | winner |")
    print("|---|---|---|---|---|---|")
    for i in range(args.repeat):
        wall, res, alts = one_run(spec, gpu, 8192, args.global_batch, args.gpus)
        win = res.plans[0] if res.plans else None
        desc = "none fits" if win is None else f"{describe(win.layout)}, MFU {win.mfu:.1%}, {win.days:.1f} days"
        print(f"| {i + 1} | {wall:.3f} | {res.pool.evaluated:,} | {res.checker.calls} | {res.pool.pruned} | {desc} |")


if __name__ == "__main__":
    main()
