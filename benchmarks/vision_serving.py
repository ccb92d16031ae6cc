"""The vision towers' serving transients at real width: ``vision_activation_bytes(train=False)`` against the peak of
the tensors one no-grad forward of the real tower and projector creates (``gpuplan.verify.cpu_profile
.created_peak_bytes``: real CPU tensors, bf16, SDPA; weights and pixels aside).

Each preset's vision tower is built at its real width and depth by transformers (the text model cut to one small
layer, which the image features never reach) and run over one image.

    python benchmarks/vision_serving.py              # five towers, about a minute and 8 GB of memory
    python benchmarks/vision_serving.py --only qwen  # a subset (regular expression over the preset ids)
"""

from __future__ import annotations

import argparse
import re
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

# (preset, image side in pixels): one image per tower, a size each processor keeps as it is
CASES = (("qwen2.5-vl-7b-instruct", 448), ("qwen3-vl-8b-instruct", 448), ("gemma-3-27b-it", 896),
         ("mistral-small-3.1-24b-instruct-2503", 448), ("llama-4-scout-17b-16e", 336))


def _tower(preset_id: str):
    """The preset's multimodal model with its real tower and a one-layer text model, bf16, eval mode."""
    import torch
    import transformers

    from gpuplan.model.presets import find_preset

    from gpuplan.verify.vision import shrink_text_model

    config = dict(find_preset(preset_id).config)
    conf = transformers.AutoConfig.for_model(**config)
    shrink_text_model(conf)
    model = transformers.AutoModelForImageTextToText.from_config(conf, attn_implementation="sdpa")
    return config, model.to(torch.bfloat16).eval()


def measure(preset_id: str, side: int) -> dict:
    import torch

    from gpuplan.model.hf_config import spec_from_config
    from gpuplan.model.vision import vision_activation_bytes
    from gpuplan.verify.cpu_profile import created_peak_bytes

    t0 = time.perf_counter()
    config, model = _tower(preset_id)
    spec = spec_from_config(config)
    v = spec.vision
    grid = side // v.patch_size
    extra: dict = {}
    if v.kind in ("qwen2_5_vl", "qwen3_vl"):
        pixels = torch.randn(grid * grid, 3 * v.temporal_patch * v.patch_size ** 2, dtype=torch.bfloat16)
        extra = {"image_grid_thw": torch.tensor([[1, grid, grid]])}
    else:
        pixels = torch.randn(1, 3, side, side, dtype=torch.bfloat16)
        if v.kind == "pixtral":
            extra = {"image_sizes": torch.tensor([[side, side]])}
    patches = grid * grid + (1 if v.kind == "llama4" else 0)  # Llama 4's tile adds its class token

    def forward():
        with torch.no_grad():
            if v.kind == "llama4":
                out = model.get_image_features(pixel_values=pixels).last_hidden_state
                return model.multi_modal_projector(out.reshape(-1, out.size(-1)))
            return model.model.get_image_features(pixel_values=pixels, **extra)

    forward()  # lazy buffers
    peak = created_peak_bytes(forward, [*model.parameters(), *model.buffers(), pixels, *extra.values()])
    estimate = vision_activation_bytes(spec, patches, 2, train=False)
    return {"preset": preset_id, "kind": v.kind, "side": side, "patches": patches, "traced_bytes": peak,
            "estimate_bytes": estimate, "error": estimate / peak - 1, "wall_s": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="regular expression over the preset ids")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    from transformers.utils import logging

    logging.set_verbosity_error()
    print("| preset | tower | image | patches | traced peak (bytes) | estimate (bytes) | error | s |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for preset_id, side in CASES:
        if args.only and not re.search(args.only, preset_id):
            continue
        r = measure(preset_id, side)
        print(f"| {r['preset']} | {r['kind']} | {side} x {side} | {r['patches']:,} | {r['traced_bytes']:,} | "
              f"{r['estimate_bytes']:,} | {r['error']:+.2%} | {r['wall_s']:.1f} |")


if __name__ == "__main__":
    main()
