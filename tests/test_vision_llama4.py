"""Llama 4's vision tower: the canvas its image processor picks, the prompt tokens of an image, the tensors, FLOPs and
saved activations against transformers 5's Llama4VisionModel and projector."""

import pytest

from gpuplan.errors import InputError
from gpuplan.model.hf_config import spec_from_config
from gpuplan.model.presets import load_presets
from gpuplan.model.image_processing import image_patches, image_tokens, llama4_canvas, llama4_tiles
from gpuplan.model.vision import vision_activation_bytes, vision_forward_flop, vision_tensor_table

SCOUT = load_presets()["llama-4-scout-17b-16e"]
# a tower of hidden 128 (4 heads), MLP 512 = 128 / 0.5², over 224-px tiles of 14-px patches: 256 patches + the class
# token, 64 tokens after the pixel shuffle
TINY = dict(hidden_size=128, num_attention_heads=4, intermediate_size=512, image_size=224, patch_size=14,
            projector_input_dim=256, projector_output_dim=256, vision_output_dim=256)


@pytest.mark.parametrize("size, canvas", [
    ((336, 336), (1, 1)),  # fits one tile exactly
    ((200, 300), (1, 1)),  # every grid upscales; (1, 1) and (2, 1) share the least upscale, (1, 1) is smaller
    ((1024, 1024), (4, 4)),  # 3 x 3 would shrink it (1008 px): the least upscale is 4 x 4
    ((768, 1024), (3, 4)),
    ((5000, 100), (15, 1)),  # 15 tiles tall is the least upscale of the 5000-px side
    ((6000, 6000), (4, 4)),  # no grid upscales: the least downscale
])
def test_canvas_follows_the_image_processor(size, canvas):
    # image_processing_llama4.py get_best_fit over find_supported_resolutions(max_patches 16, 336 px); the same rule
    # was checked against transformers' functions on 3,010 image sizes, with no difference
    assert llama4_canvas(SCOUT.spec().vision, *size) == canvas


def test_tiles_tokens_and_patches():
    v = SCOUT.spec().vision
    # one tile: 576 patches -> 144 tokens after the 2x2 pixel shuffle, <|image_start|> <|image|> ... <|image_end|>
    assert (llama4_tiles(v, 336, 336), image_tokens(v, 336, 336), image_patches(v, 336, 336)) == (1, 147, 577)
    # 3 x 4 tiles and the global tile: each row of 4 tiles writes 3 x-separators and one y-separator, so every
    # tile adds 144 + 1 positions; then the global tile's 144 and the three markers
    assert llama4_tiles(v, 768, 1024) == 13
    assert image_tokens(v, 768, 1024) == 12 * 145 + 144 + 3
    assert image_patches(v, 768, 1024) == 13 * 577


def test_bad_pixel_shuffle_ratio_names_the_key():
    cfg = dict(SCOUT.config)
    cfg["vision_config"] = {**cfg["vision_config"], "pixel_shuffle_ratio": 0.3}
    with pytest.raises(InputError, match="pixel_shuffle_ratio"):
        spec_from_config(cfg)


def _tiny(attn: str, depth: int):
    import torch
    import transformers

    conf = transformers.AutoConfig.for_model("llama4")
    text = conf.get_text_config()
    for key, value in dict(num_hidden_layers=1, hidden_size=64, intermediate_size=128, intermediate_size_mlp=128,
                           num_attention_heads=2, num_key_value_heads=1, head_dim=32, vocab_size=256,
                           num_local_experts=2, moe_layers=[0], no_rope_layers=[1], layer_types=["chunked_attention"]
                           ).items():
        setattr(text, key, value)
    for key, value in dict(TINY, num_hidden_layers=depth).items():
        setattr(conf.vision_config, key, value)
    torch.manual_seed(0)
    model = transformers.AutoModelForImageTextToText.from_config(conf, attn_implementation=attn)
    return conf, model.to(torch.bfloat16).train()


def _encode(model, tiles: int):
    import torch

    pixels = torch.randn(tiles, 3, 224, 224, dtype=torch.bfloat16)

    def fn():
        out = model.get_image_features(pixel_values=pixels).last_hidden_state
        return model.multi_modal_projector(out.reshape(-1, out.size(-1)))
    fn.pixels = pixels  # the input, which the caller holds
    return fn


def test_default_config_tensors_match_transformers():
    pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from hf_reference import hf_multimodal_shapes

    conf = transformers.AutoConfig.for_model("llama4")  # transformers 5's defaults: 34 blocks of 768
    saved = conf.to_dict()
    ours = {t.name: t.shape for t in vision_tensor_table(spec_from_config(saved).vision)}
    theirs = hf_multimodal_shapes(saved)
    assert ours == {n: s for n, s in theirs.items() if n.startswith(("vision_model.", "multi_modal_projector."))}


def test_forward_flop_counted_by_pytorch():
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from torch.utils.flop_counter import FlopCounterMode

    conf, model = _tiny("eager", depth=2)
    spec = spec_from_config(conf.to_dict())
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        _encode(model, 1)()
    assert vision_forward_flop(spec, 224, 224) == counter.get_total_flops()


@pytest.mark.parametrize("tiles", [1, 3])
def test_training_activations_traced(tiles):
    """The saved set of a bf16 training forward of the tower and projector (saved-tensor hooks) against
    ``vision_activation_bytes``: the per-block and edge terms within 1 % (the 2-D RoPE table and the SDPA kernel's
    8 bytes per token on the CPU are not counted)."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from gpuplan.verify.saved import saved_bytes

    conf, model = _tiny("sdpa", depth=4)
    spec = spec_from_config(conf.to_dict())
    traced = saved_bytes(_encode(model, tiles), model.parameters)
    estimate = vision_activation_bytes(spec, tiles * 257, 2, train=True)
    assert abs(estimate - traced) / traced < 0.01, (estimate, traced)


def test_serving_transients_against_the_created_tensors():
    """One block's live set against the peak of the tensors the tower and projector's inference forward creates
    (weights and pixels aside): within 1 %."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from gpuplan.verify.cpu_profile import created_peak_bytes

    conf, model = _tiny("sdpa", depth=4)
    model.eval()
    spec = spec_from_config(conf.to_dict())
    encode = _encode(model, 1)

    def fn():
        with torch.no_grad():
            encode()

    fn()  # first call: lazy buffers
    held = [*model.parameters(), *model.buffers(), encode.pixels]
    gap = vision_activation_bytes(spec, 257, 2, train=False) / created_peak_bytes(fn, held) - 1
    assert abs(gap) < 0.01, gap
