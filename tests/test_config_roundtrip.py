"""Configs as the installed transformers writes them load to the same model as the preset they came from.

transformers 5 saves ``attribute_map`` aliases (Qwen3-MoE's ``num_local_experts``), ``rope_parameters`` instead
of ``rope_theta`` / ``rope_scaling``, and every default it filled in; multimodal wrappers nest the text model in
``text_config``. Each preset's config is built into its transformers config class and written out.
"""

import dataclasses
import json
import re
from functools import lru_cache
from importlib import resources

import pytest

from gpuplan.cli.main import main
from gpuplan.model.hf_config import spec_from_config
from gpuplan.model.params import count_params
from gpuplan.model.presets import load_presets

PRESETS = sorted(load_presets())


@lru_cache(maxsize=None)
def _nulls() -> dict[str, tuple[str, ...]]:
    """Keys a preset records as ``null`` in its config.json (TOML has no null: they are comments)."""
    out: dict[str, tuple[str, ...]] = {}
    for entry in (resources.files("gpuplan.data") / "presets").iterdir():
        if entry.name.endswith(".toml"):
            for block in entry.read_text(encoding="utf-8").split("\n[[preset]]\n")[1:]:
                pid = re.search(r'^id = "([^"]+)"', block, re.M).group(1)
                out[pid] = tuple(re.findall(r"^# ([\w.]+) = null in config\.json", block, re.M))
    return out


def _hf_config(preset_id: str):
    import warnings

    from transformers import AutoConfig
    from transformers.utils import logging

    logging.set_verbosity_error()
    p = load_presets()[preset_id]
    cfg = dict(p.config)
    model_type = cfg.pop("model_type")
    model_type = {"kimi_k2": "deepseek_v3"}.get(model_type, model_type)  # a DeepseekV3ForCausalLM config
    for key in _nulls().get(preset_id, ()):
        outer, _, inner = key.rpartition(".")  # text_config.sliding_window: a key of the nested text model
        if outer:
            cfg[outer] = {**cfg[outer], inner: None}
        else:
            cfg[key] = None
    if cfg.get("q_lora_rank") == 0:
        cfg["q_lora_rank"] = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return AutoConfig.for_model(model_type, **cfg)


def _arch(spec):
    return {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec) if f.name not in ("name", "notes")}


@pytest.mark.parametrize("preset_id", PRESETS)
def test_saved_config_loads_to_preset(preset_id):
    pytest.importorskip("transformers")
    saved = json.loads(_hf_config(preset_id).to_json_string())
    preset = load_presets()[preset_id].spec()
    spec = spec_from_config(saved, name=preset_id)
    assert _arch(spec) == _arch(preset)
    assert count_params(spec) == count_params(preset)


def test_save_pretrained_qwen3_moe(tmp_path, capsys):
    """The issue's case: Qwen3-MoE saved by transformers 5 names its experts num_local_experts."""
    pytest.importorskip("transformers")
    _hf_config("qwen3-30b-a3b").save_pretrained(tmp_path)
    written = json.loads((tmp_path / "config.json").read_text())
    assert main(["params", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["total"] == count_params(load_presets()["qwen3-30b-a3b"].spec()).total
    assert "num_local_experts" in written or "num_experts" in written


def test_aliases_read_either_way():
    base = dict(load_presets()["qwen3-30b-a3b"].config)
    n = base.pop("num_experts")
    assert spec_from_config({**base, "num_local_experts": n}).moe.num_experts == n
    ds = dict(load_presets()["deepseek-v3"].config)
    n, mtp = ds.pop("n_routed_experts"), ds.pop("num_nextn_predict_layers")
    spec = spec_from_config({**ds, "num_local_experts": n, "num_mtp_layers": mtp})
    assert (spec.moe.num_experts, spec.mtp_layers) == (n, mtp)


def test_missing_alias_names_both():
    base = dict(load_presets()["qwen3-30b-a3b"].config)
    base.pop("num_experts")
    with pytest.raises(Exception, match="num_experts.*num_local_experts"):
        spec_from_config(base)


def test_multimodal_wrapper_says_what_is_left_out(tmp_path, capsys):
    """A Gemma 3 checkpoint (text_config + vision_config) is estimated by its text model, and says so."""
    pytest.importorskip("transformers")
    from transformers import Gemma3Config

    text = _hf_config("gemma-3-4b-pt").to_dict()
    Gemma3Config(text_config=text).save_pretrained(tmp_path)
    preset = load_presets()["gemma-3-4b-pt"].spec()
    assert main(["params", str(tmp_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["total"] == count_params(preset).total
    assert any("vision_config (siglip_vision_model" in w and "projector" in w for w in out["warnings"])
    assert main(["params", str(tmp_path)]) == 0
    assert "left out: vision_config" in capsys.readouterr().out


@pytest.mark.parametrize("command", [["train", "--gpu", "h100-80gb"], ["infer", "--gpu", "h100-80gb"]])
def test_multimodal_preset_warns(command, capsys):
    """A multimodal model's hub id resolves to its text model's preset, and every estimate says so."""
    assert main([command[0], "google/gemma-3-4b-it", *command[1:], "--json"]) in (0, 3)
    out = json.loads(capsys.readouterr().out)
    text = json.dumps(out)
    assert "gemma-3-4b-pt is multimodal" in text and "vision tower" in text


def test_rope_parameters_per_attention_type():
    """transformers 5 writes Gemma 3's RoPE per attention type; the full-attention entry bounds the context."""
    from gpuplan.infer.source import max_context

    pytest.importorskip("transformers")
    saved = json.loads(_hf_config("gemma-3-4b-pt").to_json_string())
    assert "rope_scaling" not in saved or saved["rope_scaling"] is None
    preset = load_presets()["gemma-3-4b-pt"]
    assert max_context(preset.spec(), saved) == max_context(preset.spec(), dict(preset.config))
    assert "linear" in max_context(preset.spec(), saved)[1]
