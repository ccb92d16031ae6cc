"""Default model-FLOPs utilization (MFU) by GPU family and cluster size, each from a published run.

MFU = model FLOPs per second / (GPUs × dense peak FLOP/s of the training dtype). It absorbs everything the simple
time formula leaves out — communication, pipeline bubbles, recomputation, stragglers, data loading — which is why
it must come from measurements at a similar scale. These defaults are dense-transformer, BF16 figures; for MoE
models, FP8 or long-context training pass ``--mfu`` (or use ``gpuplan plan``, whose step-time model derives it).
A GPU with no published figure gets no default: the user must give ``--mfu``.
"""

from __future__ import annotations

from dataclasses import dataclass

from gpuplan.errors import InputError


@dataclass(frozen=True)
class MfuDefault:
    family: str
    min_gpus: int
    max_gpus: int | None  # inclusive; None = no upper bound
    mfu: float
    source: str


# GPU catalog id -> family whose published MFU applies. Only parts whose published runs exist are listed; the
# export variants (A800, H800) have the same tensor cores as the parts measured.
GPU_FAMILY = {
    "a100-40gb": "ampere-sxm", "a100-80gb": "ampere-sxm", "a800": "ampere-sxm",
    "h100-sxm": "hopper-sxm", "h800": "hopper-sxm", "h200": "hopper-sxm",
}

MFU_DEFAULTS: tuple[MfuDefault, ...] = (
    MfuDefault("ampere-sxm", 1, 512, 0.50,
               "MosaicML llm-foundry scripts/train/benchmarking/README.md, A100 80GB tables: MPT 7B-70B on 8-64 GPUs "
               "at 36-64 % MFU (70B/64 GPUs 53.3 %, 30B/8 GPUs seq 2048 55.3 %); Megatron-LM README / Korthikanti "
               "et al. 2022 Table 5: 41.5-56.3 % on 8-512 A100"),
    MfuDefault("ampere-sxm", 513, None, 0.47,
               "OPT-175B (Zhang et al. 2022, arXiv:2205.01068 section 2.4): 147 TFLOP/s per GPU on 992 A100-80GB "
               "= 47 %; LLaMA-65B (Touvron et al. 2023, arXiv:2302.13971 section 2.4): 380 tokens/s/GPU on 2,048 "
               "A100-80GB = 47.6 % by 6·P"),
    MfuDefault("hopper-sxm", 1, 512, 0.40,
               "MosaicML llm-foundry scripts/train/benchmarking/README.md, H100 80GB BF16 table: MPT 1B-70B on 8-64 "
               "GPUs at 36-46 % MFU (70B/64 GPUs 42.6 %, 7B/8 GPUs seq 4096 40.4 %)"),
    MfuDefault("hopper-sxm", 513, 8192, 0.43,
               "Llama 3 (Grattafiori et al. 2024, arXiv:2407.21783) Table 4: 405B on 8,192 H100, TP8 PP16 DP64, "
               "seq 8192: 430 TFLOP/s per GPU, 43 % BF16 MFU"),
    MfuDefault("hopper-sxm", 8193, None, 0.41,
               "Llama 3 (arXiv:2407.21783) Table 4: 405B on 16,384 H100, TP8 PP16 DP128, seq 8192: 400 TFLOP/s "
               "per GPU, 41 % BF16 MFU (38 % with CP16 at seq 131072)"),
)

NO_DEFAULT_HINT = ("give --mfu (e.g. 0.40); seed 004 plans at 0.40 and calls 0.30 conservative; Pangu Ultra MoE "
                   "reports 30.0 % on 6K Ascend NPUs (arXiv:2505.04519)")


def mfu_family(gpu_id: str) -> str | None:
    """The family whose published MFU applies to ``gpu_id``, or None when there is none."""
    return GPU_FAMILY.get(gpu_id)


def default_mfu(gpu_id: str, gpus: int) -> MfuDefault:
    """The published MFU for ``gpu_id``'s family at a cluster of ``gpus``; InputError when none exists."""
    family = mfu_family(gpu_id)
    if family is None:
        raise InputError("--mfu", "(not given)", f"is required for --gpu {gpu_id}: no published MFU for that GPU",
                         hint=NO_DEFAULT_HINT)
    for entry in MFU_DEFAULTS:
        if entry.family == family and entry.min_gpus <= gpus and (entry.max_gpus is None or gpus <= entry.max_gpus):
            return entry
    raise AssertionError(f"MFU_DEFAULTS has a gap for {family} at {gpus} GPUs")  # tables cover 1..inf


def family_tiers(gpu_id: str) -> tuple[MfuDefault, ...]:
    """All size tiers of ``gpu_id``'s family, smallest clusters first (used to solve GPUs for a deadline)."""
    family = mfu_family(gpu_id)
    if family is None:
        raise InputError("--mfu", "(not given)", f"is required for --gpu {gpu_id}: no published MFU for that GPU",
                         hint=NO_DEFAULT_HINT)
    return tuple(e for e in MFU_DEFAULTS if e.family == family)


def check_mfu(value: float, field: str = "--mfu") -> float:
    """MFU must lie in (0, 1]; values above 1 are almost always a percent typed without the % sign."""
    if not 0 < value <= 1:
        hint = f"did you mean {value / 100:g}?" if 1 < value <= 100 else None
        raise InputError(field, value, "must be a fraction in (0, 1], e.g. 0.40 for 40 %", hint=hint)
    return value
