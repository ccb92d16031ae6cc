"""Gradient accumulation and pipeline micro-batches: from the second micro-batch of a step on, every gradient
already exists and backward adds into it in place (AccumulateGrad; Megatron's main_grad), so the step's peak rises
by at most the gradients that did not exist yet at the first micro-batch's peak, never by a second copy of them.
DeepSpeed ZeRO-2 with contiguous gradients is the exception: it reduces every micro-batch into a fresh partition
buffer beside the accumulated one (gpuplan.parallel.deepspeed), so its rise is at most two sets.
The live trace of the rise is tests/test_parallel_live.py::test_gradient_accumulation_adds_what_the_trace_adds."""

from __future__ import annotations

import pytest

from gpuplan.model.presets import find_preset
from gpuplan.train.config import TrainConfig
from gpuplan.train.engine import estimate_training

SPEC = find_preset("llama-3.1-8b").spec()


def _fwd_bwd(r) -> int:
    return max(p.bytes for p in r.phases if p.name != "optimizer step")


@pytest.mark.parametrize("kw", [
    dict(dp=2),  # DDP
    dict(dp=2, recompute="full"),
    dict(dp=4, zero=1, framework="deepspeed", precision="mixed-bf16"),
    dict(dp=4, zero=2, framework="deepspeed", precision="mixed-bf16"),
    dict(dp=4, zero=3, framework="torch", precision="amp-bf16"),  # FSDP2
    dict(dp=2, zero=1, framework="megatron", precision="mixed-bf16", recompute="full"),
])
def test_accumulation_adds_at_most_one_set_of_gradients(kw):
    one = estimate_training(SPEC, TrainConfig(seq=2048, **kw))
    acc = estimate_training(SPEC, TrainConfig(seq=2048, grad_accum=4, **kw))
    rise = _fwd_bwd(acc) - _fwd_bwd(one)
    sets = 2 if kw.get("framework") == "deepspeed" and kw.get("zero") == 2 else 1
    assert 0 <= rise <= sets * acc.memory.gradients_bytes
    if sets == 2:
        assert rise > acc.memory.gradients_bytes
    # no phase of the step can hold more gradients than the end of backward, where all of them exist
    ends = {p.name: p.bytes for p in acc.phases}
    layer = max(v for k, v in ends.items() if k.startswith("layer "))
    activations = acc.memory.activations_bytes + acc.memory.buffers_bytes + acc.memory.logits_bytes
    assert layer <= ends["end of backward"] + activations


@pytest.mark.parametrize("recompute", ["none", "full"])
def test_megatron_main_grad_buffer_is_resident_from_the_first_micro_batch(recompute):
    # the fp32 main_grad buffer is allocated at wrap time: accumulating changes nothing, and the forward pass
    # already holds every gradient
    kw = dict(dp=2, zero=1, framework="megatron", precision="mixed-bf16", recompute=recompute)
    one = estimate_training(SPEC, TrainConfig(**kw))
    acc = estimate_training(SPEC, TrainConfig(grad_accum=4, **kw))
    assert acc.memory.allocated_peak_bytes == one.memory.allocated_peak_bytes
    m = one.memory
    forward = next(p.bytes for p in one.phases if p.name == "forward")
    assert forward >= m.weights_bytes + m.master_weights_bytes + m.optimizer_bytes + m.gradients_bytes


def test_pipeline_stage_with_one_micro_batch_per_stage_never_holds_all_gradients_and_pp_micro_batches():
    # 1F1B, m == pp: stage 0 holds pp micro-batches only before its first backward (no gradients yet); once
    # gradients exist at most pp - 1 are in flight
    spec = find_preset("llama-3.1-70b").spec()
    kw = dict(tp=8, pp=4, dp=2, seq=4096, recompute="full")
    m4 = estimate_training(spec, TrainConfig(microbatches=4, **kw)).per_rank[0]["allocated_peak_bytes"]
    m8 = estimate_training(spec, TrainConfig(microbatches=8, **kw)).per_rank[0]["allocated_peak_bytes"]
    assert m4 < m8


def test_pipelined_fsdp2_keeps_the_stage_unsharded_until_the_last_micro_batch():
    """torch.distributed.pipelining runs FSDP2 stages without gradient sync and without resharding after backward
    until the step's last micro-batch (stage.py backward_maybe_with_nosync): at the last stage's end of backward
    its parameters are unsharded in bf16 and its gradients accumulated unsharded in the fp32 reduce dtype, 6 bytes
    per parameter of the stage beside the sharded states; the optimizer step sees only the sharded gradients."""
    spec = find_preset("llama-3.2-1b").spec()
    cfg = TrainConfig(batch=1, seq=1024, precision="amp-bf16", framework="torch", dp=2, zero=3, pp=2,
                      microbatches=4, gpus=4)
    r = estimate_training(spec, cfg)
    last = r.per_rank[-1]
    stage_params = last["params"]  # this stage's parameters, unsharded (every TP degree is 1 here)
    static = last["weights_bytes"] + last["master_weights_bytes"] + last["optimizer_bytes"]
    phases = {p.name: p.bytes for p in r.phases}  # the most loaded rank is the last stage here
    assert r.memory.peak_phase.startswith(f"stage {last['stage']}")
    above = phases["end of backward"] - static
    assert 6 * stage_params <= above <= 6.5 * stage_params  # + one group's fp32 reduce-scatter input at the end
    assert phases["optimizer step"] - static <= last["gradients_bytes"] + 2 * stage_params  # sharded grads + step
    # without a pipeline the same FSDP2 run keeps sharded gradients (and the root group's unsharded ones) only
    flat = estimate_training(spec, TrainConfig(batch=1, seq=1024, precision="amp-bf16", framework="torch", dp=2,
                                               zero=3, gpus=2, grad_accum=4))
    flat_phases = {p.name: p.bytes for p in flat.phases}
    flat_static = flat.memory.weights_bytes + flat.memory.master_weights_bytes + flat.memory.optimizer_bytes
    assert flat_phases["end of backward"] - flat_static < 4 * flat.per_rank[0]["params"]
