"""Per-rank memory of a parallel layout: every pipeline stage's rank (tensor- and expert-parallel rank 0, the most
loaded), the phase-aware peak on each, and the most loaded of them.

Activations under tensor, sequence and context parallelism: ``gpuplan.train.rank_acts``; the stage-invariant part of
a rank (states, activations, gradients, buffers): ``gpuplan.train.stage``.

Pipeline stages hold the activations of their in-flight micro-batches: 1F1B warm-up depth ``pp - stage`` and,
interleaved, ``2·(pp - stage - 1) + (vpp - 1)·pp + 1`` chunks of ``layers/(pp·vpp)`` layers (Megatron-LM
``schedules.py``; stage 0 gives Korthikanti's factor 1 + (p-1)/(p·v)). Gradients: from the second micro-batch of a
step on (gradient accumulation; pipeline micro-batches after a stage's first backward) every gradient already exists
and backward adds into it in place (AccumulateGrad, Megatron's main_grad), so they are counted once, plus the
unsharded gradients of the layer being reduced under ZeRO-2/3 and FSDP; Megatron's main_grad buffer is resident
from the first micro-batch on. The stage's peak is the higher of its first backward (min(pp - stage, m) in flight,
no gradients) and its later ones (min(pp - stage, m - 1), gradients). FSDP2 buffers follow the rules traced with a
fake process group (root group unsharded through forward and backward, one all-gather result kept through the
loss, position-dependent prefetch and reduce-scatter inputs in backward, ``gpuplan.parallel.buffers``).
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache

from gpuplan.model.spec import ModelSpec
from gpuplan.model.tensors import tensor_table
from gpuplan.parallel.dataparallel import RankStates, part_groups
from gpuplan.parallel.layout import Layout
from gpuplan.parallel.shard import StageShard, stage_shards
from gpuplan.report import MemoryReport, fits
from gpuplan.train.config import TrainConfig
from gpuplan.train.explain import explain_parallel
from gpuplan.train.model_acts import model_acts
from gpuplan.train.overheads import SegmentInputs, overhead_bytes
from gpuplan.train.peak import Phase, peak, phases, without_loss
from gpuplan.train.peft import trainability
from gpuplan.train.precision import Recipe, recipe_for
from gpuplan.train.report import TrainReport
from gpuplan.train.stage import _context, _stage_parts


def inflight(layout: Layout, stage: int) -> float:
    """Micro-batches whose activations a stage holds at its peak, in units of the stage's layers."""
    if layout.pp == 1:
        return 1.0
    m = layout.microbatches
    if layout.vpp == 1:
        return float(min(layout.pp - stage, m))
    chunks = min(2 * (layout.pp - stage - 1) + (layout.vpp - 1) * layout.pp + 1, m * layout.vpp)
    return chunks / layout.vpp


def inflight_accumulating(layout: Layout, stage: int, grad_accum: int) -> float:
    """Micro-batches in flight at the stage's busiest moment once gradients exist (0: never). 1F1B: the j-th
    backward of a stage runs with min(pp - stage, m - j) micro-batches in flight and gradients exist from j = 1 on,
    so min(pp - stage, m - 1); interleaved, the same in model chunks (warm-up 2·(pp - stage - 1) + (vpp - 1)·pp,
    Megatron-LM ``schedules.py``). Several optimizer-step flushes (``grad_accum`` > 1 beside a pipeline) bring
    gradients to the first backward too. Without a pipeline: one micro-batch when accumulating."""
    m = layout.microbatches
    if layout.pp == 1:
        return 1.0 if m > 1 or grad_accum > 1 else 0.0
    if grad_accum > 1:
        return inflight(layout, stage)
    if layout.vpp == 1:
        return float(min(layout.pp - stage, m - 1))
    chunks = min(2 * (layout.pp - stage - 1) + (layout.vpp - 1) * layout.pp + 1, m * layout.vpp - 1)
    return chunks / layout.vpp


def estimate_rank(spec: ModelSpec, cfg: TrainConfig, layout: Layout, recipe: Recipe, shard: StageShard,
                  memo: dict | None = None) -> tuple[RankStates, list[Phase], dict[str, int]]:
    """One pipeline stage's rank: its model states, phases and report figures. Stages that hold the same tensors
    and layer kinds (the middle stages of a uniform model) differ only in their in-flight micro-batches, so with
    ``memo`` (one dict per estimate) their stage-invariant part is computed once."""
    tr = trainability(spec, cfg)
    c = _context(spec, cfg, layout, recipe)
    acts = model_acts(spec, tr, c, cfg.act_mode)
    key = None
    if memo is not None:
        key = (shard.first, shard.last, tuple(id(acts.layers[i]) for i in shard.layers),
               _tensors_key(shard, tr, tensor_table(spec)))
        parts = memo.get(key)
        if parts is not None:
            return _stage_result(parts, cfg, layout, shard)
    parts = _stage_parts(spec, cfg, layout, recipe, shard, tr, c, acts)
    if memo is not None:
        memo[key] = parts
    return _stage_result(parts, cfg, layout, shard)


def _tensors_key(shard: StageShard, tr, table) -> tuple[int, ...]:
    """The stage's tensors as its stage-invariant part depends on them: per part of the shard (one layer, or the
    tensors outside the layers) a small integer standing for each group's size, local size, first dimension,
    expert flag and trainability, in order; equal for stages that hold alike tensors."""
    return tuple(_part_key(part, tr, table) for part in shard.parts)


_PART_IDS: dict[tuple, int] = {}
_PART_KEYS: dict[tuple[int, int], tuple] = {}


def _part_key(part, tr, table) -> int:
    hit = _PART_KEYS.get((id(part), id(tr)))
    if hit is not None and hit[0] is part and hit[1] is tr:
        return hit[2]
    sig = tuple((g.count, g.lt.numel, g.lt.dim0, g.lt.expert, g.rg, g.lo, g.q, g.copies)
                for g in part_groups(part, table, tr))
    if len(_PART_KEYS) >= 16384:
        _PART_KEYS.clear()
        _PART_IDS.clear()
    n = _PART_IDS.setdefault(sig, len(_PART_IDS))
    _PART_KEYS[(id(part), id(tr))] = (part, tr, n)
    return n


def _stage_result(parts: dict, cfg: TrainConfig, layout: Layout, shard: StageShard
                  ) -> tuple[RankStates, list[Phase], dict[str, int]]:
    """A stage's phases from its invariant part and its place in the schedule (micro-batches in flight)."""
    n_in, n_acc = inflight(layout, shard.stage), inflight_accumulating(layout, shard.stage, cfg.grad_accum)
    per_mb, grads_held = parts["per_mb"], parts["grads_held"]
    first_layer = shard.layers[0] if shard.layers else 0
    first = replace(parts["first"], held_bytes=int((n_in - 1) * per_mb), first_layer=first_layer)
    # later micro-batches of the step (gradient accumulation, pipeline micro-batches after the first backward):
    # every gradient already exists in its persistent form from the start; backward adds into it in place
    # (AccumulateGrad, Megatron's main_grad), so only the unsharded gradients of the layer being reduced come on top
    # (sharded schemes), and FSDP's root keeps its unsharded gradients until the end of backward
    later = replace(parts["later"], held_bytes=int((n_acc - 1) * per_mb) + grads_held, first_layer=first_layer)

    def step_phases(f) -> list[Phase]:
        if cfg.framework == "megatron":
            # the fp32 main_grad buffer is allocated once at wrap time (param_and_grad_buffer.py): gradients are
            # resident through forward and backward of every micro-batch, the first one included
            resident = replace(later, held_bytes=int((n_in - 1) * per_mb) + grads_held)
            return _merge(phases(f(resident)), phases(f(first))[-2:])
        if n_acc > 0:
            return _merge(phases(f(first)), phases(f(later)))
        return phases(f(first))

    ps = step_phases(lambda p: p)
    info = {"activations": parts["kept"] * n_in + parts["head"] + parts["shared"], "logits": parts["logits"],
            "buffers": parts["buffers"], "inflight": n_in,
            # the segment rule of the allocator reserve (gpuplan.train.overheads)
            "segments": SegmentInputs(peak(step_phases(without_loss)).bytes, parts["logits"] if shard.last else 0,
                                      parts["side_pools"])}
    return parts["st"], ps, info


def _merge(a: list[Phase], b: list[Phase]) -> list[Phase]:
    """Phase by phase, the higher of two variants of the same step (first and later micro-batches); a shorter
    ``b`` replaces the tail of ``a``."""
    b = [Phase("", 0)] * (len(a) - len(b)) + b
    return [x if x.bytes >= y.bytes else y for x, y in zip(a, b)]


def estimate_distributed(spec: ModelSpec, cfg: TrainConfig, layout: Layout, capacity_bytes: int | None):
    """All stages; the report is the most loaded rank's, with one per-rank row per stage."""
    recipe = recipe_for(cfg.precision, cfg.framework)
    rows, best = [], None
    memo: dict = {}  # stage-invariant parts of identical stages, computed once
    for shard in stage_shards(spec, layout, cfg.framework, cfg.framework != "torch" or bool(cfg.loss_parallel)):
        st, ps, info = estimate_rank(spec, cfg, layout, recipe, shard, memo)
        top = peak(ps)
        ov = overhead_bytes(cfg.overheads, top.bytes, cfg.cuda_module_loading, info["segments"])
        nccl = 0 if layout.world == 1 else _nccl_bytes()
        managed = st.optimizer_bytes if cfg.optimizer.startswith("paged") else 0
        total = top.bytes + ov.total + nccl + managed
        row = {"stage": shard.stage, "layers": f"{shard.layers[0]}-{shard.layers[-1]}" if shard.layers else "-",
               "embedding": shard.first, "head": shard.last, "params": shard.numel,
               "weights_bytes": st.weights_bytes, "gradients_bytes": st.gradients_bytes,
               "master_weights_bytes": st.master_weights_bytes, "optimizer_bytes": st.optimizer_bytes,
               "activations_bytes": info["activations"], "logits_bytes": info["logits"],
               "buffers_bytes": info["buffers"] + nccl, "allocated_peak_bytes": top.bytes, "total_bytes": total,
               "reserved_bytes": top.bytes + ov.in_allocator, "managed_bytes": managed,
               "peak_phase": top.name, "inflight_microbatches": info["inflight"], "host_bytes": st.host_bytes}
        row.update({k: int(round(v)) for k, v in row.items() if k.endswith("_bytes")})  # JSON bytes are integers
        rows.append(row)
        if best is None or total > best[0]["total_bytes"]:
            best = (row, st, ps, top, ov)
    row, st, ps, top, ov = best
    m = MemoryReport(weights_bytes=st.weights_bytes, gradients_bytes=st.gradients_bytes,
                     optimizer_bytes=st.optimizer_bytes, master_weights_bytes=st.master_weights_bytes,
                     activations_bytes=row["activations_bytes"], logits_bytes=row["logits_bytes"],
                     buffers_bytes=row["buffers_bytes"], allocated_peak_bytes=top.bytes,
                     total_bytes=row["total_bytes"], peak_phase=f"stage {row['stage']}: {top.name}",
                     reserved_bytes=row["reserved_bytes"], managed_bytes=row["managed_bytes"])
    explain_parallel(m, spec, cfg, layout, recipe, st, row, ov)
    if layout.replicas > 1:
        m.assumptions.append(hybrid_sharding_note(cfg.framework, layout))
    params_total = _params_total(spec)
    from gpuplan.train.peft import trainable_params
    return TrainReport(m, params_total, trainable_params(spec, cfg), fits(m.total_bytes, capacity_bytes),
                       capacity_bytes, ps, host_bytes=row["host_bytes"], per_rank=rows)


@lru_cache(maxsize=64)
def _params_total(spec: ModelSpec) -> int:
    return sum(t.numel for t in tensor_table(spec))


def hybrid_sharding_note(framework: str, layout: Layout) -> str:
    """The assumption line of hybrid sharding (``--dp-shard``): what is split over the shard group and what the
    replicas add (an in-place all-reduce of each reduced gradient shard: torch/distributed/fsdp/_fully_shard/
    _fsdp_collectives.py ``foreach_reduce``; deepspeed/runtime/zero/mics.py ``allreduce_mics_shard_grads``;
    Megatron-LM megatron/core/distributed/param_and_grad_buffer.py, partial distributed optimizer)."""
    what = {"torch": "FSDP2 on a 2-D mesh (dp_replicate × dp_shard)" if layout.zero >= 2
            else "ZeroRedundancyOptimizer over the shard group", "deepspeed": "DeepSpeed MiCS (mics_shard_size)",
            "megatron": f"--num-distributed-optimizer-instances {layout.replicas}"}[framework]
    fsdp = framework == "torch" and layout.zero >= 2
    sharded = ("parameters, gradients and optimizer states" if fsdp or layout.zero == 3 else
               "gradients and optimizer states" if layout.zero == 2 else "optimizer states")
    extra = ("; with CPU offload each group's reduced gradient shard stays on the GPU until the end of backward "
             "(FSDP2 AllReduceState)" if fsdp and layout.offload != "none" else " (no extra buffer)")
    return (f"hybrid sharding, {what}: {sharded} split over {layout.shard_degree} ranks (--dp-shard "
            f"{layout.shard_dp} × cp {layout.cp}), replicated over {layout.replicas} groups; the gradient shards are "
            f"all-reduced across the groups in place{extra}")


NCCL_BUFFER_BYTES = 2 * 4 * (1 << 20) * 8  # NCCL_BUFFSIZE 4 MiB x 2 (send/recv) x 8 channels, per communicator


def _nccl_bytes() -> int:
    """NCCL's per-communicator staging buffers outside PyTorch's allocator: NCCL_BUFFSIZE (4 MiB default) per
    channel and direction; 8 channels assumed (NCCL docs, Environment Variables: NCCL_BUFFSIZE)."""
    return NCCL_BUFFER_BYTES
