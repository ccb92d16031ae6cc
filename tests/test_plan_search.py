"""The layout search: best-first with lazy memory checks finds what brute force finds; the `plan` command."""

import json

import pytest

from gpuplan.cli.main import main
from gpuplan.compute.comm import default_network
from gpuplan.compute.flops import training_flops
from gpuplan.compute.steptime import Workload, make_device, step_time
from gpuplan.hardware.catalog import get_gpu
from gpuplan.model.resolve import spec_from_dims
from gpuplan.plan.memory import MemoryChecker, TrainOptions
from gpuplan.plan.candidates import SearchContext, Target
from gpuplan.plan.search import search
from gpuplan.plan.space import Pins, layouts_for_shape, shapes_for

SMALL = dict(layers=8, hidden=1024, heads=16, vocab=32000)
SMALL_ARGS = ["--layers", "8", "--hidden", "1024", "--heads", "16"]
PINS = Pins(tp=(1, 2), pp=(1, 2), cp=(1,), micro_batch=(1, 4), recompute=("none", "full"))


def context(gpus=None, days=None, tokens=10_000_000_000, gpu="h100-sxm", rank="time", pins=PINS, seq=2048,
            batch=64):
    spec = spec_from_dims(**SMALL)
    g = get_gpu(gpu)
    dev, _ = make_device(g)
    return SearchContext(spec=spec, gpu=g, dev=dev, net=default_network(g), work=Workload(seq, batch),
                         flop_per_token=training_flops(spec, seq=seq).model_flop_per_token,
                         target=Target(gpus=gpus, days=days, tokens=tokens), pins=pins, rank=rank)


def brute_force(ctx, gpus):
    check = MemoryChecker(ctx.spec, ctx.work.seq, ctx.work.global_batch, TrainOptions())
    best = None
    for tp, cp, pp, dp in shapes_for(ctx.spec, gpus, ctx.work.seq, 8, ctx.pins):
        for lay in (v for base in layouts_for_shape(ctx.spec, tp, cp, pp, dp, ctx.work.global_batch, ctx.pins)
                    for v in with_hsdp(ctx, base)):
            mem = check(lay).total_bytes
            if mem is None or mem > ctx.gpu.memory_usable_bytes:
                continue
            t = step_time(ctx.spec, lay, ctx.work, ctx.dev, ctx.net).step_s
            if best is None or t < best[0]:
                best = (t, lay)
    return best


def test_best_first_search_matches_brute_force():
    ctx = context(gpus=8)
    res = search(ctx, top=3)
    t, lay = brute_force(ctx, 8)
    assert res.plans[0].seconds_per_step == pytest.approx(t)
    assert res.checker.calls < res.pool.evaluated
    times = [c.seconds_per_step for c in res.plans]
    assert times == sorted(times)
    assert all(c.fits for c in res.plans)


def test_deadline_finds_the_fewest_gpus():
    probe = search(context(gpus=8), top=1).plans[0]
    tokens = 10_000_000_000
    days = probe.days * 1.5  # 8 GPUs cannot meet it, more GPUs can
    res = search(context(days=days, tokens=tokens, rank="gpus"), top=3)
    win = res.plans[0]
    assert win.days <= days
    for n in range(8, win.gpus, 8):  # no smaller whole-node count has a layout that fits and meets the deadline
        best = brute_force(context(gpus=n, tokens=tokens), n)
        if best is not None:
            steps = -(-tokens // (64 * 2048))
            assert steps * best[0] / 86400 > days


def test_nothing_fits_on_a_small_gpu(capsys):
    code = main(["plan", "--layers", "32", "--hidden", "4096", "--heads", "32", "--gpu", "rtx-3090", "--gpus", "8",
                 "--seq", "2048", "--global-batch", "64", "--check", "--tp", "1", "--pp", "1"])
    err = capsys.readouterr().err
    assert code == 3 and "no layout of 8 x rtx-3090 fits" in err and "GiB" in err


def test_plan_json_interface_and_parity_with_train(capsys):
    code = main(["plan", *SMALL_ARGS, "--gpu", "h100", "--gpus", "8", "--seq", "2048", "--global-batch", "64",
                 "--tokens", "10B", "--tp", "1,2", "--pp", "1,2", "--json"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    p = data["plans"][0]
    for key in ("dp", "tp", "pp", "ep", "cp", "zero", "micro_batch", "recompute", "gpus", "memory_total_bytes",
                "days", "dp_shard"):
        assert key in p
    assert p["gpus"] == p["dp"] * p["tp"] * p["pp"] * p["cp"] == 8
    assert data["evaluated"] > data["memory_checks"] > 0
    assert data["why"] and data["alternatives"]
    # The memory figure is gpuplan train's, exactly: run the command the plan prints, for every row.
    for p in data["plans"]:
        argv = p["train_command"].split()[1:] + ["--json"]
        assert main(argv) == 0
        train = json.loads(capsys.readouterr().out)
        assert train["memory"]["total_bytes"] == p["memory_total_bytes"]


def test_plan_compares_gpu_types_and_requested_layouts(capsys):
    code = main(["plan", *SMALL_ARGS, "--gpu", "a800,h100", "--gpus", "8", "--seq", "2048", "--global-batch", "64",
                 "--tokens", "10B", "--tp", "1,2", "--pp", "1,2", "--compare", "tp=2,pp=2"])
    out = capsys.readouterr().out
    assert code == 0
    assert "why it wins" in out and "requested tp=2,pp=2: TP2 PP2" in out and "best on" in out


@pytest.mark.parametrize("argv", [
    ["--gpus", "8", "--days", "10", "--tokens", "1B"],
    ["--days", "10"],
    ["--gpus", "8", "--recompute", "sometimes"],
    ["--gpus", "8", "--compare", "tp=two"],
])
def test_plan_bad_input_exits_2(capsys, argv):
    assert main(["plan", *SMALL_ARGS, "--gpu", "h100", "--seq", "2048", "--global-batch", "64", *argv]) == 2


class ShardedMemory:
    """A stand-in memory model with the monotonic structure the search relies on (ZeRO over dp·cp, TP and PP
    split the states, activations grow with the micro-batch and shrink with recomputation), used to check the
    pruning against brute force on layouts that the real engine would shard."""

    PARAMS = 2.0e9

    def __init__(self, spec, seq, global_batch, opts):
        self.calls = 0
        self.seq = seq

    def __call__(self, lay):
        from gpuplan.plan.memory import MemoryResult

        self.calls += 1
        p = self.PARAMS / (lay.tp * lay.pp)
        ranks = (lay.dp_shard or lay.dp) * lay.cp  # hybrid sharding: the shard group only
        shard = {0: 1, 1: ranks, 2: ranks, 3: ranks}[lay.zero]
        states = p * (2 + 4) + p * 12 / shard if lay.zero < 3 else p * 18 / shard
        act = {"none": 3e8, "selective": 2e8, "full": 4e7}[lay.recompute] * lay.micro_batch * lay.vpp / lay.tp
        return MemoryResult(int(states + act * min(lay.pp, 8)))


def with_hsdp(ctx, lay):
    """``lay`` and every hybrid-sharding variant of it in the search space (no pruning)."""
    from dataclasses import replace

    from gpuplan.plan.search import hsdp_allowed
    from gpuplan.plan.space import dp_shard_options

    extra = dp_shard_options(lay, ctx.net.gpus_per_node) if hsdp_allowed(ctx, lay) else []
    return [lay] + [replace(lay, dp_shard=n) for n in extra]


def brute_force_fake(ctx, gpus, fake):
    best = None
    for tp, cp, pp, dp in shapes_for(ctx.spec, gpus, ctx.work.seq, 8, ctx.pins):
        for lay in (v for base in layouts_for_shape(ctx.spec, tp, cp, pp, dp, ctx.work.global_batch, ctx.pins)
                    for v in with_hsdp(ctx, base)):
            if fake(lay).total_bytes > ctx.gpu.memory_usable_bytes:
                continue
            t = step_time(ctx.spec, lay, ctx.work, ctx.dev, ctx.net).step_s
            if best is None or t < best[0]:
                best = (t, lay)
    return best


@pytest.mark.parametrize("gpus", [8, 16, 32])
def test_pruned_search_equals_brute_force_with_sharded_memory(monkeypatch, gpus):
    import gpuplan.plan.search as S

    monkeypatch.setattr(S, "MemoryChecker", ShardedMemory)
    pins = Pins(cp=(1,), micro_batch=(1, 2, 4))
    ctx = context(gpus=gpus, pins=pins, gpu="a800")
    res = search(ctx, top=1)
    best = brute_force_fake(ctx, gpus, ShardedMemory(None, 0, 0, None))
    assert (res.plans[0].seconds_per_step if res.plans else None) == pytest.approx(best[0] if best else None)


def test_deadline_with_sharded_memory_takes_more_dp_when_memory_demands(monkeypatch):
    import gpuplan.plan.search as S

    class Heavy(ShardedMemory):
        PARAMS = 12e9  # ZeRO-1: 6 x 12 GB + 144 GB / dp -> fits only from dp >= 12

    monkeypatch.setattr(S, "MemoryChecker", Heavy)
    pins = Pins(cp=(1,), tp=(1,), pp=(1,), micro_batch=(1,), recompute=("full",), zero=(1,))
    # The deadline is easy (8 GPUs meet it); memory decides, via the next-larger-DP fallback.
    ctx = context(days=1000.0, tokens=1_000_000_000, pins=pins, gpu="a800", rank="gpus")
    res = search(ctx, top=1)
    win = res.plans[0]
    assert win.gpus > 8
    fake = Heavy(None, 0, 0, None)
    for n in range(8, win.gpus, 8):
        assert brute_force_fake(context(gpus=n, tokens=1_000_000_000, pins=pins, gpu="a800"), n, fake) is None
