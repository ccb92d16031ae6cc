"""Fine-tuning: freezing by glob, LoRA, QLoRA — the source documents' Mixtral-8x7B cases A, B and C (seed 001 §4)."""

from __future__ import annotations

import pytest

from gpuplan.errors import InputError
from gpuplan.model.presets import find_preset
from gpuplan.model.tensors import tensor_table
from gpuplan.train.config import TrainConfig
from gpuplan.train.engine import estimate_training
from gpuplan.train.peft import lora_params, trainable_params

MIXTRAL = find_preset("mixtral-8x7b-v0.1").spec()
EXPERT = 4096 * 14336 * 2 + 14336 * 4096  # seed: 176,160,768 parameters per expert


def _trainable(**kw) -> int:
    return trainable_params(MIXTRAL, TrainConfig(**kw))


def test_expert_size():
    assert EXPERT == 176_160_768


def test_case_a_router_only():
    # d_model x n_experts per layer, 32 layers: "millions of parameters"
    assert _trainable(method="freeze", trainable=("*.block_sparse_moe.gate.*",)) == 32 * 4096 * 8 == 1_048_576


def test_case_b_bottom_six_layers_two_experts():
    experts = _trainable(method="freeze", trainable=("model.layers.[0-5].block_sparse_moe.experts.[01].*",))
    assert experts == 6 * 2 * EXPERT == 2_113_929_216  # the seed's 2.114B
    with_router = _trainable(method="freeze", trainable=("model.layers.[0-5].block_sparse_moe.experts.[01].*",
                                                          "model.layers.[0-5].block_sparse_moe.gate.*"))
    assert with_router == experts + 6 * 4096 * 8


def test_case_c_lora_r16_on_experts():
    # r·(4096+14336 + 4096+14336 + 14336+4096) = r·55,296 per expert; 8 experts x 32 layers
    assert _trainable(method="lora", lora_rank=16, lora_targets=("w1", "w2", "w3")) == 16 * 55_296 * 8 * 32
    assert 16 * 55_296 * 8 * 32 == 226_492_416


def test_case_b_memory_components():
    r = estimate_training(MIXTRAL, TrainConfig(method="freeze", precision="mixed-bf16", recompute="full",
                                               trainable=("model.layers.[0-5].block_sparse_moe.experts.[01].*",)))
    m, n = r.memory, 2_113_929_216
    assert m.gradients_bytes == 2 * n and m.master_weights_bytes == 4 * n and m.optimizer_bytes == 8 * n
    assert m.weights_bytes == 2 * r.params_total  # frozen weights still live on the GPU


def test_lora_params_formula():
    spec = find_preset("llama-3.1-8b").spec()
    q = next(t for t in tensor_table(spec) if t.name == "model.layers.0.self_attn.q_proj.weight")
    assert lora_params(q, 8) == 8 * (4096 + 4096)


def test_lora_adapters_are_fp32_with_fp32_states():
    spec = find_preset("llama-3.1-8b").spec()
    r = estimate_training(spec, TrainConfig(method="lora", lora_rank=16, lora_targets=("q_proj", "v_proj")))
    adapters = 32 * 16 * ((4096 + 4096) + (4096 + 1024))
    assert r.params_trainable == adapters
    assert r.memory.gradients_bytes == 4 * adapters
    assert r.memory.optimizer_bytes == 8 * adapters
    assert r.memory.weights_bytes == 2 * 8_030_261_248 + 4 * adapters


def test_qlora_quantizes_linears_but_not_head_or_embedding():
    spec = find_preset("llama-3.1-8b").spec()
    r = estimate_training(spec, TrainConfig(method="qlora", lora_rank=16))
    embed_head = 2 * 128256 * 4096
    linear = 8_030_261_248 - embed_head - (32 * 2 + 1) * 4096
    assert r.memory.weights_bytes < 2 * embed_head + 0.6 * linear + 4 * r.params_trainable
    assert r.memory.weights_bytes > 2 * embed_head + 0.5 * linear


def test_bad_globs_and_targets_are_refused():
    with pytest.raises(InputError, match="--trainable"):
        _trainable(method="freeze", trainable=("nothing.*",))
    with pytest.raises(InputError, match="--lora-targets"):
        _trainable(method="lora", lora_targets=("qkv",))
    with pytest.raises(InputError, match="--trainable"):
        TrainConfig(method="freeze")


def test_modules_to_save_copies_and_refusals():
    spec = find_preset("llama-3.1-8b").spec()
    base = estimate_training(spec, TrainConfig(method="lora", lora_targets=("q_proj",)))
    r = estimate_training(spec, TrainConfig(method="lora", lora_targets=("q_proj",), lora_modules_to_save=("lm_head",)))
    head = 128256 * 4096
    assert r.params_trainable == base.params_trainable + head
    assert r.memory.weights_bytes == base.memory.weights_bytes + 2 * head  # frozen original + trainable copy
    assert any("modules_to_save lm_head" in a for a in r.memory.assumptions)
    with pytest.raises(InputError, match="--lora-modules-to-save"):
        estimate_training(spec, TrainConfig(method="lora", lora_modules_to_save=("wte",)))
    with pytest.raises(InputError, match="--lora-modules-to-save"):
        TrainConfig(method="full", lora_modules_to_save=("lm_head",))
