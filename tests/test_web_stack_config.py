"""A launch config pasted into the JSON API (``stack_config``) answers as ``gpuplan train|plan|infer FILE`` (or
``MODEL --from FILE``) does on the command line, with the file named '(pasted)'; a text no reader takes is a 4xx
naming the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
pytest.importorskip("yaml")

from fastapi.testclient import TestClient  # noqa: E402

from gpuplan.cli.main import main as cli_main  # noqa: E402
from gpuplan.web.app import create_app  # noqa: E402

CONFIGS = Path(__file__).parent / "data" / "configs"

CASES = [
    # (command, fixture, extra API options, extra CLI arguments, the fixture is MODEL)
    ("train", "torchtune_llama3_1_8B_qlora_single_device.yaml", {"gpu": "a100-40gb"}, ["--gpu", "a100-40gb"], True),
    ("train", "axolotl_mistral_qlora.yml", {"gpu": "a100-40gb"}, ["--gpu", "a100-40gb"], True),
    ("train", "torchtitan_llama3_8b.toml", {"gpus": 64, "gpu": "a100-80gb"}, ["--gpus", "64", "--gpu", "a100-80gb"],
     True),
    ("train", "megatron_mixtral_8x7b.sh", {"gpus": 64}, ["--gpus", "64"], True),
    ("plan", "megatron_mixtral_8x7b.sh", {"gpus": 64, "gpu": "h100-sxm"}, ["--gpus", "64", "--gpu", "h100-sxm"],
     True),
    ("infer", "vllm_gpt2_tp4_pp2.txt", {"gpu": "h100-sxm"}, ["--gpu", "h100-sxm"], True),
    ("train", "qwen_ds_config_zero2.json", {"model": "qwen2.5-7b", "gpus": 8}, ["qwen2.5-7b", "--gpus", "8"], False),
]


@pytest.fixture(scope="module")
def client():
    return TestClient(create_app())


def _cli(argv, capsys):
    assert cli_main(argv + ["--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("command,fixture,api,cli,as_model", CASES, ids=[c[1] + "-" + c[0] for c in CASES])
def test_pasted_launch_config_answers_as_the_cli_reads_the_file(client, capsys, command, fixture, api, cli,
                                                                 as_model):
    path = CONFIGS / fixture
    r = client.post(f"/api/v1/{command}", json={"stack_config": path.read_text(), **api})
    assert r.status_code == 200, r.text
    got = r.json()
    argv = [command, str(path), *cli] if as_model else [command, *cli[:1], "--from", str(path), *cli[1:]]
    want = _cli(argv, capsys)
    assert got["config_file"]["path"] == "(pasted)"
    assert got["config_file"]["format"] == want["config_file"]["format"]
    key = "plans" if command == "plan" else "memory"
    assert got[key] == want[key]


def test_text_no_reader_takes_is_named(client):
    r = client.post("/api/v1/train", json={"stack_config": "just some words", "gpu": "h100-sxm"})
    assert r.status_code in (400, 422)
    assert r.json()["field"] == "stack_config"


def test_a_deepspeed_json_alone_asks_for_the_model(client):
    r = client.post("/api/v1/train", json={"stack_config": (CONFIGS / "qwen_ds_config_zero2.json").read_text()})
    assert r.status_code in (400, 422)
    assert r.json()["field"] == "stack_config" and "names no model" in r.json()["rule"]


def test_time_does_not_take_a_launch_config(client):
    r = client.post("/api/v1/time", json={"stack_config": "x", "model": "llama-3.1-8b"})
    assert r.status_code == 422
