"""The causal LM loss forward of older transformers releases (``gpuplan.versions`` LOSS_IN_MODEL_FORWARD,
LOSS_SHIFT_COPY): the factors traced by benchmarks/trace_loss_releases.py with each release's LlamaForCausalLM."""

from __future__ import annotations

import pytest

from gpuplan.model.resolve import resolve_model
from gpuplan.train.config import TrainConfig
from gpuplan.train.engine import estimate_training
from gpuplan.train.logits import loss_memory, loss_shift_copy

T, V = 1000, 32000


@pytest.mark.parametrize("shift, e, fwd", [
    ("", 2, 10), ("", 4, 8),  # 4.49 on: labels padded, no copy (traced 10.19 and 8.24 T·V with 5.23)
    ("forward", 2, 12), ("forward", 4, 12),  # up to 4.45: the half logits dropped, the shifted copy made (4.44.2)
    ("function", 2, 14), ("function", 4, 12),  # 4.46-4.48: the model still holds the half logits (4.47.1)
])
def test_loss_forward_by_release(shift, e, fwd):
    m = loss_memory(T, V, e, shift_copy=shift)
    assert m.forward_peak_bytes == fwd * T * V
    assert m.backward_peak_bytes == 12 * T * V  # the same in every release traced


@pytest.mark.parametrize("release, expected", [("4.44.2", "forward"), ("4.45", "forward"), ("4.46", "function"),
                                               ("4.48.3", "function"), ("4.49.0", ""), ("5.25", "")])
def test_the_rule_follows_the_release(release, expected):
    spec = resolve_model("llama-3.2-1b")
    assert loss_shift_copy(spec, TrainConfig(transformers_version=release)) == expected
    # not for a chunked loss nor for a stack's own modelling code
    assert loss_shift_copy(spec, TrainConfig(transformers_version=release, loss_impl="chunked")) == ""
    assert loss_shift_copy(spec, TrainConfig(transformers_version=release, stack="litgpt")) == ""


def test_an_older_release_moves_a_bf16_peak_to_the_loss_forward():
    spec = resolve_model("llama-3.2-1b")
    new = estimate_training(spec, TrainConfig(batch=2, seq=1024)).memory
    old = estimate_training(spec, TrainConfig(batch=2, seq=1024, transformers_version="4.47.1")).memory
    assert old.logits_bytes * 12 == new.logits_bytes * 14  # 14·T·V at the forward against 12·T·V at the backward
    assert old.allocated_peak_bytes > new.allocated_peak_bytes and old.peak_phase == "forward"
    assert any("ForCausalLMLoss" in w for w in old.warnings)
