"""Every preset: its computed count matches the published figure, and transformers builds the same tensors."""

import math

import pytest

from gpuplan.model.params import count_params
from gpuplan.model.presets import find_preset, load_presets, parse_published
from gpuplan.model.tensors import tensor_table

PRESETS = sorted(load_presets())

# Published figures that name a size class rather than count the released weights, with the reason.
# (preset id -> relative tolerance used instead of the printed precision)
LOOSE = {
    "llama-2-70b-hf": 0.02,  # "70B" names the class; the checkpoint holds 68.98B
    "meta-llama-3-70b": 0.01, "llama-3.3-70b-instruct": 0.01,  # "70B" for 70.55B
    "mistral-7b-v0.1": 0.01,  # "7.3B" in the announcement; the checkpoint holds 7.24B
    "phi-4": 0.05,  # "14B" for 14.66B
    "falcon-40b": 0.05,  # "40B" for 41.30B
    "gpt2-xl": 0.05,  # "1.5B" for 1.56B
    "qwen2.5-32b": 0.01,  # the card prints 32.5B; the safetensors hold 32.76B
    # "355B" / "106B" name the class: transformers builds 352.8B / 106.85B, the checkpoints add one MTP layer
    "glm-4.5": 0.01, "glm-4.6": 0.01, "glm-4.5-air": 0.01,
    # "109B" counts Llama 4 Scout's vision encoder and projector (0.87B); the text model holds 107.77B
    "llama-4-scout-17b-16e": 0.02,

    # Brown et al. 2020 Table 2.1 rounds to names ("125M", "175B") computed without embeddings conventions.
    **{p: 0.03 for p in PRESETS if p.startswith("gpt3-")},
    # Korthikanti et al. 2022 Table 3 names the models by rounded size.
    **{p: 0.03 for p in PRESETS if p.startswith("megatron-")},
}

# Activated counts that name a class: GLM-4.5-Air's "12B" for 12.80B without the embedding.
LOOSE_ACTIVE = {"glm-4.5-air": 0.07,
                # "A3B" names the class: 3.87B activated (3.56B without the embedding)
                "qwen3-next-80b-a3b-instruct": 0.2}


def test_at_least_40_presets():
    assert len(PRESETS) >= 40


@pytest.mark.parametrize("preset_id", PRESETS)
def test_count_matches_published(preset_id):
    preset = load_presets()[preset_id]
    published, half_unit = parse_published(preset.published_params)
    counts = count_params(preset.spec())
    total = counts.total + counts.vision  # a multimodal checkpoint's published size holds its vision tower
    # One unit of the last printed digit: model cards both round (8.03B) and truncate (7.61B for 7.6156B).
    tol = max(2 * half_unit, LOOSE.get(preset_id, 0.0) * published)
    assert abs(total - published) <= tol, (
        f"{preset_id}: computed {total:,} vs published {preset.published_params} ({preset.published_params_source})")
    if preset.published_active_params:
        # Publishers differ on whether the input embedding (a lookup, no FLOPs) counts as activated:
        # DeepSeek-V2-Lite's 2.4B excludes it, DeepSeek-V3's 37B and Mixtral's 12.9B include it.
        active, half = parse_published(preset.published_active_params)
        counts = count_params(preset.spec())
        tol = max(half, LOOSE_ACTIVE.get(preset_id, 0.03) * active)
        assert min(abs(counts.active - active), abs(counts.active - counts.embedding - active)) <= tol


@pytest.mark.parametrize("preset_id", PRESETS)
def test_preset_has_sources(preset_id):
    p = load_presets()[preset_id]
    assert p.config_source and p.published_params_source


def test_hf_ids_resolve_offline():
    for p in load_presets().values():
        if p.hf_id:
            assert find_preset(p.hf_id).id == p.id
            assert find_preset(p.hf_id.upper()).id == p.id


@pytest.mark.parametrize("preset_id", PRESETS)
def test_preset_matches_transformers(preset_id):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from hf_reference import hf_named_shapes

    p = load_presets()[preset_id]
    ours = {t.name: t.shape for t in tensor_table(p.spec())}
    theirs = hf_named_shapes(p.config)
    assert set(ours) == set(theirs)
    assert {n: s for n, s in ours.items() if theirs[n] != s} == {}
    assert count_params(p.spec()).total == sum(math.prod(s) for s in theirs.values())
