"""Reserved memory from CPU traces: each case's model is created and trained for three steps on fake tensors, every
storage allocation and free is logged, and the sequence is replayed through the caching-allocator model
(``gpuplan.verify.allocator``, the rules of PyTorch's ``CUDACachingAllocator.cpp`` with the default settings).
Prints, per case, the steady-state allocated peak, the reserved peak, the reserve as a fraction of the allocated
peak, and gpuplan's estimate of the same reserved peak (``reserved_bytes`` less the cuBLAS workspace, which the
CPU trace has no counterpart for) with its error.

    python benchmarks/allocator_replay.py            # every case (about three minutes)
    python benchmarks/allocator_replay.py --only bert
    python benchmarks/allocator_replay.py --only "b2 x 8192" --growth   # the segments the second step opens
"""

from __future__ import annotations

import argparse
import re
import tomllib
from pathlib import Path

from gpuplan.model.hf_config import spec_from_config
from gpuplan.train.overheads import DEFAULT_WORKSPACE_BYTES
from gpuplan.verify.reference_configs import TRACE_CONFIGS
from gpuplan.verify.setup import TrainSetup

ROOT = Path(__file__).resolve().parent
GiB = 1 << 30
MiB = 1 << 20

# Llama 3.1 8B (meta-llama/Llama-3.1-8B config.json)
LLAMA31_8B = dict(model_type="llama", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                  num_attention_heads=32, num_key_value_heads=8, vocab_size=128256, max_position_embeddings=131072,
                  rope_theta=500000.0, tie_word_embeddings=False, rms_norm_eps=1e-5)


# a small Llama whose tensors are MiB-sized
SMALL = TRACE_CONFIGS["llama-2048x4-v2048"]


def cases() -> list[tuple[str, dict, TrainSetup]]:
    published = tomllib.loads((ROOT / "published_cases.toml").read_text())
    bert = dict(published["config"]["bert-large-uncased-classify"])
    return [
        ("BERT-large classify, fp32, b4 x 512, eager, for-loop AdamW, gradients kept (HF Trainer 2022 row)", bert,
         TrainSetup(batch=4, seq=512, precision="fp32", optimizer_impl="for-loop", attention="eager",
                    zero_grad="zeros")),
        ("BERT-large classify, fp32, b4 x 512, eager, for-loop AdamW, gradients freed", bert,
         TrainSetup(batch=4, seq=512, precision="fp32", optimizer_impl="for-loop", attention="eager")),
        ("Llama 3.1 8B, amp-bf16, b2 x 8192, full recompute, foreach AdamW (one GPU)", LLAMA31_8B,
         TrainSetup(batch=2, seq=8192, precision="amp-bf16", recompute="full")),
        ("Llama 3.1 8B, amp-bf16, b1 x 2048, full recompute, foreach AdamW (one GPU)", LLAMA31_8B,
         TrainSetup(batch=1, seq=2048, precision="amp-bf16", recompute="full")),
        ("Llama 3.1 8B, bf16 LoRA r16 all linear, b2 x 2048, full recompute", LLAMA31_8B,
         TrainSetup(batch=2, seq=2048, precision="bf16", recompute="full", method="lora")),
    ]


def fsdp2_cases() -> list[tuple[str, dict, dict, dict]]:
    """One rank of an FSDP2 run under the fake process group (``trace_reserved_fsdp2``): (name, config, options,
    the ``gpuplan train`` options of the same rank)."""
    return [
        ("Llama 3.1 8B, FSDP2 rank 0 of 8, fp32 shards + bf16 compute, b2 x 8192, full recompute",
         LLAMA31_8B, dict(world_size=8, batch=2, seq=8192, recompute=True),
         dict(batch=2, seq=8192, precision="amp-bf16", recompute="full", gpus=8, zero=3, attention="sdpa")),
        ("Llama 4 x 2048 (vocab 2048), FSDP2 rank 0 of 4, fp32 shards + bf16 compute, b2 x 512", SMALL,
         dict(world_size=4, batch=2, seq=512), dict(batch=2, seq=512, precision="amp-bf16", gpus=4, zero=3,
                                                    attention="sdpa")),
    ]


def tp_cases() -> list[tuple[str, dict, dict, dict]]:
    """Rank 0 of a tensor-parallel run under the fake process group (``trace_reserved_tp``): (name, config,
    options, the ``gpuplan train`` options of the same rank)."""
    return [
        ("Llama 3.1 8B, TP rank 0 of 4 (no SP, vocabulary replicated), bf16, b2 x 4096, full recompute", LLAMA31_8B,
         dict(world_size=4, batch=2, seq=4096, recompute=True),
         dict(batch=2, seq=4096, precision="bf16", recompute="full", gpus=4, tp=4, attention="sdpa")),
    ]


def estimate_reserved(config: dict, setup: TrainSetup | None = None, train: dict | None = None) -> int:
    """gpuplan's reserved peak for a case, without the cuBLAS workspace (the replay has none)."""
    spec = spec_from_config(dict(config))
    if setup is not None:
        from gpuplan.verify.estimate import training_estimate

        return training_estimate(spec, setup)["reserved_bytes"] - DEFAULT_WORKSPACE_BYTES
    from gpuplan.train.config import TrainConfig
    from gpuplan.train.engine import estimate_training

    return int(estimate_training(spec, TrainConfig(**train)).memory.reserved_bytes) - DEFAULT_WORKSPACE_BYTES


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="regular expression over the case names")
    ap.add_argument("--growth", action="store_true", help="also list each new segment the second (steady) step "
                    "opens, with the free blocks its stream held then")
    args = ap.parse_args()
    from gpuplan.verify.reserved import trace_reserved

    print("| case | allocated peak (GiB) | reserved peak (GiB) | reserve | gpuplan reserved (GiB) | error | "
          "trace (s) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    traces = []
    for name, config, setup in cases():
        if args.only and not re.search(args.only, name, re.I):
            continue
        traces.append((name, trace_reserved(dict(config), setup, steps=3)))
        _row(*traces[-1], estimate_reserved(config, setup))
    from gpuplan.verify.reserved import trace_reserved_fsdp2

    for name, config, options, train in fsdp2_cases():
        if args.only and not re.search(args.only, name, re.I):
            continue
        traces.append((name, trace_reserved_fsdp2(dict(config), steps=3, **options)))
        _row(*traces[-1], estimate_reserved(config, train=train))
    from gpuplan.verify.reserved import trace_reserved_tp

    for name, config, options, train in tp_cases():
        if args.only and not re.search(args.only, name, re.I):
            continue
        traces.append((name, trace_reserved_tp(dict(config), steps=3, **options)))
        _row(*traces[-1], estimate_reserved(config, train=train))
    if args.growth:
        print("\n| case | request (MiB) | new segment (MiB) | largest free block of its stream (MiB) | "
              "free in its stream (MiB) |\n|---|---:|---:|---:|---:|")
        for name, rt in traces:
            for g in rt.steady_segments:
                print(f"| {name} | {g.request_bytes / MiB:,.0f} | {g.segment_bytes / MiB:,.0f} | "
                      f"{g.largest_free_bytes / MiB:,.0f} | {g.free_bytes / MiB:,.0f} |")


def _row(name: str, rt, estimate: int) -> None:
    alloc, res = rt.allocated_peak_bytes, rt.reserved_peak_bytes
    print(f"| {name} | {alloc / GiB:.2f} | {res / GiB:.2f} | {res / alloc - 1:+.1%} | {estimate / GiB:.2f} | "
          f"{estimate / res - 1:+.1%} | {rt.wall_s:.0f} |", flush=True)


if __name__ == "__main__":
    main()
