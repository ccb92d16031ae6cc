"""Every preset: its computed count matches the published figure, and transformers builds the same tensors."""

import datetime
import math
import tomllib
from importlib import resources

import pytest

from gpuplan.model.params import count_params
from gpuplan.model.presets import MODALITIES, find_preset, load_presets, parse_published
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
    # the hub's "685B" counts the MTP module with the embedding and head copies the checkpoint stores (11.62B +
    # 1.85B): transformers builds 671.88B, 685.35B with them
    "deepseek-v3.2": 0.025,
    # "400B" names Llama 4 Maverick's class: 401.58B with its vision encoder and projector (0.87B)
    "llama-4-maverick-17b-128e": 0.005,
    # BERT's "340M" (Devlin et al. 2018) names the class: BertForMaskedLM holds 335.17M
    "bert-large-uncased": 0.02,
    # The T5 paper (section 3.7) and the Flan-T5 paper (Table 2) name sizes: "220M" for 222.90M, "770M" for 737.67M,
    # "80M" / "250M" / "780M" for 76.96M / 247.58M / 783.15M
    "t5-base": 0.02, "t5-large": 0.05, "flan-t5-small": 0.04, "flan-t5-base": 0.01, "flan-t5-large": 0.005,

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


@pytest.mark.parametrize("preset_id", PRESETS)
def test_preset_has_release_date_and_modality(preset_id):
    """Every preset says when it was published (a date TOML parses, not in the future, not before BERT's 2018 checkpoints), where that
    date is printed (the source names the same day), and what the checkpoint takes in; a multimodal checkpoint's preset names what it leaves out."""
    p = load_presets()[preset_id]
    assert isinstance(p.released, datetime.date) and not isinstance(p.released, datetime.datetime)
    assert datetime.date(2018, 6, 1) <= p.released <= datetime.date.today()
    assert p.released.isoformat() in p.released_source, f"{preset_id}: {p.released} vs {p.released_source!r}"
    assert p.modality in MODALITIES
    multimodal_parts = p.left_out is not None or "text_config" in p.config or "vision_config" in p.config
    assert (p.modality == "vision-language") == multimodal_parts, (
        f"{preset_id}: modality {p.modality!r}, but left_out={p.left_out!r}, text_config: {'text_config' in p.config}")


def test_release_dates_are_toml_dates_in_every_file():
    """released is written as a TOML date (2024-07-23), never as text that a reader would have to parse."""
    for entry in (resources.files("gpuplan.data") / "presets").iterdir():
        if entry.name.endswith(".toml"):
            for raw in tomllib.loads(entry.read_text(encoding="utf-8"))["preset"]:
                assert type(raw.get("released")) is datetime.date, (entry.name, raw["id"], raw.get("released"))


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


# The releases people ask about most (gpt-oss, Llama 4, Qwen3 and Qwen3-Next, GLM-4.5/4.6, Kimi K2, DeepSeek V3.x,
# Mistral Small 3.x): each is a preset of its own, so it carries its own release date and config.
CURRENT_RELEASES = (
    "openai/gpt-oss-20b", "openai/gpt-oss-120b",
    "meta-llama/Llama-4-Scout-17B-16E", "meta-llama/Llama-4-Maverick-17B-128E",
    "Qwen/Qwen3-0.6B", "Qwen/Qwen3-1.7B", "Qwen/Qwen3-4B", "Qwen/Qwen3-8B", "Qwen/Qwen3-14B", "Qwen/Qwen3-32B",
    "Qwen/Qwen3-30B-A3B", "Qwen/Qwen3-235B-A22B", "Qwen/Qwen3-30B-A3B-Instruct-2507",
    "Qwen/Qwen3-235B-A22B-Instruct-2507", "Qwen/Qwen3-Coder-480B-A35B-Instruct",
    "Qwen/Qwen3-Next-80B-A3B-Instruct",
    "zai-org/GLM-4.5", "zai-org/GLM-4.5-Air", "zai-org/GLM-4.6",
    "moonshotai/Kimi-K2-Instruct", "moonshotai/Kimi-K2-Instruct-0905",
    "deepseek-ai/DeepSeek-V3", "deepseek-ai/DeepSeek-R1", "deepseek-ai/DeepSeek-V3.1",
    "deepseek-ai/DeepSeek-V3.1-Terminus",
    "mistralai/Mistral-Small-3.1-24B-Instruct-2503", "mistralai/Mistral-Small-3.2-24B-Instruct-2506",
)


@pytest.mark.parametrize("hf_id", CURRENT_RELEASES)
def test_current_releases_are_presets_of_their_own(hf_id):
    p = find_preset(hf_id)
    assert p is not None and p.hf_id == hf_id, f"{hf_id} resolves to {p and p.id} (an alias shares another's date)"
    assert p.released >= datetime.date(2024, 12, 1)  # DeepSeek-V3 (2024-12-26) is the oldest of them


def test_deepseek_v32_counts_the_indexer_and_the_estimates_refuse_it(capsys):
    """DeepSeek-V3.2 is DeepSeek-V3.1-Terminus plus, in every layer, the lightning indexer of DeepSeek Sparse
    Attention (transformers DeepseekV32Indexer: wq_b [H*d, q_lora], wk [d, h], k_norm LayerNorm(d) with bias,
    weights_proj [H, h]). params counts it; the estimates that would leave its activations, key cache and FLOPs out
    refuse the model by name."""
    from gpuplan.cli.main import main
    from gpuplan.errors import InputError
    from gpuplan.model.hf_config import spec_from_config

    v32, terminus = load_presets()["deepseek-v3.2"], load_presets()["deepseek-v3.1-terminus"]
    heads, d, q_lora, h = 64, 128, 1536, 7168
    per_layer = heads * d * q_lora + d * h + 2 * d + heads * h
    assert count_params(v32.spec()).total - count_params(terminus.spec()).total == 61 * per_layer
    assert count_params(v32.spec()).mtp - count_params(terminus.spec()).mtp == per_layer  # the MTP layer has one too
    for argv in (["train", "deepseek-v3.2", "--gpu", "h100-sxm"], ["infer", "deepseek-v3.2"],
                 ["time", "deepseek-v3.2", "--tokens", "1T", "--gpus", "8"], ["plan", "deepseek-v3.2", "--gpu", "h100-sxm", "--gpus", "64"]):
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "model='deepseek-v3.2': uses DeepSeek Sparse Attention (deepseek_v32)" in err and "Traceback" not in err
    assert main(["params", "deepseek-v3.2", "--json"]) == 0
    config = {k: v for k, v in v32.config.items() if k != "q_lora_rank"}
    with pytest.raises(InputError, match="q_lora_rank"):
        spec_from_config(config, name="no-query-lora")
