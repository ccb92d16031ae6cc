"""The step-time model against published step times and throughputs (the tables in docs/time-model.md).

    python benchmarks/compare_steptime.py

Every input is the published configuration; every efficiency and bandwidth is gpuplan's default (nothing is
fitted to these runs).
"""

from __future__ import annotations

from gpuplan.compute.comm import default_network
from gpuplan.compute.flops import training_flops
from gpuplan.compute.published import llama31_405b
from gpuplan.compute.steptime import Layout, Workload, make_device, model_flops_utilization, step_time
from gpuplan.hardware.catalog import get_gpu
from gpuplan.model.resolve import spec_from_dims

# Korthikanti et al. 2022 Table 3 (GPT-3-style, seq 2048, vocab 51200, TP 8, micro-batch 1, selective recompute
# + sequence parallelism, DP 1) and Table 5 iteration times (= the Megatron-LM README MFU through eq. of section 6).
KORTHIKANTI = [("22B", 6144, 64, 48, 1, 4, 1.10), ("175B", 12288, 96, 96, 8, 64, 13.75),
               ("530B", 20480, 128, 105, 35, 280, 37.83), ("1T", 25600, 160, 128, 64, 512, 71.49)]

# MosaicML llm-foundry scripts/train/benchmarking/README.md (FSDP FULL_SHARD = ZeRO-3, flash attention,
# activation checkpointing = full recompute): model, seq, GPUs, GPU, micro-batch, grad-accum, checkpointing, MFU %.
MPT_DIMS = {"7b": (4096, 32, 32), "13b": (5120, 40, 40), "30b": (7168, 64, 48), "70b": (8192, 64, 80)}
MPT = [("70b", 2048, 64, "h100-sxm", 8, 4, True, 42.57), ("30b", 2048, 32, "h100-sxm", 14, 3, True, 43.92),
       ("13b", 2048, 8, "h100-sxm", 2, 1, False, 39.79), ("7b", 2048, 8, "h100-sxm", 6, 1, False, 46.44),
       ("70b", 2048, 64, "a100-80gb", 8, 4, True, 53.33), ("30b", 2048, 8, "a100-80gb", 3, 21, True, 55.30),
       ("7b", 4096, 8, "a100-80gb", 16, 2, True, 54.84)]

# Llama 3 paper Table 4: 405B, seq 8192, TP 8, PP 16, CP 1, 16M tokens per batch (2048 sequences): TFLOP/s/GPU.
LLAMA3 = [(8192, 64, 430), (16384, 128, 400)]


def korthikanti() -> None:
    gpu = get_gpu("a100-80gb")
    dev, _ = make_device(gpu)
    net = default_network(gpu)
    print("| model | GPUs (TP x PP) | published s | predicted s | error | largest parts of the predicted step |")
    print("|---|---|---|---|---|---|")
    for name, h, a, L, pp, batch, pub in KORTHIKANTI:
        spec = spec_from_dims(layers=L, hidden=h, heads=a, vocab=51200, gated=False, seq=2048)
        lay = Layout(tp=8, pp=pp, dp=1, micro_batch=1, recompute="selective", zero=0)
        st = step_time(spec, lay, Workload(2048, batch, attention_impl="unfused", dropout=True), dev, net)
        parts = ", ".join(f"{k} {v / st.step_s:.0%}" for k, v in sorted(st.parts.items(), key=lambda x: -x[1])[:3])
        print(f"| {name} | {8 * pp} (8 x {pp}) | {pub:.2f} | {st.step_s:.2f} | {st.step_s / pub - 1:+.1%} | {parts} |")


def mpt() -> None:
    print("| model | seq | GPUs | GPU | mb x accum | recompute | published MFU | predicted MFU | error |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, seq, n, g, mb, ga, ckpt, pub in MPT:
        h, a, L = MPT_DIMS[name]
        spec = spec_from_dims(layers=L, hidden=h, heads=a, vocab=50368, gated=False, tie=True, seq=seq)
        gpu = get_gpu(g)
        dev, _ = make_device(gpu)
        lay = Layout(dp=n, micro_batch=mb, zero=3, recompute="full" if ckpt else "none")
        w = Workload(seq, n * mb * ga)
        st = step_time(spec, lay, w, dev, default_network(gpu))
        mfu = model_flops_utilization(training_flops(spec, seq=seq).model_flop_per_token, w, st.step_s, n,
                                      dev.peak_flop_per_s)
        print(f"| MPT-{name} | {seq} | {n} | {g} | {mb} x {ga} | {'full' if ckpt else 'none'} | {pub:.1f} % |"
              f" {mfu:.1%} | {mfu / (pub / 100) - 1:+.1%} |")


def llama3() -> None:
    spec, gpu = llama31_405b(), get_gpu("h100-sxm")
    dev, _ = make_device(gpu)
    net = default_network(gpu)
    flop = training_flops(spec, seq=8192).model_flop_per_token
    print("| GPUs | DP | published TFLOP/s/GPU | predicted, v=1 | v=2 | v=4 | v=8 |")
    print("|---|---|---|---|---|---|---|")
    for n, dp, pub in LLAMA3:
        cells = []
        for vpp in (1, 2, 4, 8):
            lay = Layout(tp=8, pp=16, dp=dp, vpp=vpp, zero=1, micro_batch=1)
            w = Workload(8192, 2048)
            st = step_time(spec, lay, w, dev, net)
            tf = model_flops_utilization(flop, w, st.step_s, n, dev.peak_flop_per_s) * dev.peak_flop_per_s / 1e12
            cells.append(f"{tf:.0f} ({tf / pub - 1:+.0%})")
        print(f"| {n:,} | {dp} | {pub} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    korthikanti()
    print()
    mpt()
    print()
    llama3()
