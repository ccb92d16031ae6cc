"""DeepSpeed ZeRO-1/2 as deepspeed/runtime/zero/stage_1_and_2.py and engine.py hold memory (gpuplan.parallel.deepspeed):
the second gradient partition of an accumulating ZeRO-2 backward, the flat 16-bit copy step() converts to fp32, and
LoRA adapters cast to the 16-bit dtype beside fp32 master partitions. Hand-worked from the sources, no trace: the CPU
cannot run DeepSpeed's optimizer."""

from __future__ import annotations

import pytest

from gpuplan.model.presets import find_preset
from gpuplan.model.tensors import tensor_table
from gpuplan.train.config import TrainConfig
from gpuplan.train.engine import estimate_training

SPEC = find_preset("llama-3.2-1b").spec()
PARAMS = sum(t.numel for t in tensor_table(SPEC))
COMMON = dict(batch=1, seq=512, precision="bf16", framework="deepspeed", dp=2, zero=2, ds_overlap_comm="on",
              ds_reduce_bucket=50_000_000)


def _run(**kw):
    r = estimate_training(SPEC, TrainConfig(**{**COMMON, **kw}))
    return r.memory, {p.name: p.bytes for p in r.phases}


def _layer_backward(phases: dict[str, int]) -> int:
    return next(v for k, v in phases.items() if k.startswith("layer "))


@pytest.mark.parametrize("grad_accum", [1, 2, 4])
def test_accumulating_zero2_holds_a_second_gradient_partition_in_backward(grad_accum):
    """contiguous_gradients on adds the two ipg buffers (2 x 5e7 bf16 elements) to every backward and, from the second
    micro-batch of an accumulation, the fresh grads_in_partition buffer beside the accumulated averaged_gradients."""
    m_on, on = _run(grad_accum=grad_accum, ds_contiguous_gradients=True)
    m_off, off = _run(grad_accum=grad_accum, ds_contiguous_gradients=False)
    ipg = 2 * 50_000_000 * 2
    partition = m_on.gradients_bytes
    assert partition == PARAMS // 2 * 2
    expected = ipg + (partition if grad_accum > 1 else 0)
    assert _layer_backward(on) - _layer_backward(off) == expected
    assert on["end of backward"] - off["end of backward"] == expected


def test_zero2_step_holds_the_fp32_partition_and_its_flat_16bit_copy():
    """step(): averaged gradients (bf16 partition) + flatten(...) (bf16 copy) + .to(fp32) beside the states."""
    m, ph = _run(grad_accum=2)
    static = m.weights_bytes + m.master_weights_bytes + m.optimizer_bytes
    assert ph["optimizer step"] - static - m.gradients_bytes == PARAMS // 2 * (4 + 2)


def test_deepspeed_casts_lora_adapters_to_16_bit_with_fp32_master_and_states():
    """engine.py module.bfloat16(): the adapters are bf16 (weights, gradients); the ZeRO optimizer keeps fp32 master
    partitions and fp32 Adam states. The same adapters under plain PyTorch DDP stay fp32 (PEFT)."""
    lora = dict(method="lora", lora_rank=16, zero=1, grad_accum=1)
    ds = estimate_training(SPEC, TrainConfig(**{**COMMON, **lora}))
    torch_ddp = estimate_training(SPEC, TrainConfig(**{**COMMON, **lora, "framework": "torch", "zero": 0}))
    adapters = torch_ddp.memory.gradients_bytes // 4  # fp32 gradients of every adapter element
    assert ds.memory.gradients_bytes == adapters * 2
    assert ds.memory.master_weights_bytes == pytest.approx(adapters * 4 / 2, rel=1e-3)
    assert ds.memory.optimizer_bytes == pytest.approx(adapters * 8 / 2, rel=1e-3)
    assert torch_ddp.memory.weights_bytes - ds.memory.weights_bytes == adapters * 2
    assert any("adapters in the 16-bit dtype with fp32 master copies" in a for a in ds.memory.assumptions)


@pytest.mark.parametrize("framework,zero", [("torch", 0), ("deepspeed", 0)])
def test_lora_gradients_are_held_through_later_micro_batches_on_several_gpus(framework, zero):
    """Accumulating, the adapters' gradients exist from the second micro-batch's forward on, as on one GPU."""
    kw = dict(method="lora", lora_rank=64, framework=framework, zero=zero)
    one, ph1 = _run(grad_accum=1, **kw)
    _, ph2 = _run(grad_accum=2, **kw)
    assert ph2["forward"] - ph1["forward"] == one.gradients_bytes > 0
