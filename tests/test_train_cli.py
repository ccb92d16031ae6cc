"""`gpuplan train`: JSON keys of INTERFACE.md, exit codes, --explain, --max-batch / --max-seq, --params only."""

from __future__ import annotations

import json


from gpuplan.cli.main import main
from gpuplan.report import MEMORY_KEYS


def _json(capsys, *argv: str) -> dict:
    assert main(["train", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_json_has_the_interface_keys(capsys):
    out = _json(capsys, "llama-3.1-8b", "--batch", "1", "--seq", "2048", "--gpu", "h100-sxm")
    assert set(MEMORY_KEYS) <= set(out["memory"])
    assert all(isinstance(out["memory"][k], int) for k in MEMORY_KEYS)
    assert out["params"] == {"total": 8_030_261_248, "trainable": 8_030_261_248}
    assert isinstance(out["fits"], bool)
    assert isinstance(out["assumptions"], list) and out["assumptions"]
    assert isinstance(out["warnings"], list)
    m = out["memory"]
    assert m["total_bytes"] > m["allocated_peak_bytes"] >= m["weights_bytes"] + m["optimizer_bytes"]
    assert m["kv_cache_bytes"] == 0


def test_fits_is_null_without_gpu(capsys):
    assert _json(capsys, "qwen2.5-0.5b")["fits"] is None


def test_check_exits_3_when_it_does_not_fit(capsys):
    assert main(["train", "llama-3.1-70b", "--gpu", "h100-sxm", "--check"]) == 3
    assert main(["train", "qwen2.5-0.5b", "--gpu", "h100-sxm", "--check"]) == 0
    capsys.readouterr()


def test_bad_input_exits_2(capsys):
    assert main(["train", "llama-3.1-8b", "--method", "freeze"]) == 2
    assert "--trainable" in capsys.readouterr().err
    assert main(["train", "llama-3.1-8b", "--gpu", "h999"]) == 2
    assert "gpu" in capsys.readouterr().err
    assert main(["train", "llama-3.1-8b", "--precision", "fp64"]) == 2
    assert "fp64" in capsys.readouterr().err


def test_explain_lists_every_term(capsys):
    assert main(["train", "llama-3.2-1b", "--explain"]) == 0
    text = capsys.readouterr().out
    for word in ("formula:", "source:", "phases:", "activations_per_layer_bytes", "logits_bytes", "assumptions:"):
        assert word in text
    out = _json(capsys, "llama-3.2-1b", "--explain")
    keys = {t["key"] for t in out["terms"]}
    assert {"weights_bytes", "optimizer_bytes", "logits_bytes", "total_bytes"} <= keys


def test_max_batch_and_max_seq(capsys):
    out = _json(capsys, "qwen2.5-0.5b", "--gpu", "h100-sxm", "--max-batch", "--max-seq", "--seq", "1024")
    b, s = out["max_batch"], out["max_seq"]
    assert b >= 1 and s >= 1024
    at_b = _json(capsys, "qwen2.5-0.5b", "--gpu", "h100-sxm", "--seq", "1024", "--batch", str(b))
    over_b = _json(capsys, "qwen2.5-0.5b", "--gpu", "h100-sxm", "--seq", "1024", "--batch", str(b + 1))
    assert at_b["fits"] and not over_b["fits"]


def test_params_only_gives_model_states_and_a_warning(capsys):
    out = _json(capsys, "--params", "7B", "--precision", "mixed-bf16", "--optimizer", "adam")
    m = out["memory"]
    assert m["weights_bytes"] + m["gradients_bytes"] + m["master_weights_bytes"] + m["optimizer_bytes"] == 16 * 7e9
    assert m["activations_bytes"] == 0 and out["warnings"]


def test_human_table(capsys):
    assert main(["train", "mixtral-8x7b-v0.1", "--method", "lora", "--lora-targets", "w1,w2,w3",
                 "--gpu", "a800"]) == 0
    text = capsys.readouterr().out
    assert "GiB" in text and "a800" in text and "226.49M trainable" in text
