"""The planner's memory check: one call into the training-memory engine (``gpuplan train``'s numbers, exactly).

A layout becomes a ``TrainConfig`` (Megatron-style: sequence parallelism with TP, interleaved schedule with VPP,
micro-batches in flight from the global batch) and ``estimate_training`` decides. Results are cached per layout;
an ``InputError`` from the engine (a combination it does not model or allow) marks the layout as unsupported.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from gpuplan.compute.steptime import Layout
from gpuplan.errors import InputError
from gpuplan.model.spec import ModelSpec


@dataclass(frozen=True)
class TrainOptions:
    """Training options that are not part of the layout (passed through to the memory engine)."""

    precision: str = "bf16"
    framework: str = "megatron"
    optimizer: str = "adamw"
    attention: str = "flash"
    schedule: str | None = None  # pipeline schedule (DualPipe keeps a second copy of its stage's parameters)
    compile: bool = False  # decoder layers under torch.compile (gpuplan.train.compiled)


@dataclass(frozen=True)
class MemoryResult:
    total_bytes: int | None  # None: the engine refused the combination
    reason: str = ""


def train_config(lay: Layout, seq: int, global_batch: int, opts: TrainOptions):
    """The ``TrainConfig`` of ``gpuplan train`` for this layout."""
    from gpuplan.train.config import TrainConfig

    microbatches = global_batch // (lay.dp * lay.micro_batch)
    return TrainConfig(batch=lay.micro_batch, seq=seq, grad_accum=microbatches, precision=opts.precision,
                       framework=opts.framework, optimizer=opts.optimizer, attention=opts.attention,
                       recompute=lay.recompute, gpus=lay.gpus, dp=lay.dp, tp=lay.tp, pp=lay.pp, ep=lay.ep, cp=lay.cp,
                       vpp=lay.vpp, sp=lay.seq_parallel, zero=lay.zero, microbatches=microbatches,
                       dp_shard=lay.dp_shard, compile=opts.compile)


def train_command(model: str, lay: Layout, seq: int, global_batch: int, opts: TrainOptions,
                  gpu: str | None = None) -> str:
    """The ``gpuplan train`` command line that reproduces the planner's memory figure for ``lay``."""
    m = global_batch // (lay.dp * lay.micro_batch)
    parts = [f"gpuplan train {model}", f"--batch {lay.micro_batch} --seq {seq} --grad-accum {m}",
             f"--precision {opts.precision} --framework {opts.framework} --optimizer {opts.optimizer}",
             f"--attention {opts.attention} --recompute {lay.recompute}",
             f"--gpus {lay.gpus} --dp {lay.dp} --tp {lay.tp} --pp {lay.pp} --ep {lay.ep} --cp {lay.cp} --vpp {lay.vpp}",
             ("--sp " if lay.seq_parallel else "") + f"--zero {lay.zero} --microbatches {m}"
             + (f" --dp-shard {lay.dp_shard}" if lay.dp_shard is not None else "")
             + (" --compile on" if opts.compile else "")]
    if gpu:
        parts.append(f"--gpu {gpu}")
    return " ".join(parts)


class MemoryChecker:
    """Caches engine calls per layout and counts them."""

    def __init__(self, spec: ModelSpec, seq: int, global_batch: int, opts: TrainOptions) -> None:
        self.spec, self.seq, self.global_batch, self.opts = spec, seq, global_batch, opts
        self.calls = 0
        self._cache: dict[Layout, MemoryResult] = {}

    def cached(self, lay: Layout) -> MemoryResult | None:
        """The result for ``lay`` if the engine was already asked, else None (no call)."""
        return self._cache.get(lay)

    def __call__(self, lay: Layout) -> MemoryResult:
        hit = self._cache.get(lay)
        if hit is not None:
            return hit
        from gpuplan.train.engine import estimate_training

        self.calls += 1
        try:
            report = estimate_training(self.spec, train_config(lay, self.seq, self.global_batch, self.opts))
            result = MemoryResult(int(report.memory.total_bytes + dualpipe_extra_bytes(report.memory, lay,
                                                                                        self.opts.schedule)))
        except InputError as exc:
            result = MemoryResult(None, str(exc))
        self._cache[lay] = result
        return result


def dualpipe_extra_bytes(memory, lay: Layout, schedule: str | None) -> int:
    """DualPipe's second copy of a stage's parameters: each rank holds stage i and stage p−1−i, so the weights and
    their gradients are there twice (DeepSeek-V3 report, arXiv:2412.19437, Table 2: "2×" parameters); the
    optimizer states of the pair stay sharded by the distributed optimizer (ZeRO-1 over data parallelism, as
    DeepSeek-V3 trained). Ignores the one extra micro-batch of activations (PP + 1 vs PP)."""
    if schedule != "dualpipe" or lay.pp <= 1:
        return 0
    return int(memory.weights_bytes + memory.gradients_bytes)


@lru_cache(maxsize=8)
def engine_shards_layouts(spec: ModelSpec) -> bool:
    """Whether the memory engine models parallel layouts yet: tensor parallelism must lower per-GPU memory."""
    from gpuplan.train.engine import estimate_training
    from gpuplan.train.config import TrainConfig

    small = _first_layers(spec, 4)  # the answer is per layer kind; four layers reach past dense-first layers
    try:
        one = estimate_training(small, TrainConfig(seq=512, framework="megatron")).memory.total_bytes
        two = estimate_training(small, TrainConfig(seq=512, framework="megatron", tp=2, gpus=2, sp=True)
                                ).memory.total_bytes
    except InputError:
        return False
    return two < one


@lru_cache(maxsize=8)
def engine_zero_stages(framework: str) -> tuple[int, ...]:
    """The ZeRO stages the memory engine accepts for ``framework`` (e.g. Megatron: 0 and 1, its distributed
    optimizer), asked of the engine itself on a tiny model."""
    from gpuplan.model.resolve import spec_from_dims
    from gpuplan.train.config import TrainConfig
    from gpuplan.train.engine import estimate_training

    spec = spec_from_dims(layers=2, hidden=256, heads=4, vocab=1024)
    out = []
    for zero in (0, 1, 2, 3):
        try:
            estimate_training(spec, TrainConfig(seq=256, framework=framework, dp=2, gpus=2, zero=zero))
        except InputError:
            continue
        out.append(zero)
    return tuple(out)


@lru_cache(maxsize=8)
def engine_hsdp_support(framework: str) -> tuple[tuple[int, ...], bool]:
    """The ZeRO stages with which the memory engine accepts hybrid sharding (``dp_shard``) for ``framework``, and
    whether it accepts it together with expert parallelism, asked of the engine itself on tiny models (e.g.
    DeepSpeed: MiCS, ZeRO-3 only and not with EP; Megatron: the partial distributed optimizer, ZeRO-1)."""
    from gpuplan.model.resolve import spec_from_dims
    from gpuplan.train.config import TrainConfig
    from gpuplan.train.engine import estimate_training

    def accepts(spec, **kw) -> bool:
        try:
            estimate_training(spec, TrainConfig(seq=256, framework=framework, dp=4, gpus=4, dp_shard=2, **kw))
        except InputError:
            return False
        return True

    dense = spec_from_dims(layers=2, hidden=256, heads=4, vocab=1024)
    stages = tuple(z for z in (1, 2, 3) if accepts(dense, zero=z))
    moe = spec_from_dims(layers=2, hidden=256, heads=4, vocab=1024, experts=4, top_k=2)
    return stages, any(accepts(moe, zero=z, ep=2) for z in stages)


def selective_saves_memory(spec: ModelSpec, seq: int, opts: TrainOptions) -> bool:
    """Whether selective recomputation needs less memory than none for this model and attention, asked of the
    engine on one layout. With FlashAttention nothing s²-sized is saved, so selective recomputation (which exists
    to drop the attention scores) saves nothing and only costs time."""
    from gpuplan.train.config import TrainConfig
    from gpuplan.train.engine import estimate_training

    small = _first_layers(spec, 2)
    try:
        none, sel = (estimate_training(small, TrainConfig(seq=seq, precision=opts.precision, framework=opts.framework,
                                                         optimizer=opts.optimizer, attention=opts.attention,
                                                         recompute=rc)).memory.total_bytes
                     for rc in ("none", "selective"))
    except InputError:
        return True
    return sel < none


def _first_layers(spec: ModelSpec, n: int) -> ModelSpec:
    """The same model cut to its first ``n`` layers (a cheap stand-in for per-layer questions)."""
    from dataclasses import replace

    if spec.num_layers <= n:
        return spec
    moe = spec.moe and replace(spec.moe, moe_layers=spec.moe.moe_layers[:n])
    return replace(spec, num_layers=n, layer_types=spec.layer_types[:n], moe=moe,
                   l2_qk_norm_layers=spec.l2_qk_norm_layers[:n])
