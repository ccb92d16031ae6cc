"""``gpuplan verify``: JSON per INTERFACE.md, the human table, and clear failures."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from gpuplan.cli.main import main  # noqa: E402

DIMS = ["--layers", "2", "--hidden", "128", "--heads", "4", "--kv-heads", "2", "--vocab", "1024"]


def test_json_has_interface_keys(capsys):
    assert main(["verify", *DIMS, "--seq", "64", "--batch", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["backend"] == "cpu-trace"
    assert set(out) >= {"estimate", "measured", "error_pct", "backend"}
    peak_e, peak_m = out["estimate"]["allocated_peak_bytes"], out["measured"]["allocated_peak_bytes"]
    assert isinstance(peak_m, int) and peak_m > 0
    assert out["error_pct"] == pytest.approx(100 * (peak_e - peak_m) / peak_m)
    assert out["measured"]["weights_bytes"] > 0 and "total_bytes" not in out["measured"]


def test_table_and_infer_workload(capsys):
    assert main(["verify", *DIMS, "--workload", "infer", "--context", "64"]) == 0
    text = capsys.readouterr().out
    assert "kv_cache_bytes" in text and "allocated_peak_bytes" in text and "GiB" in text


def test_cuda_without_gpu_is_a_clear_input_error(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert main(["verify", *DIMS, "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert "no CUDA device is available" in err and "--device" in err


def test_bad_lora_target_is_exit_2(capsys):
    assert main(["verify", *DIMS, "--seq", "16", "--method", "lora", "--lora-targets", "nope"]) == 2
    assert "lora_targets" in capsys.readouterr().err
