"""The largest micro-batch or sequence length that fits a GPU.

Per-GPU memory grows monotonically with the batch and with the sequence (every activation and logits term is a
non-negative multiple of b·s or b·s², model states do not depend on either), so a doubling search followed by a
bisection finds the exact largest value in O(log n) estimates.
"""

from __future__ import annotations

from typing import Callable

from gpuplan.model.spec import ModelSpec
from gpuplan.train.config import TrainConfig
from gpuplan.train.engine import estimate_training

MAX_SEARCH = 1 << 24


def largest_fitting(fits_at: Callable[[int], bool], start: int = 1, limit: int = MAX_SEARCH) -> int:
    """Largest n in [start, limit] with fits_at(n), assuming fits_at is monotone (true then false); 0 if none."""
    if not fits_at(start):
        return 0
    lo, hi = start, start
    while hi < limit:
        nxt = min(hi * 2, limit)
        if not fits_at(nxt):
            hi = nxt
            break
        lo = hi = nxt
    else:
        return lo
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits_at(mid):
            lo = mid
        else:
            hi = mid
    return lo


def max_batch(spec: ModelSpec, cfg: TrainConfig, capacity_bytes: int, limit: int = 1 << 16) -> int:
    """Largest micro-batch per GPU whose total fits ``capacity_bytes`` (0: not even batch 1)."""
    return largest_fitting(
        lambda b: estimate_training(spec, cfg.with_(batch=b)).memory.total_bytes <= capacity_bytes, 1, limit)


def max_seq(spec: ModelSpec, cfg: TrainConfig, capacity_bytes: int, limit: int | None = None) -> int:
    """Longest sequence whose total fits (0: not even the shortest); capped by ``limit`` (default 16M tokens).
    Context parallelism gives each rank seq/cp tokens, so only multiples of cp are valid lengths: the search runs
    over k·cp."""
    step = cfg.cp
    return step * largest_fitting(
        lambda k: estimate_training(spec, cfg.with_(seq=k * step)).memory.total_bytes <= capacity_bytes, 1,
        max(1, (limit or MAX_SEARCH) // step))
