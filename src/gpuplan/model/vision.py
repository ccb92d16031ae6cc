"""Vision towers of multimodal checkpoints: reading ``vision_config``, the tensor table, FLOPs and activations (the
image processors' rules, which decide the patches and tokens, are ``gpuplan.model.image_processing``).

Five towers are modelled, each from its transformers 5 module (``modeling_*.py``) and image processor:

- ``qwen2_5_vl`` (Qwen2.5-VL, ``Qwen2_5_VisionTransformerPretrainedModel``): a Conv3d patch embedding over
  ``temporal_patch_size`` x ``patch_size``² pixels (no bias), ``depth`` blocks of RMSNorm, fused ``qkv`` with bias,
  ``proj``, a biased SwiGLU MLP; window attention over ``window_size`` pixels except on ``fullatt_block_indexes``;
  the merger (RMSNorm, Linear(4h, 4h), GELU, Linear(4h, out_hidden_size)) joins 2x2 patches into one token.
- ``qwen3_vl`` (Qwen3-VL): LayerNorms, a biased patch embedding, ``num_position_embeddings`` learned positions,
  a plain GELU MLP (``linear_fc1``/``linear_fc2``), full attention per image, the merger (LayerNorm over h) and one
  DeepStack merger (LayerNorm over 4h) per ``deepstack_visual_indexes`` entry.
- ``siglip`` (Gemma 3, ``SiglipVisionModel``): biased patch embedding and learned positions, LayerNorm blocks with
  q/k/v/out projections and a GELU MLP, ``post_layernorm``, the attention-pooling head when ``vision_use_head``;
  ``Gemma3MultiModalProjector`` average-pools to ``mm_tokens_per_image`` and projects through an RMSNorm and a
  [h, text hidden] matrix.
- ``pixtral`` (Mistral 3): ``patch_conv`` without bias, ``ln_pre``, RMSNorm blocks with bias-free q/k/v/o and a
  SwiGLU MLP, 2-D RoPE; ``Mistral3MultiModalProjector``: RMSNorm, the patch merger Linear(h·merge², h), then
  Linear(h, text hidden), GELU, Linear(text hidden, text hidden) (biases per ``multimodal_projector_bias``).
- ``llama4`` (Llama 4, ``Llama4VisionModel``): each tile of ``image_size`` unfolded into patches and projected by
  a bias-free Linear, a class token and learned positions, ``layernorm_pre``, LayerNorm blocks with biased
  q/k/v/o, 2-D RoPE and a GELU MLP, ``layernorm_post``; the class token dropped, a pixel shuffle joins 2x2
  patches (``pixel_shuffle_ratio`` 0.5) into ``Llama4VisionMLP2`` (two bias-free Linears, GELU after each), and
  ``Llama4MultiModalProjector`` maps ``vision_output_dim`` to the text hidden size. The image processor
  (``image_processing_llama4.py``) resizes each image onto the best canvas of at most ``max_patches`` tiles and
  adds a global tile when there is more than one.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

from gpuplan.errors import InputError
from gpuplan.limits import COUNT_BOUNDS
from gpuplan.model.image_processing import image_patches, llama4_tiles, window_key_sum
from gpuplan.model.spec import ModelSpec, VisionSpec
from gpuplan.model.tensors import TensorInfo, _Builder

# The wrapper's model_type -> the vision tower it carries
WRAPPER_TOWER = {"qwen2_5_vl": "qwen2_5_vl", "qwen3_vl": "qwen3_vl", "qwen3_vl_moe": "qwen3_vl", "gemma3": "siglip",
                 "mistral3": "pixtral", "llama4": "llama4"}


def _int(cfg: dict[str, Any], source: str, key: str, default: int | None) -> int:
    value = cfg.get(key, default)
    if value is None:
        raise InputError(f"{source}: vision_config.{key}", None, "missing required key")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{source}: vision_config.{key}", value, "must be an integer >= 1")
    if value > COUNT_BOUNDS["ffn"]:
        raise InputError(f"{source}: vision_config.{key}", value, f"must be at most {COUNT_BOUNDS['ffn']:,}")
    return value


def _indices(cfg: dict[str, Any], source: str, key: str, default: list[int], depth: int) -> tuple[int, ...]:
    value = cfg.get(key, default)
    if value is None:
        return ()
    if not isinstance(value, list) or any(isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < depth
                                          for v in value):
        raise InputError(f"{source}: vision_config.{key}", value, f"must be a list of block indices in 0..{depth - 1}")
    return tuple(value)


def vision_from_config(wrapper: dict[str, Any], model_type: str, text_hidden: int, source: str) -> VisionSpec | None:
    """The tower of a multimodal config (``vision_config`` inside the wrapper), or None for a wrapper whose tower
    is not modelled. Defaults for missing keys are the transformers 5 config classes':
    ``Qwen2_5_VLVisionConfig``, ``Qwen3VLVisionConfig``, ``SiglipVisionConfig`` (with ``Gemma3Config``'s
    ``mm_tokens_per_image`` 256), ``PixtralVisionConfig`` and ``Llama4VisionConfig``."""
    kind = WRAPPER_TOWER.get(model_type)
    if kind is None:
        return None
    cfg = wrapper.get("vision_config") or {}
    if not isinstance(cfg, dict):
        raise InputError(f"{source}: vision_config", cfg, "must be an object holding the vision tower's keys")
    vtype = cfg.get("model_type") if isinstance(cfg.get("model_type"), str) else {
        "qwen2_5_vl": "qwen2_5_vl_vision", "qwen3_vl": "qwen3_vl_vision", "siglip": "siglip_vision_model",
        "pixtral": "pixtral", "llama4": "llama4_vision_model"}[kind]
    if kind == "llama4":
        return _llama4_vision(cfg, vtype, text_hidden, source)
    if kind == "qwen2_5_vl":
        depth = _int(cfg, source, "depth", 32)
        # Qwen2VLImageProcessor defaults: min_pixels 56·56, max_pixels 28·28·1280 (transformers
        # image_processing_qwen2_vl.py); window_size 112 px, full attention on fullatt_block_indexes
        return VisionSpec(kind=kind, model_type=vtype, num_layers=depth, hidden_size=_int(cfg, source, "hidden_size", 3584),
                          num_heads=_int(cfg, source, "num_heads", 16), ffn_size=_int(cfg, source, "intermediate_size", 3420),
                          patch_size=_int(cfg, source, "patch_size", 14),
                          out_hidden=_int(cfg, source, "out_hidden_size", text_hidden),
                          merge=_int(cfg, source, "spatial_merge_size", 2),
                          temporal_patch=_int(cfg, source, "temporal_patch_size", 2),
                          min_pixels=56 * 56, max_pixels=28 * 28 * 1280,
                          window_size=_int(cfg, source, "window_size", 112),
                          full_attention_layers=_indices(cfg, source, "fullatt_block_indexes", [7, 15, 23, 31], depth),
                          in_channels=_int(cfg, source, "in_channels", 3))
    if kind == "qwen3_vl":
        depth = _int(cfg, source, "depth", 27)
        # Qwen3-VL preprocessor_config.json: patch_size 16, size {shortest_edge: 65536, longest_edge: 16777216}
        return VisionSpec(kind=kind, model_type=vtype, num_layers=depth, hidden_size=_int(cfg, source, "hidden_size", 1152),
                          num_heads=_int(cfg, source, "num_heads", 16), ffn_size=_int(cfg, source, "intermediate_size", 4304),
                          patch_size=_int(cfg, source, "patch_size", 16),
                          out_hidden=_int(cfg, source, "out_hidden_size", text_hidden),
                          merge=_int(cfg, source, "spatial_merge_size", 2),
                          temporal_patch=_int(cfg, source, "temporal_patch_size", 2),
                          min_pixels=65536, max_pixels=16777216,
                          deepstack_layers=_indices(cfg, source, "deepstack_visual_indexes", [8, 16, 24], depth),
                          num_position_embeddings=_int(cfg, source, "num_position_embeddings", 2304),
                          in_channels=_int(cfg, source, "in_channels", 3))
    if kind == "siglip":
        size, patch = _int(cfg, source, "image_size", 224), _int(cfg, source, "patch_size", 16)
        tokens = _int(wrapper, source, "mm_tokens_per_image", 256)
        # Gemma3MultiModalProjector: an average pool of side (image_size // patch_size) // sqrt(tokens)
        side, per_side = size // patch, max(1, math.isqrt(tokens))
        use_head = cfg.get("vision_use_head", True)
        if not isinstance(use_head, bool):
            raise InputError(f"{source}: vision_config.vision_use_head", use_head, "must be true or false")
        return VisionSpec(kind=kind, model_type=vtype, num_layers=_int(cfg, source, "num_hidden_layers", 12),
                          hidden_size=_int(cfg, source, "hidden_size", 768),
                          num_heads=_int(cfg, source, "num_attention_heads", 12),
                          ffn_size=_int(cfg, source, "intermediate_size", 3072), patch_size=patch,
                          out_hidden=text_hidden, merge=max(1, side // per_side), image_size=size, use_head=use_head,
                          tokens_per_image=tokens, in_channels=_int(cfg, source, "num_channels", 3))
    bias = wrapper.get("multimodal_projector_bias", False)
    if not isinstance(bias, bool):
        raise InputError(f"{source}: multimodal_projector_bias", bias, "must be true or false")
    return VisionSpec(kind=kind, model_type=vtype, num_layers=_int(cfg, source, "num_hidden_layers", 24),
                      hidden_size=_int(cfg, source, "hidden_size", 1024),
                      num_heads=_int(cfg, source, "num_attention_heads", 16),
                      ffn_size=_int(cfg, source, "intermediate_size", 4096), patch_size=_int(cfg, source, "patch_size", 14),
                      out_hidden=text_hidden, merge=_int(wrapper, source, "spatial_merge_size", 2),
                      image_size=_int(cfg, source, "image_size", 1540), projector_bias=bias,
                      in_channels=_int(cfg, source, "num_channels", 3))


def _llama4_vision(cfg: dict[str, Any], vtype: str, text_hidden: int, source: str) -> VisionSpec:
    """Llama 4's tower (``Llama4VisionConfig`` defaults). Each Linear takes its size from its own key, as
    transformers builds it: the adapter's first Linear reads ``intermediate_size`` and writes
    ``projector_input_dim``, its second is ``projector_output_dim`` square, and the projector reads
    ``vision_output_dim`` (the released checkpoints keep these consistent with the pixel shuffle: intermediate_size
    = hidden_size / pixel_shuffle_ratio², all three dims 4096). ``max_tiles`` is the image processor's
    ``max_patches`` default (16), which config.json does not hold."""
    ratio = cfg.get("pixel_shuffle_ratio", 0.5)
    merge = round(1 / ratio) if isinstance(ratio, (int, float)) and not isinstance(ratio, bool) and ratio > 0 else 0
    if merge < 1 or abs(merge * ratio - 1) > 1e-9:
        raise InputError(f"{source}: vision_config.pixel_shuffle_ratio", ratio, "must be 1/n for an integer n >= 1")
    size, patch = _int(cfg, source, "image_size", 448), _int(cfg, source, "patch_size", 14)
    if size % patch or (size // patch) % merge:
        raise InputError(f"{source}: vision_config.image_size", size, f"must be a multiple of patch_size x "
                         f"{merge} = {patch * merge}")
    return VisionSpec(kind="llama4", model_type=vtype, num_layers=_int(cfg, source, "num_hidden_layers", 34),
                      hidden_size=_int(cfg, source, "hidden_size", 768),
                      num_heads=_int(cfg, source, "num_attention_heads", 16),
                      ffn_size=_int(cfg, source, "intermediate_size", 5632), patch_size=patch, out_hidden=text_hidden,
                      merge=merge, image_size=size, adapter_dim=_int(cfg, source, "projector_input_dim", 4096),
                      adapter_out=_int(cfg, source, "projector_output_dim", 4096),
                      projector_in=_int(cfg, source, "vision_output_dim", 7680), max_tiles=16,
                      in_channels=_int(cfg, source, "num_channels", 3))


def _qwen_tower(b: _Builder, v: VisionSpec) -> None:
    h, f, p = v.hidden_size, v.ffn_size, "model.visual"
    ln = v.kind == "qwen3_vl"  # Qwen3-VL: LayerNorms with bias; Qwen2.5-VL: RMSNorms
    b.raw(f"{p}.patch_embed.proj.weight", (h, v.in_channels, v.temporal_patch, v.patch_size, v.patch_size),
          "vision", "replicated")
    if ln:
        b.raw(f"{p}.patch_embed.proj.bias", (h,), "vision", "replicated")
        b.raw(f"{p}.pos_embed.weight", (v.num_position_embeddings, h), "vision", "replicated")
    for i in range(v.num_layers):
        q = f"{p}.blocks.{i}"
        b.norm(f"{q}.norm1", h, bias=ln, component="vision")
        b.norm(f"{q}.norm2", h, bias=ln, component="vision")
        b.linear(f"{q}.attn.qkv", 3 * h, h, "vision", "column", bias=True)
        b.linear(f"{q}.attn.proj", h, h, "vision", "row", bias=True)
        if ln:
            b.linear(f"{q}.mlp.linear_fc1", f, h, "vision", "column", bias=True)
            b.linear(f"{q}.mlp.linear_fc2", h, f, "vision", "row", bias=True)
        else:
            b.linear(f"{q}.mlp.gate_proj", f, h, "vision", "column", bias=True)
            b.linear(f"{q}.mlp.up_proj", f, h, "vision", "column", bias=True)
            b.linear(f"{q}.mlp.down_proj", h, f, "vision", "row", bias=True)
    m = h * v.merge * v.merge
    if ln:
        mergers = [(f"{p}.merger", h)] + [(f"{p}.deepstack_merger_list.{j}", m) for j in range(len(v.deepstack_layers))]
        for name, norm in mergers:
            b.norm(f"{name}.norm", norm, bias=True, component="vision")
            b.linear(f"{name}.linear_fc1", m, m, "vision", "column", bias=True)
            b.linear(f"{name}.linear_fc2", v.out_hidden, m, "vision", "row", bias=True)
    else:
        b.norm(f"{p}.merger.ln_q", h, component="vision")
        b.linear(f"{p}.merger.mlp.0", m, m, "vision", "column", bias=True)
        b.linear(f"{p}.merger.mlp.2", v.out_hidden, m, "vision", "row", bias=True)


def _siglip_tower(b: _Builder, v: VisionSpec) -> None:
    h, f, p = v.hidden_size, v.ffn_size, "model.vision_tower"
    b.raw(f"{p}.embeddings.patch_embedding.weight", (h, v.in_channels, v.patch_size, v.patch_size), "vision",
          "replicated")
    b.raw(f"{p}.embeddings.patch_embedding.bias", (h,), "vision", "replicated")
    b.raw(f"{p}.embeddings.position_embedding.weight", ((v.image_size // v.patch_size) ** 2, h), "vision",
          "replicated")
    for i in range(v.num_layers):
        q = f"{p}.encoder.layers.{i}"
        b.norm(f"{q}.layer_norm1", h, bias=True, component="vision")
        for n in ("q_proj", "k_proj", "v_proj"):
            b.linear(f"{q}.self_attn.{n}", h, h, "vision", "column", bias=True)
        b.linear(f"{q}.self_attn.out_proj", h, h, "vision", "row", bias=True)
        b.norm(f"{q}.layer_norm2", h, bias=True, component="vision")
        b.linear(f"{q}.mlp.fc1", f, h, "vision", "column", bias=True)
        b.linear(f"{q}.mlp.fc2", h, f, "vision", "row", bias=True)
    b.norm(f"{p}.post_layernorm", h, bias=True, component="vision")
    if v.use_head:  # SiglipMultiheadAttentionPoolingHead
        b.raw(f"{p}.head.probe", (1, 1, h), "vision", "replicated")
        b.raw(f"{p}.head.attention.in_proj_weight", (3 * h, h), "vision", "replicated")
        b.raw(f"{p}.head.attention.in_proj_bias", (3 * h,), "vision", "replicated")
        b.linear(f"{p}.head.attention.out_proj", h, h, "vision", "replicated", bias=True)
        b.norm(f"{p}.head.layernorm", h, bias=True, component="vision")
        b.linear(f"{p}.head.mlp.fc1", f, h, "vision", "replicated", bias=True)
        b.linear(f"{p}.head.mlp.fc2", h, f, "vision", "replicated", bias=True)
    b.raw("model.multi_modal_projector.mm_input_projection_weight", (h, v.out_hidden), "vision", "replicated")
    b.raw("model.multi_modal_projector.mm_soft_emb_norm.weight", (h,), "vision", "replicated")


def _pixtral_tower(b: _Builder, v: VisionSpec) -> None:
    h, f, p = v.hidden_size, v.ffn_size, "model.vision_tower"
    b.raw(f"{p}.patch_conv.weight", (h, v.in_channels, v.patch_size, v.patch_size), "vision", "replicated")
    b.norm(f"{p}.ln_pre", h, component="vision")
    for i in range(v.num_layers):
        q = f"{p}.transformer.layers.{i}"
        b.norm(f"{q}.attention_norm", h, component="vision")
        for n in ("q_proj", "k_proj", "v_proj"):
            b.linear(f"{q}.attention.{n}", h, h, "vision", "column")
        b.linear(f"{q}.attention.o_proj", h, h, "vision", "row")
        b.norm(f"{q}.ffn_norm", h, component="vision")
        b.linear(f"{q}.feed_forward.gate_proj", f, h, "vision", "column")
        b.linear(f"{q}.feed_forward.up_proj", f, h, "vision", "column")
        b.linear(f"{q}.feed_forward.down_proj", h, f, "vision", "row")
    m = "model.multi_modal_projector"
    b.norm(f"{m}.norm", h, component="vision")
    b.linear(f"{m}.patch_merger.merging_layer", h, h * v.merge * v.merge, "vision", "replicated")
    b.linear(f"{m}.linear_1", v.out_hidden, h, "vision", "column", bias=v.projector_bias)
    b.linear(f"{m}.linear_2", v.out_hidden, v.out_hidden, "vision", "row", bias=v.projector_bias)


def _llama4_tower(b: _Builder, v: VisionSpec) -> None:
    h, f, p = v.hidden_size, v.ffn_size, "vision_model"
    side = v.image_size // v.patch_size
    b.raw(f"{p}.class_embedding", (h,), "vision", "replicated")
    b.raw(f"{p}.positional_embedding_vlm", (side * side + 1, h), "vision", "replicated")
    b.linear(f"{p}.patch_embedding.linear", h, v.in_channels * v.patch_size * v.patch_size, "vision", "replicated")
    b.norm(f"{p}.layernorm_pre", h, bias=True, component="vision")
    b.norm(f"{p}.layernorm_post", h, bias=True, component="vision")
    for i in range(v.num_layers):
        q = f"{p}.model.layers.{i}"
        for n in ("q_proj", "k_proj", "v_proj"):
            b.linear(f"{q}.self_attn.{n}", h, h, "vision", "column", bias=True)
        b.linear(f"{q}.self_attn.o_proj", h, h, "vision", "row", bias=True)
        b.linear(f"{q}.mlp.fc1", f, h, "vision", "column", bias=True)
        b.linear(f"{q}.mlp.fc2", h, f, "vision", "row", bias=True)
        b.norm(f"{q}.input_layernorm", h, bias=True, component="vision")
        b.norm(f"{q}.post_attention_layernorm", h, bias=True, component="vision")
    b.linear(f"{p}.vision_adapter.mlp.fc1", v.adapter_dim, f, "vision", "replicated")
    b.linear(f"{p}.vision_adapter.mlp.fc2", v.adapter_out, v.adapter_out, "vision", "replicated")
    b.linear("multi_modal_projector.linear_1", v.out_hidden, v.projector_in, "vision", "replicated")


@lru_cache(maxsize=32)
def vision_tensor_table(v: VisionSpec) -> tuple[TensorInfo, ...]:
    """Every parameter of the tower and its projector, under transformers 5 module names (component "vision")."""
    b = _Builder()
    {"qwen2_5_vl": _qwen_tower, "qwen3_vl": _qwen_tower, "siglip": _siglip_tower, "pixtral": _pixtral_tower,
     "llama4": _llama4_tower}[v.kind](b, v)
    return tuple(b.tensors)


def vision_table(spec: ModelSpec) -> tuple[TensorInfo, ...]:
    """The vision tensors of ``spec`` (empty for a text model)."""
    return vision_tensor_table(spec.vision) if spec.vision else ()


def vision_params(spec: ModelSpec) -> int:
    """Parameters of the vision tower and projector (0 for a text model)."""
    return sum(t.numel for t in vision_tensor_table(spec.vision)) if spec.vision else 0


def vision_forward_flop(spec: ModelSpec, height: int, width: int) -> int:
    """FLOPs of the tower and projector for one image's forward pass, as PyTorch's FlopCounterMode counts them:
    2 per weight of each matrix product (the Linears and the patch-embedding convolution) per patch in the blocks,
    per merged token in the projector, plus 4·h·n² per attention block of n patches (Q·Kᵀ and the weighted sum of
    V, bidirectional; Qwen2.5-VL's window layers over ``window_size`` windows). Norms, biases, activations and
    position embeddings are not matrix products and are left out."""
    v = spec.vision
    if v is None:
        return 0
    if v.kind == "llama4":
        return _llama4_forward_flop(v, llama4_tiles(v, height, width))
    patches = image_patches(v, height, width)
    merged = patches // (v.merge * v.merge)
    tower = proj = 0
    for t in vision_tensor_table(v):
        matmul = t.linear or t.name.endswith(("patch_embed.proj.weight", "patch_embedding.weight",
                                               "patch_conv.weight", "mm_input_projection_weight"))
        if not matmul:
            continue
        if ".merger" in t.name or "merger_list" in t.name or "multi_modal_projector" in t.name:
            proj += t.numel
        else:
            tower += t.numel
    attn = 0
    full = 4 * v.hidden_size * patches * patches
    for i in range(v.num_layers):
        if v.kind == "qwen2_5_vl" and i not in v.full_attention_layers:
            attn += 4 * v.hidden_size * window_key_sum(v, height, width)
        else:
            attn += full
    return 2 * tower * patches + 2 * proj * merged + attn


def _llama4_forward_flop(v: VisionSpec, tiles: int) -> int:
    """Llama 4's tower over ``tiles`` tiles, counted as ``vision_forward_flop`` says: the patch Linear over each
    tile's patches, the blocks' Linears and attention over the patches and the class token, the pixel-shuffle MLP
    and the projector over the merged tokens."""
    side = v.image_size // v.patch_size
    patches, merged = side * side, side * side // (v.merge * v.merge)
    seq = patches + 1
    embed = blocks = adapter = 0
    for t in vision_tensor_table(v):
        if not t.linear:
            continue
        if "patch_embedding" in t.name:
            embed += t.numel
        elif "vision_adapter" in t.name or "multi_modal_projector" in t.name:
            adapter += t.numel
        else:
            blocks += t.numel
    attn = v.num_layers * 4 * v.hidden_size * seq * seq
    return tiles * (2 * embed * patches + 2 * blocks * seq + 2 * adapter * merged + attn)


def block_activation_bytes(v: VisionSpec, dtype_bytes: int) -> int:
    """Bytes one tower block saves for backward per patch, read off CPU traces of transformers 5's towers
    (saved-tensor hooks on a bf16 training forward, ``tests/test_vision.py``), d = ``dtype_bytes``:

    - Qwen2.5-VL: two RMSNorms, each an fp32 copy of its input (4h) and the normalised input (dh); the qkv input,
      the fused qkv output (3dh), q and k after RoPE (2dh), the attention output and the proj input; the gate
      input and the SwiGLU's gate output, up output, activation and product (4df): 8h + 11dh + 4df.
    - Qwen3-VL: two LayerNorm inputs (2dh), the same attention tensors (7dh), the fc1 input, GELU input and fc2
      input (dh + 2df): 11dh + 2df.
    - SigLIP: two LayerNorm inputs, the q input, q, k, v (no RoPE), the attention output, the fc1 input, GELU
      input and fc2 input: 8dh + 2df.
    - Pixtral: two RMSNorms (8h + 2dh), the q input, q and k after RoPE, v and the attention output (5dh), the
      gate input and the SwiGLU's four tensors: 8h + 8dh + 4df.
    - Llama 4: SigLIP's set with q and k after the complex-valued RoPE (whose fp32 copies autograd does not keep:
      the rotation table needs no gradient), and the attention kernel's fp32 log-sum-exp per head: 8dh + 2df +
      4·heads (traced: 32h + 4·heads + 8 bytes at d = 2, f = 4h).
    """
    h, f, d = v.hidden_size, v.ffn_size, dtype_bytes
    return {"qwen2_5_vl": 8 * h + 11 * d * h + 4 * d * f, "qwen3_vl": 11 * d * h + 2 * d * f,
            "siglip": 8 * d * h + 2 * d * f, "pixtral": 8 * h + 8 * d * h + 4 * d * f,
            "llama4": 8 * d * h + 2 * d * f + 4 * v.num_heads}[v.kind]


def edge_activation_bytes(v: VisionSpec, dtype_bytes: int) -> int:
    """Bytes per patch saved outside the blocks: the pixels the patch embedding keeps (C·T·p²·d) and the
    projector's inputs (traced like ``block_activation_bytes``): Qwen2.5-VL's merger RMSNorm (4h + dh) and the
    MLP's three inputs (3dh); Qwen3-VL's merger (3dh) and each DeepStack merger (4dh); SigLIP's post-LayerNorm
    and pooling inputs (2dh) and Gemma 3's fp32 soft-embedding RMSNorm on each pooled token; Pixtral's ln_pre and
    projector RMSNorms (8h + 2dh), the patch merger's input and, per merged token, the two Linears' inputs;
    Llama 4's two LayerNorm inputs (2dh) and, per merged token, the pixel-shuffled patches (d·h·merge²), the two
    GELUs' inputs and the second Linear's and the projector's inputs (4·d·adapter_out)."""
    h, d, m2 = v.hidden_size, dtype_bytes, v.merge * v.merge
    pixels = v.in_channels * v.temporal_patch * v.patch_size * v.patch_size * d
    extra = {"qwen2_5_vl": 4 * h + 4 * d * h,
             "qwen3_vl": 3 * d * h + 4 * d * h * len(v.deepstack_layers),
             "siglip": 2 * d * h + (8 * h + d * h) // m2,
             "pixtral": 8 * h + 3 * d * h + (d * h + 2 * d * v.out_hidden) // m2,
             "llama4": 2 * d * h + (d * h * m2 + 4 * d * v.adapter_out) // m2}[v.kind]
    return pixels + extra


def serving_transient_bytes(v: VisionSpec, patches: int, dtype_bytes: int) -> int:
    """Peak bytes of the tower's no-grad forward over ``patches`` patches (every image of the forward) beyond its
    weights and the pixels: the largest set of tensors live inside one block, read off traces of the tensors
    transformers 5's towers create (bf16, SDPA; ``tests/test_vision.py``). Per patch, d = ``dtype_bytes``, fp32
    tensors 4 bytes, hd the head dimension:

    - held through every block: the block's input (dh); SigLIP's embeddings and Llama 4's and Pixtral's ln_pre
      output, which the tower's forward keeps (dh; Pixtral also its convolution output, dh); Qwen3-VL's
      interpolated position embedding, fp32 (4h); the RoPE tables, Qwen's fp32 cos and sin (8·hd) and
      Pixtral's in the compute dtype (2d·hd);
    - attention: the norm output and q, k, v (4dh), then the rotation. Qwen (``apply_rotary_pos_emb_vision``)
      rotates q and k in fp32: their fp32 copies, rotated q, and for k the products with cos and sin and
      ``rotate_half(k)`` (24h). Llama 4 (``vision_apply_rotary_emb``) keeps q and k as fp32 complex pairs, their
      products with the table (16h) and both rotated back to d (2dh). Pixtral rotates in d (4dh); SigLIP has no
      rotation and keeps the attention output (dh);
    - MLP: the post-attention residual and the norm output (2dh) and the hidden tensors, gated (activation, up,
      product: 3df) or plain (fc1 output and activation: 2df).

    The block's peak is the larger of the two phases. Pixtral adds its block-diagonal attention mask over all
    the forward's patches, d per pair (``generate_block_attention_mask``: one [P, P] tensor).
    """
    h, f, d = v.hidden_size, v.ffn_size, dtype_bytes
    hd = h // v.num_heads
    held = {"qwen2_5_vl": d * h + 8 * hd, "qwen3_vl": d * h + 4 * h + 8 * hd, "siglip": 2 * d * h,
            "pixtral": 3 * d * h + 2 * d * hd, "llama4": 2 * d * h}[v.kind]
    rotation = {"qwen2_5_vl": 24 * h, "qwen3_vl": 24 * h, "llama4": 16 * h + 2 * d * h, "pixtral": 4 * d * h,
                "siglip": d * h}[v.kind]
    attention = 4 * d * h + rotation
    mlp = 2 * d * h + (3 if v.kind in ("qwen2_5_vl", "pixtral") else 2) * d * f
    mask = d * patches * patches if v.kind == "pixtral" else 0
    return (held + max(attention, mlp)) * patches + mask


def vision_activation_bytes(spec: ModelSpec, patches: int, dtype_bytes: int, *, train: bool) -> int:
    """Tower activations for ``patches`` patches in all (every image of the micro-batch).

    Training keeps every block's saved set and the edges' (``block_activation_bytes``,
    ``edge_activation_bytes``). Inference holds one block's live set at a time (``serving_transient_bytes``)."""
    v = spec.vision
    if v is None or patches <= 0:
        return 0
    if train:
        return (v.num_layers * block_activation_bytes(v, dtype_bytes) + edge_activation_bytes(v, dtype_bytes)) * patches
    return serving_transient_bytes(v, patches, dtype_bytes)
