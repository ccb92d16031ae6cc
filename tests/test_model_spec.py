"""Config loading, validation and raw-dimension specs: errors name the field, the value and the rule."""

import json

import pytest

from gpuplan.cli.main import main
from gpuplan.errors import InputError
from gpuplan.model.hf_config import spec_from_config
from gpuplan.model.params import count_params
from gpuplan.model.resolve import resolve_model, spec_from_dims

LLAMA_8B = dict(model_type="llama", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                num_attention_heads=32, num_key_value_heads=8, vocab_size=128256, max_position_embeddings=131072)


def test_llama_31_8b_exact_count():
    # Llama-3.1-8B has 8,030,261,248 parameters (safetensors metadata total of meta-llama/Llama-3.1-8B).
    assert count_params(spec_from_config(LLAMA_8B)).total == 8_030_261_248


def test_raw_dims_equal_config():
    spec = spec_from_dims(layers=32, hidden=4096, heads=32, kv_heads=8, ffn=14336, vocab=128256)
    assert count_params(spec).total == 8_030_261_248


def test_unsupported_model_type_names_type_and_list():
    with pytest.raises(InputError) as exc:
        spec_from_config({"model_type": "mamba", "hidden_size": 8})
    assert "mamba" in str(exc.value) and "llama" in str(exc.value)


def test_missing_key_is_named():
    cfg = dict(LLAMA_8B)
    del cfg["num_hidden_layers"]
    with pytest.raises(InputError, match="num_hidden_layers"):
        spec_from_config(cfg)


@pytest.mark.parametrize("key,value,rule", [
    ("num_key_value_heads", 5, "must divide"),
    ("hidden_size", 0, ">= 1"),
    ("num_attention_heads", 30, "must divide hidden_size"),
    ("vocab_size", "big", "integer"),
])
def test_inconsistent_dims(key, value, rule):
    cfg = dict(LLAMA_8B, **{key: value})
    with pytest.raises(InputError, match=rule) as exc:
        spec_from_config(cfg)
    assert key.split("_")[0] in str(exc.value)


def test_top_k_above_experts():
    cfg = dict(LLAMA_8B, model_type="mixtral", num_local_experts=4, num_experts_per_tok=6)
    with pytest.raises(InputError, match="num_experts_per_tok"):
        spec_from_config(cfg)


def test_local_config_path_and_folder(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(LLAMA_8B))
    assert count_params(resolve_model(str(tmp_path))).total == 8_030_261_248
    assert count_params(resolve_model(str(tmp_path / "config.json"))).total == 8_030_261_248


def test_malformed_config_exit_2(tmp_path, capsys):
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    assert main(["params", str(bad)]) == 2
    assert "not valid JSON" in capsys.readouterr().err


def test_incomplete_config_exit_2(tmp_path, capsys):
    cfg = dict(LLAMA_8B)
    del cfg["vocab_size"]
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    assert main(["params", str(tmp_path)]) == 2
    assert "vocab_size" in capsys.readouterr().err


def test_hub_id_offline_error(monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["params", "some-org/some-unknown-model"]) == 2
    err = capsys.readouterr().err
    assert "HF_HUB_OFFLINE" in err and "config.json" in err


def test_hub_id_unreachable_answers_at_once(monkeypatch, capsys):
    """No network: one short connect attempt, then the offline hint (not huggingface_hub's retries)."""
    import socket

    pytest.importorskip("huggingface_hub")
    for var in ("HF_HUB_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    calls = []

    def refuse(address, timeout=None):
        calls.append(address)
        raise OSError(101, "Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", refuse)
    assert main(["params", "some-org/some-unknown-model"]) == 2
    err = capsys.readouterr().err
    assert len(calls) == 1 and "cannot be reached" in err and "Network is unreachable" in err
    assert "config.json" in err


def test_hub_id_from_local_cache(monkeypatch, tmp_path, capsys):
    """A config.json fetched before comes from huggingface_hub's cache without the network."""
    hub = pytest.importorskip("huggingface_hub")
    (tmp_path / "config.json").write_text(json.dumps(LLAMA_8B))

    def cached(repo_id, filename, local_files_only=False, **kw):
        assert local_files_only, "the network must not be tried when the cache has the file"
        return str(tmp_path / "config.json")

    monkeypatch.setattr(hub, "hf_hub_download", cached)
    assert main(["params", "some-org/cached-model", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["total"] == 8_030_261_248


def test_bad_dims_exit_2(capsys):
    assert main(["params", "--layers", "2", "--hidden", "100", "--heads", "3"]) == 2
    assert "heads=3" in capsys.readouterr().err
    assert main(["params", "--layers", "2", "--hidden", "64"]) == 2
    assert "--heads" in capsys.readouterr().err


def test_params_json_keys(capsys):
    assert main(["params", "--layers", "2", "--hidden", "64", "--heads", "4", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) >= {"total", "active", "embedding", "attention", "mlp", "experts", "router", "norm", "lm_head"}
    assert data["total"] == data["active"] == sum(data[k] for k in
                                                   ("embedding", "attention", "mlp", "experts", "router", "norm", "lm_head"))


def test_gpt_oss_defaults_and_tensors():
    """GptOssConfig defaults: alternating sliding (first) / full layers, window 128, q/k/v/o biases; per layer
    one sink logit per head, a biased router and biased experts (counted in ``active``)."""
    from gpuplan.model.tensors import tensor_table

    cfg = {"model_type": "gpt_oss", "hidden_size": 64, "num_hidden_layers": 4, "num_attention_heads": 4,
           "num_key_value_heads": 2, "head_dim": 16, "intermediate_size": 32, "vocab_size": 100,
           "num_local_experts": 8, "num_experts_per_tok": 2}
    s = spec_from_config(cfg)
    assert s.layer_types == ("sliding", "full", "sliding", "full") and s.sliding_window == 128
    assert s.qkv_bias and s.o_bias and s.attention_sinks and s.moe.top_k == 2
    names = {t.name: t.shape for t in tensor_table(s) if t.layer == 0}
    assert names["model.layers.0.self_attn.sinks"] == (4,)
    assert names["model.layers.0.mlp.router.bias"] == (8,)
    assert names["model.layers.0.mlp.experts.7.gate_up_proj.bias"] == (64,)
    assert names["model.layers.0.mlp.experts.7.down_proj.bias"] == (64,)
    c = count_params(s)
    per_expert = 3 * 64 * 32 + 2 * 32 + 64
    assert c.total - c.active == 4 * (8 - 2) * per_expert
