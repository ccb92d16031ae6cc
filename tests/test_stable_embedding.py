"""--stable-embedding: litgpt's QLoRA replaces the token embedding by bitsandbytes' StableEmbedding after building
the optimizer (litgpt 0.5.3 finetune/lora.py), so the embedding's gradient is computed every step and kept."""

import pytest

from gpuplan.errors import InputError
from gpuplan.model.presets import find_preset
from gpuplan.train.config import TrainConfig
from gpuplan.train.engine import estimate_training

SPEC = find_preset("llama-3.2-1b").spec()
BASE = dict(stack="litgpt", method="qlora", batch=1, seq=256, lora_rank=8, lora_targets=("q_proj", "v_proj"))


def _phases(**kw) -> tuple[dict[str, int], object]:
    est = estimate_training(SPEC, TrainConfig(**BASE, **kw))
    return {p.name: p.bytes for p in est.phases}, est


def test_the_litgpt_stack_turns_it_on_for_qlora_only():
    assert TrainConfig(**BASE).stable_embedding is True
    assert TrainConfig(**{**BASE, "method": "lora"}).stable_embedding is False
    assert TrainConfig(**{**BASE, "stack": "torch"}).stable_embedding is False


def test_the_embedding_gradient_is_kept_through_the_step_and_doubled_at_the_end_of_backward():
    grad = SPEC.vocab_size * SPEC.hidden_size * 2  # bf16, as the embedding it replaces
    on, est_on = _phases()
    off, est_off = _phases(stable_embedding=False)
    assert on.keys() == off.keys()
    # its LayerNorm keeps its input (bf16) and fp32 mean and rstd: 2h + 8 bytes a token until its backward
    norm = (2 * SPEC.hidden_size + 8) * 256
    for name in on:
        extra = on[name] - off[name]
        if name == "end of backward":  # the kept gradient and the new one before it is added in
            assert 2 * grad <= extra <= 2 * grad + norm
        elif name == "optimizer step":
            assert extra == grad
        else:
            assert grad <= extra <= grad + norm, name
    assert est_on.memory.gradients_bytes - est_off.memory.gradients_bytes == grad
    assert any(a.startswith("StableEmbedding (litgpt finetune/lora.py)") for a in est_on.memory.assumptions)


def test_several_devices_are_refused_as_litgpt_refuses_them():
    with pytest.raises(InputError, match="Quantization is currently not supported for multi-GPU training"):
        TrainConfig(**BASE, gpus=2)
    assert TrainConfig(**BASE, gpus=2, stable_embedding=False).stable_embedding is False
