"""One decoder layer's saved activations under litgpt's own modelling code (``--model-impl litgpt``).

litgpt 0.5.3 ``litgpt/model.py`` (``Block``, ``CausalSelfAttention``, ``LLaMAMLP``, ``RMSNorm``, ``apply_rope``) and
``litgpt/lora.py`` (``LoRAQKVLinear``, ``LoRALinear``) keep other tensors than the transformers layer of
``gpuplan.train.layers``: one fused QKV projection, K and V expanded to every query head before SDPA under
grouped-query attention, the rotary embedding ending in ``torch.cat``, the attention output copied before the
output projection, RMSNorm keeping its normalised tensor in fp32, and adapters in the model's dtype. Line numbers
below are those of the 0.5.3 wheel. Checked against saved-tensor hooks on litgpt's own ``Block``
(``benchmarks/trace_litgpt.py --layer``: TinyLlama (GQA) and Llama-2-7B (MHA) shapes, full and LoRA, exact) and
against its whole training step (``benchmarks/trace_litgpt.py``).

Modelled for the Llama layout (RMSNorm, rotary embedding on the whole head, gated SiLU MLP), which is what litgpt's
``LLaMAMLP`` configurations are; other layouts are refused (``supports_own_module``).
"""

from __future__ import annotations

from gpuplan.model.spec import ModelSpec
from gpuplan.train.activations import Act, ActContext, _Saved, gated_mlp, linear

Flags = dict[str, tuple[bool, bool]]
QKV = ("q_proj", "k_proj", "v_proj")


def supports_own_module(spec: ModelSpec, impl: str = "litgpt") -> str | None:
    """None when the stack's own Llama modelling code (``impl``: litgpt or torchtitan) covers the model, else the
    reason it does not: both are modelled for the Llama layout (dense, RMSNorm, no q/k norm or sliding window)."""
    if spec.layout != "llama" or spec.norm != "rmsnorm" or spec.moe is not None:
        return f"layout {spec.layout}: {impl}'s own module is modelled for the Llama layout only"
    if spec.qk_norm or spec.attn_output_gate or spec.mla is not None or (
            spec.sliding_window is not None and impl != "litgpt"):
        return f"q/k norms, sliding windows, output gates and MLA are outside {impl}'s Llama module"
    return None


def _flag(flags: Flags, name: str) -> tuple[bool, bool]:
    return flags.get(name, (False, False))


def litgpt_rmsnorm(sv: _Saved, c: ActContext, name: str, x_key: str, x_rg: bool, width: int,
                   w_rg: bool) -> tuple[str, int, bool]:
    """litgpt ``RMSNorm.forward`` (model.py 620-627): ``x = x.float(); norm_x = mean(x * x); x_normed = x *
    rsqrt(norm_x + eps); (x_normed * weight.float()).to(dtype)``. ``mul(x, x)`` and ``mul(x, rsqrt)`` keep the fp32
    copy (the input itself in an fp32 stream) and rsqrt (4 B a row); ``mul(x_normed, w32)`` keeps the fp32 copy of
    the weight (a new tensor for a half weight, ``fixed``) for the input's gradient and the fp32 ``x_normed`` for the
    weight's: 4 B per element where transformers keeps the normalised tensor cast back to the input dtype."""
    if x_rg:
        sv.save(x_key if c.r == 4 else f"{name}.x32", Act(tok=4.0 * width))
        sv.save(f"{name}.rstd", Act(tok=4.0))
        if c.r < 4:
            sv.save(f"{name}.w32", Act(fixed=4 * width))
    if w_rg:
        sv.save(f"{name}.normed", Act(tok=4.0 * width))
    return f"{name}.out", c.r, x_rg or w_rg


def litgpt_qkv_lora(sv: _Saved, c: ActContext, spec: ModelSpec, y_key: str, y_b: int, flags: Flags) -> bool:
    """litgpt ``LoRAQKVLinear.forward`` (lora.py 402-435) beside the frozen fused projection: ``after_A =
    F.linear(lora_dropout(x), lora_A)`` keeps its input (the norm output; with LoRA dropout the dropped copy and
    its mask instead), ``conv1d`` keeps ``after_A`` (e·n·r for n adapted of q, k, v), and when not all three are
    adapted ``zero_pad``'s ``index_copy_`` keeps its source, ``after_B`` (e·(the adapted widths)). The adapters
    are in the model's dtype (``fabric.init_module`` under bf16-true). Returns whether LoRA is on."""
    on = [n for n in QKV if _flag(flags, n)[1]]
    if not on:
        return False
    h, e = spec.hidden_size, c.e
    if c.lora_dropout:
        sv.save("attn.lora_mask", Act(tok=float(h)))
        sv.save("attn.lora_in", Act(tok=float(e * h)))
    else:
        sv.save(y_key, Act(tok=float(y_b * h)))
    sv.save("attn.lora_a_out", Act(tok=float(e * len(on) * c.lora_rank)))
    if len(on) < 3:
        widths = {"q_proj": spec.q_dim, "k_proj": spec.kv_dim, "v_proj": spec.kv_dim}
        sv.save("attn.lora_b_out", Act(tok=float(e * sum(widths[n] for n in on))))
    return True


def litgpt_attention(sv: _Saved, c: ActContext, spec: ModelSpec, y_key: str, y_b: int, y_rg: bool,
                     flags: Flags) -> bool:
    """litgpt ``CausalSelfAttention.forward`` (model.py 260-325), SDPA with ``is_causal`` (no mask in training):

    - ``qkv = self.attn(x)``: one fused linear, which keeps the norm output when its weight trains;
    - under grouped-query attention (1 < groups < heads) ``k.expand(...)`` / ``v.expand(...)`` then ``reshape``
      copy K and V to all heads ("flash attention requires it", 281-287): SDPA keeps V's copy (e·q_dim); with
      one group per head (MHA) or one group (MQA) V is a view of ``qkv`` and SDPA keeps the whole qkv output
      (e·(q_dim + 2·kv_dim));
    - ``apply_rope`` then ``torch.cat((q_roped, q[..., n_elem:]))`` (291-294) gives q and k as new tensors of
      all heads: SDPA keeps e·q_dim for each (k too, expanded before the rope);
    - SDPA keeps its output and the fp32 logsumexp; ``y.transpose(1, 2)`` (``scaled_dot_product_attention``) then ``reshape`` (322) copies the
      output, which ``self.proj`` keeps when its weight trains (or a LoRA adapter reads it)."""
    h, e, qd, kvd = spec.hidden_size, c.e, spec.q_dim, spec.kv_dim
    w = any(_flag(flags, n)[0] for n in QKV)
    rg = linear(sv, c, "attn.qkv", y_key, y_b * h, y_rg, h, qd + 2 * kvd, w, False)
    rg = litgpt_qkv_lora(sv, c, spec, y_key, y_b, flags) or rg
    if not rg:
        return False
    groups, heads = spec.num_kv_heads, spec.num_heads
    sv.save("attn.q", Act(tok=float(e * qd)))
    sv.save("attn.k", Act(tok=float(e * qd)))
    if 1 < groups < heads:
        sv.save("attn.v", Act(tok=float(e * qd)))
    else:
        sv.save("attn.qkv_out", Act(tok=float(e * (qd + 2 * kvd))))
    sv.save("attn.out", Act(tok=float(e * qd)))
    sv.save("attn.lse", Act(tok=4.0 * heads))
    if spec.sliding_window is not None:
        # a configured sliding window (litgpt's Mistral and Phi-3 configs) builds an additive [T, T] mask in the
        # compute dtype in every layer, whatever T (model.py 302-318), which SDPA keeps
        sv.save("attn.window_mask", Act(seq_sq=float(e)))
    return linear(sv, c, "proj", "attn.out_copy", e * qd, True, qd, h, *_flag(flags, "o_proj"))


def litgpt_layer_saved(spec: ModelSpec, c: ActContext, flags: Flags, x_rg: bool
                       ) -> tuple[_Saved, bool, Act, Act, Act, str, int]:
    """litgpt ``Block.forward`` (model.py 200-240, non-parallel residual): ``norm_1``, attention, the residual add,
    ``norm_2``, ``LLaMAMLP`` (398-402: ``silu(fc_1(x)) * fc_2(x)`` then ``proj``, the same saved set as
    transformers' gated MLP; ``LoRALinear`` keeps the input and the rank-r intermediate, lora.py 165-172).
    Returns the saved set, whether the output requires grad, the totals after the first norm, the attention and
    the second norm, and the MLP input's key and bytes per element."""
    sv = _Saved()
    h = spec.hidden_size
    y_key, y_b, y_rg = litgpt_rmsnorm(sv, c, "input_layernorm", "x", x_rg, h, _flag(flags, "input_layernorm")[0])
    norm1 = sv.total()
    a_rg = litgpt_attention(sv, c, spec, y_key, y_b, y_rg, flags)
    attn = sv.total()
    y2_key, y2_b, y2_rg = litgpt_rmsnorm(sv, c, "post_attention_layernorm", "h1", x_rg or a_rg, h,
                                         _flag(flags, "post_attention_layernorm")[0])
    norm2 = sv.total()
    m_rg = gated_mlp(sv, c, "mlp", y2_key, y2_b, y2_rg, h, spec.ffn_size, flags, ("gate_proj", "up_proj",
                                                                                   "down_proj"))
    return sv, x_rg or a_rg or m_rg, norm1, attn, norm2, y2_key, y2_b


def litgpt_forward_end(spec: ModelSpec, c: ActContext, items: dict[str, Act]) -> Act:
    """Tensors ``Block.forward`` still references when it returns, beyond its saved set (per token): the caller's
    input x (``x = block(x, ...)`` in ``GPT.forward``, unless saved), the locals ``x_normed`` (unless saved) and
    ``attention_output`` (the projection's output, never saved), the residual h1 until the second add, the MLP
    output and the new output."""
    h, r, e = spec.hidden_size, c.r, c.e
    tok = (e + r) * h + e * h
    tok += 0 if "x" in items else r * h
    tok += 0 if "h1" in items else r * h
    tok += 0 if "input_layernorm.out" in items else r * h
    return Act(tok=float(tok))


def attention_bwd_extra(spec: ModelSpec, c: ActContext) -> Act:
    """SDPA's backward returns gradients of the shapes it was given: K's and V's at all heads under grouped-query
    attention, e·(q_dim - kv_dim) each beyond the K/V-head width transformers' kernel is given."""
    if 1 < spec.num_kv_heads < spec.num_heads:
        return Act(tok=float(2 * c.e * (spec.q_dim - spec.kv_dim)))
    return Act()
