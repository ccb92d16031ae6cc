"""Stack config files read into options: torchtitan TOML as MODEL, DeepSpeed JSON with --from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpuplan import api
from gpuplan.cli.main import main
from gpuplan.configs import read_config

DATA = Path(__file__).parent / "data" / "configs"
TITAN = ["torchtitan_llama3_8b.toml", "torchtitan_llama3_70b.toml"]
DEEPSPEED = ["qwen_ds_config_zero2.json", "qwen_ds_config_zero3.json", "dsexamples_zero_offload.json",
             "dsexamples_zero2.json"]


def _file_keys(data: dict, prefix: str = "") -> set[str]:
    """Every leaf key (dotted), and every table a reader accounts for as one key."""
    out = set()
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out |= _file_keys(value, dotted + ".")
        out.add(dotted)
    return out


def _run_json(capsys, argv: list[str]) -> dict:
    assert main(argv + ["--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("name", TITAN + DEEPSPEED)
def test_every_key_is_mapped_or_ignored_with_a_reason(name):
    path = DATA / name
    report, _ = read_config(str(path), "model" if name.endswith(".toml") else "from", "MODEL")
    if name.endswith(".toml"):
        import tomllib
        data = tomllib.loads(path.read_text())
    else:
        data = json.loads(path.read_text())
    accounted = {k.split(" (")[0] for k in report.keys()}
    leaves = {k for k in _file_keys(data) if not any(o.startswith(k + ".") for o in _file_keys(data))}
    missing = {k for k in leaves if k not in accounted and not any(k.startswith(a + ".") for a in accounted)}
    assert not missing, missing
    assert all(why for _, why in report.ignored)


def test_torchtitan_8b_equals_the_hand_written_options(capsys):
    from_file = _run_json(capsys, ["train", str(DATA / TITAN[0]), "--gpus", "64", "--gpu", "a100-80gb"])
    by_hand = _run_json(capsys, ["train", "llama-3.1-8b", "--stack", "torchtitan", "--batch", "1", "--seq", "8192",
                                 "--optimizer", "adamw", "--zero", "3", "--recompute", "selective",
                                 "--selective-policy", "op", "--precision", "amp-bf16", "--gpus", "64",
                                 "--gpu", "a100-80gb"])
    assert from_file["memory"] == by_hand["memory"]
    assert from_file["config_file"]["format"] == "torchtitan"
    assert "config_file" not in by_hand


def test_torchtitan_70b_equals_the_hand_written_options(capsys):
    from_file = _run_json(capsys, ["train", str(DATA / TITAN[1]), "--gpus", "64"])
    by_hand = _run_json(capsys, ["train", "llama-3.1-70b", "--stack", "torchtitan", "--batch", "8", "--seq", "8192",
                                 "--tp", "8", "--sp", "--zero", "3", "--recompute", "full", "--optimizer", "adamw",
                                 "--precision", "amp-bf16", "--gpus", "64"])
    assert from_file["memory"] == by_hand["memory"]


def test_command_line_options_win_over_the_file(capsys):
    out = _run_json(capsys, ["train", str(DATA / TITAN[0]), "--seq", "4096", "--gpus", "8"])
    assert out["config_file"]["overridden_by_options"] == ["seq"]
    by_hand = _run_json(capsys, ["train", "llama-3.1-8b", "--stack", "torchtitan", "--seq", "4096", "--zero", "3",
                                 "--recompute", "selective", "--selective-policy", "op", "--precision", "amp-bf16",
                                 "--optimizer", "adamw", "--gpus", "8"])
    assert out["memory"] == by_hand["memory"]


@pytest.mark.parametrize("name,hand", [
    ("qwen_ds_config_zero2.json", ["--stack", "deepspeed", "--optimizer", "adamw", "--zero", "2", "--ds-overlap-comm",
                                   "on", "--ds-reduce-bucket", "2e8", "--ds-contiguous-gradients", "on"]),
    ("qwen_ds_config_zero3.json", ["--stack", "deepspeed", "--optimizer", "adamw", "--zero", "3", "--ds-overlap-comm",
                                   "on", "--ds-contiguous-gradients", "on", "--ds-max-live-params", "1e9"]),
    ("dsexamples_zero_offload.json", ["--stack", "deepspeed", "--optimizer", "adam", "--zero", "2", "--offload",
                                      "optimizer", "--ds-reduce-bucket", "5e7", "--precision", "mixed-fp16",
                                      "--batch", "12", "--grad-accum", "5"]),
    ("dsexamples_zero2.json", ["--stack", "deepspeed", "--optimizer", "adam", "--zero", "2", "--precision",
                               "mixed-fp16", "--batch", "2", "--grad-accum", "1"]),
])
def test_deepspeed_equals_the_hand_written_options(capsys, name, hand):
    base = ["train", "llama-3.1-8b", "--gpus", "8", "--seq", "1024"]
    from_file = _run_json(capsys, base + ["--from", str(DATA / name)])
    by_hand = _run_json(capsys, base + hand)
    assert from_file["memory"] == by_hand["memory"]
    assert from_file["config_file"]["format"] == "deepspeed"


def test_text_output_lists_the_mapping(capsys):
    assert main(["train", "llama-3.1-8b", "--from", str(DATA / DEEPSPEED[0]), "--gpus", "8"]) == 0
    out = capsys.readouterr().out
    assert "zero_optimization.stage -> --zero 2" in out
    assert "train_batch_size: \"auto\": left to the other options" in out
    assert "stack defaults for what the file did not set:" in out


def test_python_api_takes_a_path_or_the_parsed_file():
    data = json.loads((DATA / DEEPSPEED[2]).read_text())
    by_path = api.train("llama-3.1-8b", from_file=str(DATA / DEEPSPEED[2]), gpus=8)
    by_dict = api.train("llama-3.1-8b", from_file=data, gpus=8)
    assert by_path["memory"] == by_dict["memory"]
    assert api.train(str(DATA / TITAN[0]), gpus=8)["model"] == "llama-3.1-8b"


def _bad(tmp_path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("text,key", [
    ('{"train_batch_size": 64, "train_micro_batch_size_per_gpu": 4, "gradient_accumulation_steps": 4}',
     "train_batch_size"),
    ('{"zero_optimization": {"stage": "two"}}', "zero_optimization.stage"),
    ('{"zero_optimization": {"stage": 2, "overlap_com": true}}', "zero_optimization.overlap_com"),
    ('{"train_micro_batch_size_per_gpu": 1, "fp16": {"enabled": true}, "bf16": {"enabled": true}}', "bf16.enabled"),
])
def test_bad_deepspeed_files_exit_2_naming_the_key(tmp_path, capsys, text, key):
    path = _bad(tmp_path, "ds.json", text)
    assert main(["train", "llama-3.1-8b", "--from", str(path), "--gpus", "8"]) == 2
    assert key in capsys.readouterr().err


@pytest.mark.parametrize("text,key", [
    ('[model]\nname = "llama3"\nflavor = "8B"\n[training]\nseq_len = "long"\n', "training.seq_len"),
    ('[model]\nname = "llama3"\nflavor = "8B"\n[training]\nlocal_batch = 2\n', "training.local_batch"),
    ('[model]\nname = "llama3"\nflavor = "9B"\n[training]\nseq_len = 8\n', "model.flavor"),
])
def test_bad_torchtitan_files_exit_2_naming_the_key(tmp_path, capsys, text, key):
    path = _bad(tmp_path, "job.toml", text)
    assert main(["train", str(path)]) == 2
    assert key in capsys.readouterr().err


def test_a_deepspeed_file_as_model_says_to_use_from(capsys):
    assert main(["train", str(DATA / DEEPSPEED[0])]) == 2
    assert "--from" in capsys.readouterr().err
