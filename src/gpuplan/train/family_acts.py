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


# transformers' torch fallback of the chunked delta rule (``torch_chunk_gated_delta_rule``) works in chunks of 64
DELTA_CHUNK = 64


def gated_deltanet(sv: _Saved, c: ActContext, spec: ModelSpec, y_key: str, y_bytes: int, y_rg: bool,
                   flags: dict[str, tuple[bool, bool]]) -> bool:
    """Qwen3-Next linear-attention layer as transformers 5 trains it without the flash-linear-attention kernels
    (``Qwen3NextGatedDeltaNet`` with ``torch_chunk_gated_delta_rule``, chunk C = 64), per token, e the compute
    dtype's bytes, nv value heads (q and k are repeated to them), dk, dv their widths:

    - the projections' input (e·h), the causal conv's input and output (2·e·conv_dim), beta and the decay input
      (e·nv + 8·nv), the gated RMSNorm's fp32 input, normed copy and gate (12·nv·dv) with its half operands
      (2·e·nv·dv) and out_proj's input (e·nv·dv);
    - the delta rule in fp32: q, k, v and the normalised keys (16·nv·dk), the chunked value products (8·nv·dv),
      four C x C matrices per chunk (16·nv·C) and, inside the chunk loop, the per-chunk operands (20·nv·dk +
      4·nv·C) and the recurrent state entering each chunk (4·nv·dk·dv / C), plus per-head scalars (~28·nv).

    Approximated: written from one CPU trace of a small model (dk = dv) and the modelling code, not checked at
    other widths; the fla/causal-conv1d CUDA kernels that real runs use keep less."""
    la = spec.linear_attn
    assert la is not None
    e, h, nv, dk, dv, C = c.e, spec.hidden_size, la.num_v_heads, la.k_head_dim, la.v_head_dim, DELTA_CHUNK
    w_rg = any(flags.get(n, (True, False))[0] or flags.get(n, (False, False))[1]
               for n in ("in_proj_qkvz", "in_proj_ba", "conv1d", "out_proj"))
    if not (y_rg or w_rg):
        return False
    if w_rg:
        sv.save(y_key, Act(tok=y_bytes * h))
    sv.save("deltanet.conv", Act(tok=2 * e * la.conv_dim))
    sv.save("deltanet.beta_decay", Act(tok=e * nv + 8 * nv + 28 * nv))
    sv.save("deltanet.rule", Act(tok=16 * nv * dk + 8 * nv * dv + 16 * nv * C + 20 * nv * dk + 4 * nv * C
                                 + 4 * nv * dk * dv / C))
    sv.save("deltanet.norm", Act(tok=12 * nv * dv + 2 * e * nv * dv + 4 * nv))
    sv.save("deltanet.out_in", Act(tok=e * nv * dv))
    return True


def output_gate(sv: _Saved, c: ActContext, spec: ModelSpec) -> None:
    """Qwen3-Next's gated attention output, ``attn_output * sigmoid(gate)``: the attention output's contiguous
    copy, the sigmoid output and their product (o_proj's input), each e·q_dim per token beyond the kernel's own
    output (traced)."""
    sv.save("attn.gate", Act(tok=3 * c.e * spec.q_dim))


def bigcode_output_copy(sv: _Saved, c: ActContext, spec: ModelSpec) -> None:
    """GPT-BigCode: c_proj reads a contiguous copy of the attention output (e·q_dim per token) beside the
    kernel's own output (traced; q, k and v are views of c_attn's output, as in GPT-2)."""
    sv.save("attn.out_copy", Act(tok=c.e * spec.q_dim))


def mpt_qkv(sv: _Saved, c: ActContext, spec: ModelSpec, y_key: str, y_bytes: int, y_rg: bool, w_rg: bool,
            lora: bool) -> bool:
    """MPT's fused ``Wqkv`` (transformers ``MptAttention``): the projection keeps its input; ``clip_qkv`` clamps
    the fused output, and ``clamp`` keeps its input (e·3h). Eager attention (the only path transformers has for
    MPT) reshapes q, k and v into copies that the two matmuls keep, counted by ``attention_core``; the fused
    output itself is then released (traced). A fused kernel (llm-foundry's ``attn_impl`` flash / triton) reads
    q, k and v as views of the fused output, which stays alive (e·3h), as GPT-2's."""
    h, qkv = spec.hidden_size, spec.q_dim + 2 * spec.kv_dim
    rg = linear(sv, c, "Wqkv", y_key, y_bytes * h, y_rg, h, qkv, w_rg, lora)
    if not rg:
        return False
    if spec.clip_qkv:
        sv.save("attn.qkv", Act(tok=c.e * qkv))
    if c.attention != "eager" and not c.selective:
        sv.save("attn.qkv", Act(tok=c.e * qkv))
        sv.save("attn.q", Act())
        sv.save("attn.k", Act())
        sv.save("attn.v", Act())
    return True
