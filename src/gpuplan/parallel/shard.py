"""Which tensors of the table a rank holds, and how much of each: tensor, pipeline and expert parallel splits.

- Tensor parallel (Megatron-LM ``ColumnParallelLinear`` / ``RowParallelLinear``; Shoeybi et al. 2019): column
  tensors keep out/tp rows, row tensors in/tp columns, biases of column layers are split, those of row layers and
  norms replicated. The vocabulary (embedding, output head) is split (``VocabParallelEmbedding``) with Megatron and
  DeepSpeed; with ``--framework torch`` it stays replicated, as in transformers' and the traced DTensor TP plans.
  Routed experts are tensor-split like the MLP unless expert parallelism is on.
- KV heads fewer than tp are replicated: each rank keeps the k/v projections of the one KV head its query heads
  use (``head_dim`` rows each).
- Pipeline parallel: layers split as evenly as possible, the earlier stages taking the remainder; the embedding
  lives on the first stage, the final norm and output head on the last (with tied embeddings both hold a copy,
  Megatron's ``shared_embedding``).
- Expert parallel: a rank holds ``num_experts / ep`` routed experts of each MoE layer; shared experts, attention
  and routers are replicated.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from bisect import bisect_left
from functools import lru_cache

from gpuplan.model.spec import ModelSpec
from gpuplan.model.tensors import TensorInfo, tensor_table
from gpuplan.parallel.layout import Layout


@dataclass(frozen=True)
class LocalTensor:
    index: int  # position in the tensor table
    numel: int  # elements this rank holds
    dim0: int  # its first dimension on this rank (FSDP shards dim 0)
    expert: bool  # a routed expert tensor (sharded over the expert-data-parallel group)


@dataclass(frozen=True)
class ShardGroup:
    """Tensors a rank holds that differ only by their index in the table: one routed expert's tensor and the same
    tensor of the rank's other experts of that layer (equal shape, module and split), or a single tensor. ``lt`` is
    the first member's local part; ``indices`` are every member's table positions."""

    lt: LocalTensor
    indices: tuple[int, ...]

    @property
    def count(self) -> int:
        return len(self.indices)


@dataclass(frozen=True, eq=False)
class StageShard:
    stage: int
    layers: tuple[int, ...]
    first: bool
    last: bool
    # the held tensors, each layer's routed experts folded: the embedding / final norm / head part, then one part
    # per layer (shared by every stage and layout with the same tp and ep, ``_layer_groups``)
    parts: tuple[tuple[ShardGroup, ...], ...]

    @cached_property
    def groups(self) -> tuple[ShardGroup, ...]:
        return tuple(g for part in self.parts for g in part)

    @cached_property
    def tensors(self) -> tuple[LocalTensor, ...]:
        """Every held tensor, in table order."""
        out = [g.lt if i == g.lt.index else replace(g.lt, index=i) for g in self.groups for i in g.indices]
        out.sort(key=lambda lt: lt.index)
        return tuple(out)

    @cached_property
    def numel(self) -> int:
        return sum(g.lt.numel * g.count for g in self.groups)


def stage_layers(num_layers: int, pp: int) -> list[tuple[int, ...]]:
    """Layers per pipeline stage: as even as possible, earlier stages take the remainder."""
    base, extra = divmod(num_layers, pp)
    out, start = [], 0
    for s in range(pp):
        n = base + (1 if s < extra else 0)
        out.append(tuple(range(start, start + n)))
        start += n
    return out


def _tp_local(t: TensorInfo, spec: ModelSpec, tp: int, vocab_split: bool, kv_rep: bool) -> tuple[int, int]:
    """(numel, dim0) of tensor ``t`` on one tensor-parallel rank."""
    shape = t.shape
    if tp == 1:
        return t.numel, shape[0]
    kind = t.tp
    if kind == "vocab" and not vocab_split:
        kind = "replicated"
    if kind == "replicated":
        return t.numel, shape[0]
    if kv_rep and t.module in ("k_proj", "v_proj"):
        rows = spec.head_dim  # one KV head per rank
        rest = t.numel // shape[0]
        return rows * rest, rows
    if kind in ("column", "vocab"):
        rows = -(-shape[0] // tp)
        return rows * (t.numel // shape[0]), rows
    cols = -(-shape[-1] // tp)  # row-parallel: split the input features
    return (t.numel // shape[-1]) * cols, shape[0]


def stage_shards(spec: ModelSpec, layout: Layout, framework: str, vocab_split: bool | None = None
                 ) -> tuple[StageShard, ...]:
    """The tensors each pipeline stage's rank holds (tensor-parallel rank 0, expert-parallel rank 0).
    ``vocab_split``: the embedding and output head are split over tp (default: Megatron and DeepSpeed only; a
    torch plan with loss parallel splits them too, torchtitan ``apply_tp``: RowwiseParallel embedding,
    ColwiseParallel output)."""
    split = framework != "torch" if vocab_split is None else vocab_split
    return _stage_shards(spec, layout.pp, layout.tp, layout.ep, layout.kv_replicated, split)


def _by_expert(member: tuple) -> tuple[int, int]:
    return member[0], member[1]


@lru_cache(maxsize=32)
def _tensors_by_layer(spec: ModelSpec) -> tuple[dict[int, tuple[tuple, tuple]], tuple]:
    """The tensor table once per model, so that a stage visits only its own layers and its own experts
    (DeepSeek-V3 has 45,000 expert tensors): {layer: (non-expert (index, tensor)s, expert folds)} and the
    (index, tensor)s outside every layer. An expert fold is one tensor of the first expert with the ids and table
    indices of that tensor in every expert of the layer, sorted by expert id: (first (index, tensor), ids,
    indices)."""
    plain: dict[int, list] = {}
    experts: dict[int, dict[tuple, list]] = {}
    outside = []
    for i, t in enumerate(tensor_table(spec)):
        if t.layer is None:
            outside.append((i, t))
        elif t.expert is None:
            plain.setdefault(t.layer, []).append((i, t))
        else:
            key = (t.module, t.shape, t.component, t.tp, t.linear)  # a weight and its bias differ in shape
            experts.setdefault(t.layer, {}).setdefault(key, []).append((t.expert, i, t))
    out = {}
    for layer in set(plain) | set(experts):
        folds = []
        for members in experts.get(layer, {}).values():
            members.sort(key=_by_expert)
            folds.append(((members[0][1], members[0][2]), tuple(e for e, _, _ in members),
                          tuple(i for _, i, _ in members)))
        folds.sort(key=lambda f: f[0][0])
        out[layer] = (tuple(plain.get(layer, ())), tuple(folds))
    return out, tuple(outside)


@lru_cache(maxsize=256)
def _stage_shards(spec: ModelSpec, pp: int, tp: int, ep: int, kv_replicated: bool, vocab_split: bool
                  ) -> tuple[StageShard, ...]:
    """Cached by the degrees that decide it: a layout search revisits the same tp/pp/ep with other dp, ZeRO
    stages and micro-batches. With EP the rank holds experts 0 .. E/ep − 1 of its layers (expert-parallel rank 0)."""
    by_layer, outside = _tensors_by_layer(spec)
    per_stage = stage_layers(spec.num_layers, pp)
    out = []
    for s, layers in enumerate(per_stage):
        first, last = s == 0, s == pp - 1
        held: list[ShardGroup] = []  # the tensors outside every layer this stage holds
        for i, t in outside:
            if t.component == "embedding":
                tied_head = spec.tie_embeddings and t.tp == "vocab"
                if not (first or (last and tied_head)):
                    continue
            elif not last:  # final norm, output head
                continue
            n, d0 = _tp_local(t, spec, tp, vocab_split, kv_replicated)
            held.append(ShardGroup(LocalTensor(i, n, d0, False), (i,)))
        parts = (tuple(held),) + tuple(_layer_groups(spec, layer, tp, ep, kv_replicated, vocab_split)
                                       for layer in layers)
        out.append(StageShard(s, layers, first, last, parts))
    return tuple(out)


@lru_cache(maxsize=8192)
def _layer_groups(spec: ModelSpec, layer: int, tp: int, ep: int, kv_replicated: bool, vocab_split: bool
                  ) -> tuple[ShardGroup, ...]:
    """The tensors of one layer a rank holds (cached apart from the pipeline split: layouts with other pp reuse
    it)."""
    by_layer, _ = _tensors_by_layer(spec)
    local_experts = (spec.moe.num_experts // ep) if spec.moe else 0
    plain, folds = by_layer.get(layer, ((), ()))
    held = []
    for i, t in plain:
        n, d0 = _tp_local(t, spec, tp, vocab_split, kv_replicated)
        held.append(ShardGroup(LocalTensor(i, n, d0, False), (i,)))
    for (i, t), ids, indices in folds:
        mine = indices[:bisect_left(ids, local_experts)] if ep > 1 else indices
        if not mine:
            continue
        if ep > 1:
            lt = LocalTensor(mine[0], t.numel, t.shape[0], True)
        else:
            n, d0 = _tp_local(t, spec, tp, vocab_split, kv_replicated)
            lt = LocalTensor(mine[0], n, d0, True)
        held.append(ShardGroup(lt, mine))
    return tuple(held)
