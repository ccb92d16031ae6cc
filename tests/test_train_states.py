"""Model-state accounting per precision recipe and optimizer (papers and framework sources)."""

from __future__ import annotations

import math

import pytest

from gpuplan.model.presets import find_preset
from gpuplan.train.config import TrainConfig
from gpuplan.train.engine import estimate_training
from gpuplan.train.optimizer import eight_bit_state_bytes, optimizer_memory
from gpuplan.train.peft import nf4_bytes

P = 7_500_000_000


def _states(**kw) -> tuple[int, int, int, int]:
    m = estimate_training(None, TrainConfig(**kw), params_total=P).memory
    return m.weights_bytes, m.gradients_bytes, m.master_weights_bytes, m.optimizer_bytes


def test_zero_paper_mixed_precision_adam_is_16_bytes_per_param():
    # ZeRO (arXiv:1910.02054) section 3.1: 2 + 2 + K·Ψ with K = 12 (fp32 params, momentum, variance)
    w, g, master, opt = _states(precision="mixed-bf16", optimizer="adam")
    assert (w, g, master + opt) == (2 * P, 2 * P, 12 * P)
    assert w + g + master + opt == 16 * P


def test_deepspeed_bf16_is_mixed_precision():
    assert sum(_states(precision="bf16", framework="deepspeed")) == 16 * P


def test_megatron_is_18_bytes_per_param():
    # Megatron-LM theoretical_memory_usage.py: bf16 params, fp32 main grads, fp32 main params + Adam = 18
    w, g, master, opt = _states(precision="bf16", framework="megatron")
    assert (w, g, master, opt) == (2 * P, 4 * P, 4 * P, 8 * P)


@pytest.mark.parametrize("precision,expected", [("fp32", (4, 4, 0, 8)), ("bf16", (2, 2, 0, 4)),
                                                ("amp-bf16", (4, 4, 0, 8)), ("mixed-fp16", (2, 2, 4, 8))])
def test_torch_recipes(precision, expected):
    # plain torch.optim keeps states in the parameter dtype: a bf16 model's AdamW costs 2 + 2 + 4, not 2 + 2 + 8
    assert _states(precision=precision) == tuple(b * P for b in expected)


@pytest.mark.parametrize("optimizer,state_bytes", [("sgd", 0), ("sgdm", 4), ("lion", 4), ("adamw", 8)])
def test_optimizer_states_per_element(optimizer, state_bytes):
    assert _states(precision="fp32", optimizer=optimizer)[3] == state_bytes * P


def test_foreach_adamw_step_temporary_is_one_state_sized_buffer():
    shapes = [(4096, 4096), (4096,), (1000, 4096)]
    n = sum(math.prod(s) for s in shapes)
    foreach = optimizer_memory("adamw", "foreach", shapes, 2)
    fused = optimizer_memory("adamw", "fused", shapes, 2)
    loop = optimizer_memory("adamw", "for-loop", shapes, 2)
    assert foreach.step_temp_bytes == 2 * n
    assert fused.step_temp_bytes == 0
    assert loop.step_temp_bytes == 2 * 2 * 4096 * 4096  # two temporaries of the largest tensor
    assert foreach.states_bytes == fused.states_bytes == 2 * 2 * n


def test_eight_bit_adam_blocks():
    # bitsandbytes: two uint8 states + one fp32 absmax per 256-element block; small tensors stay 32-bit
    assert eight_bit_state_bytes(1 << 20) == 2 * ((1 << 20) + 4 * 4096)
    assert eight_bit_state_bytes(100) == 800


def test_nf4_double_quant_is_4_127_bits():
    # QLoRA (arXiv:2305.14314) section 3: 4 + 8/64 + 32/(64·256) = 4.127 bits per parameter
    n = 64 * 256 * 1000
    assert nf4_bytes(n) * 8 / n == pytest.approx(4 + 8 / 64 + 32 / (64 * 256))
    assert nf4_bytes(n, double_quant=False) * 8 / n == pytest.approx(4.5)


def test_weights_of_a_real_model_match_its_parameter_count():
    spec = find_preset("llama-3.1-8b").spec()
    r = estimate_training(spec, TrainConfig(precision="bf16"))
    assert r.params_total == 8_030_261_248
    assert r.memory.weights_bytes == 2 * 8_030_261_248
    assert r.memory.gradients_bytes == 2 * 8_030_261_248
    assert r.memory.optimizer_bytes == 4 * 8_030_261_248
