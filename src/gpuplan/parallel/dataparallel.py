"""Model states of one rank under data parallelism: DDP, ZeRO-1/2/3 (DeepSpeed), FSDP2, Megatron's distributed
optimizer, and CPU offload. Inputs are the tensors the rank holds after tensor/pipeline/expert splits.

| framework, --zero | weights | gradients | master + optimizer | buffers | source |
|---|---|---|---|---|---|
| torch 0 (DDP) | full | full | full | gradient buckets = a second copy of the gradients | torch/nn/parallel/distributed.py (``gradient_as_bucket_view=False``) |
| torch 1 | full | full | /D | DDP buckets | ``ZeroRedundancyOptimizer`` |
| torch 2, 3 (FSDP2) | /D (padded dim-0 shards) | /D | /D | all-gather / reduce-scatter buffers, root unsharded | torch/distributed/fsdp/_fully_shard; traced rules in gpuplan.train.distributed |
| deepspeed 1 | full | full | /D (+ fp32 gradient partition /D and its 16-bit flat copy at step) | reduce (ipg) buckets in backward | deepspeed/runtime/zero/stage_1_and_2.py |
| deepspeed 2 | full | /D (a second /D partition buffer in backward when accumulating) | /D (+ fp32 partition /D and its 16-bit flat copy at step) | reduce (ipg) buckets in backward | same |
| deepspeed 3 | /D (+ small persistent params) | /D | /D (+ fp32 partition /D at step) | reduce bucket, gathered layers (prefetch) | deepspeed/runtime/zero/stage3.py |
| megatron 1 (distributed optimizer) | bf16 full | fp32 full | /D | - | Megatron-LM: 6 + 12/D bytes per parameter |

D is the shard degree: dp·cp for dense tensors, dp·cp·tp/ep for routed experts under expert parallelism. With
hybrid sharding (``--dp-shard N``) dp becomes N in both: states are split over a shard group of N·cp ranks and
replicated over dp/N groups (FSDP2 on a 2-D mesh, torch/distributed/fsdp/_fully_shard/_fsdp_init.py HSDPMeshInfo;
DeepSpeed MiCS, deepspeed/runtime/zero/mics.py; Megatron's partial distributed optimizer,
``num_distributed_optimizer_instances``). The replicas' gradient all-reduce runs in place on the reduced shard
(``foreach_reduce`` in _fsdp_collectives.py; ``all_reduce_coalesced`` in mics.py), so model states per rank are
those of a plain N·cp-way shard; DDP's buckets still follow the dp·cp ranks that average gradients.
Under DeepSpeed's 16-bit modes LoRA adapters are trainable parameters like any other: 16-bit weights and gradients,
fp32 master and optimizer states (``gpuplan.train.precision.deepspeed_lora_master``).
The ZeRO paper's accounting (arXiv:1910.02054, Figure 1: 7.5B parameters, 64 GPUs: 120 / 31.4 / 16.6 / 1.9 GB)
is what the weights + gradients + master + optimizer keys sum to for ``--precision mixed-* --optimizer adam``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from gpuplan.model.tensors import TensorInfo
from gpuplan.parallel.layout import Layout
from gpuplan.parallel.shard import LocalTensor, ShardGroup, StageShard
from gpuplan.train.optimizer import optimizer_memory
from gpuplan.train.peft import Trainability, lora_params, lora_shapes, nf4_bytes, wrapped_module
from gpuplan.train.precision import Recipe, deepspeed_lora_master
from gpuplan.train.quantbase import base_weight_bytes

if TYPE_CHECKING:
    from gpuplan.parallel.deepspeed import ZeroBuckets

BLOCK = 512  # CUDA caching allocator block (c10/cuda/CUDACachingAllocator.cpp kMinBlockSize)
# DeepSpeed stage3_param_persistence_threshold default (deepspeed/runtime/zero/config.py), in elements; the bucket
# sizes are options (gpuplan.parallel.deepspeed)
DS_PERSISTENCE_THRESHOLD = 100_000


def round_block(n: int) -> int:
    return -(-n // BLOCK) * BLOCK


@dataclass(frozen=True)
class RankStates:
    weights_bytes: int
    gradients_bytes: int  # persistent after backward (sharded where the scheme shards them)
    master_weights_bytes: int
    optimizer_bytes: int
    step_temp_bytes: int  # optimizer-step temporaries (foreach scratch, fp32 gradient partition)
    persistent_buffers_bytes: int  # buckets allocated once (DDP, DeepSpeed)
    host_bytes: int  # offloaded to CPU memory
    trainable_params: int
    scheme: str


def _fsdp_dtypes(recipe: Recipe) -> tuple[int, int, int]:
    """(shard, compute, reduce) element sizes of FSDP2: fp32 shards with a bf16 MixedPrecisionPolicy for the
    amp/mixed recipes (param_dtype=bf16, reduce_dtype=fp32), bf16 shards without a policy for bf16."""
    if recipe.param_bytes == 4 and recipe.compute_bytes < 4 or recipe.master_bytes:
        return 4, 2, 4
    return recipe.param_bytes, recipe.param_bytes, recipe.param_bytes


def local_shape(t: TensorInfo, numel: int, dim0: int) -> tuple[int, ...]:
    """The shape of the part of ``t`` a rank holds after tensor/expert splits (``gpuplan.parallel.shard``): the
    whole tensor, dim 0 split (column-parallel, vocabulary, replicated KV heads) or the last dimension split
    (row-parallel)."""
    shape = t.shape
    if numel == t.numel or len(shape) < 2:
        return shape if numel == t.numel else (numel,)
    if dim0 != shape[0]:
        return (dim0,) + tuple(shape[1:])
    lead = 1
    for d in shape[:-1]:
        lead *= d
    return tuple(shape[:-1]) + (numel // lead,)


def quantized_weight_bytes(numel: int, block: int, double_quant: bool, kind: str = "nf4",
                           shape: tuple[int, ...] = (), group_size: int = 128) -> int:
    """Bytes of a rank's piece of a QLoRA 4-bit base weight: the 4-bit codes and block constants of ``numel``
    elements (``gpuplan.train.peft.nf4_bytes``), or for a GPTQ base (``kind`` gptq) that fraction of the whole
    [out, in] ``shape``'s AutoGPTQ storage (``gpuplan.train.quantbase``). The base stays 4-bit under every layout: DDP replicas each load the
    quantized model (bitsandbytes ``Linear4bit`` per process); tensor/pipeline splits hold their share of it; ZeRO-3
    and FSDP shard the packed storage like any frozen parameter (FSDP-QLoRA: bitsandbytes >= 0.43
    ``bnb_4bit_quant_storage``, Hugging Face docs "FSDP + QLoRA" and "DeepSpeed ZeRO-3 + QLoRA"; torchao
    ``NF4Tensor`` under FSDP2 in torchtune), so a shard of n elements is the NF4 size of n elements."""
    if kind == "nf4" or not shape:
        return nf4_bytes(numel, block, double_quant)
    return base_weight_bytes(kind, numel, shape, block, double_quant, group_size)


@dataclass(frozen=True)
class TensorGroup:
    """Tensors of a stage that every per-rank formula treats alike (the same local part, table entry fields and
    trainability): DeepSeek-V3's 256 experts of a layer are three groups, not 768 tensors. ``lt`` and ``t`` are the
    first member's; sums over a stage's tensors are ``count`` times the member's term."""

    count: int
    lt: LocalTensor
    t: TensorInfo
    rg: bool  # the base weight trains
    lo: bool  # a LoRA adapter sits on it
    q: bool  # held quantized (QLoRA)
    copies: int  # PEFT modules_to_save: 2 (frozen original + trained copy), else 1


_GROUPS: dict[tuple[int, int], tuple[StageShard, Trainability, tuple[TensorGroup, ...]]] = {}


_UNIFORM: dict[int, tuple[Trainability, bool]] = {}


def _uniform(tr: Trainability) -> bool:
    """Every tensor has the same trainability flags (full training, a frozen model): no group needs splitting."""
    hit = _UNIFORM.get(id(tr))
    if hit is not None and hit[0] is tr:
        return hit[1]
    same = all(len(set(flags)) <= 1 for flags in (tr.base_trainable, tr.lora, tr.quantized, tr.copied))
    if len(_UNIFORM) >= 256:
        _UNIFORM.clear()
    _UNIFORM[id(tr)] = (tr, same)
    return same


def tensor_groups(shard: StageShard, table: tuple[TensorInfo, ...], tr: Trainability) -> tuple[TensorGroup, ...]:
    """The shard's tensor groups (``gpuplan.parallel.shard.ShardGroup``: a layer's routed experts folded), each
    split further where its members' trainability differs."""
    return tuple(g for part in shard.parts for g in part_groups(part, table, tr))


_GROUPS: dict[tuple[int, int], tuple] = {}


def part_groups(part: tuple[ShardGroup, ...], table: tuple[TensorInfo, ...], tr: Trainability
                ) -> tuple[TensorGroup, ...]:
    """``tensor_groups`` of one part of a shard (one layer, or the tensors outside the layers). Cached per (part,
    trainability) object: a layer's part is shared by every stage and layout with the same tp and ep."""
    hit = _GROUPS.get((id(part), id(tr)))
    if hit is not None and hit[0] is part and hit[1] is tr:
        return hit[2]
    bt, lora, quant, copied = tr.base_trainable, tr.lora, tr.quantized, tr.copied
    out = []
    same = _uniform(tr)
    for sg in part:
        t = table[sg.lt.index]
        i = sg.lt.index
        if same or sg.count == 1:
            out.append(TensorGroup(sg.count, sg.lt, t, bt[i], lora[i], quant[i], 2 if copied and copied[i] else 1))
            continue
        flags: dict[tuple, int] = {}
        for i in sg.indices:
            f = (bt[i], lora[i], quant[i], 2 if copied and copied[i] else 1)
            flags[f] = flags.get(f, 0) + 1
        for (rg, lo, q, copies), n in flags.items():
            out.append(TensorGroup(n, sg.lt, t, rg, lo, q, copies))
    res = tuple(out)
    if len(_GROUPS) >= 16384:
        _GROUPS.clear()
    _GROUPS[(id(part), id(tr))] = (part, tr, res)
    return res


def rank_states(shard: StageShard, table: tuple[TensorInfo, ...], tr: Trainability, recipe: Recipe, layout: Layout,
                framework: str, optimizer: str, impl: str, offload: str, lora_rank: int, qlora_block_size: int = 64,
                qlora_double_quant: bool = True, qlora_base: str = "nf4", qlora_group_size: int = 128,
                ds_buckets: "ZeroBuckets | None" = None, lora_bytes: int = 4,
                lora_fused: str | None = None, plain_bytes: int | None = None) -> RankStates:
    """Model states one rank holds (pipeline stage ``shard``; the most loaded tensor/expert rank).

    QLoRA's quantized base tensors are held as NF4 (``quantized_weight_bytes``). Adafactor's factored states
    follow each tensor's local shape (``local_shape``), divided over the shard degree where the scheme shards
    optimizer states (``gpuplan.train.optimizer.optimizer_memory`` ``state_shards``).

    Memoized per shard and trainability object and the few layout degrees the result depends on: a layout search
    asks again for the same stage under other micro-batches, recomputation and pipeline places."""
    key = (id(shard), id(tr), recipe, layout.zero, layout.tp, layout.dp_ranks, layout.shard_degree,
           layout.expert_shard_degree, layout.replicas, layout.offload, framework, optimizer, impl, offload,
           lora_rank, qlora_block_size, qlora_double_quant, qlora_base, qlora_group_size, ds_buckets, lora_bytes,
           lora_fused, plain_bytes)
    hit = _STATES.get(key)
    if hit is not None and hit[0] is shard and hit[1] is tr and hit[2] is table:
        return hit[3]
    out = _rank_states(shard, table, tr, recipe, layout, framework, optimizer, impl, offload, lora_rank,
                       qlora_block_size, qlora_double_quant, qlora_base, qlora_group_size, ds_buckets, lora_bytes,
                       lora_fused, plain_bytes)
    if len(_STATES) >= 4096:
        _STATES.clear()
    _STATES[key] = (shard, tr, table, out)
    return out


@dataclass(frozen=True)
class LoraHeld:
    """Elements of one LoRA adapter tensor a rank holds: its weights, its gradient after backward, the elements its
    optimizer states cover, and the ranks its (shape-dependent) states are split over."""

    weights: int
    gradients: int
    states: int
    state_shards: int


def lora_local(t: TensorInfo, lt: LocalTensor, rank: int, wrapped: str | None, D: int, framework: str,
               zero: int) -> list[tuple[tuple[int, ...], LoraHeld]]:
    """This rank's part of the LoRA adapters on base tensor ``t`` (A [r, in], B [out, r]; Hu et al. 2021).

    Tensor parallelism splits them with their base: a column-parallel base (dim 0 split) splits B's rows, a
    row-parallel one (last dim split) A's columns. Data parallelism shards them like any trainable parameter of
    the scheme: FSDP2 puts every parameter, adapters included, in its dim-0 shards (``fully_shard`` on each layer:
    torch/distributed/fsdp/_fully_shard/_fsdp_param.py, padded to ceil(dim0 / D) rows); DeepSpeed ZeRO partitions
    optimizer states from stage 1, gradients from stage 2 and parameters from stage 3 except those under
    ``stage3_param_persistence_threshold`` elements (deepspeed/runtime/zero/stage_1_and_2.py, stage3.py); DDP and
    Megatron keep them whole (Megatron's distributed optimizer still splits the states)."""
    out: list[tuple[tuple[int, ...], LoraHeld]] = []
    col = lt.dim0 != t.shape[0]
    row = not col and lt.numel != t.numel
    frac = lt.numel / t.numel
    for i, (d0, d1) in enumerate(lora_shapes(t, rank, wrapped)):
        is_a = i == 0
        if is_a and row:
            d1 = max(1, round(d1 * frac))
        elif not is_a and col:
            d0 = max(1, round(d0 * frac))
        numel = d0 * d1
        if framework == "torch" and zero >= 2:
            local = -(-d0 // D) * d1
            out.append(((d0, d1), LoraHeld(local, local, local, D)))
            continue
        ds = framework == "deepspeed"
        w = numel // D if zero >= 3 and not (ds and numel < DS_PERSISTENCE_THRESHOLD) else numel
        g = numel // D if zero >= 2 else numel
        st = numel // D if zero >= 1 else numel
        out.append(((d0, d1), LoraHeld(w, g, st, D if zero >= 1 else 1)))
    return out


_STATES: dict[tuple, tuple] = {}


def _rank_states(shard: StageShard, table: tuple[TensorInfo, ...], tr: Trainability, recipe: Recipe,
                 layout: Layout, framework: str, optimizer: str, impl: str, offload: str, lora_rank: int,
                 qlora_block_size: int, qlora_double_quant: bool, qlora_base: str, qlora_group_size: int,
                 ds_buckets: "ZeroBuckets | None", lora_bytes: int, lora_fused: str | None,
                 plain_bytes: int | None = None) -> RankStates:
    fsdp = framework == "torch" and layout.zero >= 2
    zero, ds, mg = layout.zero, framework == "deepspeed", framework == "megatron"
    w = g = m = trainable = 0
    persist = 0
    base_shapes: list[tuple[int, ...]] = []
    replicated = 0  # trainable elements not split by TP (plain tensors beside DTensors)
    # the adapters' optimizer inputs by the ranks their states are split over (1: the shapes are the local ones)
    lora_by_shards: dict[int, tuple[list[tuple[int, ...]], list[tuple[tuple[int, ...], int]]]] = {}
    factored: list[tuple[tuple[int, ...], int]] = []  # (local shape, shards) of each trainable base tensor
    factor = optimizer.removeprefix("paged-") == "adafactor"  # only Adafactor's states depend on the shapes
    sb, _, _ = _fsdp_dtypes(recipe)
    lora_master = deepspeed_lora_master(framework, recipe)
    for grp in tensor_groups(shard, table, tr):
        lt, t, n = grp.lt, grp.t, grp.count
        D = layout.expert_shard_degree if lt.expert else layout.shard_degree
        rg, lo, q, copies = grp.rg, grp.lo, grp.q, grp.copies
        frac = lt.numel / t.numel
        if fsdp:
            rows = -(-lt.dim0 // D)
            local = rows * (lt.numel // max(lt.dim0, 1))
            w += round_block(quantized_weight_bytes(local, qlora_block_size, qlora_double_quant, qlora_base,
                                                    t.shape, qlora_group_size) if q else local * sb) * copies * n
            if rg:
                g += local * sb * n
                trainable += lt.numel * n
                base_shapes += [(local,)] * n
                if factor:
                    factored += [(local_shape(t, lt.numel, lt.dim0), D)] * n
        else:
            shard_w = zero >= 3 and not (ds and lt.numel < DS_PERSISTENCE_THRESHOLD)
            held = lt.numel // D if shard_w else lt.numel
            w += (quantized_weight_bytes(held, qlora_block_size, qlora_double_quant, qlora_base, t.shape,
                                         qlora_group_size) if q else held * (plain_bytes or recipe.param_bytes)) * copies * n
            if rg:
                trainable += lt.numel * n
                g += (lt.numel // D if zero >= 2 else lt.numel) * recipe.grad_bytes * n
                m += (lt.numel // D if zero >= 1 else lt.numel) * recipe.master_bytes * n
                base_shapes += [(lt.numel // D if zero >= 1 else lt.numel,)] * n
                if factor:
                    factored += [(local_shape(t, lt.numel, lt.dim0), D if zero >= 1 else 1)] * n
                if layout.tp > 1 and lt.numel == t.numel:
                    replicated += (lt.numel // D if zero >= 1 else lt.numel) * n
        if lo:
            trainable += int(lora_params(t, lora_rank) * frac) * n
            for shape, held in lora_local(t, lt, lora_rank, wrapped_module(lora_fused, t), D, framework, zero):
                w += held.weights * lora_bytes * n
                g += held.gradients * lora_bytes * n
                if lora_master:  # the fp32 master partition, as the states (deepspeed_lora_master)
                    m += held.states * recipe.master_bytes * n
                # ZeRO partitions flat buffers (DeepSpeed) or whole parameters (ZeroRedundancyOptimizer): the states
                # are the whole adapter's, split over the ranks; FSDP2 steps each local shard as its own tensor
                ways = 1 if fsdp else held.state_shards
                whole = shape[0] * shape[1]
                shapes_d, factored_d = lora_by_shards.setdefault(ways, ([], []))
                shapes_d.extend([(whole if ways > 1 else held.states,)] * n)
                factored_d.extend([(shape, 1 if ways > 1 else held.state_shards)] * n)
    state_b = sb if fsdp else recipe.state_bytes
    opt = optimizer_memory(optimizer, impl, base_shapes, state_b, state_shards=factored)
    l_states = l_temp = 0
    for ways, (shapes_d, factored_d) in lora_by_shards.items():
        lopt = optimizer_memory(optimizer, impl, shapes_d, recipe.state_bytes if lora_master else lora_bytes,
                                state_shards=factored_d)
        l_states += -(-lopt.states_bytes // ways)
        l_temp += -(-lopt.step_temp_bytes // ways)
    states, temp = opt.states_bytes + l_states, opt.step_temp_bytes + l_temp
    if framework == "torch" and layout.tp > 1 and impl == "foreach" and opt.step_temp_bytes:
        # DTensor and plain parameters sit in separate optimizer groups that step one after the other: the foreach
        # scratch is the larger group's (traced with DTensor TP)
        split = sum(n for (n,) in base_shapes) - replicated
        temp = max(split, replicated) * state_b + l_temp
    scheme = _scheme(framework, layout)
    if (ds or (framework == "torch" and zero == 1)) and zero >= 1 and recipe.master_bytes:
        temp += trainable // layout.shard_degree * 4  # fp32 gradient partition built in step()
    if ds and zero in (1, 2) and recipe.master_bytes:
        # stage_1_and_2.py step(): the fp32 partition is ``flatten(averaged_gradients).to(fp32)``; the flat 16-bit
        # copy (a cat of the partition's gradient views) exists beside it while it converts
        temp += trainable // layout.shard_degree * recipe.grad_bytes
    if framework == "torch" and zero <= 1 and layout.dp_ranks > 1:
        persist += g  # DDP gradient buckets (gradient_as_bucket_view=False)
    if ds and ds_buckets is not None:
        # ZeRO-3's reduce bucket is allocated once with the optimizer; ZeRO-1/2's live through backward only
        # (gpuplan.parallel.deepspeed, placed by gpuplan.train.stage)
        persist += ds_buckets.persistent_bytes
    if mg and zero == 0:
        temp += 0
    host = 0
    if offload != "none" and fsdp:
        # FSDP2 CPUOffloadPolicy (_fsdp_param.py offload_to_cpu): sharded parameters, their gradients (moved to the
        # CPU after each reduce-scatter, in the shard dtype) and the optimizer states live in host memory; the GPU
        # keeps only the all-gather / reduce-scatter buffers of the layers in flight
        host, w, g, m, states, temp = w + g + m + states, 0, 0, 0, 0, 0
    elif offload != "none":
        # ZeRO-Offload (Ren et al. 2021; DeepSpeed offload_optimizer): fp32 master, optimizer states and the fp32
        # gradient partition on the host, the step on the CPU; from ZeRO-2 the gradient partition is copied there
        # during backward (stage_1_and_2.py / stage3.py cpu_offload), only the reduce buckets stay on the GPU
        host = m + states + (trainable // max(1, layout.shard_degree)) * 4
        m, states, temp = 0, 0, 0
        if zero >= 2:
            g = 0
        if offload == "optimizer+params":  # ZeRO-Infinity offload_param (ZeRO-3): the fp16 partitions too
            host += w
            w = 0
    return RankStates(w, g, m, states, temp, persist, host, trainable, scheme)


def _scheme(framework: str, layout: Layout) -> str:
    if layout.dp_ranks == 1 and layout.zero == 0:
        return "no data parallelism"
    if framework == "torch":
        name = {0: "DDP", 1: "DDP + ZeroRedundancyOptimizer", 2: "FSDP2 (no reshard after forward)",
                3: "FSDP2"}[layout.zero]
        hybrid = "HSDP" if layout.zero >= 2 else "optimizer shard groups"
    elif framework == "megatron":
        name = "Megatron distributed optimizer" if layout.zero else "Megatron DDP (fp32 main grads)"
        hybrid = f"{layout.replicas} distributed optimizer instances"
    else:
        name = f"DeepSpeed ZeRO-{layout.zero}" if layout.zero else "DeepSpeed data parallel"
        hybrid = "MiCS"
    if layout.replicas > 1:
        name += f" [{hybrid}: {layout.shard_degree}-way shards × {layout.replicas} replicas]"
    return name


def deepspeed_estimator_bytes(stage: int, total_params: int, gpus: int, largest_layer_params: int = 0,
                              offload_optimizer: bool = False, offload_params: bool = False) -> tuple[int, int]:
    """DeepSpeed's own model-state estimator, (GPU bytes, CPU bytes) per GPU, single node, for comparison:
    ``estimate_zero2_model_states_mem_needs`` (stage_1_and_2.py): 4P + 16P/N (offload: 2P on GPU) and
    ``estimate_zero3_model_states_mem_needs`` (stage3.py): 4·largest_layer + 18P/N (offload optimizer:
    4·largest + 2P/N; offload params too: 4·largest). CPU side uses its additional_buffer_factor 1.5."""
    P, N = total_params, gpus
    if stage == 2:
        if offload_optimizer:
            return 2 * P, int(P * max(4 * N, 16) * 1.5)
        return 4 * P + int(16 * P / N), int(P * 4 * N * 1.5)
    largest = 4 * largest_layer_params
    if offload_optimizer:
        if offload_params:
            return largest, int(P * max(4 * N, 18) * 1.5)
        return largest + int(2 * P / N), int(P * max(4 * N, 16) * 1.5)
    return largest + int(18 * P / N), int(P * 4 * N * 1.5)
