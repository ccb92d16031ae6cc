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
    factors = [it["time_factor"] for it in items if it["fits"]]
    assert factors == sorted(factors)
    assert [it["fits"] for it in items] == sorted((it["fits"] for it in items), reverse=True)


def test_the_seed_inference_branch_is_covered(result):
    every = " | ".join(" ".join(it["options"]) for it in result.as_json())
    assert "--weights" in every  # quantize the weights (002 §8: INT8/INT4)
    assert "--tp" in every  # add tensor parallelism
    quantized = [it for it in result.as_json() if it["options"][:1] == ["--weights"] and it["fits"]]
    assert quantized and all(it["time_factor"] < 1 for it in quantized)  # fewer bytes to read per decode step


def test_text(result):
    assert "Cheapest way to fit" in render_advice(result, "en")


@pytest.mark.skipif("advise" not in runner("infer").defaults, reason="`gpuplan infer --advise` not wired yet")
def test_cli_flag_adds_advice_to_the_json():
    out = infer_json(BASE + ["--advise"])
    assert out["advice"] and out["advice"][0]["fits"]
