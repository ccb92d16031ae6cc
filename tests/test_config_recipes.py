"""YAML training recipes read as MODEL: torchtune, axolotl, LLaMA-Factory and TRL / Trainer arguments."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from gpuplan import api
from gpuplan.cli.main import main
from gpuplan.configs import detect, read_config

yaml = pytest.importorskip("yaml")

DATA = Path(__file__).parent / "data" / "configs"
TORCHTUNE = ["torchtune_llama3_1_8B_full_single_device.yaml", "torchtune_llama3_1_8B_lora_single_device.yaml",
             "torchtune_llama3_1_8B_qlora_single_device.yaml"]
AXOLOTL = ["axolotl_mistral_qlora.yml", "axolotl_mistral_config.yml"]
LLAMAFACTORY = ["llamafactory_llama3_lora_sft.yaml", "llamafactory_llama3_full_sft.yaml",
                "llamafactory_llama3_lora_sft_otfq.yaml"]
TRL = ["trl_zephyr_sft_full.yaml", "trl_zephyr_sft_qlora.yaml"]
FORMATS = {**{n: "torchtune" for n in TORCHTUNE}, **{n: "axolotl" for n in AXOLOTL},
           **{n: "llama-factory" for n in LLAMAFACTORY}, **{n: "trl" for n in TRL}}


def _leaves(data: dict, prefix: str = "") -> set[str]:
    out = set()
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out |= _leaves(value, dotted + ".")
        else:
            out.add(dotted)
    return out


def _run_json(capsys, argv: list[str]) -> dict:
    assert main(argv + ["--json"]) in (0, 3)
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_detected_by_content(name):
    assert detect(str(DATA / name)) == FORMATS[name]


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_every_key_is_mapped_or_ignored_with_a_reason(name):
    path = DATA / name
    report, model = read_config(str(path), "model", "MODEL")
    data = yaml.safe_load(path.read_text())
    keys = report.keys()
    accounted = {k.split(" (")[0] for k in keys}
    missing = {k for k in _leaves(data) if k not in accounted and not any(k.startswith(a + ".") for a in accounted)}
    assert not missing, missing
    assert all(why for _, why in report.ignored)
    assert report.format == FORMATS[name] and model is not None


# each fixture against the options its keys mean, written by hand
HAND = {
    "torchtune_llama3_1_8B_full_single_device.yaml": [
        "llama-3.1-8b", "--stack", "torchtune", "--batch", "2", "--grad-accum", "1", "--optimizer",
        "paged-adamw-8bit", "--optimizer-in-backward", "on", "--recompute", "full", "--precision", "bf16",
        "--loss", "fused", "--compile", "off"],
    "torchtune_llama3_1_8B_lora_single_device.yaml": [
        "llama-3.1-8b", "--stack", "torchtune", "--method", "lora", "--lora-rank", "8", "--lora-targets",
        "q_proj,v_proj,o_proj,gate_proj,up_proj,down_proj", "--lora-dropout", "0", "--batch", "2", "--grad-accum",
        "8", "--optimizer", "adamw", "--optimizer-impl", "fused", "--loss", "fused", "--precision", "bf16",
        "--recompute", "full", "--compile", "off"],
    "torchtune_llama3_1_8B_qlora_single_device.yaml": [
        "llama-3.1-8b", "--stack", "torchtune", "--method", "qlora", "--qlora-base", "nf4", "--lora-rank", "8",
        "--lora-targets", "q_proj,v_proj,o_proj,gate_proj,up_proj,down_proj", "--lora-dropout", "0",
        "--batch", "2", "--grad-accum", "16", "--optimizer", "adamw", "--optimizer-impl", "fused", "--loss",
        "fused", "--precision", "bf16", "--recompute", "full", "--compile", "off"],
    "axolotl_mistral_qlora.yml": [
        "mistral-7b-v0.1", "--stack", "axolotl", "--method", "qlora", "--qlora-base", "nf4", "--seq", "8192",
        "--lora-rank", "32", "--lora-dropout", "0.05", "--lora-targets", "all-linear", "--grad-accum", "4",
        "--batch", "2", "--optimizer", "adamw-8bit", "--recompute", "full", "--attention", "flash",
        "--precision", "bf16"],
    "axolotl_mistral_config.yml": [
        "mistral-7b-v0.1", "--stack", "axolotl", "--seq", "8192", "--grad-accum", "4", "--batch", "2",
        "--optimizer", "adamw-8bit", "--recompute", "full", "--attention", "flash", "--precision", "bf16"],
    "llamafactory_llama3_lora_sft.yaml": [
        "meta-llama/Meta-Llama-3-8B-Instruct", "--stack", "llama-factory", "--method", "lora", "--lora-rank", "8",
        "--recompute", "full", "--lora-targets", "all-linear", "--seq", "2048", "--batch", "1", "--grad-accum",
        "8", "--precision", "bf16"],
    "llamafactory_llama3_full_sft.yaml": [
        "meta-llama-3-8b", "--stack", "llama-factory", "--method", "full", "--recompute", "full", "--framework",
        "deepspeed", "--seq", "2048", "--batch", "1", "--grad-accum", "2", "--precision", "mixed-bf16"],
    "llamafactory_llama3_lora_sft_otfq.yaml": [
        "meta-llama-3-8b", "--stack", "llama-factory", "--method", "qlora", "--qlora-base", "nf4", "--lora-rank",
        "8", "--recompute", "full", "--lora-targets", "all-linear", "--seq", "2048", "--batch", "1",
        "--grad-accum", "8", "--precision", "bf16"],
    "trl_zephyr_sft_full.yaml": [
        "mistralai/Mistral-7B-v0.1", "--stack", "hf-trainer", "--attention", "flash", "--grad-accum", "1",
        "--recompute", "full", "--seq", "2048", "--batch", "16", "--precision", "bf16"],
    "trl_zephyr_sft_qlora.yaml": [
        "mistral-7b-v0.1", "--stack", "hf-trainer", "--attention", "flash", "--method", "qlora", "--qlora-base",
        "nf4", "--lora-rank", "16", "--lora-dropout", "0.05", "--lora-targets",
        "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj", "--grad-accum", "2", "--recompute", "full",
        "--seq", "2048", "--batch", "4", "--precision", "bf16"],
}


@pytest.mark.parametrize("name", sorted(HAND))
def test_estimate_equals_the_hand_written_options(capsys, name):
    from_file = _run_json(capsys, ["train", str(DATA / name), "--gpu", "h100-sxm"])
    by_hand = _run_json(capsys, ["train", *HAND[name], "--gpu", "h100-sxm"])
    assert from_file.pop("config_file")["format"] == FORMATS[name]
    assert from_file == by_hand  # the whole answer: memory, parameters, fit, assumptions and warnings


def test_command_line_options_win_over_the_recipe(capsys):
    out = _run_json(capsys, ["train", str(DATA / TRL[1]), "--seq", "4096", "--gpu", "h100-sxm"])
    assert out["config_file"]["overridden_by_options"] == ["seq"]
    by_hand = _run_json(capsys, ["train", *HAND[TRL[1]], "--seq", "4096", "--gpu", "h100-sxm"])
    assert out["memory"] == by_hand["memory"]


def test_text_output_lists_the_mapping(capsys):
    assert main(["train", str(DATA / AXOLOTL[0]), "--gpu", "h100-sxm"]) == 0
    out = capsys.readouterr().out
    assert "Config file" in out and "(axolotl):" in out
    assert "adapter -> --method qlora" in out
    assert "lora_target_modules: lora_target_linear: true already targets every linear layer" in out
    assert "stack defaults for what the file did not set:" in out


def test_python_api_takes_a_recipe_path():
    out = api.train(str(DATA / TORCHTUNE[1]), gpu="h100-sxm")
    assert out["model"] == "llama-3.1-8b" and out["config_file"]["format"] == "torchtune"


def test_python_api_takes_a_parsed_recipe_with_a_named_model():
    data = yaml.safe_load((DATA / TRL[1]).read_text())
    out = api.train("llama-3.1-8b", from_file=data, gpu="h100-sxm")
    by_hand = api.train("llama-3.1-8b", stack="hf-trainer", attention="flash", method="qlora", qlora_base="nf4",
                        lora_rank=16, lora_dropout=0.05,
                        lora_targets="q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj", grad_accum=2,
                        recompute="full", seq=2048, batch=4, precision="bf16", gpu="h100-sxm")
    assert out["model"] == "llama-3.1-8b" and out["memory"] == by_hand["memory"]
    assert {"key": "model_name_or_path", "reason": "MODEL names the model"} in out["config_file"]["ignored"]


def test_llamafactory_reads_the_deepspeed_file_it_names(tmp_path, capsys, monkeypatch):
    """The recipe names examples/deepspeed/ds_z3_config.json, relative to where llamafactory-cli runs."""
    (tmp_path / "examples" / "deepspeed").mkdir(parents=True)
    shutil.copy(DATA / "llamafactory_ds_z3_config.json", tmp_path / "examples" / "deepspeed" / "ds_z3_config.json")
    shutil.copy(DATA / LLAMAFACTORY[1], tmp_path / "full.yaml")
    monkeypatch.chdir(tmp_path)
    out = _run_json(capsys, ["train", "full.yaml", "--gpus", "8", "--gpu", "h100-sxm"])
    mapped = {m["key"]: m for m in out["config_file"]["mapped"]}
    assert mapped["deepspeed: zero_optimization.stage"]["value"] == 3
    by_hand = _run_json(capsys, ["train", *HAND[LLAMAFACTORY[1]], "--zero", "3", "--ds-overlap-comm", "off",
                                 "--ds-contiguous-gradients", "on", "--ds-max-live-params", "1e9", "--gpus", "8",
                                 "--gpu", "h100-sxm"])
    assert out["memory"] == by_hand["memory"]


def test_missing_deepspeed_file_is_said(capsys):
    out = _run_json(capsys, ["train", str(DATA / LLAMAFACTORY[1])])
    note = next(m["note"] for m in out["config_file"]["mapped"] if m["key"] == "deepspeed")
    assert "is not here" in note and "--zero" in note


def _write(tmp_path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("name,text,key", [
    ("ax.yml", "base_model: mistralai/Mistral-7B-v0.1\nadapter: lora\nload_in_4bit: true\nsequence_len: 512\n",
     "load_in_4bit"),
    ("ax.yml", "base_model: mistralai/Mistral-7B-v0.1\nadapter: qlora\nsequence_len: 512\n", "adapter"),
    ("ax.yml", "base_model: mistralai/Mistral-7B-v0.1\nmicro_batch_size: two\n", "micro_batch_size"),
    ("ax.yml", "base_model: mistralai/Mistral-7B-v0.1\nsequence_len: 512\nbf16: true\nfp16: true\n", "fp16"),
    ("tt.yaml", ("model:\n  _component_: torchtune.models.llama3_1.llama3_1_8b\noptimizer_in_bwd: true\n"
                 "gradient_accumulation_steps: 4\n"), "optimizer_in_bwd"),
    ("tt.yaml", "model:\n  _component_: torchtune.models.llama3_1.llama3_1_8b\n  lora_rank: 8\n", "model.lora_rank"),
    ("tt.yaml", "model:\n  _component_: torchtune.models.llama3_1.llama3_1_9b\n", "model._component_"),
    ("tt.yaml", "model:\n  _component_: torchtune.models.llama3_1.llama3_1_8b\nbatch_size: 1.5\n", "batch_size"),
    ("lf.yaml", "model_name_or_path: meta-llama/Meta-Llama-3-8B\nfinetuning_type: full\nquantization_bit: 4\n",
     "quantization_bit"),
    ("lf.yaml", "model_name_or_path: meta-llama/Meta-Llama-3-8B\nstage: dpo\n", "stage"),
    ("trl.yaml", ("model_name_or_path: mistralai/Mistral-7B-v0.1\nper_device_train_batch_size: 2\n"
                  "load_in_4bit: true\n"), "load_in_4bit"),
    ("trl.json", ('{"model_name_or_path": "mistralai/Mistral-7B-v0.1", "per_device_train_batch_size": 2, '
                  '"gradient_checkpointing": "yes"}'), "gradient_checkpointing"),
])
def test_bad_recipes_exit_2_naming_the_key(tmp_path, capsys, name, text, key):
    path = _write(tmp_path, name, text)
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{name}: {key}" in err and "Traceback" not in err


def test_unknown_hub_id_gives_the_offline_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    text = (DATA / AXOLOTL[0]).read_text().replace("mistralai/Mistral-7B-v0.1", "NousResearch/Meta-Llama-3-8B")
    path = _write(tmp_path, "lora.yml", text)
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err
    assert "NousResearch/Meta-Llama-3-8B" in err and "HF_HUB_OFFLINE" in err


def test_yaml_without_pyyaml_is_a_clear_error(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "yaml", None)
    assert main(["train", str(DATA / AXOLOTL[0])]) == 2
    assert "PyYAML" in capsys.readouterr().err


@pytest.mark.parametrize("name,text", [
    ("scenario.yaml", "model: llama-3.1-8b\nbatch: 4\nseq: 2048\ngrad_accum: 2\n"),
    ("config.json", '{"model_type": "llama", "hidden_size": 64, "per_device_train_batch_size": 1}'),
    ("other.yaml", "model:\n  name: llama3\nbatch_size: 2\n"),
])
def test_other_files_are_not_recipes(tmp_path, name, text):
    assert detect(str(_write(tmp_path, name, text))) is None


def test_trainer_arguments_json_is_not_taken_for_deepspeed(tmp_path):
    path = _write(tmp_path, "args.json", '{"model_name_or_path": "mistralai/Mistral-7B-v0.1", '
                                         '"per_device_train_batch_size": 2, "gradient_accumulation_steps": 4}')
    assert detect(str(path)) == "trl"
    assert detect(str(DATA / "qwen_ds_config_zero2.json")) == "deepspeed"


def test_a_pasted_recipe_reads_no_file(tmp_path, monkeypatch):
    """The web API's pasted from_file: a DeepSpeed path in it is named, never opened."""
    (tmp_path / "ds.json").write_text('{"zero_optimization": {"stage": 3}}')
    monkeypatch.chdir(tmp_path)
    data = {"model_name_or_path": "mistralai/Mistral-7B-v0.1", "per_device_train_batch_size": 2,
            "deepspeed": "ds.json", "bf16": True}
    report, _ = read_config(data, "from", "from_file")
    values = report.values
    assert values["framework"] == "deepspeed" and "zero" not in values
    assert values["precision"] == "mixed-bf16"


def test_every_torchtune_builder_names_a_preset():
    from gpuplan.configs.torchtune import BUILDERS
    from gpuplan.model.presets import load_presets

    assert set(BUILDERS.values()) <= set(load_presets())


def test_axolotl_fsdp_config_alone_is_full_sharding(tmp_path, capsys):
    path = _write(tmp_path, "fsdp.yml", "base_model: meta-llama/Llama-3.1-8B\nsequence_len: 2048\nmicro_batch_size: 1\n"
                                        "fsdp_version: 2\nfsdp_config:\n  offload_params: true\n"
                                        "  state_dict_type: FULL_STATE_DICT\n")
    out = _run_json(capsys, ["train", str(path), "--gpus", "8"])
    by_hand = _run_json(capsys, ["train", "llama-3.1-8b", "--stack", "axolotl", "--seq", "2048", "--batch", "1",
                                 "--zero", "3", "--offload", "optimizer+params", "--precision", "fp32", "--gpus", "8"])
    assert out["memory"] == by_hand["memory"]


def test_plan_reads_a_full_fine_tuning_recipe(capsys):
    from_file = _run_json(capsys, ["plan", str(DATA / AXOLOTL[1]), "--gpu", "h100-sxm", "--gpus", "8"])
    by_hand = _run_json(capsys, ["plan", "mistral-7b-v0.1", "--framework", "torch", "--seq", "8192", "--micro-batch",
                                 "2", "--recompute", "full", "--precision", "bf16", "--gpu", "h100-sxm", "--gpus", "8"])
    assert from_file["plans"] == by_hand["plans"]
    ignored = {i["key"]: i["reason"] for i in from_file["config_file"]["ignored"]}
    assert "not a plan setting" in ignored["optimizer"]


def test_plan_refuses_an_adapter_recipe(capsys):
    assert main(["plan", str(DATA / AXOLOTL[0]), "--gpu", "h100-sxm", "--gpus", "8"]) == 2
    err = capsys.readouterr().err
    assert "axolotl_mistral_qlora.yml: adapter" in err and "gpuplan train FILE" in err


def test_plan_takes_deepspeeds_global_batch(capsys):
    out = _run_json(capsys, ["plan", "llama-3.1-8b", "--from", str(DATA / "dsexamples_zero2.json"), "--gpu",
                             "h100-sxm", "--gpus", "8"])
    by_hand = _run_json(capsys, ["plan", "llama-3.1-8b", "--framework", "deepspeed", "--zero", "2", "--precision",
                                 "mixed-fp16", "--global-batch", "16", "--gpu", "h100-sxm", "--gpus", "8"])
    assert out["plans"] == by_hand["plans"]


def test_a_recipe_without_a_model_says_to_use_from(tmp_path, capsys):
    path = _write(tmp_path, "args.yaml", "per_device_train_batch_size: 2\ngradient_checkpointing: true\n")
    assert main(["train", str(path)]) == 2
    assert "names no model" in capsys.readouterr().err
    out = _run_json(capsys, ["train", "llama-3.2-1b", "--from", str(path)])
    assert out["config_file"]["format"] == "trl"


def test_torchtune_distributed_keys_mean_fsdp2(tmp_path, capsys):
    path = _write(tmp_path, "dist.yaml", "model:\n  _component_: torchtune.models.llama3_1.llama3_1_8b\n"
                                         "batch_size: 1\ndtype: bf16\nfsdp_cpu_offload: true\n"
                                         "custom_sharded_layers: ['tok_embeddings', 'output']\n")
    out = _run_json(capsys, ["train", str(path), "--gpus", "8"])
    by_hand = _run_json(capsys, ["train", "llama-3.1-8b", "--stack", "torchtune", "--batch", "1", "--precision",
                                 "bf16", "--zero", "3", "--offload", "optimizer+params", "--gpus", "8",
                                 "--fsdp-embedding-groups", "on"])
    assert out["memory"] == by_hand["memory"]
    root = _run_json(capsys, ["train", "llama-3.1-8b", "--stack", "torchtune", "--batch", "1", "--precision",
                              "bf16", "--zero", "3", "--offload", "optimizer+params", "--gpus", "8"])
    # the embedding (1.0 GiB in bf16) no longer unsharded through the step
    assert out["memory"]["allocated_peak_bytes"] < root["memory"]["allocated_peak_bytes"] - 2**29


def test_torchtune_custom_sharded_layers_other_than_both_ends_are_refused(tmp_path, capsys):
    path = _write(tmp_path, "dist.yaml", "model:\n  _component_: torchtune.models.llama3_1.llama3_1_8b\n"
                                         "batch_size: 1\ncustom_sharded_layers: ['output']\n")
    assert main(["train", str(path), "--gpus", "8"]) == 2
    err = capsys.readouterr().err
    assert "custom_sharded_layers" in err and "tok_embeddings" in err
