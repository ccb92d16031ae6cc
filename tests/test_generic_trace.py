"""Families gpuplan has no rules for (``gpuplan.verify.generic``): exact tensors from transformers on the meta
device, memory from reduced-depth CPU traces extrapolated per layer kind, within 2 % of the full-depth trace; a
clear error (exit 2) without the ``[verify]`` extra and for remote code."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from gpuplan.cli.main import main
from gpuplan.model.traced import TracedPoint, depths_to_trace, extrapolate, layer_pattern

FAMILIES = Path(__file__).parent / "data" / "families"
OLMOE = str(FAMILIES / "olmoe-tiny.json")
COHERE2 = str(FAMILIES / "cohere2-tiny.json")
GRANITE = str(FAMILIES / "granite-tiny.json")
T5 = str(FAMILIES / "t5-tiny.json")
# a multimodal wrapper whose language model gpuplan has no rules for (Qwen3.5: hybrid linear / full attention), its
# depth and layer_types inside text_config
QWEN3_5 = str(FAMILIES / "qwen3_5-tiny.json")


def _config(path: str) -> dict:
    return json.loads(Path(path).read_text())


# --- the arithmetic (torch-free) ------------------------------------------------------------------------------------

def test_layer_pattern_and_the_depths_traced():
    assert layer_pattern(("A",) * 8) == (0, 1) and depths_to_trace(("A",) * 8) == (2, 3)
    cohere2 = ("S", "S", "S", "F") * 3 + ("S", "S")  # 14 layers: three sliding, one full, repeated
    assert layer_pattern(cohere2) == (0, 4)
    assert depths_to_trace(cohere2) == (6, 10)  # ends as the full model does: whole periods, then two sliding layers
    dense_first = ("D",) * 3 + ("M",) * 20  # DeepSeek-style dense layers before the MoE ones
    assert layer_pattern(dense_first) == (3, 1) and depths_to_trace(dense_first) == (4, 5)
    assert depths_to_trace(("A", "B") * 2) is None  # no copy smaller than the model: traced whole


def test_extrapolation_adds_whole_repeats_of_the_pattern():
    kinds = ("S", "S", "S", "F") * 3 + ("S", "S")
    per = {"S": 1000, "F": 37}

    def point(d: int) -> TracedPoint:
        counts = {k: kinds[:d].count(k) for k in per}
        return TracedPoint(d, counts, {"x_peak": 123 + sum(per[k] * n for k, n in counts.items())}, 0.0)

    first, second = (point(d) for d in depths_to_trace(kinds))
    assert extrapolate(first, second, len(kinds))["x_peak"] == point(len(kinds)).values["x_peak"]


# --- the traced path against the full trace ---------------------------------------------------------------------------

pytest.importorskip("transformers")


@pytest.mark.parametrize("path", [OLMOE, COHERE2, T5, QWEN3_5], ids=["olmoe", "cohere2", "t5", "qwen3_5"])
def test_training_peak_within_2pct_of_the_full_trace(path):
    from gpuplan.verify.generic import trace_training, traced_model
    from gpuplan.verify.setup import TrainSetup
    from gpuplan.verify.trace import measure_training

    config = _config(path)
    model = traced_model(config, "tiny")
    setup = TrainSetup(batch=2, seq=128)
    traced = trace_training(config, model, setup)
    full = measure_training(config, setup)
    assert traced.depths == depths_to_trace(model.layer_kinds) and max(traced.depths) < model.num_layers
    assert abs(traced.peak()[1] - full.allocated_peak_bytes) <= 0.02 * full.allocated_peak_bytes
    for key in ("weights_bytes", "gradients_bytes", "optimizer_bytes", "activations_bytes"):
        assert abs(traced.values[key] - full.components[key]) <= 0.02 * full.components[key], key
    assert model.params_total == full.params_total


def test_cohere2_has_two_layer_kinds():
    """Sliding and full-attention layers hold the same tensors; the per-layer setting makes them two kinds."""
    from gpuplan.verify.generic import traced_model

    model = traced_model(_config(COHERE2), "cohere2-tiny")
    assert model.layer_kinds == ("1", "1", "1", "2") * 3 + ("1", "1")
    assert "sliding_attention" in model.layer_settings[0] and "full_attention" in model.layer_settings[3]


@pytest.mark.parametrize("path", [OLMOE, COHERE2, T5, QWEN3_5], ids=["olmoe", "cohere2", "t5", "qwen3_5"])
def test_prefill_peak_within_2pct_of_the_full_trace(path):
    from gpuplan.verify.build import is_encoder_decoder
    from gpuplan.verify.generic import trace_prefill, traced_model
    from gpuplan.verify.setup import PrefillSetup
    from gpuplan.verify.trace import measure_prefill, measure_seq2seq_prefill

    config = _config(path)
    setup = PrefillSetup(batch=2, context=128)
    traced = trace_prefill(config, traced_model(config, "tiny"), setup)
    full = (measure_seq2seq_prefill if is_encoder_decoder(config) else measure_prefill)(config, setup)
    assert abs(traced.peak()[1] - full.allocated_peak_bytes) <= 0.02 * full.allocated_peak_bytes
    assert abs(traced.values["kv_cache_bytes"] - full.components["kv_cache_bytes"]) <= 0.02 * full.components[
        "kv_cache_bytes"]


def test_granite_count_equals_the_llama_rule_for_the_same_dimensions():
    """Granite's layers are Llama's (the multipliers are scalars): the meta-device count must equal gpuplan's own
    Llama count for the same sizes."""
    from gpuplan.model.hf_config import spec_from_config
    from gpuplan.model.params import count_params
    from gpuplan.verify.generic import traced_model

    config = _config(GRANITE)
    llama = {k: v for k, v in config.items() if not k.endswith(("multiplier", "scaling")) and k != "architectures"}
    llama["model_type"] = "llama"
    model = traced_model(config, "granite-tiny")
    assert model.params_total == count_params(spec_from_config(llama)).total
    assert model.component_params()["lm_head"] == 0  # tied to the embedding, counted once


# --- the commands ---------------------------------------------------------------------------------------------------

def _run(argv, capsys):
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_params_says_it_traced(capsys):
    code, out, _ = _run(["params", OLMOE], capsys)
    assert code == 0
    assert "traced: unknown family olmoe, " in out and "OlmoeForCausalLM" in out
    code, out, _ = _run(["params", OLMOE, "--json"], capsys)
    data = json.loads(out)
    assert data["active"] is None and data["layer_kinds"] == [{"kind": "1", "layers": 8,
                                                              "params_per_layer": data["layers"] // 8}]
    assert data["total"] == data["embedding"] + data["layers"] + data["lm_head"] + data["other"]


def test_train_and_infer_take_the_traced_path(capsys):
    code, out, _ = _run(["train", GRANITE, "--batch", "2", "--seq", "128", "--gpu", "h100-sxm", "--json"], capsys)
    assert code == 0
    data = json.loads(out)
    assert data["fits"] is True and data["memory"]["allocated_peak_bytes"] > data["memory"]["weights_bytes"] > 0
    assert any(w.startswith("traced: unknown family granite, ") for w in data["warnings"])
    code, out, _ = _run(["infer", GRANITE, "--context", "128", "--lang", "zh"], capsys)
    assert code == 0 and "按追踪得出：未知模型族 granite" in out and "KV 缓存" in out


def test_what_the_traces_cannot_show_is_refused(capsys):
    code, _, err = _run(["train", OLMOE, "--gpus", "2", "--dp", "2"], capsys)
    assert code == 2 and "traced path for family olmoe" in err and "one GPU" in err
    code, _, err = _run(["infer", OLMOE, "--engine", "vllm"], capsys)
    assert code == 2 and "--engine" in err
    code, _, err = _run(["train", OLMOE, "--gpus", "2", "--dp", "2", "--lang", "zh"], capsys)
    assert code == 2 and "走追踪路径，只支持：单卡（不支持 --dp/" in err
    code, _, err = _run(["infer", OLMOE, "--prompt", "100", "--context", "128"], capsys)
    assert code == 2 and "--prompt" in err
    code, _, err = _run(["train", OLMOE, "--method", "freeze", "--trainable", "model.layers.7.*"], capsys)
    assert code == 2 and "--trainable" in err and "layer numbers" in err


def test_remote_code_is_refused(tmp_path, capsys):
    remote = tmp_path / "config.json"
    remote.write_text(json.dumps({**_config(OLMOE), "auto_map": {"AutoModelForCausalLM": "modeling_x.XForCausalLM"}}))
    code, _, err = _run(["params", str(remote)], capsys)
    assert code == 2 and "auto_map" in err and "trust_remote_code" in err
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps({"model_type": "no_such_family_xyz", "hidden_size": 64}))
    code, _, err = _run(["train", str(unknown)], capsys)
    assert code == 2 and "no_such_family_xyz" in err and "trust_remote_code" in err
    vision = tmp_path / "vit.json"  # transformers knows it, but neither as a causal nor as a seq2seq language model
    vision.write_text(json.dumps({"model_type": "vit", "hidden_size": 64, "num_hidden_layers": 2,
                                  "num_attention_heads": 2, "intermediate_size": 128}))
    code, _, err = _run(["params", str(vision)], capsys)
    assert code == 2 and "'vit'" in err and "causal language model" in err


def test_without_the_extra_the_error_names_the_family_and_the_extra(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers raises ImportError
    code, _, err = _run(["params", OLMOE], capsys)
    assert code == 2 and "olmoe" in err and "gpuplan[verify]" in err


def test_the_web_api_refuses_rather_than_traces():
    """A server answers what gpuplan models and leaves minutes of CPU tracing to a local run: 422 on the family."""
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from gpuplan.web.app import create_app

    r = TestClient(create_app()).post("/api/v1/params", json={"config": _config(OLMOE)})
    assert r.status_code == 422 and "olmoe" in r.text


def test_an_encoder_decoder_is_traced_by_layer_pairs(tmp_path, capsys):
    """T5 (AutoModelForSeq2SeqLM): copies cut both stacks alike, so the training step extrapolates by pairs of an
    encoder and a decoder layer (checked against the full trace above); so does its inference, which says what
    its context is; stacks of different depths are refused, naming why."""
    from gpuplan.verify.build import is_encoder_decoder

    config = _config(T5)
    assert is_encoder_decoder(config) and is_encoder_decoder({k: v for k, v in config.items()
                                                              if k != "is_encoder_decoder"})
    assert main(["train", T5, "--seq", "128", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["memory"]["allocated_peak_bytes"] > 0
    assert main(["infer", T5, "--context", "128", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["memory"]["kv_cache_bytes"] > 0 and data["memory"]["peak_phase"] in ("encoder pass", "prefill",
                                                                                     "decode")
    assert any(a.startswith("encoder-decoder: the 128 context tokens") for a in data["assumptions"])
    uneven = tmp_path / "config.json"
    uneven.write_text(json.dumps({**config, "num_decoder_layers": 3}))
    assert main(["train", str(uneven), "--seq", "128"]) == 2
    assert "num_decoder_layers" in capsys.readouterr().err


def test_t5_inference_caches_cross_attention_over_the_prompt():
    """T5's KV cache after the first decode step: every decoder layer's cross-attention keys and values over the
    prompt (2 x heads x d_kv per token, fp32 here) and its self-attention cache of the 2 decoded tokens."""
    from gpuplan.verify.setup import PrefillSetup
    from gpuplan.verify.trace import measure_seq2seq_prefill

    config = _config(T5)
    b, ctx = 2, 128
    m = measure_seq2seq_prefill(config, PrefillSetup(batch=b, context=ctx, dtype="fp32"))
    per_token_layer = 2 * config["num_heads"] * config["d_kv"] * 4
    expected = config["num_decoder_layers"] * b * per_token_layer * (ctx + 2)
    assert m.components["kv_cache_bytes"] == expected
    assert m.extra["encoder_output_bytes"] == b * ctx * config["d_model"] * 4


def test_a_multimodal_wrapper_traces_its_language_model_and_says_what_is_left_out(capsys):
    """An unknown text_config.model_type no longer stops at "not supported": the traced path builds the language
    model transformers builds for causal LM from the wrapper, cutting its depth inside text_config, and the
    warnings name the vision tower it leaves out."""
    code, out, _ = _run(["params", QWEN3_5, "--json"], capsys)
    assert code == 0
    data = json.loads(out)
    assert data["architecture"] == "Qwen3_5ForCausalLM"
    assert [k["layers"] for k in data["layer_kinds"]] == [9, 3]
    assert any("left out: vision_config (qwen3_5_vision, 2 layers, hidden 32)" in w for w in data["warnings"])
    code, out, _ = _run(["train", QWEN3_5, "--batch", "2", "--seq", "128", "--json"], capsys)
    assert code == 0
    data = json.loads(out)
    assert any("qwen3_5 is multimodal: the trace is its language model" in w for w in data["warnings"])
