"""``gpuplan time --check``: exit 3 when the run as given cannot work (solved MFU above 1, or fewer GPUs than hold
the training states fully sharded), a warning either way, and the memory floor checked against the engine."""

from __future__ import annotations

import json
import math

import pytest

from gpuplan.cli.main import main
from gpuplan.compute.timecost import states_floor, states_per_gpu_bytes
from gpuplan.hardware.catalog import get_gpu
from gpuplan.model.params import count_params
from gpuplan.model.resolve import resolve_model

FITS = ("llama-3.1-8b", "--tokens", "15T", "--gpus", "1024", "--gpu", "h100-sxm")
SHORT_OF_MEMORY = ("llama-3.1-405b", "--tokens", "15T", "--gpus", "8", "--gpu", "rtx-4090", "--mfu", "0.4")
MFU_ABOVE_1 = ("llama-3.1-8b", "--tokens", "15T", "--gpus", "8", "--days", "1", "--gpu", "h100-sxm")


def time(capsys, *argv: str) -> tuple[int, str]:
    code = main(["time", *argv])
    return code, capsys.readouterr().out


def time_json(capsys, *argv: str) -> tuple[int, dict]:
    code, out = time(capsys, *argv, "--json")
    return code, json.loads(out)


def test_a_run_that_works_passes(capsys):
    assert time(capsys, *FITS, "--check")[0] == 0
    code, data = time_json(capsys, *FITS, "--check")
    assert code == 0 and data["min_gpus_for_states"] == 1
    assert not any("impossible" in w or "cannot hold" in w for w in data["warnings"])


def test_too_few_gpus_for_the_training_states(capsys):
    code, text = time(capsys, *SHORT_OF_MEMORY)
    assert code == 0
    assert "\nwarning: 8 x rtx-4090 cannot hold the training states" in text and "at least 128 GPUs" in text
    assert time(capsys, *SHORT_OF_MEMORY, "--check")[0] == 3
    code, data = time_json(capsys, *SHORT_OF_MEMORY, "--check")
    assert code == 3 and data["min_gpus_for_states"] == 128
    assert any(w.startswith("8 x rtx-4090 cannot hold the training states") for w in data["warnings"])
    assert data["days"] > 0  # the time answer is still given


def test_the_floor_is_the_engines_and_the_zero_papers_accounting():
    """bf16 with AdamW in PyTorch: 2 (weights) + 2 (gradients) + 4 (two bf16 Adam moments) = 8 bytes per parameter,
    all sharded over the data-parallel GPUs under ZeRO-3 (Rajbhandari et al. 2020, arXiv:1910.02054 section 5)."""
    params = count_params(resolve_model("llama-3.1-405b")).total
    usable = get_gpu("rtx-4090").memory_usable_bytes
    floor = states_floor(params, "bf16", usable)
    assert floor.states_bytes == 8 * params
    assert floor.min_gpus == math.ceil(8 * params / usable) == 128
    assert states_per_gpu_bytes(params, "bf16", floor.min_gpus) <= usable
    assert states_per_gpu_bytes(params, "bf16", floor.min_gpus - 1) > usable
    # mixed precision keeps fp32 master weights and moments: 16 bytes per parameter, twice the GPUs
    mixed = states_floor(params, "mixed-bf16", usable)
    assert mixed.states_bytes == 16 * params and mixed.min_gpus == math.ceil(16 * params / usable)


def test_solved_mfu_above_one_is_impossible(capsys):
    code, text = time(capsys, *MFU_ABOVE_1)
    assert code == 0 and "\nwarning: impossible: a 1-day deadline on 8 GPUs needs MFU" in text
    assert time(capsys, *MFU_ABOVE_1, "--check")[0] == 3
    code, data = time_json(capsys, *MFU_ABOVE_1, "--check")
    assert code == 3 and data["solved_for"] == "mfu" and data["mfu"] > 1
    needed = math.ceil(8 * data["mfu"])
    assert any(w.startswith("impossible:") and f"at least {needed:,} GPUs" in w for w in data["warnings"])
    code, text = time(capsys, *MFU_ABOVE_1, "--check", "--lang", "zh")
    assert code == 3 and "警告：无法实现" in text


def test_high_but_possible_mfu_only_warns(capsys):
    # 64 H100 for 15T tokens of an 8B model in 200 days needs MFU ~0.71: above published runs, not above 1
    argv = ("llama-3.1-8b", "--tokens", "15T", "--gpus", "64", "--days", "200", "--gpu", "h100-sxm", "--check")
    code, data = time_json(capsys, *argv)
    assert code == 0 and 0.6 < data["mfu"] < 1
    assert any("above what published large runs reach" in w for w in data["warnings"])


def test_a_deadline_solved_below_the_memory_floor(capsys):
    argv = ("llama-3.1-405b", "--tokens", "1T", "--days", "5000", "--gpu", "h100-sxm")
    code, data = time_json(capsys, *argv)
    assert code == 0 and data["solved_for"] == "gpus" and data["gpus"] < data["min_gpus_for_states"]
    assert time(capsys, *argv, "--check")[0] == 3


@pytest.mark.parametrize("argv, floor", [
    (("--params", "405B", "--tokens", "1T", "--gpus", "8", "--gpu", "rtx-4090", "--mfu", "0.4"), 128),
    (("llama-3.1-405b", "--tokens", "1T", "--gpus", "8", "--gpu", "rtx-4090", "--mfu", "0.4", "--method", "lora"),
     None),  # fine-tuning methods keep fewer states: not checked
    (("--params", "405B", "--tokens", "1T", "--gpus", "8", "--peak-tflops", "100", "--gpu-power-w", "300",
      "--mfu", "0.4"), None),  # no --gpu: no memory to check against
])
def test_when_the_floor_applies(capsys, argv, floor):
    code, data = time_json(capsys, *argv, "--check")
    assert data["min_gpus_for_states"] == floor
    assert code == (3 if floor else 0)
