"""`plan --serve --disaggregate`: prefill and decode pools sized apart (gpuplan.serve.disagg)."""

from __future__ import annotations

import pytest

from gpuplan import api
from gpuplan.cli.main import main
from gpuplan.hardware.catalog import get_gpu
from gpuplan.infer.engine import InferConfig, prepare, speed_inputs
from gpuplan.infer.parallel import ServingLayout
from gpuplan.infer.speed import SpeedAssumptions, mixed_step_s
from gpuplan.model.resolve import resolve_model
from gpuplan.serve.batching import Traffic
from gpuplan.serve.disagg import decode_for_rate, decode_load, kv_transfer_s, prefill_load

A = SpeedAssumptions()
ARGS = dict(serve=True, rps=20, prompt=2000, output=500, ttft=1, tpot=0.05, gpu=["h100-sxm"], disaggregate=True)


def _inputs(model="llama-3.1-8b", tp=1, context=2500):
    spec = resolve_model(model)
    cfg = InferConfig(context=context, engine="vllm", gpu=get_gpu("h100-sxm"), layout=ServingLayout(tp=tp),
                      search=False)
    return spec, speed_inputs(prepare(spec, cfg))[0]


def test_prefill_replica_queues_by_its_token_capacity():
    spec, inp = _inputs()
    tr = Traffic(2000, 500, rps=1)
    low = prefill_load(spec, inp, A, tr, rps=0.1, budget=8192, percentile="p50", transfer_s=0.01)
    assert low.wait_s == 0 and low.ttft_s == pytest.approx(low.service_s + 0.01)
    one = mixed_step_s(spec, inp, A, decode_seqs=0, context=0, prefill_tokens=2000, prefill_context=2000)["step_s"]
    assert low.service_s == pytest.approx(one)
    capacity = 8192 / low.step_s
    assert low.util == pytest.approx(0.1 * 2000 / capacity)
    busy = prefill_load(spec, inp, A, tr, rps=0.8 * capacity / 2000, budget=8192, percentile="p50", transfer_s=0)
    assert busy.wait_s > 0 and busy.util == pytest.approx(0.8)
    assert busy.ttft_s < prefill_load(spec, inp, A, tr, rps=0.8 * capacity / 2000, budget=8192, percentile="p99",
                                      transfer_s=0).ttft_s
    over = prefill_load(spec, inp, A, tr, rps=1.01 * capacity / 2000, budget=8192, percentile="p50", transfer_s=0)
    assert isinstance(over, str) and "cannot keep up" in over


def test_decode_replica_has_no_prompt_chunks():
    spec, inp = _inputs()
    tr = Traffic(2000, 500, rps=1)
    ld = decode_load(spec, inp, A, tr, concurrency=32)
    kv = inp.kv_read_bytes_per_seq * tr.mean_context_tokens / 2500
    from dataclasses import replace

    step = mixed_step_s(spec, replace(inp, kv_read_bytes_per_seq=kv), A, decode_seqs=32, context=2250,
                        prefill_tokens=0, prefill_context=2000)["step_s"]
    assert ld.tpot_s == pytest.approx(step) and ld.output_tokens_per_s == pytest.approx(32 / step)
    at_rate = decode_for_rate(spec, inp, A, tr, rps=2, cap=500)
    assert at_rate.output_tokens_per_s == pytest.approx(2 * 500, rel=0.01)  # what arrives leaves


def test_kv_transfer_is_the_gpu_share_over_its_nic():
    # Llama 3.1 70B: 2 x 80 layers x 8 KV heads x 128 x 2 bytes = 327,680 bytes per token (config.json)
    per_token = 2 * 80 * 8 * 128 * 2
    assert kv_transfer_s(per_token * 2000 / 2, 50e9, 25e-6) == pytest.approx(per_token * 1000 / 50e9 + 25e-6)


def test_disaggregated_plan_pools_meet_their_targets_with_the_fewest_replicas():
    data = api.plan("llama-3.1-70b", **ARGS)
    plans = data["serve_plans"]
    assert plans and all(p["disaggregated"] for p in plans)
    for p in plans:
        pre = p["prefill_pool"]
        assert p["gpus"] == pre["gpus"] + p["tp"] * p["pp"] * p["dp"]
        assert pre["gpus"] == pre["tp"] * pre["pp"] * pre["replicas"]
        assert p["ttft_s"] == pytest.approx(pre["ttft_s"])
        assert p["ttft_s"] <= 1 and p["tpot_s"] <= 0.05
        assert pre["ttft_s"] == pytest.approx(pre["wait_s"] + pre["service_s"] + pre["kv_transfer_s"])
        assert pre["rps_per_replica"] * pre["replicas"] == pytest.approx(20)
        assert p["output_tokens_per_s"] == pytest.approx(20 * 500, rel=0.01)
        assert p["e2e_s"] == pytest.approx(p["ttft_s"] + 499 * p["tpot_s"])
    costs = [p["cost_usd_per_million_output_tokens"] for p in plans]
    assert costs == sorted(costs)
    # one prefill replica fewer than the winner's misses TTFT (or cannot keep up)
    w = plans[0]["prefill_pool"]
    spec, inp = _inputs("llama-3.1-70b", tp=w["tp"])
    if w["replicas"] > 1:
        fewer = prefill_load(spec, inp, A, Traffic(2000, 500, rps=20), rps=20 / (w["replicas"] - 1), budget=8192,
                             percentile="p50", transfer_s=w["kv_transfer_s"])
        assert isinstance(fewer, str) or fewer.ttft_s > 1
    assert any("DistServe" in a for a in data["assumptions"])
    colocated = api.plan("llama-3.1-70b", **{**ARGS, "disaggregate": False})
    assert not any(p["disaggregated"] for p in colocated["serve_plans"])
    assert all(p["prefill_pool"] is None for p in colocated["serve_plans"])


def test_disaggregation_needs_a_rate(capsys):
    rc = main(["plan", "llama-3.1-8b", "--serve", "--concurrency", "8", "--tpot", "0.05", "--gpu", "h100-sxm",
               "--disaggregate"])
    err = capsys.readouterr().err
    assert rc == 2 and "--rps" in err and "Traceback" not in err


def test_cli_shows_both_pools(capsys):
    assert main(["plan", "llama-3.1-70b", "--serve", "--rps", "20", "--prompt", "2000", "--output", "500",
                 "--ttft", "1", "--tpot", "0.05", "--gpu", "h100-sxm", "--disaggregate"]) == 0
    out = capsys.readouterr().out
    assert "prefill tp=" in out and "+ decode tp=" in out and "KV transfer" in out
