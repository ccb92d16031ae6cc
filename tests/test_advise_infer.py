"""The serving advisor: quantized weights, KV-cache quantization, shorter context, smaller batch, TP, a larger
GPU — each re-run through `gpuplan infer` gives the same numbers, ranked by time_factor among those that fit."""

from __future__ import annotations

import contextlib
import io
import json

import pytest

from gpuplan.advise import advise
from gpuplan.cli.advice import render_advice
from gpuplan.advise.runner import options_from_args, runner  # noqa: F401
from gpuplan.cli.main import build_parser
from gpuplan.cli.main import main

BASE = ["llama-3.1-70b", "--gpu", "h100-sxm", "--batch", "8", "--context", "8192"]


def infer_json(argv: list[str]) -> dict:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["infer", *argv, "--json"])
    assert rc == 0, argv
    return json.loads(buf.getvalue())


@pytest.fixture(scope="module")
def result():
    return advise("infer", options_from_args(build_parser().parse_args(["infer", *BASE]), "infer"))


def test_70b_in_bf16_does_not_fit_one_h100(result):
    assert infer_json(BASE)["fits"] is False
    assert not result.base.fits and result.fitting


def test_changes_reproduce_and_rank(result):
    items = result.as_json()
    for item in items:
        again = infer_json(item["argv"])
        assert again["memory"]["total_bytes"] == item["total_bytes"], item["change"]
        assert again["fits"] is item["fits"]
    steps = [it["step"] for it in items]
    assert steps == sorted(steps)
    for step in set(steps):
        in_step = [it for it in result.items if it.step == step]
        assert [it.outcome.fits for it in in_step] == sorted((it.outcome.fits for it in in_step), reverse=True)
        keys = [(it.priority, it.time_factor) for it in in_step if it.outcome.fits]
        assert keys == sorted(keys)


def test_the_seed_inference_branch_is_covered(result):
    every = " | ".join(" ".join(it["options"]) for it in result.as_json())
    assert "--weights" in every  # quantize the weights (002 §8: INT8/INT4)
    assert "--tp" in every  # add tensor parallelism
    quantized = [it for it in result.as_json() if it["options"][:1] == ["--weights"] and it["fits"]]
    assert quantized and all(it["time_factor"] < 1 for it in quantized)  # fewer bytes to read per decode step


def test_text(result):
    text = render_advice(result, "en")
    assert "Try first: " + result.fitting[0].candidate.label("en") in text
    assert "Largest part: " in text


def test_the_dominant_component_is_treated_first(result):
    """70B in bf16 on one H100: the weights dominate, so quantized weights lead the same-GPU step (002 §8:
    瓶颈在权重 → 模型量化); TP comes after, as more GPUs."""
    assert result.diagnosis.dominant == "weights_bytes"
    same = [it for it in result.items if it.category == "same_gpus" and it.outcome.fits]
    assert same and same[0].candidate.parts[0].key == "weights"
    tp = [it for it in result.items if "--tp" in it.argv_delta]
    assert tp and all(it.category == "more_gpus" for it in tp)


def test_vllm_that_fits_needs_no_change():
    """vLLM preallocates its KV pool: no change lowers the total, and nothing (least of all other hardware) is
    offered as a way to an answer that does not change."""
    argv = ["llama-3.1-8b", "--engine", "vllm", "--gpu", "h100-sxm"]
    r = advise("infer", options_from_args(build_parser().parse_args(["infer", *argv]), "infer"))
    assert r.base.fits and r.items == []
    text = render_advice(r, "en")
    assert "No change needed" in text
    assert "Fastest way to fit" not in text and "What to change" not in text and "GPU " not in text


@pytest.mark.skipif("advise" not in runner("infer").defaults, reason="`gpuplan infer --advise` not wired yet")
def test_cli_flag_adds_advice_to_the_json():
    out = infer_json(BASE + ["--advise"])
    assert out["advice"] and out["advice"][0]["fits"]
