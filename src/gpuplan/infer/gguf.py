"""GGUF (llama.cpp) weight types: real bytes per block, and which type each tensor gets in a quantization mix.

Block layouts are ggml's ``block_*`` structs in ``ggml/src/ggml-common.h`` (llama.cpp, e.g. ``block_q4_K`` =
2 fp16 super-block scales + 12 bytes of 6-bit scales + 128 bytes of nibbles for 256 weights = 144 bytes, 4.5 bits
per weight). The per-tensor choice inside a mix such as Q4_K_M follows ``llama_tensor_get_type_impl`` in
``src/llama-quant.cpp`` (llama.cpp commit 007dbbf3): attn_v and ffn_down get Q6_K in the ``use_more_bits`` layers,
the output matrix gets Q6_K, a row length not divisible by the block falls back to a 32-wide type.

Ignored: the importance-matrix variants (IQ*), GGUF metadata and alignment padding (a few MB per file), and the
"70B" test of llama.cpp's model-type table, which is approximated by "80 layers".
"""

from __future__ import annotations

from dataclasses import dataclass

from gpuplan.errors import InputError

# type -> (weights per block, bytes per block), from the ggml-common.h block structs.
GGML_BLOCKS: dict[str, tuple[int, int]] = {
    "F32": (1, 4),
    "F16": (1, 2),
    "BF16": (1, 2),
    "Q8_0": (32, 34),  # fp16 d + 32 int8
    "Q4_0": (32, 18),  # fp16 d + 16 bytes of nibbles
    "Q4_1": (32, 20),  # fp16 d, m + 16 bytes
    "Q5_0": (32, 22),  # fp16 d + 4 bytes high bits + 16 bytes
    "Q5_1": (32, 24),  # fp16 d, m + 4 + 16
    "IQ4_NL": (32, 18),  # fp16 d + 16 bytes
    "MXFP4": (32, 17),  # e8m0 exponent + 16 bytes
    "Q2_K": (256, 84),  # 16 scales + 64 quants + 2 fp16
    "Q3_K": (256, 110),  # 32 hmask + 64 quants + 12 scales + fp16
    "Q4_K": (256, 144),  # 2 fp16 + 12 scales + 128 nibbles
    "Q5_K": (256, 176),  # 2 fp16 + 12 scales + 32 high bits + 128 nibbles
    "Q6_K": (256, 210),  # 128 low + 64 high + 16 int8 scales + fp16
    "IQ4_XS": (256, 136),  # fp16 + u16 + 4 + 128
}

# llama.cpp ftype -> the default (base) tensor type of that mix.
GGUF_MIXES: dict[str, str] = {
    "Q8_0": "Q8_0", "Q6_K": "Q6_K", "Q5_K_M": "Q5_K", "Q5_K_S": "Q5_K", "Q5_0": "Q5_0", "Q5_1": "Q5_1",
    "Q4_K_M": "Q4_K", "Q4_K_S": "Q4_K", "Q4_0": "Q4_0", "Q4_1": "Q4_1", "Q3_K_M": "Q3_K", "Q3_K_L": "Q3_K",
    "Q3_K_S": "Q3_K", "Q2_K": "Q2_K", "IQ4_NL": "IQ4_NL", "IQ4_XS": "IQ4_XS", "F16": "F16", "BF16": "BF16",
}

# Row length not a multiple of the block: llama.cpp tensor_type_fallback().
_FALLBACK = {"Q2_K": "Q4_0", "Q3_K": "Q4_0", "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0", "IQ4_XS": "IQ4_NL"}


def bits_per_weight(ggml_type: str) -> float:
    """Bits per weight of one ggml type: 8 x block bytes / block weights (Q4_K: 8 x 144 / 256 = 4.5)."""
    per_block, nbytes = GGML_BLOCKS[ggml_type]
    return 8 * nbytes / per_block


def tensor_bytes(ggml_type: str, rows: int, row_len: int) -> int:
    """Bytes of a [rows, row_len] tensor in ``ggml_type``: rows x ceil(row_len / block) x block bytes."""
    per_block, nbytes = GGML_BLOCKS[ggml_type]
    return rows * (-(-row_len // per_block)) * nbytes


def fallback_type(ggml_type: str, row_len: int) -> str:
    """The type llama.cpp really writes when ``row_len`` is not divisible by the type's block size."""
    if row_len % GGML_BLOCKS[ggml_type][0] == 0:
        return ggml_type
    new = _FALLBACK.get(ggml_type, ggml_type)
    return new if row_len % GGML_BLOCKS[new][0] == 0 else "F16"


def parse_mix(name: str) -> str | None:
    """'q4_k_m' / 'gguf:Q4_K_M' / 'Q4_K_M' -> 'Q4_K_M'; None when it is not a GGUF mix name."""
    key = name.strip().upper()
    if key.startswith("GGUF:") or key.startswith("GGUF-"):
        key = key[5:]
    return key if key in GGUF_MIXES else None


# Categories of llama-quant.cpp's tensor_get_category(), from the leaf module names of the tensor table.
_CATEGORY = {
    "q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output", "dense": "attn_output",
    "qkv_proj": "attn_qkv", "query_key_value": "attn_qkv", "c_attn": "attn_qkv", "kv_b_proj": "attn_kv_b",
    "gate_proj": "ffn_gate", "w1": "ffn_gate", "up_proj": "ffn_up", "w3": "ffn_up", "c_fc": "ffn_up",
    "dense_h_to_4h": "ffn_up", "gate_up_proj": "ffn_up", "down_proj": "ffn_down", "w2": "ffn_down",
    "dense_4h_to_h": "ffn_down",
}


@dataclass(frozen=True)
class MixContext:
    """What llama.cpp's type choice looks at besides the tensor itself."""

    mix: str
    n_attention_v: int  # attn_v-like tensors in the file (attn_v, attn_qkv, attn_kv_b), one per layer
    n_ffn_down: int  # ffn_down tensors in the file (experts fused into one per layer)
    n_expert: int  # routed experts (0 for dense)
    n_gqa: int  # query heads per KV head
    is_70b: bool
    is_falcon: bool


def _use_more_bits(i: int, n: int) -> bool:
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def category(module: str, component: str) -> str:
    if component == "embedding":
        return "token_embd"
    if component == "lm_head":
        return "output"
    if module == "c_proj":
        return "attn_output" if component == "attention" else "ffn_down"
    return _CATEGORY.get(module, "other")


def choose_type(ctx: MixContext, cat: str, index: int, row_len: int, tied: bool) -> str:
    """The ggml type a tensor of category ``cat`` gets in ``ctx.mix`` (``index``: its layer for per-layer rules).

    Follows llama_tensor_get_type_impl for the K-quant and legacy mixes; the IQ mixes use their base type.
    """
    mix, base = ctx.mix, GGUF_MIXES[ctx.mix]
    if base in ("F16", "BF16"):
        return base
    t = base
    if cat == "output" or (tied and cat == "token_embd"):
        if ctx.is_falcon or row_len % GGML_BLOCKS[base][0]:
            t = "Q8_0"
        elif base != "Q8_0":
            t = "Q6_K"
        return fallback_type(t, row_len)
    if cat == "token_embd":
        return fallback_type(t, row_len)
    if cat in ("attn_v", "attn_qkv", "attn_kv_b"):
        if mix == "Q2_K":
            t = "Q4_K" if ctx.n_gqa >= 4 else "Q3_K"
        elif mix == "Q3_K_M":
            t = "Q5_K" if index < 2 else "Q4_K"
        elif mix == "Q3_K_L":
            t = "Q5_K"
        elif mix in ("IQ4_NL", "IQ4_XS") and ctx.n_gqa >= 4:
            t = "Q5_K"
        elif mix in ("Q4_K_M", "Q5_K_M") and _use_more_bits(index, ctx.n_attention_v):
            t = "Q6_K"
        elif mix == "Q4_K_S" and index < 4:
            t = "Q5_K"
        if ctx.is_70b and t in ("Q3_K", "Q4_K"):
            t = "Q5_K"
        if ctx.n_expert == 8:
            t = "Q8_0"
    elif cat == "attn_k":
        if ctx.n_expert == 8:
            t = "Q8_0"
    elif cat == "ffn_down":
        n = ctx.n_ffn_down
        if mix == "Q2_K":
            t = "Q3_K"
        elif mix == "Q3_K_M":
            t = "Q5_K" if index < n // 16 else ("Q4_K" if not ctx.is_falcon or _use_more_bits(index, n) else "Q3_K")
        elif mix == "Q3_K_L":
            t = "Q4_K" if ctx.is_falcon else "Q5_K"
        elif mix == "Q4_K_M":
            if ctx.is_falcon:
                t = "Q6_K" if index < n // 16 else ("Q5_K" if _use_more_bits(index, n) else "Q4_K")
            elif _use_more_bits(index, n):
                t = "Q6_K"
        elif mix in ("IQ4_NL", "IQ4_XS") and index < n // 8:
            t = "Q5_K"
        elif mix == "Q5_K_M" and _use_more_bits(index, n):
            t = "Q6_K"
        elif mix == "Q4_K_S" and not ctx.is_falcon and index < n // 8:
            t = "Q5_K"
    elif cat == "attn_output" and not ctx.is_falcon:
        if ctx.n_expert == 8:
            if mix in ("Q2_K", "Q3_K_S", "Q3_K_M", "IQ4_NL", "Q4_K_S", "Q4_K_M", "IQ4_XS"):
                t = "Q5_K"
        elif mix == "Q2_K":
            t = "Q3_K"
        elif mix == "Q3_K_M":
            t = "Q4_K"
        elif mix == "Q3_K_L":
            t = "Q5_K"
    elif cat == "attn_output" and mix == "Q3_K_L":
        t = "Q4_K"
    return fallback_type(t, row_len)


def require_mix(name: str) -> str:
    mix = parse_mix(name)
    if mix is None:
        raise InputError("--weights", name, "is not a GGUF type", hint="known: " + ", ".join(GGUF_MIXES))
    return mix
