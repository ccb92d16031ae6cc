"""Published per-GPU numbers for parallel layouts, reproduced through the public surfaces (CLI JSON and
``estimate_training`` per-rank rows): ZeRO (Rajbhandari et al. 2020, Figure 1), Korthikanti et al. 2022 (Table 2
and the first pipeline stage under 1F1B / interleaving, section 4.2.3), Megatron-LM's distributed optimizer."""

from __future__ import annotations

import json

import pytest

from gpuplan.cli.main import main
from gpuplan.model.presets import find_preset
from gpuplan.train.config import TrainConfig
from gpuplan.train.engine import estimate_training
from gpuplan.train.korthikanti import korthikanti_layer

STATE_KEYS = ("weights_bytes", "gradients_bytes", "master_weights_bytes", "optimizer_bytes")


def _json(capsys, *argv: str) -> dict:
    assert main(["train", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("zero,paper_gb", [(0, 120.0), (1, 31.4), (2, 16.6), (3, 1.9)])
def test_zero_figure_1_through_the_cli(capsys, zero, paper_gb):
    # Ψ = 7.5B, N_d = 64, K = 12 (mixed precision Adam): (2 + 2 + K)Ψ, 2Ψ + 2Ψ + KΨ/N_d, 2Ψ + (2 + K)Ψ/N_d,
    # (2 + 2 + K)Ψ/N_d
    out = _json(capsys, "--params", "7.5B", "--gpus", "64", "--zero", str(zero), "--framework", "deepspeed",
                "--precision", "mixed-fp16", "--optimizer", "adam")
    psi, nd = 7.5e9, 64
    exact = {0: 16 * psi, 1: 4 * psi + 12 * psi / nd, 2: 2 * psi + 14 * psi / nd, 3: 16 * psi / nd}[zero]
    states = sum(out["memory"][k] for k in STATE_KEYS)
    assert states == pytest.approx(exact, abs=64)
    assert round(states / 1e9, 1) == paper_gb


GPT3 = find_preset("gpt3-175b").spec()
# beside the layers, stage 0 keeps the embedding dropout's 1-byte mask (s·b·h, hidden_dropout 0.1 in the config),
# which Table 2's per-layer values leave out
EMBED_MASK = 2048 * GPT3.hidden_size
TABLE_2 = [(False, "none", 578_813_952), (True, "none", 358_612_992), (False, "selective", 327_155_712),
           (True, "selective", 106_954_752)]


def _gpt3(**kw) -> TrainConfig:
    return TrainConfig(batch=1, seq=2048, precision="mixed-bf16", framework="megatron",
                       activation_model="korthikanti", tp=8, **kw)


@pytest.mark.parametrize("sp,recompute,per_layer", TABLE_2)
def test_korthikanti_first_stage_under_1f1b_holds_all_layers(sp, recompute, per_layer):
    # GPT-3 175B on t = 8, p = 8 (Korthikanti Table 3), 64 micro-batches: stage 0 holds p micro-batches in flight,
    # each of L/p = 12 layers, i.e. L = 96 layers' worth of the Table 2 value (section 4.2.3); the last stage one
    assert korthikanti_layer(GPT3, recompute=recompute, tp=8, sp=sp).bytes(1, 2048) == per_layer
    rows = estimate_training(GPT3, _gpt3(pp=8, sp=sp, recompute=recompute, microbatches=64)).per_rank
    assert [r["inflight_microbatches"] for r in rows] == [8, 7, 6, 5, 4, 3, 2, 1]
    assert rows[0]["activations_bytes"] == 96 * per_layer + EMBED_MASK
    assert rows[0]["layers"] == "0-11" and rows[-1]["layers"] == "84-95"


@pytest.mark.parametrize("vpp", [2, 3, 4])
def test_korthikanti_interleaved_first_stage_factor(vpp):
    # interleaved 1F1B: the first stage holds L·(1 + (p - 1)/(p·v)) layers' activations (section 4.2.3)
    per_layer = 106_954_752
    rows = estimate_training(GPT3, _gpt3(pp=8, vpp=vpp, sp=True, recompute="selective", microbatches=64)).per_rank
    assert rows[0]["activations_bytes"] - EMBED_MASK == pytest.approx(96 * per_layer * (1 + 7 / (8 * vpp)), rel=1e-9)


def test_megatron_pipeline_stage_without_enough_microbatches():
    # with m < p micro-batches stage 0 can only hold m in flight
    rows = estimate_training(GPT3, _gpt3(pp=8, sp=True, recompute="selective", microbatches=3)).per_rank
    assert rows[0]["inflight_microbatches"] == 3
    assert rows[0]["activations_bytes"] == 3 * 12 * 106_954_752 + EMBED_MASK


@pytest.mark.parametrize("dp", [2, 8, 64])
@pytest.mark.parametrize("tp,pp", [(1, 1), (2, 1), (2, 4)])
def test_megatron_distributed_optimizer_6_plus_12_over_dp_per_rank(dp, tp, pp):
    # Megatron-LM (docs/source/api-guide/dist_optimizer.md): bf16 params 2 + fp32 main grads 4 + (fp32 main params
    # + Adam m, v) 12 / dp bytes per local parameter; without it 18 bytes per parameter
    spec = find_preset("llama-3.1-8b").spec()
    base = dict(precision="bf16", framework="megatron", dp=dp, tp=tp, pp=pp)
    for row in estimate_training(spec, TrainConfig(zero=1, **base)).per_rank:
        P = row["params"]
        states = sum(row[k] for k in STATE_KEYS)
        assert abs(states - (6 * P + 12 * P / dp)) <= 12 * 300  # per-tensor floor division: < 12 B per tensor
    for row in estimate_training(spec, TrainConfig(zero=0, **base)).per_rank:
        assert sum(row[k] for k in STATE_KEYS) == 18 * row["params"]


def test_per_rank_json_bytes_are_integers(capsys):
    out = _json(capsys, "llama-3.1-70b", "--gpus", "64", "--tp", "8", "--pp", "4", "--zero", "1", "--per-rank")
    rows = out["per_rank"]
    assert [r["stage"] for r in rows] == [0, 1, 2, 3]
    assert [r["layers"] for r in rows] == ["0-19", "20-39", "40-59", "60-79"]
    assert rows[0]["embedding"] and rows[-1]["head"] and not rows[1]["embedding"] and not rows[1]["head"]
    for r in rows:
        for k, v in r.items():
            if k.endswith("_bytes"):
                assert isinstance(v, int), (k, v)
    # the top-level memory is the most loaded rank's
    worst = max(rows, key=lambda r: r["total_bytes"])
    assert out["memory"]["total_bytes"] == worst["total_bytes"]
    assert out["memory"]["allocated_peak_bytes"] == worst["allocated_peak_bytes"]


def test_per_rank_table_names_every_stage(capsys):
    assert main(["train", "llama-3.1-70b", "--gpus", "64", "--tp", "8", "--pp", "4", "--zero", "1",
                 "--per-rank"]) == 0
    text = capsys.readouterr().out
    for span in ("0-19", "20-39", "40-59", "60-79"):
        assert span in text


GIB = 2**30


def _gb(n: float) -> float:
    return round(n / GIB, 2)  # DeepSpeed prints GiB and labels them "GB"


def test_deepspeed_documented_zero2_estimates_t5_3b_on_8_gpus():
    # DeepSpeed docs/code-docs/source/memory.rst, estimate_zero2_model_states_mem_needs_all_cold(total_params=2851e6,
    # num_gpus_per_node=8): per CPU | per GPU = 127.45 | 5.31 (offload_optimizer=cpu), 127.45 | 15.93 (none)
    from gpuplan.parallel.dataparallel import deepspeed_estimator_bytes

    P = 2851_000_000
    gpu, cpu = deepspeed_estimator_bytes(2, P, 8, offload_optimizer=True)
    assert (_gb(cpu), _gb(gpu)) == (127.45, 5.31)
    gpu, cpu = deepspeed_estimator_bytes(2, P, 8)
    assert (_gb(cpu), _gb(gpu)) == (127.45, 15.93)


@pytest.mark.parametrize("offload_optimizer,offload_params,gpu_gb", [(True, True, 0.12), (True, False, 0.78),
                                                                     (False, False, 6.09)])
def test_deepspeed_documented_zero3_estimates_t5_3b_on_8_gpus(offload_optimizer, offload_params, gpu_gb):
    # same page, estimate_zero3_model_states_mem_needs_all_cold(total_params=2851e6, largest_layer_params=32e6,
    # num_gpus_per_node=8): per GPU 0.12 (offload params + optimizer), 0.78 (optimizer), 6.09 (none); per CPU
    # without zero.Init 127.45 in every row
    from gpuplan.parallel.dataparallel import deepspeed_estimator_bytes

    gpu, cpu = deepspeed_estimator_bytes(3, 2851_000_000, 8, 32_000_000, offload_optimizer=offload_optimizer,
                                         offload_params=offload_params)
    assert _gb(gpu) == gpu_gb
    assert _gb(cpu) == 127.45
