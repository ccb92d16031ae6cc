"""The planner searches hybrid sharding (HSDP, ``dp_shard``): shard groups inside a node (and a few nodes), replicas
across. It wins where the network between nodes is slow and the node-level shard holds the states; it loses to full
sharding where only full sharding fits. Every plan row's memory is ``gpuplan train``'s for its train_command."""

from __future__ import annotations

import json

import pytest

from gpuplan.cli.main import main
from gpuplan.compute.steptime import Layout
from gpuplan.plan.memory import engine_hsdp_support
from gpuplan.plan.space import dp_shard_options, memory_dominates, most_frugal, Pins

# Llama 3.1 8B on 32 GPUs (4 nodes of 8) behind a slow 2 GB/s-per-GPU network; Megatron's distributed optimizer
# (ZeRO-1): full sharding holds 6 + 12/32 bytes per parameter, HSDP 8 (one node) 6 + 12/8.
SLOW = ["llama-3.1-8b", "--gpus", "32", "--seq", "4096", "--global-batch", "64", "--tp", "1", "--pp", "1",
        "--cp", "1", "--inter-node-gbps", "2"]


def _plan(capsys, *argv) -> dict:
    assert main(["plan", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _train_total(capsys, command: str) -> int:
    assert main(command.split()[1:] + ["--json"]) == 0
    return json.loads(capsys.readouterr().out)["memory"]["total_bytes"]


def _alternative(data: dict, prefix: str) -> dict:
    (alt,) = [a for a in data["alternatives"] if a["label"].startswith(prefix)]
    return alt


# --- the degrees searched ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("fields,gpus_per_node,want", [
    (dict(tp=1, dp=32), 8, [8, 16]),  # one node, two nodes (4 nodes = all of dp: full sharding)
    (dict(tp=4, dp=64), 8, [2, 4, 8]),  # TP4 leaves 2 data-parallel ranks per node
    (dict(tp=2, cp=2, dp=16), 8, [2, 4, 8]),  # shard group of dp_shard·cp ranks: 4 ranks at TP2 fill the node
    (dict(tp=8, dp=32), 8, [2, 4]),  # TP fills the node: a shard group of one rank shards nothing
    (dict(tp=8, cp=4, dp=32), 8, [1, 2, 4]),  # ... unless CP ranks share it
    (dict(tp=1, dp=8), 8, []),  # one node: the node's shard group is full sharding
    (dict(tp=1, dp=32, zero=0), 8, []),  # nothing sharded without ZeRO
    (dict(tp=4, dp=256, ep=256), 8, []),  # EP must borrow ranks of one shard group
    (dict(tp=1, dp=64), 4, [4, 8, 16]),  # the node size comes from the network model
])
def test_dp_shard_options(fields, gpus_per_node, want):
    assert dp_shard_options(Layout(**{"zero": 1, **fields}), gpus_per_node) == want


def test_hybrid_sharding_never_needs_less_memory_than_full_sharding_in_the_pruning_rules():
    full = Layout(tp=1, dp=32, zero=1, micro_batch=2)
    assert memory_dominates(full, Layout(tp=1, dp=32, zero=1, micro_batch=2, dp_shard=8))
    assert not memory_dominates(Layout(tp=1, dp=32, zero=1, micro_batch=2, dp_shard=8), full)
    assert memory_dominates(Layout(tp=1, dp=32, zero=1, dp_shard=16), Layout(tp=1, dp=32, zero=1, dp_shard=8))
    assert most_frugal(Layout(tp=1, dp=32, zero=1, dp_shard=8), Pins(), 64).dp_shard is None


def test_only_the_combinations_the_memory_engine_has_are_searched():
    assert engine_hsdp_support("megatron") == ((1,), True)  # partial distributed optimizer
    assert engine_hsdp_support("deepspeed") == ((3,), False)  # MiCS: ZeRO-3, not with EP
    assert engine_hsdp_support("torch") == ((1, 2, 3), True)


def test_torch_zero1_hybrid_is_not_proposed(capsys):
    """torch's ZeRO-1 over a shard group keeps DDP's all-reduce over every rank, which the step-time model's hybrid
    collectives do not describe; ZeRO-2/3 (FSDP2 on a 2-D mesh) are searched."""
    argv = ["--framework", "torch", "--gpu", "h100", "--inter-node-gbps", "2"]
    rows = _plan(capsys, *SLOW, "--zero", "1", "--top", "20", *argv)["plans"]
    assert rows and all(r["dp_shard"] is None for r in rows)
    rows = _plan(capsys, *SLOW, "--zero", "2", "--top", "20", *argv)["plans"]
    assert any(r["dp_shard"] for r in rows)


# --- HSDP wins where it should, and loses where only full sharding fits ------------------------------------------

def test_hsdp_wins_on_a_slow_network_and_train_reproduces_its_memory(capsys):
    data = _plan(capsys, *SLOW, "--gpu", "h100")
    win = data["plans"][0]
    assert win["dp_shard"] == 8 and win["dp"] == 32 and "--dp-shard 8" in win["train_command"]
    assert _train_total(capsys, win["train_command"]) == win["memory_total_bytes"]
    assert "DP32 (HSDP 8)" in data["why"][0]
    full = _alternative(data, "full sharding instead of HSDP")
    assert full["layout"]["dp_shard"] is None and full["memory_total_bytes"] < win["memory_total_bytes"]
    assert full["step_s"] > 2 * win["step_s"] and full["verdict"].startswith("fits, but +")
    # the old search (full sharding only) is still there, and slower
    old = _plan(capsys, *SLOW, "--gpu", "h100", "--no-hsdp")
    assert all(p["dp_shard"] is None for p in old["plans"])
    assert old["plans"][0]["step_s"] == pytest.approx(full["step_s"])
    assert not any(a["label"].startswith("hybrid sharding") for a in old["alternatives"])


def test_full_sharding_when_the_node_level_shard_does_not_fit(capsys):
    """The same run on 64 GB Ascend 910B: HSDP would be far faster but its optimizer shard does not fit."""
    data = _plan(capsys, *SLOW, "--gpu", "ascend-910b")
    win = data["plans"][0]
    assert win["dp_shard"] is None and win["dp"] == 32
    alt = _alternative(data, "hybrid sharding instead of full sharding (HSDP 8")
    assert alt["layout"]["dp_shard"] == 8 and alt["step_s"] < win["step_s"]
    assert alt["verdict"].startswith("does not fit: needs")
    hsdp_cmd = win["train_command"] + " --dp-shard 8"
    assert _train_total(capsys, hsdp_cmd) == alt["memory_total_bytes"] > 64 * 2**30
    assert _train_total(capsys, win["train_command"]) == win["memory_total_bytes"]


def test_compare_names_a_shard_group_size(capsys):
    data = _plan(capsys, *SLOW, "--gpu", "h100", "--compare", "dp_shard=16")
    alt = _alternative(data, "requested dp_shard=16")
    assert "DP32 (HSDP 16)" in alt["label"] and alt["layout"]["dp_shard"] == 16


# --- every row is gpuplan train's memory -------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [
    ["--layers", "8", "--hidden", "1024", "--heads", "16", "--gpus", "32", "--seq", "2048", "--global-batch", "64",
     "--gpu", "h100", "--inter-node-gbps", "2", "--pp", "1,2"],
    ["--layers", "8", "--hidden", "1024", "--heads", "16", "--gpus", "32", "--seq", "2048", "--global-batch", "64",
     "--gpu", "h100", "--inter-node-gbps", "2", "--framework", "torch", "--tp", "1,2", "--pp", "1"],
    ["llama-3.1-8b", "--tokens", "10B", "--days", "1", "--seq", "4096", "--global-batch", "64", "--gpu", "h100",
     "--inter-node-gbps", "12.5", "--tp", "1,2", "--pp", "1,2", "--cp", "1"],  # a deadline: 16 GPUs, HSDP wins
])
def test_every_plan_row_matches_train(capsys, argv):
    data = _plan(capsys, *argv, "--top", "4")
    assert data["plans"] and any(p["dp_shard"] is not None for p in data["plans"])
    for p in data["plans"]:
        assert "dp_shard" in p
        assert ("--dp-shard" in p["train_command"]) == (p["dp_shard"] is not None)
        assert _train_total(capsys, p["train_command"]) == p["memory_total_bytes"]
