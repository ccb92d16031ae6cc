"""``--kbit-prepare``: PEFT's prepare_model_for_kbit_training on a bitsandbytes QLoRA model (gpuplan.train.kbit)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from gpuplan.model.params import count_params
from gpuplan.model.presets import find_preset
from gpuplan.train.config import TrainConfig
from gpuplan.train.engine import estimate_training

ROOT = Path(__file__).resolve().parent.parent
SPEC = find_preset("llama-3.1-8b").spec()


def _memory(**kw):
    base = dict(method="qlora", batch=1, seq=1024, precision="bf16", recompute="full")
    return estimate_training(SPEC, TrainConfig(**{**base, **kw})).memory


def test_the_unquantized_parameters_take_four_bytes():
    counts = count_params(SPEC)
    plain = counts.embedding + counts.lm_head + counts.norm  # what Linear4bit does not hold
    on, off = _memory(kbit_prepare=True), _memory(kbit_prepare=False)
    assert on.weights_bytes - off.weights_bytes == 2 * plain


def test_checkpointed_layer_inputs_are_fp32():
    """Under full recomputation the kept set is each layer's input: the fp32 residual stream after the upcast."""
    on, off = _memory(kbit_prepare=True), _memory(kbit_prepare=False)
    assert on.activations_bytes - off.activations_bytes >= SPEC.num_layers * 1024 * SPEC.hidden_size * 2


@pytest.mark.parametrize(("kw", "applied"), [
    (dict(stack="hf-trainer"), True),
    (dict(stack="torch"), False),
    (dict(stack="hf-trainer", kbit_prepare=False), False),
    (dict(stack="hf-trainer", qlora_base="gptq"), False),  # PEFT skips GPTQ models
    (dict(stack="hf-trainer", gpus=2, zero=3), False),  # TRL skips sharded QLoRA
    (dict(stack="hf-trainer", gpus=2), True),  # DDP replicas each prepare their copy
])
def test_where_it_applies(kw, applied):
    report = estimate_training(SPEC, TrainConfig(method="qlora", batch=1, seq=512, precision="bf16", **kw))
    assert any("prepare_model_for_kbit_training:" in a for a in report.memory.assumptions) is applied


def test_a_cpu_trace_with_bitsandbytes_agrees():
    """benchmarks/trace_kbit.py: a QLoRA step with bitsandbytes' NF4 Linear4bit on the CPU (needs bitsandbytes)."""
    pytest.importorskip("bitsandbytes")
    pytest.importorskip("peft")
    spec = importlib.util.spec_from_file_location("trace_kbit", ROOT / "benchmarks" / "trace_kbit.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    cfg = mod.config(256, 2, 8000)
    for prepare in (False, True):
        traced, est = mod.traced_peak(cfg, 1024, prepare), mod.estimated_peak(cfg, 1024, prepare)
        assert abs(est / traced - 1) < 0.03, (prepare, est, traced)
