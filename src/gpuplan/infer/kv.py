"""KV cache bytes: per token, per layer, per sequence, for each attention type and engine.

Standard attention (MHA, GQA, MQA) stores K and V per KV head: 2 x n_kv x head_dim x b bytes per token per layer
(the formula of source document 002 section 3.5, with head_dim explicit rather than d / n_h). Multi-head latent
attention (DeepSeek-V2 paper, arXiv:2405.04434, section 2.1.3) stores one compressed latent and one shared RoPE
key: (kv_lora_rank + qk_rope_head_dim) x b. vLLM stores the latent (its MLA backends); so does transformers 5
(``DeepseekV2Attention.forward`` calls ``past_key_values.update(k_nope, k_pe)`` on the latents and re-expands them
to full K/V at every step, a transient counted in ``activations.py``).

Sliding-window layers (Mistral, Gemma 2/3, Qwen sliding layers) keep only their window in vLLM's hybrid KV manager
(one extra block for the boundary). transformers' ``DynamicSlidingWindowLayer`` keeps the *storage* of the whole
prompt after prefill: it slices ``full_key_states[:, :, -window + 1:]``, a view that pins the prompt-sized tensor
until the first decode step's ``torch.cat`` replaces it with a window-sized one. So for ``--engine hf`` a sliding
layer holds ``prompt`` tokens at the prefill peak and ``min(context, window)`` during decode.

Linear-attention layers (Qwen3-Next Gated DeltaNet) cache no tokens: each keeps a constant recurrent state per
sequence (``linear_state_bytes``). Llama 4's chunked-attention layers are capped at ``attention_chunk_size`` the same way (``tokens_held``).

Quantized caches: vLLM's ``--kv-cache-dtype fp8`` is 1 byte per element (per-layer scalar scales ignored).
transformers' ``QuantizedCache`` (int4 via quanto, int8 via HQQ) stores ``nbits`` per element plus an fp16 scale and
zero point per group of 64 (``q_group_size``). The prefill quantizes the whole prompt; decode tokens wait in an
unquantized residual until it would reach ``residual_length`` = 128, then everything is quantized again
(``hf_residual_tokens``). So a sequence's cache is ``kv_bytes_per_token`` × its tokens, plus, during generation, the
residual tokens' extra (unquantized minus quantized) bytes.
"""

from __future__ import annotations

import math
from functools import lru_cache

from gpuplan.errors import InputError
from gpuplan.model.spec import ModelSpec

KV_DTYPE_BYTES = {"fp32": 4.0, "bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5}
HF_QUANT_GROUP = 64  # transformers QuantizedCache q_group_size default
HF_QUANT_RESIDUAL_TOKENS = 128  # transformers QuantizedCache residual_length default


def check_kv_dtype(kv_dtype: str, engine: str) -> str:
    """Validate ``--kv-dtype`` for the engine: vLLM has fp8 but no integer KV cache; transformers has int4/int8
    (QuantizedCache) but no fp8 cache."""
    key = kv_dtype.strip().lower()
    if key not in KV_DTYPE_BYTES:
        raise InputError("--kv-dtype", kv_dtype, "must be one of " + ", ".join(KV_DTYPE_BYTES))
    if engine == "vllm" and key in ("int8", "int4"):
        raise InputError("--kv-dtype", kv_dtype, "vLLM's --kv-cache-dtype supports auto (the model dtype) and fp8",
                         hint="use --kv-dtype fp8, or --engine hf for transformers' QuantizedCache")
    if engine == "hf" and key == "fp8":
        raise InputError("--kv-dtype", kv_dtype, "transformers has no fp8 KV cache",
                         hint="use int8 or int4 (QuantizedCache), or --engine vllm")
    return key


def kv_heads_per_gpu(spec: ModelSpec, tp: int) -> int:
    """KV heads one tensor-parallel rank holds: n_kv / tp, or 1 (replicated) when tp > n_kv.

    vLLM (``QKVParallelLinear``) requires tp to divide n_kv or n_kv to divide tp, and tp to divide the query heads.
    """
    if spec.num_heads % tp:
        raise InputError("--tp", tp, f"must divide the number of attention heads ({spec.num_heads})")
    kv = spec.num_kv_heads
    if tp <= kv:
        if kv % tp:
            raise InputError("--tp", tp, f"must divide the number of KV heads ({kv}) when tp <= KV heads")
        return kv // tp
    if tp % kv:
        raise InputError("--tp", tp, f"must be a multiple of the number of KV heads ({kv}) when tp > KV heads")
    return 1


def kv_elements_per_token_layer(spec: ModelSpec, tp: int = 1) -> int:
    """Cached elements per token per attention layer on one TP rank.

    MLA: kv_lora_rank + qk_rope_head_dim (the latent is replicated on every TP rank);
    otherwise 2 x (KV heads per rank) x head_dim. An encoder (bert, roberta) caches nothing: each request is one
    bidirectional forward.
    """
    if spec.layout == "bert":
        return 0
    if spec.mla is not None:
        if spec.num_heads % tp:
            raise InputError("--tp", tp, f"must divide the number of attention heads ({spec.num_heads})")
        return spec.mla.kv_lora_rank + spec.mla.qk_rope_head_dim
    return 2 * kv_heads_per_gpu(spec, tp) * spec.head_dim


def element_bytes(kv_dtype: str, engine: str) -> float:
    """Bytes per cached element; transformers' quantized cache adds fp16 scale + zero per group of 64."""
    b = KV_DTYPE_BYTES[kv_dtype]
    if engine == "hf" and kv_dtype in ("int8", "int4"):
        b += 2 * 2 / HF_QUANT_GROUP
    return b


def kv_bytes_per_token(spec: ModelSpec, *, kv_dtype: str, tp: int = 1, layers: range | None = None,
                       engine: str = "vllm") -> float:
    """Bytes one token adds to the cache of ``layers`` (all by default) on one TP rank, no window applied:
    sum over the attention layers of kv_elements_per_token_layer x element bytes (linear-attention layers cache no
    tokens: ``linear_state_bytes``)."""
    layers = layers if layers is not None else range(spec.num_layers)
    n = sum(1 for i in layers if not spec.is_linear_layer(i))
    return n * kv_elements_per_token_layer(spec, tp) * element_bytes(kv_dtype, engine)


def tokens_held(spec: ModelSpec, layer: int, *, context: int, prompt: int, engine: str, phase: str,
                block_size: int = 16) -> int:
    """Tokens whose K/V a layer holds for one sequence.

    Full-attention layers: the context (``prompt`` at the prefill peak). Sliding layers: vLLM keeps
    min(context, window + block_size) (whole blocks; one extra block for the window boundary); transformers keeps
    the prompt's storage at the prefill peak and min(context, window) during decode. Chunked layers (Llama 4):
    vLLM's chunked local attention manager frees the blocks before the current chunk, so at most the chunk
    (``min(context, chunk)``); transformers caches them in the same sliding-window layer as sliding attention.
    """
    length = prompt if phase == "prefill" else context
    if spec.is_linear_layer(layer):
        return 0
    if not spec.is_sliding_layer(layer) or spec.sliding_window is None:
        return length
    w = spec.sliding_window
    if engine == "vllm" and spec.is_chunked_layer(layer):
        return min(length, w)  # the current chunk's blocks (chunk sizes are whole blocks)
    if engine == "vllm":
        return min(length, w + block_size)
    return length if phase == "prefill" else min(length, w)


def linear_state_bytes(spec: ModelSpec, *, engine: str, tp: int = 1, state_dtype: str = "bf16") -> int:
    """Bytes of one linear-attention layer's recurrent state for one sequence on one TP rank, whatever its length
    (Qwen3-Next Gated DeltaNet): the causal conv's state over the q, k and v channels plus the delta-rule state,
    one [k_head_dim, v_head_dim] matrix per value head. vLLM (``MambaStateShapeCalculator.gated_delta_net_state_shape``)
    keeps kernel - 1 conv columns and both states in the model dtype (``mamba_ssm_cache_dtype`` auto); transformers
    (``LinearAttentionLayer``) keeps kernel columns in the model dtype and the delta-rule state in fp32, the
    dtype its ``torch_chunk_gated_delta_rule`` computes and returns it in. Heads are split over TP ranks."""
    la = spec.linear_attn
    if la is None:
        return 0
    if la.num_k_heads % tp or la.num_v_heads % tp:
        raise InputError("--tp", tp, f"must divide the linear-attention heads ({la.num_k_heads} key, "
                         f"{la.num_v_heads} value)")
    e = KV_DTYPE_BYTES[state_dtype]
    taps = la.conv_kernel - 1 if engine == "vllm" else la.conv_kernel
    conv = taps * la.conv_dim / tp * e
    ssm = la.num_v_heads / tp * la.k_head_dim * la.v_head_dim * (e if engine == "vllm" else 4)
    return int(conv + ssm)


@lru_cache(maxsize=512)
def attention_kinds(spec: ModelSpec, layers: range) -> tuple[tuple[int, int], ...]:
    """The layers grouped by attention kind (full, sliding window or chunked): (first layer of the kind, how
    many)."""
    count: dict[str, list[int]] = {}
    for i in layers:
        count.setdefault(spec.layer_types[i] if spec.layer_types else "full", [i, 0])[1] += 1
    return tuple((first, n) for first, n in count.values())


def hf_residual_tokens(held: int, *, context: int, prompt: int) -> int:
    """Tokens one layer of transformers' ``QuantizedCache`` holds unquantized, at most, while generating from
    ``prompt`` to ``context`` tokens. transformers cache_utils.py ``QuantizedLayer.update``: the first call (the
    prefill) quantizes all its tokens and leaves the residual empty; each later call appends to the residual unless
    ``residual + new >= residual_length``, in which case the residual and the new tokens are quantized with the rest
    and the residual is emptied. So after n decode tokens the residual holds n mod 128 tokens: never more than
    min(context - prompt, 127), and none when the whole context is the prompt. Bounding by that maximum keeps the
    decode figure an upper bound over the generation (an unquantized token costs more than a quantized one)."""
    return max(0, min(held, context - prompt, HF_QUANT_RESIDUAL_TOKENS - 1))


def kv_cache_bytes(spec: ModelSpec, *, batch: int, context: int, kv_dtype: str, engine: str, tp: int = 1,
                   layers: range | None = None, prompt: int | None = None, phase: str = "decode",
                   unquantized_dtype: str = "bf16") -> int:
    """Bytes of the KV cache of ``batch`` sequences of ``context`` tokens on one GPU (the layers of its pipeline
    stage), with sliding windows applied per engine. transformers' int4/int8 cache keeps the tokens generated since
    its last requantization in ``unquantized_dtype`` (``hf_residual_tokens``: none when ``prompt`` is the whole
    context, so then the cache is exactly ``kv_bytes_per_token`` × tokens held). Linear-attention layers add their
    constant recurrent state per sequence (``linear_state_bytes``), in ``unquantized_dtype``."""
    layers = layers if layers is not None else range(spec.num_layers)
    prompt = context if prompt is None else prompt
    elems = kv_elements_per_token_layer(spec, tp)
    eb = element_bytes(kv_dtype, engine)
    quantized_hf = engine == "hf" and kv_dtype in ("int8", "int4")
    total = 0.0
    for layer, n in attention_kinds(spec, layers):
        if spec.is_linear_layer(layer):  # a constant state per sequence, not quantized
            total += n * linear_state_bytes(spec, engine=engine, tp=tp, state_dtype=unquantized_dtype)
            continue
        held = tokens_held(spec, layer, context=context, prompt=prompt, engine=engine, phase=phase)
        if quantized_hf and phase == "decode":
            resid = hf_residual_tokens(held, context=context, prompt=prompt)
            total += n * elems * ((held - resid) * eb + resid * KV_DTYPE_BYTES[unquantized_dtype])
        else:
            total += n * elems * held * eb
    return int(math.ceil(total * batch))
