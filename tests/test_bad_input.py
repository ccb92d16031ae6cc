"""Bad input on the command line and in files: always exit 2 with a message naming the field, the value and the
rule; never a traceback, an "internal error" (exit 1), or a silent absurd number."""

from __future__ import annotations

import copy
import json
import math

import pytest

from gpuplan.cli.main import main
from gpuplan.errors import InputError
from gpuplan.model.presets import load_presets

LLAMA = {"model_type": "llama", "hidden_size": 4096, "intermediate_size": 14336, "num_attention_heads": 32,
         "num_hidden_layers": 32, "num_key_value_heads": 8, "vocab_size": 128256, "max_position_embeddings": 8192}
QWEN_MOE = {"model_type": "qwen2_moe", "hidden_size": 2048, "intermediate_size": 5632, "num_attention_heads": 16,
            "num_hidden_layers": 24, "num_key_value_heads": 16, "vocab_size": 151936, "num_experts": 60,
            "num_experts_per_tok": 4, "moe_intermediate_size": 1408, "shared_expert_intermediate_size": 5632}


def run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # pragma: no cover - main returns codes; argparse exits are caught there
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def refused(capsys, *argv: str, field: str | None = None) -> str:
    """Run ``argv``; it must be exit 2 with one error line naming ``field``; return the message."""
    code, _, err = run(capsys, *argv)
    assert code == 2, err
    assert "Traceback" not in err and "internal error" not in err, err
    if field is not None:
        assert field in err, err
    return err


def write_config(tmp_path, config, name: str = "config.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(config))
    return str(path)


# 1. tracebacks from files ------------------------------------------------------------------------------------

def test_non_utf8_scenario_file_is_exit_2(tmp_path, capsys):
    path = tmp_path / "s.toml"
    path.write_bytes(b'model = "llama-3.1-8b"\n\xff\xfe = 1\n')
    assert "is not UTF-8" in refused(capsys, "train", "--config", str(path), field="s.toml")


@pytest.mark.parametrize("name, text", [
    ("deep.toml", "a = " + "[" * 3000 + "]" * 3000 + "\n"),
    ("deep.yaml", "a: " + "[" * 3000 + "]" * 3000 + "\n"),
])
def test_deeply_nested_scenario_file_is_exit_2(tmp_path, capsys, name, text):
    if name.endswith(".yaml"):
        pytest.importorskip("yaml")
    path = tmp_path / name
    path.write_text(text)
    assert "nested too deeply" in refused(capsys, "train", "--config", str(path), field=name)


def test_deeply_nested_config_json_is_exit_2(tmp_path, capsys):
    path = tmp_path / "config.json"
    path.write_text('{"model_type": "llama", "x": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert "nested too deeply" in refused(capsys, "params", str(path), field="config.json")


# 2. config.json shapes ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("base, change, field", [
    (LLAMA, {"num_attention_heads": 0}, "num_attention_heads"),
    (QWEN_MOE, {"decoder_sparse_step": 0}, "decoder_sparse_step"),
    (LLAMA, {"model_type": ["llama"]}, "model_type"),
    (LLAMA, {"layer_types": 5}, "layer_types"),
    (QWEN_MOE, {"mlp_only_layers": 3}, "mlp_only_layers"),
    (LLAMA, {"num_hidden_layers": 10**12}, "num_hidden_layers"),
    (QWEN_MOE, {"num_experts": 100_000}, "num_experts"),
])
def test_config_shapes_are_exit_2(tmp_path, capsys, base, change, field):
    refused(capsys, "params", write_config(tmp_path, {**base, **change}), field=field)


@pytest.mark.parametrize("change, field", [
    ({"quantization_config": {"quant_method": "gptq", "bits": "four"}}, "quantization_config.bits"),
    ({"quantization_config": {"quant_method": "gptq", "bits": -4}}, "quantization_config.bits"),
    ({"quantization_config": {"quant_method": "gptq", "bits": 4, "group_size": 0}}, "group_size"),
    ({"quantization_config": {"quant_method": "fp8", "weight_block_size": [128]}}, "weight_block_size"),
    ({"rope_scaling": {"rope_type": "yarn", "factor": 1e308}}, "rope_scaling.factor"),
    ({"rope_scaling": 1e300}, "rope_scaling"),
])
def test_serving_config_shapes_are_exit_2(tmp_path, capsys, change, field):
    refused(capsys, "infer", write_config(tmp_path, {**LLAMA, **change}), "--gpu", "h100-sxm", field=field)


def test_config_json_with_a_utf8_bom_is_read(tmp_path, capsys):
    path = tmp_path / "config.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(LLAMA).encode())
    code, out, err = run(capsys, "params", str(path), "--json")
    assert code == 0, err
    assert json.loads(out)["total"] > 0


def test_a_model_name_over_255_characters_is_exit_2(capsys):
    assert "at most 255 characters" in refused(capsys, "params", "x" * 300, field="model")


@pytest.mark.parametrize("name", ["./a/b/config.json", "models/org/name", "a/b/c"])
def test_a_path_with_several_slashes_is_a_path_not_a_hub_id(tmp_path, capsys, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    assert "no such config.json" in refused(capsys, "params", name, field="model")
    folder = tmp_path / name.removesuffix("/config.json").removesuffix("config.json")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(LLAMA))
    code, _, err = run(capsys, "params", name)
    assert code == 0, err


def test_a_hub_id_is_exactly_org_slash_name():
    from gpuplan.model.resolve import model_source

    assert model_source("some-org/some-model")[0] == "hub"
    assert model_source("llama-3.1-8b")[0] == "preset"
    assert model_source("org/name/extra")[0] == "path"


# The fuzz: every key of a few real configs, turned into each bad shape, must give exit 0 or 2.
BAD_SHAPES = (0, -1, [1, 2], "x", {"a": 1}, None, 10**30, float("nan"))
FUZZ_PRESETS = ("qwen1.5-moe-a2.7b", "deepseek-v2-lite", "gemma-2-2b", "gpt2")


def _fuzz_cases():
    presets = load_presets()
    for pid in FUZZ_PRESETS:
        config = presets[pid].config
        for key in sorted(config):
            for n, bad in enumerate(BAD_SHAPES):
                yield pytest.param(pid, key, bad, id=f"{pid}-{key}-{n}")


@pytest.mark.parametrize("pid, key, bad", list(_fuzz_cases()))
def test_fuzz_config_keys_never_crash(tmp_path, capsys, pid, key, bad):
    config = copy.deepcopy(load_presets()[pid].config)
    config[key] = bad
    code, _, err = run(capsys, "params", write_config(tmp_path, config))
    assert code in (0, 2), err
    assert "Traceback" not in err and "internal error" not in err, err


QUANT_SHAPES = {"bits": BAD_SHAPES, "group_size": BAD_SHAPES, "weight_block_size": BAD_SHAPES,
                "modules_to_not_convert": BAD_SHAPES, "config_groups": BAD_SHAPES}


@pytest.mark.parametrize("method", ["gptq", "fp8", "compressed-tensors", "modelopt"])
def test_fuzz_quantization_config_never_crashes(tmp_path, capsys, method):
    for key, shapes in QUANT_SHAPES.items():
        for bad in shapes:
            qc = {"quant_method": method, key: bad}
            code, _, err = run(capsys, "infer", write_config(tmp_path, {**LLAMA, "quantization_config": qc}),
                               "--gpu", "h100-sxm", "--json")
            assert code in (0, 2), (key, bad, err)
            assert "internal error" not in err, (key, bad, err)


# 3. non-finite and absurd numbers -------------------------------------------------------------------------------

TIME = ("time", "llama-3.1-8b", "--tokens", "1T", "--gpu", "h100-sxm")


def test_infinite_price_is_exit_2(capsys):
    refused(capsys, *TIME, "--gpus", "8", "--price", "inf", "--json", field="--price")


@pytest.mark.parametrize("days", ["1e-300", "1e-10"])
def test_a_deadline_shorter_than_one_step_is_exit_2(capsys, days):
    assert "one optimizer step" in refused(capsys, *TIME, "--days", days, "--json", field="--days")


def test_more_gpus_than_exist_is_exit_2(capsys):
    assert "more than exist" in refused(capsys, *TIME, "--days", "1e-5", field="--days")


def test_time_json_numbers_are_finite(capsys):
    code, out, err = run(capsys, *TIME, "--days", "30", "--price", "2", "--json")
    assert code == 0, err
    json.loads(out, parse_constant=lambda c: pytest.fail(f"non-finite {c} in the JSON"))


def test_the_json_writer_refuses_non_finite_numbers(capsys):
    from gpuplan.cli.common import print_json

    with pytest.raises(ValueError, match="a.b"):
        print_json({"a": {"b": math.inf}})


@pytest.mark.parametrize("argv, field", [
    (("train", "llama-3.1-8b", "--batch", "1e30"), "--batch"),
    (("train", "llama-3.1-8b", "--gpus", "1e9", "--dp-shard", "7", "--zero", "3"), "--gpus"),
    (("train", "--layers", "32", "--hidden", "4096", "--heads", "32", "--experts", "100000"), "--experts"),
    (("train", "--layers", "2T", "--hidden", "4096", "--heads", "32"), "--layers"),
    (("train", "--layers", "64", "--hidden", "4096", "--heads", "32", "--experts", "8192"), "layers x experts"),
    (("train", "llama-3.1-8b", "--tp", "1.5"), "--tp"),
    (("train", "llama-3.1-8b", "--batch", "2.5"), "--batch"),
    (("infer", "llama-3.1-8b", "--batch", "2.5"), "--batch"),
])
def test_counts_are_bounded_and_whole(capsys, argv, field):
    refused(capsys, *argv, field=field)


def test_cli_and_web_share_one_table_of_bounds():
    from gpuplan.commands import registry
    from gpuplan.limits import COUNT_BOUNDS

    assert registry.COUNT_CAPS is COUNT_BOUNDS
    train = registry.load_commands()["train"]
    assert train.option("layers").maximum == COUNT_BOUNDS["layers"]


def test_typed_config_is_bounded_too():
    from gpuplan.train.config import TrainConfig

    with pytest.raises(InputError, match="--batch"):
        TrainConfig(batch=10**30)


def test_vllm_pool_is_never_negative(capsys):
    code, out, err = run(capsys, "infer", "llama-3.1-8b", "--gpu", "h100-sxm", "--engine", "vllm",
                         "--gpu-memory-utilization", "0.01", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["engine"]["available_kv_bytes"] == 0 and data["engine"]["kv_shortfall_bytes"] > 0
    assert data["fits"] is False
    assert any("no memory left for the KV cache" in w for w in data["warnings"])


# 5. plan, time and train options --------------------------------------------------------------------------------

def test_max_seq_with_context_parallelism(capsys):
    code, out, err = run(capsys, "train", "llama-3.1-8b", "--gpu", "h100-sxm", "--max-seq", "--cp", "2", "--zero",
                         "3", "--recompute", "full", "--json")
    assert code == 0, err
    max_seq = json.loads(out)["max_seq"]
    assert max_seq > 0 and max_seq % 2 == 0


def test_plan_json_when_nothing_fits(capsys):
    code, out, err = run(capsys, "plan", "llama-3.1-70b", "--gpu", "h100-sxm", "--gpus", "1", "--json")
    assert code == 2, err  # docs/interface.md: no layout is exit 2 (3 with --check)
    data = json.loads(out)
    assert data["plans"] == [] and "no layout" in data["reason"]
    code, out, _ = run(capsys, "plan", "llama-3.1-70b", "--gpu", "h100-sxm", "--gpus", "1", "--json", "--check")
    assert code == 3 and json.loads(out)["plans"] == []


@pytest.mark.parametrize("extra, field", [
    (("--tp", "0"), "--tp"),
    (("--tp", "3"), "--tp"),
    (("--ep", "2"), "--ep"),
    (("--micro-batch", "0"), "--micro-batch"),
    (("--vpp", "33"), "--vpp"),
])
def test_plan_names_the_bad_pin(capsys, extra, field):
    err = refused(capsys, "plan", "llama-3.1-8b", "--gpu", "h100-sxm", "--gpus", "8", *extra, field=field)
    assert "no layout" not in err


def test_plan_searches_a_pinned_micro_batch_outside_the_default_set(capsys):
    """A published run used micro-batch 6 (MosaicML MPT-7B on 8 x H100): pinned, it is searched, not refused."""
    code, out, err = run(capsys, "plan", "llama-3.2-1b", "--gpu", "h100-sxm", "--gpus", "8", "--global-batch", "48",
                         "--micro-batch", "6", "--json")
    assert code == 0, err
    assert {p["micro_batch"] for p in json.loads(out)["plans"]} == {6}


def test_plan_empty_gpu(capsys):
    refused(capsys, "plan", "llama-3.1-8b", "--gpu", "", "--gpus", "8", field="--gpu")


def test_list_prices_needs_no_tokens(capsys):
    code, out, err = run(capsys, "time", "--list-prices")
    assert code == 0, err
    assert "h100" in out.lower()
    refused(capsys, "time", "llama-3.1-8b", "--gpu", "h100-sxm", "--gpus", "8", field="--tokens")


@pytest.mark.parametrize("framework", ["deepspeed", "megatron"])
def test_framework_precision_mapping_is_stated(capsys, framework):
    code, out, err = run(capsys, "train", "llama-3.1-8b", "--framework", framework, "--json")
    assert code == 0, err
    assumptions = json.loads(out)["assumptions"]
    assert any("counted as mixed-bf16" in a for a in assumptions)


def test_training_beyond_the_context_length_warns(capsys):
    code, out, err = run(capsys, "train", "llama-2-7b-hf", "--seq", "8192", "--json")
    assert code == 0, err
    assert any("beyond the model's context length 4,096" in w for w in json.loads(out)["warnings"])
    code, out, _ = run(capsys, "train", "llama-2-7b-hf", "--seq", "4096", "--json")
    assert not any("context length" in w for w in json.loads(out)["warnings"])


def test_python_api_names_a_required_option_left_out():
    """Found by benchmarks/fuzz.py: plan through the Python API with no --gpu was a TypeError, not a refusal."""
    from gpuplan import api
    from gpuplan.errors import InputError

    for extra in ({}, {"gpu": None}):
        with pytest.raises(InputError) as err:
            api.run("plan", "qwen2.5-0.5b", gpus=2, **extra)
        assert err.value.field == "--gpu"


@pytest.mark.parametrize("path", ["\x00", "a\x00.json", "x" * 5000 + ".json"])
def test_a_config_file_path_no_file_system_accepts_is_refused(path):
    """Found by benchmarks/fuzz.py: a NUL byte in --from raised ValueError (embedded null byte)."""
    from gpuplan import api
    from gpuplan.errors import InputError

    with pytest.raises(InputError) as err:
        api.run("train", "gemma-2-2b", from_file=path)
    assert err.value.field in ("--from", "from_file")
