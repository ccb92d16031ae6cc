"""Upper bounds on what a user may ask for, shared by the command line, the web API and the Python API.

Structural sizes (layers, experts, heads...) drive per-layer and per-expert loops and the tensor table, so they are
kept to what real models use, with room to spare; every other count is bounded only to stay exact in a JSON double
(2^53). Results are bounded too: an answer that needs more GPUs than exist, or a run shorter than one optimizer step,
is refused with the reason rather than printed as a number.
"""

from __future__ import annotations

import math

from gpuplan.errors import InputError

MAX_SAFE_INT = (1 << 53) - 1  # the largest integer a JSON double holds exactly

# Counts by option name (the CLI's dest, e.g. ``kv_heads`` for ``--kv-heads``); absent names: MAX_SAFE_INT.
COUNT_BOUNDS: dict[str, int] = {
    "layers": 2048, "hidden": 1 << 20, "heads": 1 << 14, "kv_heads": 1 << 14, "head_dim": 1 << 16,
    "ffn": 1 << 22, "vocab": 1 << 24, "experts": 8192, "top_k": 1024, "lora_rank": 1 << 16,
    "batch": 1 << 20, "images": 1 << 12, "microbatches": 1 << 20, "grad_accum": 1 << 20, "seq": 1 << 27, "target_seq": 1 << 27, "context": 1 << 27,
    "prompt": 1 << 27, "loss_chunk": 1 << 27, "global_batch": 1 << 30, "max_num_seqs": 1 << 20,
    "max_num_batched_tokens": 1 << 27, "gpus": 1 << 20, "dp": 1 << 20, "dp_shard": 1 << 20, "tp": 1 << 12,
    "pp": 2048, "ep": 8192, "cp": 1 << 12, "vpp": 2048, "gpus_per_node": 1 << 10, "gpu_multiple": 1 << 20,
    "top": 1 << 10, "newest": 1 << 14,
}

# Routed experts summed over the layers: what the tensor table enumerates (DeepSeek-V3: 61 x 256 = 15,616).
MAX_LAYER_EXPERTS = 1 << 15
# Multi-token-prediction modules (DeepSeek-V3: 1).
MAX_MTP_LAYERS = 16
# Position limits: far above any model's context, low enough that scaled limits stay exact integers.
MAX_POSITION = 1 << 40
MAX_ROPE_FACTOR = 1024.0

# A model name is a preset id, a hub id or a path; 255 is the longest file name most file systems allow.
MAX_MODEL_NAME_CHARS = 255

# Result bounds: more GPUs than exist on Earth (hundreds of millions at most) is not a plan.
MAX_GPUS = 10**8

# ModelSpec fields and the option whose bound they share.
SPEC_BOUNDS: dict[str, int] = {
    "num_layers": COUNT_BOUNDS["layers"], "hidden_size": COUNT_BOUNDS["hidden"], "num_heads": COUNT_BOUNDS["heads"],
    "num_kv_heads": COUNT_BOUNDS["kv_heads"], "head_dim": COUNT_BOUNDS["head_dim"], "ffn_size": COUNT_BOUNDS["ffn"],
    "vocab_size": COUNT_BOUNDS["vocab"], "max_position": MAX_POSITION,
}


def count_bound(name: str) -> int:
    """The largest value allowed for count ``name`` (an option's dest, or its flag such as ``--kv-heads``)."""
    return COUNT_BOUNDS.get(name.lstrip("-").replace("-", "_"), MAX_SAFE_INT)


def check_count_bound(field: str, value: int, name: str | None = None) -> int:
    """``value`` if it is at most the bound of ``name`` (default: ``field``), else InputError naming both."""
    bound = count_bound(name or field)
    if value > bound:
        raise InputError(field, value, f"must be at most {bound:,}")
    return value


def require_finite(field: str, value: float) -> float:
    """Every number gpuplan prints must be finite: refuse an infinite or NaN result, naming what overflowed."""
    if not math.isfinite(value):
        raise InputError(field, value, "the result is not a finite number: the inputs are out of any real range")
    return value
