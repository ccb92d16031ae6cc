"""Saved activations of the blocks only one family has, kept apart from the shared blocks of
``gpuplan.train.activations``: Llama 4's L2 q/k norm and its MoE (transformers 5 ``models/llama4/
modeling_llama4.py``), each traced on the CPU (``tests/test_families.py``).
"""

from __future__ import annotations

from gpuplan.model.spec import ModelSpec
from gpuplan.train.activations import Act, ActContext, _Saved, gated_mlp, linear


def l2_qk_norm(sv: _Saved, c: ActContext, spec: ModelSpec, q_rg: bool, k_rg: bool) -> None:
    """Llama 4 ``Llama4TextL2Norm`` on the RoPE layers: ``x.float() * rsqrt(mean(x²) + eps)`` keeps the fp32
    copy of the rotated q (and k) and the per-head rsqrt: 4·(q_dim + heads) and 4·(kv_dim + kv_heads) bytes per
    token (in an fp32 model the rotated tensor itself, the same bytes). No parameters."""
    if q_rg:
        sv.save("qk_norm.q32", Act(tok=4 * (spec.q_dim + spec.num_heads)))
    if k_rg:
        sv.save("qk_norm.k32", Act(tok=4 * (spec.kv_dim + spec.num_kv_heads)))


def llama4_moe(sv: _Saved, c: ActContext, spec: ModelSpec, y_key: str, y_bytes: int, y_rg: bool,
               flags: dict[str, tuple[bool, bool]]) -> bool:
    """transformers ``Llama4TextMoe``: the router's top-k logits go through an fp32 sigmoid (kept, 4·E per token)
    scattered into a [T, E] score matrix (the int64 top-k indices kept, 8·k); every token is repeated to all E
    experts (``hidden_states.repeat(E, 1)``, kept for the score's gradient: E·h in the input's dtype) and scaled
    by its score column (kept, E·e); ``Llama4TextExperts`` then runs a dense ``bmm`` over all E experts for every
    token: its input (E·h·e), the gate_up output (2·E·f·e, which the activation and the product keep), the
    activation (E·f·e) and the product (E·f·e, kept when the experts train). The shared expert is a SwiGLU MLP
    on every token. So a token costs E/k times what a routed (grouped) MoE keeps, as the reference forward
    computes every expert."""
    m = spec.moe
    assert m is not None
    h, e, E, k, f = spec.hidden_size, c.e, m.num_experts, m.top_k, m.expert_ffn_size
    rw, rl = flags.get("router", (True, False))
    r_rg = linear(sv, c, "router", y_key, y_bytes * h, y_rg, h, E, rw, rl)
    if r_rg:
        sv.save("router.sigmoid", Act(tok=4 * E))
        sv.save("router.topk", Act(tok=8 * k))
        sv.save("moe.repeated", Act(tok=E * h * y_bytes))
    if y_rg:
        sv.save("moe.scores", Act(tok=E * e))
    exp_w = any(v[0] or v[1] for key, v in flags.items() if key.startswith("experts."))
    x_rg = y_rg or r_rg
    if exp_w:
        sv.save("experts.in", Act(tok=E * h * e))
    if x_rg or exp_w:
        sv.save("experts.gate_up", Act(tok=2 * E * f * e))
        sv.save("experts.act", Act(tok=E * f * e))
        if exp_w:
            sv.save("experts.prod", Act(tok=E * f * e))
    sflags = {n.removeprefix("shared_expert."): v for n, v in flags.items()}
    s_rg = gated_mlp(sv, c, "shared_expert", y_key, y_bytes, y_rg, h, m.shared_expert_ffn_size, sflags,
                     ("gate_proj", "up_proj", "down_proj"))
    return x_rg or exp_w or s_rg


def llama4_moe_forward_end(spec: ModelSpec, c: ActContext) -> float:
    """Bytes per token a Llama 4 MoE block holds at its last moment beyond its saved set: the E experts' outputs
    ([E·T, h], before their sum) beside the shared expert's output."""
    assert spec.moe is not None
    return (spec.moe.num_experts + 1) * c.e * spec.hidden_size
