"""Parallel serving layouts: which weights and layers one GPU holds under TP, PP, EP and data-parallel replicas.

Tensor parallelism splits each tensor as its ``TensorInfo.tp`` says (column / row / vocab: 1/tp on each rank;
replicated: whole). Pipeline parallelism gives each stage a contiguous range of layers as vLLM's
``get_pp_indices`` does (layers // pp each, the remainder one per stage from the second-to-last backwards); the
first stage also holds the embedding, the last the final norm and output head (with tied embeddings the last stage
holds its own copy of the embedding matrix as ``lm_head``). Expert parallelism spreads whole experts over ``ep``
ranks (vLLM's EP group is TP x DP: experts are not TP-split then). Data-parallel replicas copy everything.
"""

from __future__ import annotations

from dataclasses import dataclass

from gpuplan.errors import InputError
from gpuplan.model.spec import ModelSpec
from gpuplan.model.tensors import tensor_table


@dataclass(frozen=True)
class ServingLayout:
    tp: int = 1
    pp: int = 1
    ep: int = 1
    dp: int = 1

    @property
    def gpus(self) -> int:
        return self.tp * self.pp * self.dp


def validate_layout(spec: ModelSpec, layout: ServingLayout) -> None:
    """Raise InputError when a degree does not divide what it splits."""
    for name in ("tp", "pp", "ep", "dp"):
        value = getattr(layout, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"--{name}", value, "must be an integer >= 1")
    if spec.num_heads % layout.tp:
        raise InputError("--tp", layout.tp, f"must divide the number of attention heads ({spec.num_heads})")
    if layout.pp > spec.num_layers:
        raise InputError("--pp", layout.pp, f"must be <= the number of layers ({spec.num_layers})")
    if layout.ep > 1:
        if spec.moe is None:
            raise InputError("--ep", layout.ep, "expert parallelism needs a mixture-of-experts model")
        if spec.moe.num_experts % layout.ep:
            raise InputError("--ep", layout.ep, f"must divide the number of experts ({spec.moe.num_experts})")
        if (layout.tp * layout.dp) % layout.ep:
            raise InputError("--ep", layout.ep, f"must divide tp x dp = {layout.tp * layout.dp} "
                             "(vLLM's expert-parallel group is the TP x DP ranks)")


def stage_layers(num_layers: int, pp: int) -> list[range]:
    """Layer ranges of the pipeline stages, as vLLM ``get_pp_indices`` partitions them."""
    sizes = [num_layers // pp] * pp
    for i in range(num_layers % pp):
        sizes[-2 - i if pp > 1 else 0] += 1
    out, start = [], 0
    for n in sizes:
        out.append(range(start, start + n))
        start += n
    return out


def _shard(t_tp: str, is_expert: bool, layout: ServingLayout) -> float:
    if is_expert and layout.ep > 1:
        return 1.0 / layout.ep
    return 1.0 if t_tp == "replicated" else 1.0 / layout.tp


def stage_weight_bytes(spec: ModelSpec, per_tensor: dict[str, int], layout: ServingLayout) -> list[int]:
    """Weight bytes one GPU of each pipeline stage holds (TP/EP shares of ``per_tensor``)."""
    stages = stage_layers(spec.num_layers, layout.pp)
    out = [0.0] * layout.pp
    embed_bytes = 0.0
    for t in tensor_table(spec):
        share = per_tensor[t.name] * _shard(t.tp, t.component == "experts", layout)
        if t.layer is not None:
            idx = next(k for k, r in enumerate(stages) if t.layer in r)
        elif t.component == "embedding":
            idx = 0
            if t.tp == "vocab":
                embed_bytes = share
        else:
            idx = layout.pp - 1
        out[idx] += share
    if spec.tie_embeddings and layout.pp > 1:
        out[-1] += embed_bytes
    return [int(round(x)) for x in out]
