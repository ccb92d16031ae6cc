"""Every preset: its computed count matches the published figure, and transformers builds the same tensors."""

import math

import pytest

from gpuplan.model.params import count_params
from gpuplan.model.presets import find_preset, load_presets, parse_published
from gpuplan.model.tensors import tensor_table

PRESETS = sorted(load_presets())

# Published figures that are not the count of the released architecture, with the reason.
# (preset id -> relative tolerance to use instead of the printed precision)
LOOSE = {
    # Brown et al. 2020 Table 2.1 rounds to names ("125M", "175B") computed without embeddings conventions.
    **{p: 0.03 for p in PRESETS if p.startswith("gpt3-")},
    # Korthikanti et al. 2022 Table 3 names the models by rounded size.
    **{p: 0.03 for p in PRESETS if p.startswith("megatron-")},
}


def test_at_least_40_presets():
    assert len(PRESETS) >= 40


@pytest.mark.parametrize("preset_id", PRESETS)
def test_count_matches_published(preset_id):
    preset = load_presets()[preset_id]
    published, half_unit = parse_published(preset.published_params)
    total = count_params(preset.spec()).total
    tol = max(half_unit, LOOSE.get(preset_id, 0.0) * published)
    assert abs(total - published) <= tol, (
        f"{preset_id}: computed {total:,} vs published {preset.published_params} ({preset.published_params_source})")
    if preset.published_active_params:
        active, half = parse_published(preset.published_active_params)
        assert abs(count_params(preset.spec()).active - active) <= max(half, 0.03 * active)


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
