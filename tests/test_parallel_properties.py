"""Invariants of the per-rank estimate under parallel layouts (issue 4), checked with hypothesis.

- More sharding never costs a GPU more: raising dp (with ZeRO/FSDP), tp, cp, ep or the ZeRO stage never raises the
  most loaded rank's allocated peak; raising pp never raises its model states (its activations can rise: 1F1B's
  first stage holds pp micro-batches of ceil(L/pp) layers, more than L layers when pp does not divide L).
- Conservation: summed over the ranks that split them, sharded model states add up to the unsharded total
  (pipeline stages, tensor-parallel shards beside the replicated tensors, ZeRO partitions, FSDP2 shards).
- Invalid layouts are refused with InputError naming the option; world-size errors name every degree.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gpuplan.errors import InputError
from gpuplan.model.hf_config import spec_from_config
from gpuplan.model.presets import find_preset
from gpuplan.model.tensors import tensor_table
from gpuplan.train.config import TrainConfig
from gpuplan.train.engine import estimate_training

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DENSE = ("llama-3.1-8b", "qwen2.5-7b", "llama-3.1-70b", "mistral-7b-v0.1")
MOE = ("mixtral-8x7b-v0.1", "qwen3-30b-a3b")
SPECS = {name: find_preset(name).spec() for name in DENSE + MOE}


def _peak(spec, **kw) -> int:
    return estimate_training(spec, TrainConfig(**kw)).memory.allocated_peak_bytes


def _states(m) -> int:
    return m.weights_bytes + m.gradients_bytes + m.master_weights_bytes + m.optimizer_bytes


workloads = st.fixed_dictionaries({
    "batch": st.sampled_from([1, 2, 4]),
    "seq": st.sampled_from([1024, 2048, 4096]),
    "recompute": st.sampled_from(["none", "selective", "full"]),
    "precision": st.sampled_from(["bf16", "mixed-bf16", "amp-bf16"]),
})


@SETTINGS
@given(name=st.sampled_from(DENSE), w=workloads, zero=st.sampled_from([1, 2, 3]),
       framework=st.sampled_from(["torch", "deepspeed"]), dp=st.sampled_from([1, 2, 4, 8]))
def test_doubling_dp_under_zero_never_raises_the_peak(name, w, zero, framework, dp):
    spec = SPECS[name]
    assert _peak(spec, dp=2 * dp, zero=zero, framework=framework, **w) <= _peak(spec, dp=dp, zero=zero,
                                                                             framework=framework, **w)


@SETTINGS
@given(name=st.sampled_from(DENSE), w=workloads, framework=st.sampled_from(["torch", "deepspeed", "megatron"]),
       dp=st.sampled_from([1, 2, 8]), sp=st.booleans())
def test_doubling_tp_never_raises_the_peak(name, w, framework, dp, sp):
    spec = SPECS[name]
    prev = None
    for tp in (1, 2, 4, 8):
        if spec.num_heads % tp or spec.ffn_size % tp:
            break
        cur = _peak(spec, dp=dp, tp=tp, sp=sp and tp > 1, framework=framework, **w)
        if prev is not None:
            assert cur <= prev, (tp, cur, prev)
        prev = cur


@SETTINGS
@given(name=st.sampled_from(DENSE), w=workloads, dp=st.sampled_from([1, 4]), cp=st.sampled_from([1, 2]),
       zero=st.sampled_from([0, 1, 3]))
def test_doubling_cp_never_raises_the_peak(name, w, dp, cp, zero):
    # CP ranks synchronise gradients like DP ranks: the first step from one replica to two adds DDP's gradient
    # buckets (a second copy of the gradients, torch/nn/parallel/distributed.py), so compare once they exist
    assume(dp * cp >= 2)
    spec = SPECS[name]
    assert _peak(spec, dp=dp, cp=2 * cp, zero=zero, **w) <= _peak(spec, dp=dp, cp=cp, zero=zero, **w)


def test_first_data_parallel_replica_adds_ddp_buckets():
    spec = SPECS["llama-3.1-8b"]
    one = estimate_training(spec, TrainConfig()).memory
    two = estimate_training(spec, TrainConfig(dp=2)).memory
    assert two.buffers_bytes - one.buffers_bytes >= one.gradients_bytes


@SETTINGS
@given(name=st.sampled_from(MOE), batch=st.sampled_from([1, 2]), seq=st.sampled_from([1024, 2048]),
       dp=st.sampled_from([2, 4, 8]), zero=st.sampled_from([0, 1, 3]), framework=st.sampled_from(["torch", "deepspeed"]))
def test_raising_ep_never_raises_the_peak(name, batch, seq, dp, zero, framework):
    spec = SPECS[name]
    prev = None
    for ep in (1, 2, 4, 8):
        if ep > dp or spec.moe.num_experts % ep:
            break
        cur = _peak(spec, batch=batch, seq=seq, dp=dp, ep=ep, zero=zero, framework=framework, precision="bf16")
        if prev is not None:
            assert cur <= prev, (ep, cur, prev)
        prev = cur


@SETTINGS
@given(name=st.sampled_from(DENSE), w=workloads, framework=st.sampled_from(["torch", "deepspeed"]),
       dp=st.sampled_from([2, 8, 64]))
def test_raising_the_zero_stage_never_raises_the_peak(name, w, framework, dp):
    spec = SPECS[name]
    peaks = [_peak(spec, dp=dp, zero=z, framework=framework, **w) for z in (0, 1, 2, 3)]
    assert peaks == sorted(peaks, reverse=True) or all(a >= b for a, b in zip(peaks, peaks[1:])), peaks


@SETTINGS
@given(name=st.sampled_from(DENSE), w=workloads, framework=st.sampled_from(["torch", "megatron"]),
       pp=st.sampled_from([2, 4, 8]))
def test_raising_pp_never_raises_model_states(name, w, framework, pp):
    spec = SPECS[name]
    one = estimate_training(spec, TrainConfig(framework=framework, **w)).memory
    more = estimate_training(spec, TrainConfig(pp=pp, framework=framework, **w))
    assert max(_row_states(r) for r in more.per_rank) <= _states(one)


def _row_states(r: dict) -> int:
    return r["weights_bytes"] + r["gradients_bytes"] + r["master_weights_bytes"] + r["optimizer_bytes"]


# ---- conservation: the sum over ranks of sharded model states is the unsharded total


@SETTINGS
@given(name=st.sampled_from(DENSE + MOE), pp=st.integers(min_value=2, max_value=16),
       precision=st.sampled_from(["bf16", "mixed-bf16", "fp32"]), framework=st.sampled_from(["torch", "megatron"]))
def test_pipeline_stages_sum_to_the_whole_model(name, pp, precision, framework):
    spec = SPECS[name]
    assume(pp <= spec.num_layers)
    one = estimate_training(spec, TrainConfig(precision=precision, framework=framework)).memory
    rows = estimate_training(spec, TrainConfig(precision=precision, framework=framework, pp=pp)).per_rank
    assert len(rows) == pp
    assert sum(r["params"] for r in rows) == sum(t.numel for t in tensor_table(spec)) + _tied_copy(spec)
    ratio = one.weights_bytes / sum(t.numel for t in tensor_table(spec))
    assert sum(r["weights_bytes"] for r in rows) == one.weights_bytes + _tied_copy(spec) * ratio
    # every layer on exactly one stage, in order, the first stage holding the remainder
    spans = [r["layers"] for r in rows]
    assert spans[0].startswith("0-") and spans[-1].endswith(f"-{spec.num_layers - 1}")
    sizes = [int(b) - int(a) + 1 for a, b in (s.split("-") for s in spans)]
    assert sum(sizes) == spec.num_layers and max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def _tied_copy(spec) -> int:
    """Tied embeddings: the last stage keeps its own copy of the shared matrix for the output head (Megatron)."""
    return sum(t.numel for t in tensor_table(spec) if t.component == "embedding" and t.tp == "vocab") \
        if spec.tie_embeddings else 0


@SETTINGS
@given(name=st.sampled_from(DENSE), tp=st.sampled_from([2, 4, 8]), framework=st.sampled_from(["torch", "megatron"]))
def test_tensor_parallel_shards_plus_replicas_sum_to_the_whole_model(name, tp, framework):
    spec = SPECS[name]
    assume(spec.num_kv_heads % tp == 0)
    table = tensor_table(spec)
    total = sum(t.numel for t in table)
    replicated = sum(t.numel for t in table if t.tp == "replicated" or (t.tp == "vocab" and framework == "torch"))
    row = estimate_training(spec, TrainConfig(tp=tp, framework=framework)).per_rank[0]
    # tp ranks each hold 1/tp of the split tensors and a full copy of the replicated ones
    assert tp * row["params"] - (tp - 1) * replicated == total


@SETTINGS
@given(P_billion=st.integers(min_value=1, max_value=400), dp=st.sampled_from([2, 4, 8, 16, 64, 256]),
       zero=st.sampled_from([1, 2, 3]))
def test_zero_partitions_sum_to_the_unsharded_states(P_billion, dp, zero):
    P = P_billion * 1_000_000_000 // 1024 * 1024  # divisible by every dp above
    cfg = dict(precision="mixed-bf16", optimizer="adam", framework="deepspeed")
    one = estimate_training(None, TrainConfig(**cfg), params_total=P).memory
    m = estimate_training(None, TrainConfig(dp=dp, zero=zero, **cfg), params_total=P).memory
    sharded = {1: ("optimizer_bytes", "master_weights_bytes"),
               2: ("optimizer_bytes", "master_weights_bytes", "gradients_bytes"),
               3: ("optimizer_bytes", "master_weights_bytes", "gradients_bytes", "weights_bytes")}[zero]
    for key in ("weights_bytes", "gradients_bytes", "master_weights_bytes", "optimizer_bytes"):
        expected = getattr(one, key) // dp if key in sharded else getattr(one, key)
        assert getattr(m, key) == expected, key


# FSDP2 shards every parameter on dim 0 into ceil(dim0 / W) rows per rank; with every dim divisible by W and every
# shard a multiple of 512 B the W shards are exactly the unsharded parameters
POW2 = dict(model_type="llama", hidden_size=2048, intermediate_size=8192, num_hidden_layers=4, num_attention_heads=16,
            num_key_value_heads=8, vocab_size=32768, max_position_embeddings=4096, tie_word_embeddings=False)


@pytest.mark.parametrize("world", [2, 4])
@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_fsdp2_shards_sum_to_the_unsharded_states(world, precision):
    spec = spec_from_config(dict(POW2))
    one = estimate_training(spec, TrainConfig(precision=precision)).memory
    m = estimate_training(spec, TrainConfig(precision=precision, dp=world, zero=3)).memory
    for key in ("weights_bytes", "gradients_bytes", "optimizer_bytes"):
        assert world * getattr(m, key) == getattr(one, key), key


def test_fsdp2_pads_uneven_dim0_per_parameter():
    # vocab 32001 at W = 4: ceil(32001 / 4) = 8001 rows on every rank, 3 padding rows in all
    spec = spec_from_config(dict(POW2, vocab_size=32001))
    even = spec_from_config(dict(POW2))
    m = estimate_training(spec, TrainConfig(dp=4, zero=3)).memory.weights_bytes
    m_even = estimate_training(even, TrainConfig(dp=4, zero=3)).memory.weights_bytes
    rows = 8001 - 8192  # per-rank rows of embedding and lm_head: 8001 vs 32768 / 4 = 8192
    delta = 2 * rows * 2048 * 2  # two matrices, h = 2048, bf16
    assert abs((m - m_even) - delta) <= 2 * 512  # each shard is its own 512-B block


# ---- refusal of invalid layouts


@settings(max_examples=60, deadline=None)
@given(gpus=st.integers(1, 64), tp=st.sampled_from([1, 2, 3, 4, 8]), pp=st.sampled_from([1, 2, 4, 5]),
       cp=st.sampled_from([1, 2]))
def test_world_size_mismatch_is_refused_naming_every_degree(gpus, tp, pp, cp):
    spec = SPECS["llama-3.1-8b"]
    try:
        r = estimate_training(spec, TrainConfig(gpus=gpus, tp=tp, pp=pp, cp=cp))
    except InputError as e:
        msg = str(e)
        if gpus % (tp * pp * cp):
            assert e.field == "--gpus"
            for degree in ("dp=", "tp=", "pp=", "cp=", "ep=", "vpp=", "microbatches=", "world size="):
                assert degree in msg, msg
        else:
            assert e.field in ("--tp", "--pp", "--cp"), msg
        return
    assert gpus % (tp * pp * cp) == 0
    assert 32 % tp == 0 and pp <= 32
    assert len(r.per_rank) == (pp if gpus > 1 else 0)  # one GPU: the single-GPU engine, no per-rank rows


@pytest.mark.parametrize("kw,field", [
    (dict(tp=3), "--tp"),  # 32 heads
    (dict(tp=16), None),  # 8 KV heads: 16 is a multiple, KV heads replicated -> allowed
    (dict(tp=12), "--tp"),  # neither divides heads
    (dict(pp=33), "--pp"),  # 32 layers
    (dict(pp=8, vpp=5), "--pp"),  # 40 virtual stages > 32 layers
    (dict(ep=2, dp=2), "--ep"),  # dense model
    (dict(cp=3), "--cp"),  # seq 2048
    (dict(gpus=12, tp=8), "--gpus"),
    (dict(dp=2, tp=2, gpus=8), "--gpus"),
])
def test_invalid_dense_layouts(kw, field):
    spec = SPECS["llama-3.1-8b"]
    if field is None:
        estimate_training(spec, TrainConfig(**kw))
        return
    with pytest.raises(InputError) as err:
        estimate_training(spec, TrainConfig(**kw))
    assert err.value.field == field


@pytest.mark.parametrize("kw,field", [
    (dict(ep=3, dp=3), "--ep"),  # 8 experts
    (dict(ep=8, dp=2), "--ep"),  # ep must divide dp·cp·tp = 2
    (dict(ep=16, dp=16), "--ep"),  # 8 experts
])
def test_invalid_moe_layouts(kw, field):
    with pytest.raises(InputError) as err:
        estimate_training(SPECS["mixtral-8x7b-v0.1"], TrainConfig(**kw))
    assert err.value.field == field


def test_expert_parallel_borrows_tensor_parallel_ranks():
    # torchtitan: ep divides dp·cp·tp, so ep = 8 works on dp = 2, tp = 4
    r = estimate_training(SPECS["mixtral-8x7b-v0.1"], TrainConfig(dp=2, tp=4, ep=8))
    assert r.memory.allocated_peak_bytes > 0


@pytest.mark.parametrize("model,argv", [
    ("llama-3.1-8b", ["--tp", "3"]),
    ("llama-3.1-8b", ["--gpus", "12", "--tp", "8"]),
    pytest.param("llama-3.1-8b", ["--pp", "33"]),
    pytest.param("llama-3.1-8b", ["--cp", "3"]),
    pytest.param("llama-3.1-8b", ["--ep", "2", "--dp", "2"]),
    pytest.param("llama-3.1-8b", ["--pp", "2", "--vpp", "2", "--microbatches", "3"]),
    pytest.param("mixtral-8x7b-v0.1", ["--ep", "3", "--dp", "3"]),
])
def test_cli_refuses_invalid_layouts_with_exit_2_naming_every_degree(capsys, model, argv):
    from gpuplan.cli.main import main

    assert main(["train", model, *argv]) == 2
    err = capsys.readouterr().err
    for degree in ("dp=", "tp=", "pp=", "cp=", "ep=", "vpp=", "microbatches=", "world size="):
        assert degree in err, err


@pytest.mark.parametrize("name,ep", [("mixtral-8x7b-v0.1", 2), ("mixtral-8x7b-v0.1", 8), ("qwen3-30b-a3b", 8),
                                     ("qwen3-30b-a3b", 32)])
def test_expert_parallel_shards_plus_replicas_sum_to_the_whole_model(name, ep):
    spec = SPECS[name]
    table = tensor_table(spec)
    experts = sum(t.numel for t in table if t.expert is not None)
    total = sum(t.numel for t in table)
    row = estimate_training(spec, TrainConfig(dp=ep, ep=ep)).per_rank[0]
    # routed experts split over ep ranks; attention, router, norms, embeddings replicated
    assert ep * row["params"] - (ep - 1) * (total - experts) == total


@pytest.mark.parametrize("dp", [2, 8, 64])
def test_deepspeed_zero3_partitions_plus_persistent_params_sum_to_the_weights(dp):
    # stage3_param_persistence_threshold (deepspeed/runtime/zero/config.py, default 1e5 elements): smaller
    # parameters (norm weights, biases) stay whole on every rank; the rest is partitioned over dp
    spec = SPECS["llama-3.1-8b"]
    table = tensor_table(spec)
    persistent = sum(t.numel for t in table if t.numel < 100_000)
    sharded = sum(t.numel for t in table if t.numel >= 100_000)
    cfg = dict(precision="mixed-bf16", framework="deepspeed")
    m = estimate_training(spec, TrainConfig(dp=dp, zero=3, **cfg)).memory
    assert abs(m.weights_bytes - 2 * (persistent + sharded / dp)) <= 2 * len(table)
    one = estimate_training(spec, TrainConfig(**cfg)).memory
    for key in ("gradients_bytes", "master_weights_bytes", "optimizer_bytes"):
        assert abs(dp * getattr(m, key) - getattr(one, key)) <= 16 * dp * len(table), key


@SETTINGS
@given(name=st.sampled_from(DENSE + MOE), framework=st.sampled_from(["torch", "megatron"]),
       recompute=st.sampled_from(["none", "selective"]), batch=st.sampled_from([1, 2]),
       seq=st.sampled_from([1024, 4096]))
def test_tensor_parallel_activations_split_and_replicated_parts(name, framework, recompute, batch, seq):
    # Korthikanti et al. 2022 section 4.2: without SP a layer keeps replicated tensors R (norm inputs, residual)
    # beside the split ones S/t, so A(t) = R + S/t; Megatron's sequence parallelism splits R too, so A(t) = A(1)/t.
    # DTensor's (torch) keeps the all-gathered inputs G of the column projections and the head whole:
    # A(t) = A(1)/t + G (1 - 1/t), so (A(2) - A(1)/2) / (A(4) - A(1)/4) = (1/2) / (3/4)
    spec = SPECS[name]

    def acts(tp: int, sp: bool) -> int:
        cfg = TrainConfig(tp=tp, sp=sp, framework=framework, recompute=recompute, batch=batch, seq=seq)
        return estimate_training(spec, cfg).memory.activations_bytes

    a1, a2, a4 = acts(1, False), acts(2, False), acts(4, False)
    assert a1 > a2 > a4
    assert (a1 - a2) == pytest.approx(2 * (a2 - a4), rel=1e-3)
    if framework == "megatron":
        assert acts(2, True) == pytest.approx(a1 / 2, rel=2e-3)
        assert acts(4, True) == pytest.approx(a1 / 4, rel=2e-3)
    else:
        g2, g4 = acts(2, True) - a1 / 2, acts(4, True) - a1 / 4
        assert g2 > 0 and g2 / g4 == pytest.approx(2 / 3, rel=2e-2)


@SETTINGS
@given(name=st.sampled_from(DENSE), cp=st.sampled_from([2, 4]), seq=st.sampled_from([4096, 8192]),
       recompute=st.sampled_from(["none", "full"]))
def test_context_parallel_gives_each_rank_seq_over_cp_tokens(name, cp, seq, recompute):
    # activations and logits of a CP rank are those of seq/cp tokens (SDPA/flash: no s² tensor); CP's ring
    # buffers are reported under buffers_bytes
    spec = SPECS[name]
    split = estimate_training(spec, TrainConfig(seq=seq, cp=cp, recompute=recompute)).memory
    short = estimate_training(spec, TrainConfig(seq=seq // cp, recompute=recompute)).memory
    assert split.activations_bytes == pytest.approx(short.activations_bytes, rel=1e-3)
    assert split.logits_bytes == short.logits_bytes


@pytest.mark.parametrize("pp,m,expected", [(4, 8, [4, 3, 2, 1]), (4, 4, [4, 3, 2, 1]), (4, 2, [2, 2, 2, 1]),
                                           (8, 1, [1] * 8)])
def test_1f1b_stage_i_holds_min_pp_minus_i_microbatches(pp, m, expected):
    rows = estimate_training(SPECS["llama-3.1-8b"], TrainConfig(pp=pp, microbatches=m)).per_rank
    assert [r["inflight_microbatches"] for r in rows] == expected
    # with more than one micro-batch in flight the first stage is the most loaded in activations (with one, the
    # last stage's output-head input tips it)
    if m > 1:
        assert rows[0]["activations_bytes"] == max(r["activations_bytes"] for r in rows)


@SETTINGS
@given(name=st.sampled_from(DENSE), dp=st.sampled_from([2, 4, 8]), framework=st.sampled_from(["torch", "deepspeed"]),
       zero=st.sampled_from([0, 1, 2, 3]), dtype=st.sampled_from(["fp32", "model"]))
def test_lora_adapters_shard_like_every_trainable_parameter(name, dp, framework, zero, dtype):
    """LoRA's adapter states (weights, gradients, optimizer states) on one of dp ranks: the single-GPU figure,
    divided where the scheme divides a trainable parameter's (DeepSpeed: states from ZeRO-1, gradients from
    ZeRO-2, weights from ZeRO-3 above the persistence threshold; FSDP2: all three, padded dim-0 shards). The
    adapters are in the model's dtype with ``--lora-dtype model``, fp32 otherwise, except under DeepSpeed, whose
    engine casts them to the 16-bit dtype and keeps fp32 master copies and fp32 optimizer states."""
    spec = SPECS[name]
    common = dict(batch=1, seq=1024, precision="bf16", method="lora", lora_rank=16, lora_dtype=dtype,
                  lora_targets=("q_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"))
    single = estimate_training(spec, TrainConfig(**common)).memory
    multi = estimate_training(spec, TrainConfig(framework=framework, dp=dp, zero=zero, **common)).memory
    # gradients and optimizer states are the adapters' only
    fsdp = framework == "torch" and zero >= 2
    g_div = dp if zero >= 2 else 1
    s_div = dp if zero >= 1 or fsdp else 1
    if framework == "deepspeed":
        elems = single.gradients_bytes // (4 if dtype == "fp32" else 2)
        single = replace(single, gradients_bytes=elems * 2, optimizer_bytes=elems * 8)
        assert multi.master_weights_bytes == pytest.approx(elems * 4 / s_div, rel=0.02)
    assert multi.gradients_bytes <= single.gradients_bytes // g_div * 1.02 + 4096
    assert multi.gradients_bytes >= single.gradients_bytes // g_div * 0.98
    assert multi.optimizer_bytes <= single.optimizer_bytes // s_div * 1.02 + 4096
    assert multi.optimizer_bytes >= single.optimizer_bytes // s_div * 0.98
