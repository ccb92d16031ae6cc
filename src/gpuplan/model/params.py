"""Exact parameter counts by component, from the tensor table."""

from __future__ import annotations

from dataclasses import dataclass

from gpuplan.model.spec import ModelSpec
from gpuplan.model.tensors import COMPONENTS, tensor_table


@dataclass(frozen=True)
class ParamCounts:
    """Parameter counts. ``active`` is what one token uses: everything but the routed experts a token skips."""

    total: int
    active: int
    embedding: int
    attention: int
    mlp: int
    experts: int
    router: int
    norm: int
    lm_head: int
    mtp: int = 0  # DeepSeek-V3 multi-token-prediction modules, not included in ``total``
    # A multimodal checkpoint's vision tower and projector (gpuplan.model.vision), not included in ``total``
    # (the text model's count): ``total + vision`` is the whole checkpoint
    vision: int = 0

    def as_dict(self) -> dict[str, int]:
        out = {k: getattr(self, k) for k in ("total", "active", *COMPONENTS, "mtp")}
        if self.vision:  # only multimodal checkpoints carry the key
            out["vision"] = self.vision
        return out


def expert_params(spec: ModelSpec) -> int:
    """Parameters of one routed expert: 3·h·f_e for a gated (SwiGLU) expert, plus 2·f_e + h where the experts
    carry biases (gpt-oss)."""
    if spec.moe is None:
        return 0
    if not spec.moe.num_moe_layers:  # every layer dense: no expert tensor to read
        return 3 * spec.hidden_size * spec.moe.expert_ffn_size
    layer = spec.moe.moe_layers.index(True)
    return sum(t.numel for t in tensor_table(spec) if t.layer == layer and t.expert == 0)


def mtp_params(spec: ModelSpec) -> int:
    """DeepSeek-V3 multi-token prediction (DeepSeek-V3 report, section 2.2): per MTP module one full decoder
    layer (MoE), two RMSNorms (enorm, hnorm), the projection eh_proj [h, 2h] and the shared head's norm. The
    embedding and output head are shared with the main model and not counted again. The published 671B excludes
    these modules; the 685B checkpoint includes them (about 14B)."""
    if not spec.mtp_layers:
        return 0
    h = spec.hidden_size
    last = spec.num_layers - 1
    layer = sum(t.numel for t in tensor_table(spec) if t.layer == last)
    return spec.mtp_layers * (layer + 2 * h + 2 * h * h + h)


def count_params(spec: ModelSpec) -> ParamCounts:
    """Count every tensor of the table by component; ``active`` replaces each MoE layer's routed experts by
    the top-k a token is routed to."""
    by = dict.fromkeys(COMPONENTS, 0)
    for t in tensor_table(spec):
        by[t.component] += t.numel
    total = sum(by.values())
    active = total
    if spec.moe:
        m = spec.moe
        active -= m.num_moe_layers * (m.num_experts - m.top_k) * expert_params(spec)
    from gpuplan.model.vision import vision_params

    return ParamCounts(total=total, active=active, mtp=mtp_params(spec), vision=vision_params(spec), **by)
