"""How each vision-language model's image processor turns an image into what its tower encodes and what the text
model reads: the resized size (or Llama 4's tile canvas), the patches the tower's blocks run over, and the positions
the image takes in the text sequence (its tokens and the markers around them). Each rule is the one of the model's
transformers 5 image processor and processor, named in its docstring; ``gpuplan.model.vision`` holds the towers.
"""

from __future__ import annotations

import math

from gpuplan.errors import InputError
from gpuplan.model.spec import VisionSpec

# Text tokens around each image's tokens in the prompt: Qwen's chat template writes
# <|vision_start|><|image_pad|>...<|vision_end|> (2); Gemma3Processor ``full_image_sequence`` is
# "\n\n<start_of_image>" + 256 x <image_soft_token> + "<end_of_image>\n\n" (4); Pixtral's [IMG_BREAK] per row and
# [IMG_END] are counted in ``image_tokens`` itself; Llama4Processor ``_prompt_split_image`` writes <|image_start|>,
# <|image|> before the global tile and <|image_end|> (3), and the tile separators, counted in ``image_tokens``.
_WRAP_TOKENS = {"qwen2_5_vl": 2, "qwen3_vl": 2, "siglip": 4, "pixtral": 0, "llama4": 3}


def resized(v: VisionSpec, height: int, width: int) -> tuple[int, int]:
    """The image size the processor feeds the tower, in pixels.

    Qwen (``smart_resize``, transformers ``image_processing_qwen2_vl.py``): each side rounded to a multiple of
    patch·merge, scaled down under ``max_pixels`` (floor) or up over ``min_pixels`` (ceil), aspect kept.
    SigLIP (Gemma 3): always ``image_size`` square (no pan-and-scan). Pixtral (``get_resize_output_image_size``,
    ``image_processing_pixtral.py``): scaled down (floor) to fit a ``image_size`` square, then each side rounded up
    to a multiple of patch·merge (``Mistral3``'s processor passes ``patch_size · spatial_merge_size``)."""
    if v.kind == "siglip":
        return v.image_size, v.image_size
    if v.kind == "llama4":
        rows, cols = llama4_canvas(v, height, width)
        return rows * v.image_size, cols * v.image_size
    factor = v.patch_size * v.merge
    if v.kind == "pixtral":
        ratio = max(height / v.image_size, width / v.image_size)
        if ratio > 1:
            height, width = int(math.floor(height / ratio)), int(math.floor(width / ratio))
        return ((height - 1) // factor + 1) * factor, ((width - 1) // factor + 1) * factor
    if max(height, width) / min(height, width) > 200:
        raise InputError("image_size", f"{height}x{width}", "must have an aspect ratio below 200 (Qwen's image "
                         "processor refuses longer strips)")
    h_bar, w_bar = round(height / factor) * factor, round(width / factor) * factor
    if h_bar * w_bar > v.max_pixels:
        beta = math.sqrt(height * width / v.max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < v.min_pixels:
        beta = math.sqrt(v.min_pixels / (height * width))
        h_bar, w_bar = math.ceil(height * beta / factor) * factor, math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def _llama4_grids(max_tiles: int) -> list[tuple[int, int]]:
    """The tile grids (rows, columns) of at most ``max_tiles`` tiles, in the order ``find_supported_resolutions``
    lists them: tile counts from ``max_tiles`` down, grouped by aspect ratio in order of first appearance."""
    by_ratio: dict[float, list[tuple[int, int]]] = {}
    for count in range(max_tiles, 0, -1):
        for rows in sorted(d for d in range(1, count + 1) if count % d == 0):
            by_ratio.setdefault(rows / (count // rows), []).append((rows, count // rows))
    return [grid for grids in by_ratio.values() for grid in grids]


def llama4_canvas(v: VisionSpec, height: int, width: int) -> tuple[int, int]:
    """Tiles (rows, columns) of the canvas Llama 4's image processor resizes an image onto (``get_best_fit``):
    each grid's scale is the limiting side's, min(rows·size/height, cols·size/width); the smallest scale of at
    least 1 is taken when one exists (the least upscale), else the largest (the least downscale); among the grids
    with that scale, the first of the smallest area."""
    grids = _llama4_grids(v.max_tiles)
    scales = [min(r * v.image_size / height, c * v.image_size / width) for r, c in grids]
    ups = [x for x in scales if x >= 1]
    chosen = min(ups) if ups else max(scales)
    return min((g for g, x in zip(grids, scales) if x == chosen), key=lambda g: g[0] * g[1])


def llama4_tiles(v: VisionSpec, height: int, width: int) -> int:
    """Tiles Llama 4's tower encodes for one image: the canvas's, plus the global tile when there are several."""
    rows, cols = llama4_canvas(v, height, width)
    return rows * cols + (1 if rows * cols > 1 else 0)


def image_patches(v: VisionSpec, height: int, width: int) -> int:
    """Patches of one image the tower's blocks run over (a still image is one temporal patch; Llama 4: every
    tile's patches and its class token)."""
    if v.kind == "llama4":
        side = v.image_size // v.patch_size
        return llama4_tiles(v, height, width) * (side * side + 1)
    h, w = resized(v, height, width)
    return (h // v.patch_size) * (w // v.patch_size)


def image_tokens(v: VisionSpec, height: int, width: int) -> int:
    """Text-sequence positions one image takes: its merged tokens plus the markers around them (Qwen: vision
    start/end; Gemma 3: 256 soft tokens and the "\\n\\n<start_of_image>" / "<end_of_image>\\n\\n" around them;
    Pixtral: an [IMG_BREAK] after each row of tokens, the last one [IMG_END])."""
    if v.kind == "siglip":
        return v.tokens_per_image + _WRAP_TOKENS["siglip"]
    if v.kind == "llama4":
        # each tile's tokens; with several tiles a separator after each (x between columns, y ending each row)
        per_tile = (v.image_size // (v.patch_size * v.merge)) ** 2
        rows, cols = llama4_canvas(v, height, width)
        tiles = rows * cols * (per_tile + 1) if rows * cols > 1 else 0
        return tiles + per_tile + _WRAP_TOKENS["llama4"]
    h, w = resized(v, height, width)
    rows, cols = h // (v.patch_size * v.merge), w // (v.patch_size * v.merge)
    if v.kind == "pixtral":
        return rows * (cols + 1)
    return rows * cols + _WRAP_TOKENS[v.kind]


def window_key_sum(v: VisionSpec, height: int, width: int) -> int:
    """Σ over attention blocks of (patches in the block)², for one window-attention layer of Qwen2.5-VL: windows
    of ``window_size // merge // patch_size`` merged units per side (``get_window_index``), the last row and column
    of windows cut at the image's edge."""
    h, w = resized(v, height, width)
    unit = v.patch_size * v.merge
    rows, cols, side = h // unit, w // unit, max(1, v.window_size // v.merge // v.patch_size)

    def squares(n: int) -> int:
        return sum(min(side, n - s) ** 2 for s in range(0, n, side))

    return squares(rows) * squares(cols) * v.merge ** 4
