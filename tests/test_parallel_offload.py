"""--zero and --offload are never silently ignored: on one GPU they take the per-rank path (ZeRO-Offload's
single-GPU case, Ren et al. 2021), and combinations no framework offers are refused naming the option."""

from __future__ import annotations

import pytest

from gpuplan.errors import InputError
from gpuplan.model.presets import find_preset
from gpuplan.model.tensors import tensor_table
from gpuplan.train.config import TrainConfig
from gpuplan.train.engine import estimate_training

SPEC = find_preset("llama-3.1-8b").spec()
P = sum(t.numel for t in tensor_table(SPEC))
DS = dict(framework="deepspeed", precision="mixed-bf16")


def test_zero_offload_on_one_gpu_moves_master_states_and_gradients_to_the_host():
    plain = estimate_training(SPEC, TrainConfig(zero=2, **DS))
    off = estimate_training(SPEC, TrainConfig(zero=2, offload="optimizer", **DS))
    m = off.memory
    # GPU: the bf16 weights (DeepSpeed's estimator: 2P with offload_optimizer) and no master/optimizer/gradients
    assert m.weights_bytes == 2 * P and m.master_weights_bytes == m.optimizer_bytes == m.gradients_bytes == 0
    # host: fp32 master (4P) + Adam m, v (8P) + the fp32 gradient partition (4P)
    assert off.host_bytes == 16 * P
    assert m.allocated_peak_bytes < plain.memory.allocated_peak_bytes - 12 * P
    assert plain.host_bytes == 0


def test_zero_infinity_on_one_gpu_moves_the_parameters_too():
    opt = estimate_training(SPEC, TrainConfig(zero=3, offload="optimizer", **DS))
    both = estimate_training(SPEC, TrainConfig(zero=3, offload="optimizer+params", **DS))
    assert both.memory.weights_bytes < opt.memory.weights_bytes
    assert both.host_bytes > opt.host_bytes
    assert both.memory.allocated_peak_bytes < opt.memory.allocated_peak_bytes


def test_fsdp2_cpu_offload_policy_keeps_sharded_gradients_on_the_host_in_the_shard_dtype():
    r = estimate_training(SPEC, TrainConfig(dp=8, zero=3, offload="optimizer+params", precision="amp-bf16"))
    assert r.memory.gradients_bytes == 0 and r.memory.weights_bytes == 0
    # fp32 shards, fp32 sharded gradients, Adam m and v: 16 bytes per parameter over 8 ranks (padding aside)
    assert abs(r.host_bytes - 16 * P / 8) < 0.001 * r.host_bytes


@pytest.mark.parametrize("kw,field", [
    (dict(offload="optimizer"), "--offload"),  # DDP has no offload
    (dict(offload="optimizer", framework="deepspeed"), "--offload"),  # ZeRO-Offload needs ZeRO
    (dict(offload="optimizer+params", zero=2, framework="deepspeed"), "--offload"),  # offload_param is ZeRO-3's
    (dict(offload="optimizer+params", zero=1, framework="megatron"), "--offload"),
])
def test_offload_without_the_machinery_that_does_it_is_refused(kw, field):
    with pytest.raises(InputError) as err:
        estimate_training(SPEC, TrainConfig(**kw))
    assert err.value.field == field
    assert "dp=" in str(err.value) and "world size=" in str(err.value)


@pytest.mark.parametrize("zero", [1, 2, 3])
def test_zero_on_one_gpu_is_reported_as_the_zero_scheme(zero):
    r = estimate_training(SPEC, TrainConfig(zero=zero, **DS))
    assert any(f"ZeRO-{zero}" in a for a in r.memory.assumptions)
