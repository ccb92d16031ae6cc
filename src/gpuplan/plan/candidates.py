"""What the layout search works with: the question (``Target``), the search's inputs (``SearchContext``), one timed
layout (``Candidate``), a layout waiting for its step time (``Deferred``), layouts that differ only in their ZeRO
stage waiting for theirs (``Untimed``) and the ranking key."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property

from gpuplan.compute import comm
from gpuplan.compute.steptime import Device, Layout, StepTime, Tuning, Workload
from gpuplan.model.spec import ModelSpec
from gpuplan.plan.memory import TrainOptions
from gpuplan.plan.space import Pins


RANKS = ("time", "cost", "gpus")


def describe_short(lay: Layout) -> str:
    return (f"TP{lay.tp} PP{lay.pp} DP{lay.dp}" + (f" (HSDP {lay.dp_shard})" if lay.dp_shard is not None else "")
            + (f" CP{lay.cp}" if lay.cp > 1 else "")
            + (f" EP{lay.ep}" if lay.ep > 1 else "")
            + f" ZeRO-{lay.zero} mb{lay.micro_batch} recompute {lay.recompute}")


@dataclass(frozen=True)
class Target:
    """What the plan must achieve: a fixed GPU count, or a deadline for a number of tokens."""

    gpus: int | None = None
    days: float | None = None
    tokens: int | None = None
    gpu_multiple: int = 8  # whole nodes


@dataclass
class Candidate:
    layout: Layout
    gpu_id: str
    step: StepTime
    seconds_per_step: float
    days: float | None
    mfu: float
    tokens_per_s_per_gpu: float
    capacity_bytes: int
    memory_total_bytes: int | None = None
    memory_note: str = ""
    known_bytes: int | None = None  # ruled out without a call: what a variant needing less memory already needs
    memory_forced: bool = False  # deadline mode: more DP than the deadline needs, because fewer did not fit

    @property
    def gpus(self) -> int:
        return self.layout.gpus

    @property
    def gpu_hours(self) -> float | None:
        return None if self.days is None else self.gpus * self.days * 24

    @property
    def fits(self) -> bool | None:
        return None if self.memory_total_bytes is None else self.memory_total_bytes <= self.capacity_bytes


@dataclass
class SearchContext:
    spec: ModelSpec
    gpu: object  # GpuSpec
    dev: Device
    net: comm.Network
    work: Workload
    flop_per_token: float  # model FLOPs (MFU numerator)
    target: Target
    pins: Pins = field(default_factory=Pins)
    opts: TrainOptions = field(default_factory=TrainOptions)
    tune: Tuning = field(default_factory=Tuning)
    rank: str = "time"


def rank_key(c: Candidate, rank: str) -> tuple:
    t = c.days if c.days is not None else c.seconds_per_step
    if rank == "gpus":
        return (c.gpus, t)
    if rank == "cost":
        return (c.gpu_hours if c.gpu_hours is not None else c.gpus * c.seconds_per_step, t)
    return (t, c.gpus)


@dataclass
class Deferred:
    """A hybrid-sharding variant of a timed layout, not timed yet: it sits in the rank order at a lower bound of its
    step time and is timed only when the search reaches that bound. Hybrid sharding changes only the data-parallel
    traffic and the optimizer update, so the step is at least the full-sharding step less its exposed
    data-parallel seconds (counted in the pipeline bubble's slots too: at most ``(pp-1)/vpp`` of the ``m``
    micro-batches' share), plus the optimizer update's growth: it is memory-bound over the local shard
    (gpuplan.compute.steptime), dp/dp_shard times larger."""

    base: Candidate
    dp_shard: int
    seconds_per_step: float
    days: float | None

    @cached_property
    def layout(self) -> Layout:
        return replace(self.base.layout, dp_shard=self.dp_shard)

    @property
    def gpus(self) -> int:
        return self.base.gpus

    @property
    def gpu_hours(self) -> float | None:
        return None if self.days is None else self.gpus * self.days * 24


@dataclass
class Untimed:
    """Layouts of one shape, expert, micro-batch, interleaving and recomputation choice that differ only in their
    ZeRO stage, not timed yet: they sit in the rank order at a lower bound of all their step times and are timed
    only when the search reaches it (most never are). The ZeRO stage changes only the data-parallel traffic and the
    optimizer update (gpuplan.compute.steptime ``step_time_floor``: the step without them), so no layout is passed
    over: each is timed before any layout slower than the bound is looked at."""

    layouts: list[Layout]
    seconds_per_step: float
    days: float | None

    @property
    def layout(self) -> Layout:
        return self.layouts[0]

    @property
    def gpus(self) -> int:
        return self.layouts[0].gpus

    @property
    def gpu_hours(self) -> float | None:
        return None if self.days is None else self.gpus * self.days * 24
