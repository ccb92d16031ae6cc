"""A multimodal model's vision tower traced at its real widths: what autograd saves while the tower and its
projector encode one image for training (``get_image_features``), against ``gpuplan.model.vision``.

The tower's patch-merging and rotary code builds tensors whose shapes depend on the image grid's values
(``repeat_interleave`` over the grid, cumulative window lengths), which fake tensors cannot run, so the tower runs
for real on the CPU in bf16 with random weights, beside a one-layer language model. Its wall time is minutes at real
widths (the Qwen2.5-VL-7B tower, 32 blocks of 1,280, over 1,024 patches: about two minutes on two cores).
"""

from __future__ import annotations

import time
import warnings
from typing import Any

from gpuplan.errors import InputError
from gpuplan.model.hf_config import spec_from_config
from gpuplan.model.image_processing import image_patches, llama4_tiles, resized
from gpuplan.model.vision import vision_activation_bytes


# A one-layer, narrow language model beside a real tower: ``get_image_features`` never reaches it, so its size only
# costs building time and memory.
SMALL_TEXT = dict(num_hidden_layers=1, hidden_size=64, intermediate_size=128, num_attention_heads=2,
                  num_key_value_heads=1, head_dim=32, vocab_size=256)


def shrink_text_model(conf) -> None:
    """Cut a multimodal transformers config's language model to ``SMALL_TEXT``, in place (the Qwen towers' merger
    then writes 64 wide)."""
    text = conf.get_text_config()
    for key, value in SMALL_TEXT.items():
        setattr(text, key, value)
    if getattr(text, "layer_types", None):
        text.layer_types = text.layer_types[:1]
    if hasattr(conf.vision_config, "out_hidden_size"):
        conf.vision_config.out_hidden_size = 64


def measure_vision_saved(config: dict[str, Any], *, height: int, width: int) -> dict[str, Any]:
    """Bytes of the distinct storages autograd saves (parameters left out) while the tower of ``config`` (a
    multimodal config.json dict) encodes one ``height`` x ``width`` image in bf16, and gpuplan's estimate of them.

    SigLIP (Gemma 3) takes a fixed square input: its ``image_size`` is set to ``height`` on both sides. Qwen towers
    resize the image as their processor would (``gpuplan.model.image_processing.resized``); Llama 4 encodes the tiles
    its processor cuts (``gpuplan.model.image_processing.llama4_canvas``)."""
    import torch
    import transformers

    from gpuplan.verify.saved import saved_bytes

    cfg = dict(config)
    model_type = cfg.get("model_type")
    if model_type == "gemma3":
        if height != width:
            raise InputError("--image-size", f"{height}x{width}", "SigLIP takes square images: give HxH")
        cfg["vision_config"] = dict(cfg.get("vision_config") or {}, image_size=height)
    spec = spec_from_config(cfg)
    v = spec.vision
    if v is None:
        raise InputError("model", model_type, "has no vision tower gpuplan models")
    flat = {k: val for k, val in cfg.items() if k not in ("model_type", "architectures")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        conf = transformers.AutoConfig.for_model(model_type, **flat)
        text = conf.get_text_config()
        text.num_hidden_layers = 1
        if getattr(text, "layer_types", None):
            text.layer_types = text.layer_types[:1]
        torch.manual_seed(0)
        t0 = time.perf_counter()
        model = transformers.AutoModelForImageTextToText.from_config(conf, dtype=torch.bfloat16).train()
    h, w = resized(v, height, width)
    patches = image_patches(v, height, width)
    if model_type == "llama4":
        # the processor's tiles (and the global tile) as one batch; the projector runs in the model's forward
        tiles = llama4_tiles(v, height, width)
        pixels = torch.randn(tiles, 3, v.image_size, v.image_size, dtype=torch.bfloat16)

        def encode():
            out = model.get_image_features(pixel_values=pixels).last_hidden_state
            return model.multi_modal_projector(out.reshape(-1, out.size(-1)))
    elif model_type.startswith("qwen"):
        p, tp = v.patch_size, getattr(conf.vision_config, "temporal_patch_size", 2)
        grid = torch.tensor([[1, h // p, w // p]])
        pixels = torch.randn(patches, 3 * tp * p * p, dtype=torch.bfloat16)

        def encode():
            return model.model.get_image_features(pixel_values=pixels, image_grid_thw=grid)
    else:
        pixels = torch.randn(1, 3, h, w, dtype=torch.bfloat16)
        extra = {"image_sizes": torch.tensor([[h, w]])} if model_type == "mistral3" else {}

        def encode():
            return model.model.get_image_features(pixel_values=pixels, **extra)
    traced = saved_bytes(encode, model.parameters)
    return {"model_type": model_type, "patches": patches, "resized": [h, w], "saved_bytes": traced,
            "estimate_bytes": vision_activation_bytes(spec, patches, 2, train=True),
            "wall_s": round(time.perf_counter() - t0, 1)}
