"""Vision towers of multimodal checkpoints: exact parameter counts against transformers, image tokens against the
image processors' rules, and the estimates' vision terms."""

import math

import pytest

from gpuplan.errors import InputError
from gpuplan.model.hf_config import spec_from_config
from gpuplan.model.params import count_params
from gpuplan.model.presets import load_presets, parse_published
from gpuplan.model.tensors import tensor_table
from gpuplan.model.image_processing import image_patches, image_tokens, resized
from gpuplan.model.vision import vision_forward_flop, vision_tensor_table

VISION_PRESETS = sorted(p for p, pr in load_presets().items() if pr.spec().vision is not None)


def test_vision_presets_present():
    assert {"qwen2.5-vl-7b-instruct", "qwen2.5-vl-72b-instruct", "qwen3-vl-8b-instruct", "gemma-3-27b-pt",
            "mistral-small-3.1-24b-instruct-2503", "qwen3-vl-30b-a3b-instruct"} <= set(VISION_PRESETS)


@pytest.mark.parametrize("preset_id", VISION_PRESETS)
def test_whole_model_matches_published(preset_id):
    """The text model plus the tower and projector is the checkpoint's published size."""
    p = load_presets()[preset_id]
    counts = count_params(p.spec())
    published, half = parse_published(p.published_params)
    assert counts.vision > 0
    # one unit of the last printed digit; Llama 4 Maverick's "400B" names the class (401.58B)
    assert abs(counts.total + counts.vision - published) <= max(2 * half, 0.005 * published)


@pytest.mark.parametrize("preset_id", VISION_PRESETS)
def test_whole_model_matches_transformers(preset_id):
    """Every tensor of the tower and projector, by name and shape, and the whole model's count, against the model
    transformers builds on the meta device."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from hf_reference import hf_multimodal_shapes

    p = load_presets()[preset_id]
    spec = p.spec()
    config = dict(p.config)
    text = config.get("text_config") or {}
    if "tie_word_embeddings" not in config and "tie_word_embeddings" in text:
        # Mistral Small 3.1's preset writes the key in text_config only; transformers 5 would apply
        # Mistral3Config's class default (tied) to the wrapper, but the checkpoint stores lm_head (24.01B published)
        config["tie_word_embeddings"] = text["tie_word_embeddings"]
    theirs = hf_multimodal_shapes(config)
    ours = {t.name: t.shape for t in vision_tensor_table(spec.vision)}
    vision_theirs = {n: s for n, s in theirs.items() if n.startswith(("model.visual.", "model.vision_tower.",
                                                                     "model.multi_modal_projector.", "vision_model.",
                                                                     "multi_modal_projector."))}
    assert ours == vision_theirs
    whole = sum(t.numel for t in tensor_table(spec)) + count_params(spec).vision
    assert whole == sum(math.prod(s) for s in theirs.values())


@pytest.mark.parametrize("model_type", ["qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe", "gemma3", "mistral3"])
def test_transformers5_default_configs(model_type):
    """A config as transformers 5 saves it (nested text_config / vision_config, rope_parameters): the same
    tensors as the model it builds, at small depth."""
    pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from hf_reference import hf_multimodal_shapes

    conf = transformers.AutoConfig.for_model(model_type)
    text = conf.get_text_config()
    text.num_hidden_layers = 2
    if getattr(text, "layer_types", None):
        text.layer_types = text.layer_types[:2]
    vc = conf.vision_config
    for key in ("num_hidden_layers", "depth"):
        if hasattr(vc, key):
            setattr(vc, key, 3)
    if hasattr(vc, "deepstack_visual_indexes"):
        vc.deepstack_visual_indexes = [0, 2]
    if hasattr(vc, "fullatt_block_indexes"):
        vc.fullatt_block_indexes = [1]
    if getattr(text, "num_experts", None):  # Qwen3-VL-MoE: a few experts
        text.num_experts, text.num_experts_per_tok = 4, 2
    saved = conf.to_dict()
    spec = spec_from_config(saved)
    theirs = hf_multimodal_shapes(saved)
    ours = {t.name: t.shape for t in tensor_table(spec)} | {t.name: t.shape for t in vision_tensor_table(spec.vision)}
    assert ours == theirs


def test_qwen_smart_resize_matches_transformers():
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    v = load_presets()["qwen2.5-vl-7b-instruct"].spec().vision
    for h, w in [(1024, 1024), (480, 640), (4000, 3000), (20, 50), (1080, 1920), (37, 5000)]:
        assert resized(v, h, w) == smart_resize(h, w, factor=28, min_pixels=56 * 56, max_pixels=28 * 28 * 1280)


def test_image_tokens_per_tower():
    presets = load_presets()
    qwen = presets["qwen2.5-vl-7b-instruct"].spec().vision
    # 1024x1024 rounds to 1008x1008, over max_pixels 28·28·1280: scaled to 980x980, 70x70 patches of 14 px,
    # 35x35 merged tokens, plus vision start/end
    assert (image_patches(qwen, 1024, 1024), image_tokens(qwen, 1024, 1024)) == (4900, 1227)
    gemma = presets["gemma-3-27b-pt"].spec().vision
    assert image_tokens(gemma, 300, 2000) == image_tokens(gemma, 896, 896) == 260  # 256 soft tokens + 4
    assert image_patches(gemma, 10, 10) == 4096
    pixtral = presets["mistral-small-3.1-24b-instruct-2503"].spec().vision
    # 1024x1024 fits the 1540-px edge: 1036x1036 (multiple of 28), 37 rows of 37 tokens + one break/end each
    assert image_tokens(pixtral, 1024, 1024) == 37 * 38
    # 3080x1540 is halved to 1540x770: 55 x 28 tokens (+55 breaks)
    assert image_tokens(pixtral, 3080, 1540) == 55 * 29


def test_window_attention_costs_less_than_full():
    spec = load_presets()["qwen2.5-vl-7b-instruct"].spec()
    v = spec.vision
    flop = vision_forward_flop(spec, 1024, 1024)
    patches = image_patches(v, 1024, 1024)
    linear = 2 * patches * sum(t.numel for t in vision_tensor_table(v) if "merger" not in t.name)
    all_full = 4 * v.hidden_size * patches ** 2 * v.num_layers
    assert linear < flop < linear + all_full + 2 * patches * 30_000_000
    assert flop < vision_forward_flop(load_presets()["qwen3-vl-8b-instruct"].spec(), 1024, 1024) * 2


def test_bad_vision_config_names_key():
    cfg = dict(load_presets()["qwen3-vl-8b-instruct"].config)
    cfg["vision_config"] = {**cfg["vision_config"], "depth": 0}
    with pytest.raises(InputError, match="vision_config.depth"):
        spec_from_config(cfg)
    cfg["vision_config"] = {**cfg["vision_config"], "depth": 27, "deepstack_visual_indexes": [40]}
    with pytest.raises(InputError, match="deepstack_visual_indexes"):
        spec_from_config(cfg)


def _run(capsys, argv):
    import json

    from gpuplan.cli.main import main

    code = main([*argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_train_with_images_adds_tokens_and_tower(capsys):
    """Two 800x600 images: 611 positions each join --seq; the tower's rows are their own terms and raise the peak."""
    _, text = _run(capsys, ["train", "qwen2.5-vl-7b-instruct", "--seq", "2048"])
    _, plain = _run(capsys, ["train", "qwen2.5-vl-7b-instruct", "--seq", str(2048 + 2 * 611)])
    _, vis = _run(capsys, ["train", "qwen2.5-vl-7b-instruct", "--seq", "2048", "--images", "2",
                           "--image-size", "800x600"])
    assert "vision" not in text
    v = vis["vision"]
    assert (v["tokens_per_image"], v["image_tokens_per_sequence"], v["resized"]) == (611, 1222, [812, 588])
    # the text model's components are those of the longer sequence; the tower's are apart
    for key in ("weights_bytes", "gradients_bytes", "activations_bytes", "logits_bytes"):
        assert vis["memory"][key] == plain["memory"][key]
    vp = count_params(load_presets()["qwen2.5-vl-7b-instruct"].spec()).vision
    assert v["params"] == vp and v["weights_bytes"] == 2 * vp  # bf16, one GPU
    assert v["states_bytes"] == 6 * vp  # bf16 gradients + two bf16 AdamW states
    assert v["activations_bytes"] > 0
    grown = vis["memory"]["allocated_peak_bytes"] - plain["memory"]["allocated_peak_bytes"]
    assert v["weights_bytes"] + v["states_bytes"] <= grown <= v["weights_bytes"] + v["states_bytes"] + \
        v["activations_bytes"]
    assert v["flop_per_micro_batch"] == 3 * 2 * v["forward_flop_per_image"]
    assert not any("--images adds them" in w for w in vis["warnings"])
    assert any("within 0.3 % of CPU traces" in w for w in vis["warnings"])
    assert any("fullatt_block_indexes=[7, 15, 23, 31]" in a for a in vis["assumptions"])
    _, explained = _run(capsys, ["train", "qwen2.5-vl-7b-instruct", "--images", "1", "--explain"])
    keys = {t["key"] for t in explained["terms"]}
    assert {"vision_weights_bytes", "vision_states_bytes", "vision_activations_bytes",
            "vision_forward_flop_per_image"} <= keys


def test_frozen_tower_keeps_no_states(capsys):
    _, vis = _run(capsys, ["train", "qwen2.5-vl-7b-instruct", "--method", "lora", "--images", "1"])
    assert vis["vision"]["states_bytes"] == 0
    assert vis["vision"]["flop_per_micro_batch"] == vis["vision"]["forward_flop_per_image"]


def test_infer_with_images(capsys):
    _, text = _run(capsys, ["infer", "gemma-3-27b-pt", "--context", "8192", "--tp", "2"])
    _, vis = _run(capsys, ["infer", "gemma-3-27b-pt", "--context", "8192", "--images", "4", "--tp", "2"])
    v = vis["vision"]
    assert v["tokens_per_image"] == 260 and v["patches_per_image"] == 4096
    assert vis["kv_cache_bytes_per_sequence"] > text["kv_cache_bytes_per_sequence"]
    assert v["weights_bytes"] < 2 * v["params"]  # the Linears split over two ranks
    assert "vision" not in text


@pytest.mark.parametrize("argv, match", [
    (["train", "llama-3.1-8b", "--images", "1"], "vision tower"),
    (["train", "qwen3-vl-8b-instruct", "--image-size", "10x10"], "needs --images"),
    (["train", "qwen3-vl-8b-instruct", "--images", "1", "--image-size", "10x"], "HEIGHTxWIDTH"),
    (["train", "qwen3-vl-8b-instruct", "--images", "1", "--image-size", "0x10"], "between 1 and"),
    (["infer", "qwen3-vl-8b-instruct", "--images", "1", "--engine", "vllm"], "--engine hf only"),
    (["train", "qwen3-vl-8b-instruct", "--images", "1", "--gpu", "h100-sxm", "--max-batch"], "not searched"),
])
def test_image_input_errors(argv, match, capsys):
    from gpuplan.cli.main import main

    assert main(argv) == 2
    assert match in capsys.readouterr().err


def _tiny(model_type, attn="sdpa", **vision):
    """A multimodal model with a one-layer text model and a small tower, in bf16 with SDPA (or ``attn``)
    attention."""
    import torch
    import transformers

    from gpuplan.verify.vision import shrink_text_model

    conf = transformers.AutoConfig.for_model(model_type)
    shrink_text_model(conf)
    for key, value in vision.items():
        setattr(conf.vision_config, key, value)
    torch.manual_seed(0)
    model = transformers.AutoModelForImageTextToText.from_config(conf, attn_implementation=attn)
    return conf, model.to(torch.bfloat16).train()


def _saved_bytes(fn, model) -> int:
    """Bytes of the distinct storages autograd saves during ``fn`` (parameters excluded)."""
    from gpuplan.verify.saved import saved_bytes

    return saved_bytes(fn, model.parameters)


# Towers of 4 blocks, hidden 128, 4 heads, MLP 256, over a 16 x 16 patch grid (224 px at 14-px patches)
_TRACE_CASES = {
    "qwen2_5_vl": dict(depth=4, hidden_size=128, num_heads=4, intermediate_size=256, fullatt_block_indexes=[3]),
    "qwen3_vl": dict(depth=4, hidden_size=128, num_heads=4, intermediate_size=256, deepstack_visual_indexes=[1, 2],
                     num_position_embeddings=64),
    "gemma3": dict(num_hidden_layers=4, hidden_size=128, num_attention_heads=4, intermediate_size=256,
                   image_size=224, patch_size=14, vision_use_head=False),
    "mistral3": dict(num_hidden_layers=4, hidden_size=128, num_attention_heads=4, head_dim=32, intermediate_size=256,
                     image_size=224, patch_size=14),
}


@pytest.mark.parametrize("model_type", sorted(_TRACE_CASES))
def test_training_activations_traced(model_type):
    """The tower's saved activations of a bf16 training forward (CPU trace of transformers 5's tower and
    projector) against ``vision_activation_bytes``: within 4 % (Pixtral's block-diagonal attention mask, one
    [P, P] tensor per image, is not counted: -3 %)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from gpuplan.model.vision import vision_activation_bytes

    conf, model = _tiny(model_type, **_TRACE_CASES[model_type])
    spec = spec_from_config(conf.to_dict())
    grid = torch.tensor([[1, 16, 16]])
    if model_type.startswith("qwen"):
        p = spec.vision.patch_size
        pixels = torch.randn(256, 3 * 2 * p * p, dtype=torch.bfloat16)
        def fn():
            return model.model.get_image_features(pixel_values=pixels, image_grid_thw=grid)
    else:
        pixels = torch.randn(1, 3, 224, 224, dtype=torch.bfloat16)
        extra = {"image_sizes": torch.tensor([[224, 224]])} if model_type == "mistral3" else {}
        def fn():
            return model.model.get_image_features(pixel_values=pixels, **extra)
    traced = _saved_bytes(fn, model)
    estimate = vision_activation_bytes(spec, 256, 2, train=True)
    assert abs(estimate - traced) / traced < 0.04, (estimate, traced)


@pytest.mark.parametrize("model_type", sorted(_TRACE_CASES))
def test_forward_flop_counted_by_pytorch(model_type):
    """``vision_forward_flop`` equals PyTorch's FlopCounterMode over the tower and projector's forward (eager
    attention, whose matrix products the counter sees; Qwen2.5-VL with three window layers and one full)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from torch.utils.flop_counter import FlopCounterMode

    from gpuplan.model.vision import vision_forward_flop

    conf, model = _tiny(model_type, attn="eager", **_TRACE_CASES[model_type])
    spec = spec_from_config(conf.to_dict())
    p = spec.vision.patch_size
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        if model_type.startswith("qwen"):
            model.model.get_image_features(pixel_values=torch.randn(256, 3 * 2 * p * p, dtype=torch.bfloat16),
                                           image_grid_thw=torch.tensor([[1, 16, 16]]))
        else:
            extra = {"image_sizes": torch.tensor([[224, 224]])} if model_type == "mistral3" else {}
            model.model.get_image_features(pixel_values=torch.randn(1, 3, 224, 224, dtype=torch.bfloat16), **extra)
    assert vision_forward_flop(spec, 16 * p, 16 * p) == counter.get_total_flops()


@pytest.mark.parametrize("model_type", sorted(_TRACE_CASES))
def test_serving_transients_against_the_created_tensors(model_type):
    """One block's live set (``vision_activation_bytes(train=False)``) against the peak of the tensors the tower
    and projector's inference forward creates (weights and pixels aside): within 3 % on the small towers (the
    small position and window-index tensors are not counted; at real width every kind is within 0.4 %,
    ``benchmarks/vision_serving.py``)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from gpuplan.model.vision import vision_activation_bytes
    from gpuplan.verify.cpu_profile import created_peak_bytes

    conf, model = _tiny(model_type, **_TRACE_CASES[model_type])
    model.eval()
    spec = spec_from_config(conf.to_dict())
    p = spec.vision.patch_size
    if model_type.startswith("qwen"):
        pixels, extra = torch.randn(256, 3 * 2 * p * p, dtype=torch.bfloat16), {
            "image_grid_thw": torch.tensor([[1, 16, 16]])}
    else:
        pixels = torch.randn(1, 3, 224, 224, dtype=torch.bfloat16)
        extra = {"image_sizes": torch.tensor([[224, 224]])} if model_type == "mistral3" else {}

    def fn():
        with torch.no_grad():
            model.model.get_image_features(pixel_values=pixels, **extra)

    fn()  # first call: lazy buffers
    peak = created_peak_bytes(fn, [*model.parameters(), *model.buffers(), pixels, *extra.values()])
    gap = vision_activation_bytes(spec, 256, 2, train=False) / peak - 1
    assert -0.03 < gap <= 0.0, gap


@pytest.mark.parametrize("model_type", ["qwen2_5_vl", "gemma3"])
def test_measure_vision_saved_runs_the_tower(model_type):
    """gpuplan.verify.vision (the real-width rows of benchmarks/accuracy.py) on a small tower: one 224 x 224 image,
    the patches the processor gives, and the trace beside the estimate (within the small towers' 4 %)."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from gpuplan.verify.vision import measure_vision_saved

    conf, _ = _tiny(model_type, **_TRACE_CASES[model_type])
    r = measure_vision_saved(conf.to_dict(), height=224, width=224)
    assert r["patches"] == 256 and r["resized"] == [224, 224]
    assert abs(r["estimate_bytes"] - r["saved_bytes"]) / r["saved_bytes"] < 0.04
