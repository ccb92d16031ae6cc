"""One decoder layer's saved activations, composed from the blocks of ``gpuplan.train.activations``.

Layouts: pre-norm RMSNorm layers (Llama, Mistral, Qwen2/3, Mixtral, Qwen-MoE, DeepSeek, Phi-3), Gemma 2 (four
norms per layer: before and after attention and MLP) and OLMo-2 (norms on the attention and MLP outputs only), and
LayerNorm layers with fused QKV and a plain MLP (GPT-2, GPT-NeoX, Falcon). Each is checked against CPU traces of
transformers 5 at real widths (``benchmarks/accuracy.py``, ``tests/test_train_accuracy_fixes.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from gpuplan.model.spec import ModelSpec
from gpuplan.train.activations import (
    Act,
    ActContext,
    _Saved,
    attention_core,
    gated_mlp,
    linear,
    moe_block,
    norm,
    plain_mlp,
    sdpa_math,
    sdpa_repeats_kv,
)
from gpuplan.train.litgpt_acts import attention_bwd_extra, litgpt_forward_end, litgpt_layer_saved
from gpuplan.train.family_acts import (bigcode_output_copy, gated_deltanet, l2_qk_norm, llama4_moe,
                                       llama4_moe_forward_end, mpt_qkv, output_gate)

Flags = dict[str, tuple[bool, bool]]  # module leaf name -> (weight trains, LoRA on it)
# Layouts with a plain two-matrix MLP: its (fc, proj) module names
PLAIN_MLP = {"mpt": ("up_proj", "down_proj"), "gpt2": ("c_fc", "c_proj"), "gpt_bigcode": ("c_fc", "c_proj"), "starcoder2": ("c_fc", "c_proj"),
             "gpt_neox": ("dense_h_to_4h", "dense_4h_to_h"), "falcon": ("dense_h_to_4h", "dense_4h_to_h")}

# Blocks whose forward keeps the attention output referenced to its end (GPT-2 ``attn_output``, MPT's
# ``attn_outputs`` in ``MptBlock.forward``)
HELD_ATTN_OUT = ("gpt2", "mpt")


@dataclass(frozen=True)
class BwdPoint:
    """One high-water mark inside a layer's backward: the layer's gradients that exist by then (``grads``: none,
    mlp_first, mlp_all, after_attn or layer) and the activation bytes beyond the layer's full saved set."""

    name: str
    grads: str
    extra: Act
    temporaries: Act = Act()  # the part of ``extra`` that is not a released saved tensor (norm points)


@dataclass(frozen=True)
class LayerActs:
    def __hash__(self) -> int:
        """The fields' hash, computed once: the per-rank caches (``gpuplan.train.rank_acts``) key on a layer's saved
        set for every stage of every layout a search checks, and each hash walks its Act tuples."""
        cached = self.__dict__.get("_hash")
        if cached is None:
            cached = hash(tuple(getattr(self, f.name) for f in fields(self)))
            object.__setattr__(self, "_hash", cached)
        return cached

    saved: Act  # everything the layer keeps for backward
    out_rg: bool  # the layer output requires grad
    points: tuple[BwdPoint, ...]  # backward high-water marks (traced), see _bwd_points
    items: tuple[tuple[str, Act], ...]
    fwd_end: Act = Act()  # residual-stream tensors still referenced when its forward returns, beyond ``saved``
    fwd_ckpt: tuple[Act, Act] = (Act(), Act())  # checkpointed forward's high-water mark beyond its input:
    # (residual-stream tensors, tensors inside the column/row-parallel pair)


def _flag(flags: Flags, name: str) -> tuple[bool, bool]:
    return flags.get(name, (False, False))


def _attention(sv: _Saved, c: ActContext, spec: ModelSpec, i: int, y_key: str, y_b: int, y_rg: bool,
               flags: Flags) -> bool:
    h, e = spec.hidden_size, c.e
    if spec.mla:
        return _mla(sv, c, spec, y_key, y_b, y_rg, flags)
    if spec.is_linear_layer(i):
        return gated_deltanet(sv, c, spec, y_key, y_b, y_rg, flags)
    window = spec.sliding_window if spec.is_sliding_layer(i) else None
    fused = {"phi3": "qkv_proj", "gpt2": "c_attn", "gpt_bigcode": "c_attn", "gpt_neox": "query_key_value",
             "falcon": "query_key_value"}
    qkv = spec.q_dim + 2 * spec.kv_dim
    if spec.layout == "mpt":
        q_rg = kv_rg = mpt_qkv(sv, c, spec, y_key, y_b, y_rg, *_flag(flags, "Wqkv"))
    elif spec.layout in fused:
        name = fused[spec.layout]
        w, lo = _flag(flags, name)
        q_rg = kv_rg = linear(sv, c, name, y_key, y_b * h, y_rg, h, qkv, w, lo)
        if q_rg and not sdpa_math(spec, c) and not sdpa_repeats_kv(spec, c, window):
            # v is a view of the fused output, which stays alive; GPT-2 has no rotary embedding, so its q and k
            # are views of that storage too (traced)
            sv.save("attn.v", Act(tok=e * qkv))
            if spec.layout in ("gpt2", "gpt_bigcode"):
                sv.save("attn.q", Act())
                sv.save("attn.k", Act())
    else:
        qn, kn, vn = ("query", "key", "value") if spec.layout == "bert" else ("q_proj", "k_proj", "v_proj")
        q_rg = linear(sv, c, "q_proj", y_key, y_b * h, y_rg, h, spec.q_dim, *_flag(flags, qn))
        k_rg = linear(sv, c, "k_proj", y_key, y_b * h, y_rg, h, spec.kv_dim, *_flag(flags, kn))
        v_rg = linear(sv, c, "v_proj", y_key, y_b * h, y_rg, h, spec.kv_dim, *_flag(flags, vn))
        if spec.qk_norm:
            whole = spec.layout == "olmo2"
            _, _, q_rg = norm(sv, c, spec, "q_norm", "q_proj.out", e, q_rg, spec.q_dim,
                              _flag(flags, "q_norm")[0], rows=1 if whole else spec.num_heads)
            _, _, k_rg = norm(sv, c, spec, "k_norm", "k_proj.out", e, k_rg, spec.kv_dim,
                              _flag(flags, "k_norm")[0], rows=1 if whole else spec.num_kv_heads)
        kv_rg = k_rg or v_rg
        if spec.l2_qk_norm_layers and spec.l2_qk_norm_layers[i]:
            l2_qk_norm(sv, c, spec, q_rg, k_rg)
    attention_core(sv, c, spec, q_rg, kv_rg, window)
    if spec.attn_output_gate and (q_rg or kv_rg):
        output_gate(sv, c, spec)
    if spec.layout == "gpt_bigcode" and (q_rg or kv_rg):
        bigcode_output_copy(sv, c, spec)
    o_name = {"gpt2": "c_proj", "gpt_bigcode": "c_proj", "gpt_neox": "dense", "falcon": "dense",
              "mpt": "out_proj", "bert": "dense"}.get(spec.layout, "o_proj")
    o_key = "attn.out" if c.attention in ("sdpa", "flash") or c.selective else "attn.out_c"
    return linear(sv, c, o_name, o_key, e * spec.q_dim, q_rg or kv_rg, spec.q_dim, h, *_flag(flags, o_name))


def _mla(sv: _Saved, c: ActContext, spec: ModelSpec, y_key: str, y_b: int, y_rg: bool, flags: Flags) -> bool:
    """DeepSeek MLA (transformers DeepseekV3Attention): low-rank q and kv projections with their RMSNorms, then
    attention over per-head q/k of qk_head_dim and v of v_head_dim (traced: DeepSeek-V2-Lite shapes)."""
    m, h, e, heads = spec.mla, spec.hidden_size, c.e, spec.num_heads
    assert m is not None
    if m.q_lora_rank:
        qa = linear(sv, c, "q_a_proj", y_key, y_b * h, y_rg, h, m.q_lora_rank, *_flag(flags, "q_a_proj"))
        _, _, qa = norm(sv, c, spec, "q_a_layernorm", "q_a.out", e, qa, m.q_lora_rank,
                        _flag(flags, "q_a_layernorm")[0])
        q_rg = linear(sv, c, "q_b_proj", "q_a_layernorm.out", e * m.q_lora_rank, qa, m.q_lora_rank,
                      heads * m.qk_head_dim, *_flag(flags, "q_b_proj"))
    else:
        q_rg = linear(sv, c, "q_proj", y_key, y_b * h, y_rg, h, heads * m.qk_head_dim, *_flag(flags, "q_proj"))
    kva = linear(sv, c, "kv_a_proj_with_mqa", y_key, y_b * h, y_rg, h, m.kv_lora_rank + m.qk_rope_head_dim,
                 *_flag(flags, "kv_a_proj_with_mqa"))
    _, _, kva = norm(sv, c, spec, "kv_a_layernorm", "kv_a.out", e, kva, m.kv_lora_rank,
                     _flag(flags, "kv_a_layernorm")[0])
    kv_rg = linear(sv, c, "kv_b_proj", "kv_a_layernorm.out", e * m.kv_lora_rank, kva, m.kv_lora_rank,
                   heads * (m.qk_nope_head_dim + m.v_head_dim), *_flag(flags, "kv_b_proj"))
    if kv_rg:
        sv.save("kv_b.out", Act(tok=e * heads * (m.qk_nope_head_dim + m.v_head_dim)))  # v is a view of it
        sv.save("attn.v", Act())  # counted in kv_b.out (traced: the attention kernel keeps the view)
    attention_core(sv, c, spec, q_rg, kv_rg, None)
    vd = heads * m.v_head_dim
    o_key = "attn.out" if c.attention in ("sdpa", "flash") or c.selective else "attn.out_c"
    return linear(sv, c, "o_proj", o_key, e * vd, q_rg or kv_rg, vd, h, *_flag(flags, "o_proj"))


def _mlp(sv: _Saved, c: ActContext, spec: ModelSpec, i: int, y_key: str, y_b: int, y_rg: bool,
         flags: Flags) -> bool:
    h = spec.hidden_size
    if spec.is_moe_layer(i) and spec.layout == "llama4":
        return llama4_moe(sv, c, spec, y_key, y_b, y_rg, flags)
    if spec.is_moe_layer(i):
        return moe_block(sv, c, spec, y_key, y_b, y_rg, flags)
    if spec.layout in PLAIN_MLP:
        names = PLAIN_MLP[spec.layout]
        return plain_mlp(sv, c, spec, "mlp", y_key, y_b, y_rg, names, flags)
    if spec.layout == "phi3":
        fused = _Saved()
        w, lo = _flag(flags, "gate_up_proj")
        rg = linear(sv, c, "gate_up_proj", y_key, y_b * h, y_rg, h, 2 * spec.ffn_size, w, lo)
        if rg:
            fused.save("gate_up", Act(tok=2 * c.e * spec.ffn_size))
            fused.save("act", Act(tok=c.e * spec.ffn_size))
        for k, a in fused.items.items():
            sv.save(k, a)
        return linear(sv, c, "down_proj", "prod", c.e * spec.ffn_size, rg, spec.ffn_size, h,
                      *_flag(flags, "down_proj"))
    return gated_mlp(sv, c, "mlp", y_key, y_b, y_rg, h, spec.ffn_size, flags, ("gate_proj", "up_proj", "down_proj"))


def _norm_names(spec: ModelSpec) -> tuple[str, str]:
    return {"gpt2": ("ln_1", "ln_2"), "gpt_bigcode": ("ln_1", "ln_2"), "mpt": ("norm_1", "norm_2"),
            "bert": ("ln_out", "ln_attn"),
            "falcon": ("input_layernorm", "input_layernorm")}.get(
        spec.layout, ("input_layernorm", "post_attention_layernorm"))


def decoder_layer(spec: ModelSpec, i: int, c: ActContext, flags: Flags, x_rg: bool) -> LayerActs:
    """Saved activations of layer ``i`` whose input requires grad when ``x_rg``."""
    if spec.layout == "bert":
        return encoder_layer(spec, i, c, flags, x_rg)
    if c.model_impl == "litgpt":
        return litgpt_layer(spec, i, c, flags, x_rg)
    sv = _Saved()
    h, r, e = spec.hidden_size, c.r, c.e
    n1, n2 = _norm_names(spec)
    post = spec.layout in ("gemma", "olmo2")  # norms on the attention / MLP outputs before the residual add
    if spec.layout == "olmo2":  # no input norm: attention reads the residual stream
        y_key, y_b, y_rg = "x", r, x_rg
    else:
        y_key, y_b, y_rg = norm(sv, c, spec, n1, "x", r, x_rg, h, _flag(flags, n1)[0])
    norm1_part = sv.total()
    a_rg = _attention(sv, c, spec, i, y_key, y_b, y_rg, flags)
    if post:
        _, _, a_rg = norm(sv, c, spec, "post_attention_layernorm", "attn.o_out", e, a_rg, h,
                          _flag(flags, "post_attention_layernorm")[0])
    attn_part = sv.total()
    if c.dropout > 0:
        sv.save("attn.resid_mask", Act(tok=h))
    if post:
        h1_rg = x_rg or a_rg
        if spec.layout == "gemma":
            y2_key, y2_b, y2_rg = norm(sv, c, spec, "pre_feedforward_layernorm", "h1", r, h1_rg, h,
                                       _flag(flags, "pre_feedforward_layernorm")[0])
        else:
            y2_key, y2_b, y2_rg = "h1", r, h1_rg
    elif spec.parallel_residual:
        y2_key, y2_b, y2_rg = (y_key, y_b, y_rg) if n1 == n2 else norm(sv, c, spec, n2, "x", r, x_rg, h,
                                                                       _flag(flags, n2)[0])
    else:
        h1_rg = x_rg or a_rg
        y2_key, y2_b, y2_rg = norm(sv, c, spec, n2, "h1", r, h1_rg, h, _flag(flags, n2)[0])
    norm2_part = sv.total()
    m_rg = _mlp(sv, c, spec, i, y2_key, y2_b, y2_rg, flags)
    if post:
        _, _, m_rg = norm(sv, c, spec, "post_feedforward_layernorm", "mlp.out", e, m_rg, h,
                          _flag(flags, "post_feedforward_layernorm")[0])
    if c.dropout > 0:
        sv.save("mlp.resid_mask", Act(tok=h))
    saved = sv.total()
    points = _bwd_points(spec, i, c, saved, norm1_part, attn_part, norm2_part, sv.items)
    return LayerActs(saved=saved, out_rg=x_rg or a_rg or m_rg, points=points, items=tuple(sv.items.items()),
                     fwd_end=forward_end(spec, c, i, sv.items),
                     fwd_ckpt=checkpointed_forward(spec, c, i, y2_key, y2_b, sv.items, _minus(saved, norm2_part)))


def litgpt_layer(spec: ModelSpec, i: int, c: ActContext, flags: Flags, x_rg: bool) -> LayerActs:
    """litgpt's ``Block`` (``gpuplan.train.litgpt_acts``): its saved set, with the backward high-water marks of the
    transformers layer (the same norm and MLP backward) and SDPA's gradients at all heads for K and V."""
    sv, out_rg, norm1, attn, norm2, y2_key, y2_b = litgpt_layer_saved(spec, c, flags, x_rg)
    saved = sv.total()
    extra = attention_bwd_extra(spec, c)
    points = tuple(replace(p, extra=p.extra + extra) if p.name == "attention" else p
                   for p in _bwd_points(spec, i, c, saved, norm1, attn, norm2, sv.items))
    return LayerActs(saved=saved, out_rg=out_rg, points=points, items=tuple(sv.items.items()),
                     fwd_end=litgpt_forward_end(spec, c, sv.items),
                     fwd_ckpt=checkpointed_forward(spec, c, i, y2_key, y2_b, sv.items, _minus(saved, norm2)))


def encoder_layer(spec: ModelSpec, i: int, c: ActContext, flags: Flags, x_rg: bool) -> LayerActs:
    """A post-norm encoder layer (transformers ``BertLayer`` / ``RobertaLayer``): attention reads the layer input
    (the previous LayerNorm's output), ``LayerNorm(dropout(dense(attention)) + x)``, then
    ``LayerNorm(dropout(output(gelu(intermediate(y)))) + y)``. Saved: the layer input (q, k and v read it), the
    attention core (``attention_core``: eager keeps q, k, v copies, the fp32 probabilities, their dropout mask and
    output, and the context copy; SDPA its q, k, v, output and logsumexp), each dropout's boolean mask, each
    LayerNorm's input (the residual sum, in the residual dtype: fp32 under autocast) and statistics, the
    intermediate input, the GELU input and output. The last LayerNorm's output is the next layer's input, counted
    there. Module flags: ``dense`` covers the attention output, intermediate and output Linears and ``LayerNorm``
    both norms (their leaf names in the checkpoint)."""
    sv = _Saved()
    h, r = spec.hidden_size, c.r
    ln_w = _flag(flags, "LayerNorm")[0]
    a_rg = _attention(sv, c, spec, i, "x", r, x_rg, flags)
    attn_part = sv.total()
    if c.dropout > 0:
        sv.save("attn.resid_mask", Act(tok=h))
    y2_key, y2_b, y2_rg = norm(sv, c, spec, "ln_attn", "attn.sum", r, x_rg or a_rg, h, ln_w)
    norm2_part = sv.total()
    dense = _flag(flags, "dense")
    m_rg = plain_mlp(sv, c, spec, "mlp", y2_key, y2_b, y2_rg, ("intermediate", "output"),
                     {"intermediate": dense, "output": dense})
    if c.dropout > 0:
        sv.save("mlp.resid_mask", Act(tok=h))
    norm(sv, c, spec, "ln_out", "mlp.sum", r, y2_rg or m_rg, h, ln_w)
    saved = sv.total()
    # the MLP's backward high-water mark comes before any of the layer's weight gradients: the output LayerNorm's
    # backward has released its input and statistics, the dropout its mask, and the residual gradient has been
    # consumed; the output dense's input gradient and the GELU backward's output (2·e·f) are alive (traced)
    released = Act(tok=float(r * h + 8 + (h if c.dropout > 0 else 0) + r * h))
    points = tuple(BwdPoint("mlp", "none", _minus(Act(tok=2.0 * c.e * spec.ffn_size), released)) if p.name == "mlp"
                   else p for p in _bwd_points(spec, i, c, saved, Act(), attn_part, norm2_part, sv.items))
    return LayerActs(saved=saved, out_rg=x_rg or a_rg or m_rg or ln_w, points=points, items=tuple(sv.items.items()),
                     fwd_end=forward_end(spec, c, i, sv.items),
                     fwd_ckpt=checkpointed_forward(spec, c, i, y2_key, y2_b, sv.items, _minus(saved, norm2_part)))


def forward_end(spec: ModelSpec, c: ActContext, i: int, items: dict[str, Act]) -> Act:
    """Tensors a layer's forward still references at its last moment, beyond its saved set (per token; transformers
    ``models/llama/modeling_llama.py`` ``LlamaModel.forward`` / ``LlamaDecoderLayer.forward`` and kin, traced under
    FSDP2, ``benchmarks/parallel_accuracy.py --alive``, and on one GPU): the layer input x (the caller's
    ``hidden_states = decoder_layer(hidden_states, ...)`` holds it until the call returns; saved only
    when the first norm keeps the fp32 stream itself), the residual h1 = x + attention (``residual``, until the
    second add; saved only in an fp32 stream or by a LayerNorm), and then the MLP output (e·h) beside the new
    output (r·h): (r·[x unsaved] + r·[h1 unsaved] + e + r)·h, 10·h bytes per token in bf16. GPT-2's block also
    keeps its attention output (``attn_output``) to the end; parallel-residual layers (GPT-NeoX, Falcon) hold
    the attention output and the partial sum ``mlp + attn`` instead of h1. A routed MoE block peaks before its
    sum over the k experts: the weighted expert outputs and their re-ordered copy, 2·w·k·h with w the routing
    weights' dtype (fp32 for Mixtral and DeepSeek-V2). Ignores scalars below one element per token."""
    h, r, e = spec.hidden_size, c.r, c.e
    tail = (e + r) * h
    if spec.is_moe_layer(i):
        m = spec.moe
        assert m is not None
        w = 4 if spec.layout == "mixtral" or spec.family == "deepseek_v2" else (2 if c.amp else e)
        tail = max(tail, 2 * w * m.top_k * h)
        if spec.layout == "llama4":
            tail = max(tail, llama4_moe_forward_end(spec, c))
    tok = tail + (0 if "x" in items else r * h) + (e * h if spec.layout in HELD_ATTN_OUT else 0)
    if spec.parallel_residual:
        tok += 2 * e * h
    elif "h1" not in items:
        tok += r * h
    return Act(tok=float(tok))


def checkpointed_forward(spec: ModelSpec, c: ActContext, i: int, y2_key: str, y2_bytes: int,
                         items: dict[str, Act], mlp_saved: Act) -> tuple[Act, Act]:
    """The forward high-water mark of a layer under full recompute (non-reentrant ``torch.utils.checkpoint``:
    nothing is saved, every temporary lives while Python references it), beyond the layer input the checkpoint
    keeps, inside the MLP (traced on one GPU and under FSDP2): the residual h1 (r·h; GPT-NeoX/Falcon: the
    attention output, e·h; GPT-2 both) and the MLP input (the second norm's output, y2·h) beside the MLP's
    working set. Gated: the activation output, up's output and their product, 3·e·f (gate's output is freed
    once the activation has read it; a fused gate_up keeps its 2f output: 4·e·f). Plain (GPT-2, GPT-NeoX):
    the fc output and the activation's output or, for the tanh GELU formulas, its temporaries (the
    ``gelu_parts`` of ``gpuplan.train.activations.plain_mlp``). MoE: the block's saved set, an upper bound (the
    forward phase of a small Mixtral trace: +1.2 %). Returns (residual-stream part, part inside the
    column/row-parallel pair)."""
    h, r, e, f = spec.hidden_size, c.r, c.e, spec.ffn_size
    res = (e if spec.parallel_residual else r) * h + (e * h if spec.layout in HELD_ATTN_OUT else 0)
    stream = Act(tok=float(res + (0 if y2_key in ("x", "h1") else y2_bytes * h)))
    if spec.is_moe_layer(i):
        return Act(tok=float(r * h)), mlp_saved
    if spec.layout in PLAIN_MLP:
        parts = items.get("mlp.gelu_parts", Act()).tok
        return stream, Act(tok=float(e * f + max(e * f, parts)))
    return stream, Act(tok=float((4 if spec.layout == "phi3" else 3) * e * f))


def _minus(a: Act, b: Act) -> Act:
    return Act(a.tok - b.tok, a.sq - b.sq, a.fixed - b.fixed, a.seq_sq - b.seq_sq)


def _bwd_points(spec: ModelSpec, i: int, c: ActContext, saved: Act, norm1: Act, attn: Act, norm2: Act,
                items: dict[str, Act] | None = None) -> tuple[BwdPoint, ...]:
    """High-water marks of one layer's backward, measured in traces of transformers 5 (bytes beyond the layer's
    full saved set, with the layer gradients existing at that moment):

    - MoE routing (before any expert gradient): the index backward of ``weighted_out[inv_perm]`` clones, zeroes and
      ``index_put``s S·h tensors, then ``mul`` backward makes two more: 3·S·h·w (+ S·h·ex for the cast to the
      experts' dtype when the routing weights are fp32, as Mixtral's are), S = k rows per token;
    - after ``mul`` backward of the gated MLP, with down's weight gradient: the product's gradient and those of the
      activation and up outputs, less the product: 2·e·f per token dense, S·ex·(2f - h) for MoE;
    - after gate/up backward, with all MLP gradients: the gate_up gradient and input gradient replace the gate_up
      output and gathered input while the activation and product are gone: -2·e·f per row;
    - the second norm's backward: the MLP's saved tensors are released; the norm's own backward peaks with its
      saved fp32 input beside four or five fp32 h-sized temporaries, its normed copy released
      (``norm_bwd_temporaries``);
    - the attention core's backward (``_attn_bwd_transient``), with the MLP, second-norm and o_proj gradients;
    - the first norm's backward, with all the layer's gradients, only the first norm's saved tensors left.
    """
    e, h = c.e, spec.hidden_size
    items = items or {}
    second = {"gemma": "pre_feedforward_layernorm", "olmo2": "post_attention_layernorm"}.get(
        spec.layout, _norm_names(spec)[1])
    tmp2 = norm_bwd_temporaries(spec, c, items.get(f"{second}.normed", Act()))
    tmp1 = norm_bwd_temporaries(spec, c, items.get(f"{_norm_names(spec)[0]}.normed", Act()))
    pts: list[BwdPoint] = []
    if spec.is_moe_layer(i):
        m = spec.moe
        assert m is not None
        ex = c.r if c.amp else e  # grouped_mm is not autocast: experts run in the weights' dtype
        w = 4 if spec.layout == "mixtral" or spec.family == "deepseek_v2" else (2 if c.amp else e)
        wt = max(w, ex)
        k, f = m.top_k, m.expert_ffn_size
        if spec.layout == "llama4":  # every token runs through all E experts (family_acts.llama4_moe)
            k, ex, wt = m.num_experts, e, e
        routing = Act(tok=k * h * (3 * wt + (ex if wt != ex else 0)))
        pts.append(BwdPoint("moe routing", "none", routing))
        if "moe.peft_weights" in items:
            # PEFT's W + ΔW of the down stack gets a full weight gradient (E·f·h) beside down's input and output
            # gradients, before baddbmm's backward reduces it to the adapter factors (traced, Mixtral)
            pts.append(BwdPoint("peft expert weight gradient", "none",
                                Act(tok=ex * k * (f + h), fixed=c.r * m.num_experts * f * h)))
        pts.append(BwdPoint("mlp", "mlp_first", Act(tok=ex * k * (2 * f - h))))
        pts.append(BwdPoint("mlp weights", "mlp_all", Act(tok=-2.0 * ex * k * f)))
    else:
        # under autocast down's backward also releases the half copy of its weight (gate/up's after theirs)
        hf = spec.hidden_size * spec.ffn_size if c.amp else 0
        pts.append(BwdPoint("mlp", "mlp_first", Act(tok=2.0 * e * spec.ffn_size, fixed=-2 * hf)))
        pts.append(BwdPoint("mlp weights", "mlp_all", Act(tok=-2.0 * e * spec.ffn_size, fixed=-6 * hf)))
    pts.append(BwdPoint("second norm", "mlp_all", _minus(norm2, saved) + tmp2, tmp2))
    attn_bwd = _attn_bwd_transient(spec, c)
    if c.repeat_kv and sdpa_repeats_kv(spec, c, None):
        attn_bwd = attn_bwd + attention_bwd_extra(spec, c)  # SDPA's K/V gradients at all heads
    pts.append(BwdPoint("attention", "after_attn", _minus(attn, saved) + attn_bwd))
    pts.append(BwdPoint("first norm", "layer", _minus(norm1, saved) + tmp1, tmp1))
    return tuple(pts)


def norm_bwd_temporaries(spec: ModelSpec, c: ActContext, normed: Act) -> Act:
    """A decoder layer's norm backward at its high-water mark, beyond that norm's saved tensors (per token).

    RMSNorm as transformers runs it under autograd (``models/llama/modeling_llama.py`` ``LlamaRMSNorm.forward``:
    ``x32 = x.to(float32); x32 * rsqrt(x32.pow(2).mean(-1) + eps)``, then ``weight * normed``): the weight's
    ``mul`` backward consumes the incoming gradient and releases the saved normed tensor; ``mul(x32, rsqrt)``
    backward gives x32 its first fp32 gradient; ``mean`` backward writes an fp32 h-sized gradient and ``pow``
    backward computes ``grad · (2 · x32.pow(1))``: the ``pow``, ``mul.Scalar`` and ``mul.Tensor`` results, while
    the saved x32 is still held. For a half input x32 is a copy whose first gradient waits in its own fp32
    buffer (five fp32 h-sized tensors); for an fp32 input x32 is the residual stream itself and that gradient is
    summed in place into the residual gradient (four). So (16 + 4·[r < 4])·h − normed bytes, r the residual
    dtype size, normed: r·h for Llama's cast-back copy, 4·h for Gemma's and OLMo-2's fp32 one, 0 when the weight
    is frozen. The residual gradient beside it is counted by the caller. Traced: FSDP2 Llama-2-7B shape, fp32
    shards / bf16 compute, checkpointed, 2 × 1024, rank 0 at layer 0's ``post_attention_layernorm`` backward,
    six fp32 h-sized tensors there with x32, 201,326,592 B (``benchmarks/parallel_accuracy.py --alive``); one
    GPU, checkpointed Llama layers in bf16 and fp32 (``tests/test_norm_backward.py``). LayerNorm's
    fused kernel only writes its input gradient: e·h. Ignores the per-row statistics' gradients (4 B a token)."""
    h = spec.hidden_size
    if spec.norm != "rmsnorm":
        return Act(tok=float(c.e * h))
    return Act(tok=(16.0 + (4.0 if c.r < 4 else 0.0)) * h - normed.tok)


def _attn_bwd_transient(spec: ModelSpec, c: ActContext) -> Act:
    """Gradients alive at the attention core's backward high-water mark (traced), once the MLP's and the second
    norm's saved tensors are released. Eager: the probabilities' gradient is upcast to fp32 for the softmax
    backward, which writes another fp32 s² tensor while the half probabilities are gone: (8 - e)·heads·s² in half
    precision, 8·heads·s² in fp32. SDPA/flash: grad q, k, v and the output gradient, e·(2·q_dim + 2·kv_dim)."""
    e, heads = c.e, spec.num_heads
    if sdpa_math(spec, c):
        # the probabilities' fp32 gradient and the softmax backward's output; with several sequences one of the
        # per-head K/V copies is already released by then (traced)
        return Act(sq=8.0 * heads, tok=-4.0 * spec.q_dim if c.batched else 0.0)
    if c.attention == "eager" and not c.selective:
        if spec.layout == "bert":  # its softmax runs in the compute dtype: no fp32 gradient copy
            return Act(sq=float(2 * e * heads))
        return Act(sq=float((8 - e) * heads if e < 4 else 8 * heads))
    return Act(tok=e * (2 * spec.q_dim + 2 * spec.kv_dim))


def _mlp_bwd_extra(spec: ModelSpec, i: int, c: ActContext) -> tuple[Act, Act]:
    """Activation gradients alive in the MLP's backward beyond the saved set, at two points (traced):

    1. after ``mul`` backward: the product's gradient and those of the activation and up outputs, less the product
       (and for MoE the weighted down output) that down's backward released: 2·e·f per token dense,
       S·e·(2f - h) for MoE (S = k routed rows per token);
    2. after the gate/up weight gradients: the activation and product are gone, the gate_up gradient and the input
       gradient replace the gate_up output and the gathered input: -2·e·f per routed row.
    """
    e = c.e
    if spec.is_moe_layer(i):
        m = spec.moe
        assert m is not None
        ex = c.r if c.amp else e  # grouped_mm is not autocast: experts run in the weights' dtype
        k, f, h = m.top_k, m.expert_ffn_size, spec.hidden_size
        return Act(tok=ex * k * (2 * f - h)), Act(tok=-2.0 * ex * k * f)
    return Act(tok=2 * e * spec.ffn_size), Act(tok=-2.0 * e * spec.ffn_size)
