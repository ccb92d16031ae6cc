"""Transient tensor memory while serving: the Hugging Face prefill and decode step, and vLLM's profiling run.

All functions return bytes of tensors that are alive *besides* the weights and the KV cache at the moment of the
peak. They follow the eager PyTorch code paths of transformers 5 (``modeling_llama.py`` and siblings, with
``attn_implementation="sdpa"``, ``experts_implementation="grouped_mm"``) and vLLM's model runner; each function's
docstring lists the tensors it counts. Ignored everywhere: tensors below one hidden vector per token (index
tensors, masks of the full-attention layers, cos/sin of width < head_dim), cuBLAS workspaces (non-torch memory
where PyTorch does not route them through its allocator).
"""

from __future__ import annotations

from functools import lru_cache

from gpuplan.infer.kv import attention_kinds
from gpuplan.model.spec import ModelSpec

FP32 = 4


def _rope_width(spec: ModelSpec) -> int:
    if spec.learned_positions or spec.alibi:
        return 0
    return spec.mla.qk_rope_head_dim if spec.mla else spec.head_dim


def hf_attention_elements(spec: ModelSpec, *, masked_gqa: bool) -> float:
    """Elements per token alive inside one attention block of transformers (beyond its input).

    Standard attention: the q, k, v projections (q + 2 kv) plus the RoPE temporaries of the query
    (``q*cos``, ``rotate_half(q)`` with its negated half, ``*sin``: 3.5 q) -- the largest moment; SDPA itself runs a
    flash / memory-efficient kernel when the mask is None (no T x T scores). Sliding layers pass a mask, so SDPA
    gets ``repeat_kv``-expanded K and V (2 q more). MLA (transformers 5 ``expand_kv``): the query (q), the rebuilt
    query cat (q), ``kv_b_proj`` output (heads x (nope + v)), the new key tensor (q) and the attention output
    (heads x v).
    """
    if spec.mla:
        m, heads = spec.mla, spec.num_heads
        q = heads * m.qk_head_dim
        return 3 * q + heads * (m.qk_nope_head_dim + m.v_head_dim) + heads * m.v_head_dim + m.kv_lora_rank
    q, kv = spec.q_dim, spec.kv_dim
    rope = q if spec.learned_positions or spec.alibi else 3.5 * q
    peak = q + 2 * kv + rope
    sdpa = 3 * q + (2 * q if masked_gqa and spec.num_kv_heads != spec.num_heads else 0)
    return max(peak, sdpa, q + spec.hidden_size)


def hf_mlp_bytes(spec: ModelSpec, layer: int, dtype_bytes: float) -> float:
    """Bytes per token alive inside one MLP of transformers (beyond its input).

    Gated MLP ``down(act(gate(x)) * up(x))``: act(gate), up and their product (3 f). Plain MLP: fc output plus the
    activation's temporaries (exact GELU: 1 f; GPT-2's tanh ``gelu_new`` written in Python: 3 f). MoE with
    ``grouped_mm`` (transformers ``integrations/moe.py``), per routed copy (k per token): the gathered input (h),
    the gate_up output (2 f_e), act(gate) and the product (2 f_e); or, at the end, the gathered input, the down
    output and the weighted output with its re-ordered copy, both in the router weights' dtype (fp32 for Mixtral
    and DeepSeek, the model dtype for Qwen-MoE), whichever is larger; plus the router's logits and fp32 probabilities
    (E each). A shared expert is a gated MLP; Qwen2-MoE runs it first, so its output (h) is alive across the routed
    part; DeepSeek runs it after.
    """
    b, h = dtype_bytes, spec.hidden_size
    if spec.is_moe_layer(layer) and spec.layout == "llama4":
        return llama4_moe_bytes(spec, b)
    if spec.is_moe_layer(layer):
        m = spec.moe
        assert m is not None
        wb = b if spec.layout == "qwen_moe" else FP32  # Qwen-MoE casts router weights to the model dtype
        per_copy = max(b * (h + 4 * m.expert_ffn_size), 2 * b * h + 2 * wb * h)
        routed = m.top_k * per_copy + m.num_experts * (b + FP32)
        if not m.shared_expert_ffn_size:
            return routed
        shared_first = spec.layout == "qwen_moe"  # Qwen2-MoE runs the shared expert before the routed ones
        return max(routed + (b * h if shared_first else 0), b * (h + 3 * m.shared_expert_ffn_size))
    f = spec.ffn_size
    if spec.gated_mlp:
        return 3 * f * b
    gelu_temps = 3 if spec.activation == "gelu_new" else 1
    return f * (1 + gelu_temps) * b


def llama4_moe_bytes(spec: ModelSpec, b: float) -> float:
    """Bytes per token inside transformers' ``Llama4TextMoe`` without gradients (beyond its input): every token is
    repeated to all E experts and scaled by its router score (``routed_in``, E·h, referenced until the block
    returns), then ``Llama4TextExperts`` runs dense ``bmm``s over all E experts: the gate_up output (2·E·f, its
    chunks referenced to the end of the function), act(gate) and the product (E·f each) at the multiply, then the
    down output (E·h) beside the product; after it the shared expert (3·f_s) runs beside routed_in and the experts'
    output (E·h each). Plus the router's logits and fp32 sigmoid scores (E each). The prefill of a reference forward
    thus computes every expert for every token (traced: benchmarks/accuracy.py, Llama 4 Scout)."""
    m = spec.moe
    assert m is not None
    h, E, f, fs = spec.hidden_size, m.num_experts, m.expert_ffn_size, m.shared_expert_ffn_size
    experts = max(E * h + 2 * E * f + 2 * E * f, E * h + 2 * E * f + E * f + E * h)
    shared = 2 * E * h + 3 * fs
    return b * max(experts, shared) + E * (b + FP32)


def hf_norm_bytes_per_token(spec: ModelSpec, dtype_bytes: float) -> float:
    """RMSNorm/LayerNorm in transformers computes in fp32: the fp32 copy and one fp32 temporary (pow or the
    normalised product) of h each, plus the cast back (h in the model dtype). For fp32 models the copy is free."""
    h = spec.hidden_size
    copy = 0 if dtype_bytes >= FP32 else FP32 * h
    return copy + FP32 * h + dtype_bytes * h


def hf_attention_impl(spec: ModelSpec) -> str:
    """transformers' default attention: Gemma 2's logit soft-capping and gpt-oss's attention sinks are not supported
    by SDPA (``Gemma2PreTrainedModel._supports_sdpa = False``, ``GptOssPreTrainedModel._supports_sdpa = False`` in
    transformers 5.23), so they run eager attention, as MPT does (``MptAttention`` adds its ALiBi biases to scores
    of its own matmuls); the rest run SDPA."""
    return "eager" if spec.family in ("gemma2", "mpt") or spec.attention_sinks else "sdpa"


def hf_score_bytes_per_token(spec: ModelSpec, *, attended: int, dtype: str, tp: int = 1) -> float:
    """Eager attention materialises the scores of each head (heads x attended per query token). At
    ``softmax(w, dtype=float32).to(dtype)``: the scores in the model dtype, PyTorch's fp32 copy of them
    (``SoftMax.cpp`` converts bf16 input; only CUDA fp16 has a fused half-to-float path) and the fp32 result:
    b + 4 + 4 bytes per score for bf16; then the cast back while both live: 2 b + 4."""
    b = {"fp32": 4.0, "fp16": 2.0}.get(dtype, 2.0)
    if spec.attention_sinks:
        # gpt-oss (transformers models/gpt_oss ``eager_attention_forward``): the sink column joins the scores with
        # ``cat``, the max is subtracted and the softmax runs in the model dtype; alive at once: the masked scores,
        # the shifted logits and the probabilities, and at the second matmul the shifted logits, the probabilities
        # and the contiguous copy of their sliced [..., :-1] view: 3 b per score
        return spec.num_heads / tp * attended * 3 * b
    copy = 0.0 if dtype in ("fp32", "fp16") else FP32
    per_score = max(b + copy + FP32, 2 * b + FP32)
    return spec.num_heads / tp * attended * per_score


def hf_mask_bytes(spec: ModelSpec, *, batch: int, prompt: int, dtype_bytes: float) -> int:
    """Attention masks built once per forward and kept for all layers. SDPA gets ``None`` (``is_causal``) for
    full attention without padding, and a bool [B, 1, T, T] mask for sliding layers once T exceeds the window;
    eager attention gets an additive mask [B, 1, T, T] in the model dtype per layer type (full, sliding)."""
    kinds = {spec.is_sliding_layer(i) for i, _ in attention_kinds(spec, range(spec.num_layers))}
    sliding = True in kinds and spec.sliding_window is not None
    if spec.family == "mpt":  # MptModel.forward: create_causal_mask(...).to(torch.bool)
        return batch * prompt * prompt
    if hf_attention_impl(spec) == "eager":
        masks = 2 if sliding and False in kinds else 1  # one per layer type (full, sliding)
        return int(masks * batch * prompt * prompt * dtype_bytes)
    if sliding and prompt > (spec.sliding_window or 0):
        return batch * prompt * prompt
    return 0


@lru_cache(maxsize=512)
def _first_of_each_kind(spec: ModelSpec, layers: range) -> tuple[int, ...]:
    """The first layer of each kind (sliding or full attention, MoE or dense MLP), in order."""
    firsts: dict[tuple[bool, bool], int] = {}
    for i in layers:
        firsts.setdefault((spec.is_sliding_layer(i), spec.is_moe_layer(i)), i)
    return tuple(firsts.values())


def hf_prefill_transient_bytes(spec: ModelSpec, *, batch: int, prompt: int, dtype_bytes: float,
                               layers: range | None = None, last_stage: bool = True, tp: int = 1,
                               dtype: str = "bf16") -> tuple[int, str]:
    """Largest transient of a Hugging Face prefill of ``batch`` x ``prompt`` tokens, and where it happens.

    Always alive during the forward: the embedding output (kept by ``inputs_embeds``, h) and rotary cos/sin
    (GPT-2: the position embeddings too, generate passing per-row ``position_ids``).
    During layer i: the layer's input (held by the model's loop variable, h); in the MLP phase also the
    post-attention residual (h) and the normed MLP input (h). After the last layer the final norm runs on all
    tokens (fp32 temporaries). ``logits_to_keep=1`` keeps the head to the last position (counted in
    ``hf_logits_bytes``). With ``tp`` > 1 the attention and MLP intermediates are split across ranks; hidden-size
    tensors are replicated.
    """
    n = batch * prompt
    h = spec.hidden_size
    layers = layers if layers is not None else range(spec.num_layers)
    # embedding output (+ GPT-2's position embeddings [B, T, h] and their sum, the first layer's input)
    base = (h * (2 if spec.learned_positions else 1) + 2 * _rope_width(spec)) * dtype_bytes
    best, where = 0.0, ""
    sliding_masked = spec.sliding_window is not None and prompt > spec.sliding_window
    eager = hf_attention_impl(spec) == "eager"
    if spec.family == "mpt" and len(layers) > 1:
        # MptModel's loop variable ``outputs`` holds the block's returned attention probabilities ([B, heads, T, T]
        # in the model dtype, MptAttention returns them) until the next block has returned, and the last block's
        # through the final norm (transformers 5 models/mpt/modeling_mpt.py MptModel.forward)
        base += spec.num_heads / tp * prompt * dtype_bytes
    for i in _first_of_each_kind(spec, layers):  # later layers of a kind hold the same; the first names the peak
        masked = (sliding_masked and spec.is_sliding_layer(i)) or eager
        attn = base + (2 * h + hf_attention_elements(spec, masked_gqa=masked) / tp) * dtype_bytes
        if eager:
            attn += hf_score_bytes_per_token(spec, attended=prompt, dtype=dtype, tp=tp)
        elif sliding_masked and spec.is_sliding_layer(i):
            attn += prompt * dtype_bytes  # SDPA converts the bool mask to an additive one in the query dtype
        mlp = base + 3 * h * dtype_bytes + hf_mlp_bytes(spec, i, dtype_bytes) / tp
        norm = base + h * dtype_bytes + hf_norm_bytes_per_token(spec, dtype_bytes)
        for value, name in ((mlp, "MLP"), (attn, "attention"), (norm, "norm")):
            if value > best:
                best, where = value, f"layer {i} {name}"
    if last_stage:
        final = base + h * dtype_bytes + hf_norm_bytes_per_token(spec, dtype_bytes)
        if final > best:
            best, where = final, "final norm"
    total = best * n + hf_mask_bytes(spec, batch=batch, prompt=prompt, dtype_bytes=dtype_bytes)
    return int(total), where


def hf_logits_bytes(spec: ModelSpec, *, batch: int, dtype_bytes: float, fp32_copies: int = 3) -> int:
    """Logits of one generation step with ``logits_to_keep=1``: lm_head output [B, 1, V] in the model dtype, then
    generate's fp32 copy ``outputs.logits[:, -1].to(copy=True, dtype=float32)`` and the processed scores / softmax
    probabilities (``fp32_copies`` fp32 [B, V] tensors in all)."""
    return int(batch * spec.vocab_size * (dtype_bytes + FP32 * fp32_copies))


def hf_decode_transient_bytes(spec: ModelSpec, *, batch: int, context: int, kv_elements_layer: int,
                              kv_element_bytes: float, dtype_bytes: float, quantized_cache: bool) -> int:
    """Largest transient of one decode step at ``context`` tokens.

    ``DynamicLayer.update`` does ``self.keys = torch.cat([self.keys, key_states])``: a new K (then V) tensor of the
    whole context is allocated while the old one is alive -- one half of one layer's cache. MLA re-expands the
    latent of the whole context to full keys and values every step (``kv_b_proj`` output heads x (nope + v) plus the
    new key tensor heads x qk per token). ``QuantizedCache`` dequantizes one layer's K and V to the model dtype.
    """
    half_layer = batch * context * kv_elements_layer / 2 * kv_element_bytes
    extra = 0.0
    if spec.mla:
        m = spec.mla
        extra = batch * context * spec.num_heads * (m.qk_nope_head_dim + m.v_head_dim + m.qk_head_dim) * dtype_bytes
    if quantized_cache:
        extra = max(extra, batch * context * kv_elements_layer * dtype_bytes)
    return int(half_layer + extra)


def vllm_layer_elements(spec: ModelSpec, layer: int) -> float:
    """Elements per token alive in one vLLM decoder layer: hidden and residual (2 h; the add-RMSNorm is fused and
    in place) plus the MLP's merged gate_up output (2 f) and SiluAndMul output (f); or, for a fused-MoE layer,
    its three workspaces per routed copy (``fused_moe``: k x (2 f_e + f_e + h)) plus the fp32 router logits."""
    h = spec.hidden_size
    if spec.is_moe_layer(layer):
        m = spec.moe
        assert m is not None
        return 2 * h + m.top_k * (3 * m.expert_ffn_size + h) + 2 * m.num_experts
    attn = spec.q_dim + 2 * spec.kv_dim + spec.q_dim
    mlp = 3 * spec.ffn_size if spec.gated_mlp else 2 * spec.ffn_size
    return 2 * h + max(attn, mlp)


def vllm_profile_activation_bytes(spec: ModelSpec, *, max_num_batched_tokens: int, max_num_seqs: int,
                                  dtype_bytes: float, sampler_bytes_per_logit: float, tp: int = 1,
                                  layers: range | None = None, last_stage: bool = True) -> tuple[int, int]:
    """vLLM's profiling run (``profile_run``): a dummy forward of ``max_num_batched_tokens`` tokens, then the
    sampler on ``min(max_num_seqs, tokens)`` rows of logits. Returns (layer transient, sampler bytes); the torch
    activation peak vLLM subtracts is their maximum (they do not overlap). Column-parallel widths divide by tp.

    The sampler term: fp32 logits and the top-k/top-p pass the dummy run exercises (sorted values, int64 sort
    indices, softmax and cumulative sum): ``sampler_bytes_per_logit`` bytes per vocabulary entry per row.
    """
    layers = layers if layers is not None else range(spec.num_layers)
    h = spec.hidden_size
    per_token = 0.0
    for i in layers:
        e = vllm_layer_elements(spec, i)
        per_token = max(per_token, 2 * h + (e - 2 * h) / tp)
    transient = int(per_token * max_num_batched_tokens * dtype_bytes)
    sampler = 0
    if last_stage:
        rows = min(max_num_seqs, max_num_batched_tokens)
        sampler = int(rows * spec.vocab_size * sampler_bytes_per_logit + max_num_batched_tokens * h * dtype_bytes)
    return transient, sampler
