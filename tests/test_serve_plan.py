"""`gpuplan plan --serve`: the continuous-batching model, the deployment search, the CLI and API surface."""

import json
import time

import pytest

from gpuplan import api
from gpuplan.cli.main import main
from gpuplan.errors import InputError
from gpuplan.hardware.catalog import get_gpu
from gpuplan.infer.engine import InferConfig, prepare, speed_inputs
from gpuplan.infer.parallel import ServingLayout
from gpuplan.infer.speed import SpeedAssumptions, prefill_s
from gpuplan.model.resolve import resolve_model
from gpuplan.serve.batching import Traffic, concurrency_for_rate, replica_load
from gpuplan.serve.search import ServeQuestion, ServeTargets, plan_serving

A = SpeedAssumptions()
HEADLINE = ["plan", "llama-3.1-70b", "--serve", "--rps", "20", "--prompt", "2000", "--output", "500", "--ttft", "1",
            "--tpot", "0.05", "--gpu", "h100-sxm,a100-80gb"]


def _inputs(model="llama-3.1-8b", gpu="h100-sxm", tp=1, context=2500):
    spec = resolve_model(model)
    cfg = InferConfig(context=context, engine="vllm", gpu=get_gpu(gpu), layout=ServingLayout(tp=tp), search=False)
    return spec, speed_inputs(prepare(spec, cfg))[0]


def test_low_load_ttft_is_one_prefill_and_tpot_one_decode_step():
    spec, inp = _inputs()
    tr = Traffic(2000, 500, concurrency=1)
    r = replica_load(spec, inp, A, tr, concurrency=1)
    alone = prefill_s(spec, inp, A, batch=1, prompt=2000)
    assert alone < r.ttft_s < 1.3 * alone + r.decode_step_s
    assert r.decode_step_s <= r.tpot_s <= r.full_step_s


def test_load_raises_latency_and_throughput():
    spec, inp = _inputs()
    tr = Traffic(2000, 500, concurrency=1)
    small, big = (replica_load(spec, inp, A, tr, concurrency=c) for c in (8, 128))
    assert big.tpot_s > small.tpot_s and big.ttft_s >= small.ttft_s
    assert big.output_tokens_per_s > 3 * small.output_tokens_per_s  # KV reads at 2,250 tokens cap the gain
    p50 = replica_load(spec, inp, A, tr, concurrency=128, percentile="p50")
    p99 = replica_load(spec, inp, A, tr, concurrency=128, percentile="p99")
    assert p99.ttft_s >= p50.ttft_s and p99.tpot_s >= p50.tpot_s


def test_prefix_hits_shorten_ttft():
    spec, inp = _inputs()
    cold = replica_load(spec, inp, A, Traffic(4000, 200, concurrency=1), concurrency=32)
    warm = replica_load(spec, inp, A, Traffic(4000, 200, prefix_hit=0.75, concurrency=1), concurrency=32)
    assert warm.ttft_s < 0.5 * cold.ttft_s


def test_rate_steady_state_obeys_littles_law():
    spec, inp = _inputs()
    tr = Traffic(1000, 200, rps=5)
    r = concurrency_for_rate(spec, inp, A, tr, rps=5, cap=500)
    assert not isinstance(r, str)
    assert r.output_tokens_per_s == pytest.approx(5 * 200, rel=0.01)  # what arrives leaves
    too_much = concurrency_for_rate(spec, inp, A, tr, rps=500, cap=500)
    assert isinstance(too_much, str) and ("KV capacity" in too_much or "prefill" in too_much)


def test_headline_question_ranks_deployments_within_a_second():
    t0 = time.process_time()
    data = api.plan("llama-3.1-70b", serve=True, rps=20, prompt=2000, output=500, ttft=1, tpot=0.05,
                    gpu=["h100-sxm,a100-80gb"])
    assert time.process_time() - t0 < 1.0
    plans = data["serve_plans"]
    assert plans and {p["gpu"] for p in data["serve_plans"]} <= {"h100-sxm", "a100-80gb"}
    costs = [p["cost_usd_per_million_output_tokens"] for p in plans]
    assert costs == sorted(costs)
    for p in plans:
        assert p["ttft_s"] <= 1 and p["tpot_s"] <= 0.05
        assert p["gpus"] == p["tp"] * p["pp"] * p["dp"]
        assert p["batch"] <= p["kv_capacity_seqs"]
        assert p["output_tokens_per_s"] == pytest.approx(20 * 500, rel=0.01)
        assert p["limited_by"] in ("compute", "HBM bandwidth", "interconnect", "KV capacity")
    # 70B in bf16 (141 GB) leaves no KV pool on one 80 GB GPU
    assert any(x["tp"] == 1 and x["pp"] == 1 and "KV capacity" in x["reason"] for x in data["rejected"])
    assert data["why"] and "USD per million output tokens" in data["why"][0]


def test_more_traffic_or_tighter_targets_cost_more_gpus():
    spec = resolve_model("llama-3.1-8b")
    gpus, prices = (get_gpu("h100-sxm"),), {"h100-sxm": 3.0}

    def best(rps, tpot):
        q = ServeQuestion(Traffic(1000, 300, rps=rps), ServeTargets(ttft_s=2, tpot_s=tpot), gpus, prices)
        return plan_serving(spec, q).plans[0]

    base = best(5, 0.05)
    assert best(40, 0.05).gpus > base.gpus
    tight = best(5, 0.012)
    assert tight.load.tpot_s <= 0.012 and tight.cost_usd_per_million_output_tokens >= \
        base.cost_usd_per_million_output_tokens


def test_cli_table_and_json(capsys):
    assert main(HEADLINE) == 0
    out = capsys.readouterr().out
    assert "USD/M out" in out and "why the winner wins" in out
    assert main(HEADLINE + ["--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) >= {"serve_plans", "why", "rejected", "assumptions", "traffic", "targets"}


@pytest.mark.parametrize("extra, field", [
    ([], "--rps"),
    (["--rps", "2", "--concurrency", "3"], "--concurrency"),
    (["--rps", "2", "--prompt", "200000"], "--prompt"),
])
def test_bad_serving_input_names_the_field(extra, field):
    argv = {"serve": True, "ttft": 1.0, "gpu": ["h100-sxm"]}
    pairs = dict(zip(extra[::2], extra[1::2]))
    for k, v in pairs.items():
        argv[k.lstrip("-")] = float(v) if k == "--rps" else int(v)
    with pytest.raises(InputError) as e:
        api.plan("llama-3.1-8b", **argv)
    assert field in str(e.value)


def test_targets_and_traffic_validate():
    with pytest.raises(InputError):
        ServeTargets(ttft_s=-1).validate()
    with pytest.raises(InputError):
        Traffic(100, 10, prefix_hit=1.0, rps=1).validate()


def test_engine_choice_changes_the_kv_pool_not_the_speed():
    kw = {"serve": True, "rps": 20, "prompt": 2000, "output": 500, "ttft": 1, "tpot": 0.05, "gpu": ["h100-sxm"],
          "tp": [4], "pp": [1]}
    pools = {e: api.plan("llama-3.1-70b", engine=e, **kw)["serve_plans"][0] for e in ("vllm", "sglang", "trtllm")}
    caps = {e: p["kv_capacity_seqs"] for e, p in pools.items()}
    assert len(set(caps.values())) == 3  # three different start-up rules
    assert all(p["output_tokens_per_s"] == pytest.approx(10000, rel=0.01) for p in pools.values())
    assert any("sglang start-up arithmetic" in a
               for a in api.plan("llama-3.1-70b", engine="sglang", **kw)["assumptions"])


def test_infer_reports_continuous_batching_when_a_prompt_is_given():
    base = {"engine": "vllm", "gpu": "h100-sxm", "batch": 16, "context": 4096}
    assert "continuous_batching" not in api.infer("llama-3.1-8b", **base)["speed"]
    cb = api.infer("llama-3.1-8b", prompt=2048, **base)["speed"]["continuous_batching"]
    spec, inp = _inputs(context=4096)
    direct = replica_load(spec, inp, A, Traffic(2048, 2048, concurrency=16), concurrency=16)
    assert cb["tpot_s"] == pytest.approx(direct.tpot_s, rel=1e-9)
    assert cb["output_tokens_per_s"] == pytest.approx(16 / direct.tpot_s, rel=0.05)


def test_without_gpu_serving_compares_every_market_priced_gpu():
    from gpuplan.compute.prices import load_prices, market_priced_gpus

    market = market_priced_gpus()
    assert market and all(any(p.gpu == g and p.kind in ("on-demand", "market-range") for p in load_prices())
                          for g in market)
    assert "h800" not in market  # priced only by a paper's assumed rental
    data = api.plan("llama-3.1-70b", serve=True, rps=20, prompt=2000, output=500, ttft=1, tpot=0.05)
    assert {p["gpu"] for p in data["serve_plans"]} <= set(market)
    assert any(a.startswith("GPU types compared: " + ", ".join(market)) for a in data["assumptions"])
    pinned = api.plan("llama-3.1-70b", serve=True, rps=20, prompt=2000, output=500, ttft=1, tpot=0.05,
                      gpu=list(market))
    assert pinned["serve_plans"] == data["serve_plans"]


def test_training_plan_still_needs_a_gpu(capsys):
    assert main(["plan", "llama-3.1-8b", "--gpus", "8"]) == 2
    err = capsys.readouterr().err
    assert "--gpu" in err and "plan --serve" in err and "Traceback" not in err


@pytest.mark.parametrize("ep, published_us", [(16, 118), (32, 155), (64, 173), (128, 192), (256, 194)])
def test_ep_all_to_all_follows_deepep_low_latency_dispatch(ep, published_us):
    """DeepEP docs/legacy.md, low-latency kernels on H800 with one CX7 400 Gb/s NIC (50 GB/s) each: 128 tokens x top-8
    x 7168 hidden dispatched in FP8. One dispatch is half of ``ep_all_to_all_s`` (dispatch + combine); the model
    (uniform routing, one copy per routed expert, NVLink inside the node, the rest on the NIC at 0.7 efficiency,
    25 us) lands within 25 % of the published time (it is high: DeepEP overlaps the NVLink and RDMA parts better)."""
    from gpuplan.infer.speed import ep_all_to_all_s

    got = ep_all_to_all_s(tokens=128, top_k=8, ep=ep, hidden=7168, dtype_bytes=1, gpus_per_node=8,
                          nvlink_bytes_per_s=160e9, inter_node_bytes_per_s=50e9, efficiency=0.7,
                          nvlink_latency_s=8e-6, network_latency_s=25e-6) / 2
    assert got * 1e6 == pytest.approx(published_us, rel=0.25)


def test_ep_all_to_all_is_zero_on_one_rank_and_grows_off_the_node():
    from gpuplan.infer.speed import ep_all_to_all_s

    kw = dict(tokens=64, top_k=8, hidden=7168, dtype_bytes=2, gpus_per_node=8, nvlink_bytes_per_s=450e9,
              inter_node_bytes_per_s=50e9, efficiency=0.7, nvlink_latency_s=8e-6, network_latency_s=25e-6)
    assert ep_all_to_all_s(ep=1, **kw) == 0.0
    assert ep_all_to_all_s(ep=8, **kw) < ep_all_to_all_s(ep=16, **kw) < ep_all_to_all_s(ep=64, **kw)


def _moe_step(tp, ep, dp):
    spec = resolve_model("qwen3-30b-a3b")
    cfg = InferConfig(context=2048, engine="vllm", gpu=get_gpu("h100-sxm"),
                      layout=ServingLayout(tp=tp, ep=ep, dp=dp), search=False)
    from gpuplan.infer.speed import decode_step_s

    return decode_step_s(spec, speed_inputs(prepare(spec, cfg))[0], A, batch=32, context=2048)


def test_expert_parallel_over_data_parallel_attention_pays_the_all_to_all():
    # EP inside the TP group: the TP all-reduce already sums the experts' outputs, nothing is added
    assert _moe_step(4, 4, 1)["ep_comm_s"] == 0.0
    inside = _moe_step(1, 8, 8)  # 8 attention ranks, experts spread over the node: NVLink all-to-all
    across = _moe_step(1, 16, 16)  # 16 ranks over two nodes: half the copies cross the NIC
    assert 0 < inside["ep_comm_s"] < across["ep_comm_s"]
    # 48 MoE layers x (dispatch + combine) x (latency + 32 x 8 x 7/8 copies x 2048 x 2 bytes / (450 GB/s x 0.7))
    per = 8e-6 + 32 * 8 * 7 / 8 * 2048 * 2 / (450e9 * 0.7)
    assert inside["ep_comm_s"] == pytest.approx(48 * 2 * per, rel=1e-6)


def test_serve_plan_ranks_expert_parallel_layouts_over_attention_ranks():
    spec = resolve_model("qwen3-30b-a3b")
    q = ServeQuestion(Traffic(1000, 200, rps=10), ServeTargets(tpot_s=0.05), (get_gpu("h100-sxm"),),
                      {"h100-sxm": 3.0}, top=100, max_gpus=16)
    plans = plan_serving(spec, q).plans
    wide = [p for p in plans if p.layout.ep > p.layout.tp]
    assert wide, "DP-attention x EP layouts are searched for MoE models"
    for p in wide:
        assert p.layout.dp % (p.layout.ep // p.layout.tp) == 0  # whole EP groups
        assert p.load.step_parts_s["comm_s"] > 0


def test_infer_prints_the_ep_all_to_all_share(capsys):
    args = ["infer", "qwen3-30b-a3b", "--gpu", "h100-sxm", "--context", "2048", "--prompt", "1024", "--batch", "32",
            "--tp", "1", "--dp", "16", "--ep", "16"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "EP 16 over 16 attention ranks: 48 MoE layers x dispatch + combine all-to-all" in out
    assert main([*args[:-4], "--tp", "4", "--ep", "4"]) == 0  # EP inside the TP group: no all-to-all line
    assert "all-to-all" not in capsys.readouterr().out


@pytest.mark.parametrize("gpu, budget, seqs", [
    ("h100-sxm", 8192, 1024), ("h200", 8192, 1024),  # at least 70 GiB, not an A100
    ("a100-80gb", 2048, 256),  # the A100 is left out of the larger defaults (vLLM PR #17885)
    ("a100-40gb", 2048, 256), ("rtx-4090", 2048, 256), ("l4", 2048, 256),
])
def test_vllm_v1_scheduler_defaults_follow_the_gpu(gpu, budget, seqs):
    from gpuplan.infer.engines import vllm_v1_serving_defaults

    got = vllm_v1_serving_defaults(get_gpu(gpu))
    assert got[:2] == (budget, seqs) and "get_batch_defaults" in got[2]


def _serve_json(capsys, *args, rc=0):
    assert main(["plan", "--serve", "--json", *args]) == rc
    return json.loads(capsys.readouterr().out)


def test_serve_plan_takes_the_gpus_vllm_defaults_unless_given(capsys):
    """A 4090 serves with vLLM V1's 2048-token step budget and an H100 with 8192; a given budget wins. The smaller
    budget spreads a long prompt over more steps, so the 4090's TTFT grows."""
    base = ["llama-3.1-8b", "--concurrency", "8", "--prompt", "4000", "--output", "200", "--tp", "1", "--pp", "1"]
    small = _serve_json(capsys, *base, "--gpu", "rtx-4090", "--gpus", "1")
    plan = small["serve_plans"][0]
    assert (plan["max_num_batched_tokens"], plan["max_num_seqs"]) == (2048, 256)
    assert any("rtx-4090" in a and "max_num_batched_tokens 2048" in a for a in small["assumptions"])
    given = _serve_json(capsys, *base, "--gpu", "rtx-4090", "--gpus", "1", "--max-num-batched-tokens", "8192")
    assert given["serve_plans"][0]["max_num_batched_tokens"] == 8192
    assert any("max_num_batched_tokens 8192 given" in a for a in given["assumptions"])
    assert plan["ttft_s"] > given["serve_plans"][0]["ttft_s"]
    large = _serve_json(capsys, *base, "--gpu", "h100-sxm", "--gpus", "1")
    assert (large["serve_plans"][0]["max_num_batched_tokens"], large["serve_plans"][0]["max_num_seqs"]) == (8192, 1024)


def test_max_num_seqs_caps_a_replica_below_its_kv_pool(capsys):
    """A small model's KV pool on an H100 holds thousands of short sequences, but vLLM runs at most max_num_seqs:
    more in flight than that is refused with the cap named, and a larger --max-num-seqs lifts it."""
    base = ["qwen2.5-0.5b", "--concurrency", "1500", "--prompt", "100", "--output", "100", "--gpu", "h100-sxm",
            "--gpus", "1", "--tp", "1", "--pp", "1"]
    out = _serve_json(capsys, *base, rc=2)  # no deployment meets the load: exit 2 (3 with --check)
    assert out["serve_plans"] == []
    assert any("max_num_seqs (1024)" in r["reason"] for r in out["rejected"])
    lifted = _serve_json(capsys, *base, "--max-num-seqs", "2048")
    assert lifted["serve_plans"][0]["kv_capacity_seqs"] >= 1500
    assert lifted["serve_plans"][0]["max_num_seqs"] == 2048
