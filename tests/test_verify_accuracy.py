"""CI accuracy gate: gpuplan's estimate against the CPU trace of the real model, on tiny configurations.

Targets (issue 7): |error| of allocated_peak_bytes <= 3 %, and no underestimate beyond 1 %. The full matrix on
real model sizes is benchmarks/accuracy.py (docs/accuracy.md).
"""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from gpuplan.model.hf_config import spec_from_config  # noqa: E402
from gpuplan.verify import PrefillSetup, TrainSetup, measure_prefill, measure_training  # noqa: E402
from gpuplan.verify.compare import error_pct  # noqa: E402
from gpuplan.verify.estimate import prefill_estimate, training_estimate  # noqa: E402

MAX_ERROR_PCT = 3.0
MAX_UNDERESTIMATE_PCT = 1.0

LLAMA = {"model_type": "llama", "hidden_size": 128, "intermediate_size": 352, "num_hidden_layers": 2,
         "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 1024, "max_position_embeddings": 512}
QWEN2 = {"model_type": "qwen2", "hidden_size": 128, "intermediate_size": 352, "num_hidden_layers": 2,
         "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 1024, "max_position_embeddings": 512,
         "tie_word_embeddings": True}

CASES = [
    ("llama bf16 foreach", LLAMA, TrainSetup(batch=2, seq=128)),
    ("llama amp-bf16", LLAMA, TrainSetup(batch=2, seq=128, precision="amp-bf16")),
    ("llama fp32 fused", LLAMA, TrainSetup(batch=2, seq=128, precision="fp32", optimizer_impl="fused")),
    ("qwen2 tied+bias recompute", QWEN2, TrainSetup(batch=2, seq=128, recompute="full")),
    ("llama lora q,v", LLAMA, TrainSetup(batch=2, seq=128, method="lora", lora_targets=("q_proj", "v_proj"))),
]


def _check(estimate: int, measured: int) -> None:
    e = error_pct(estimate, measured)
    assert e is not None
    assert e >= -MAX_UNDERESTIMATE_PCT, f"underestimate {e:+.2f} % (estimate {estimate:,} B, measured {measured:,} B)"
    assert abs(e) <= MAX_ERROR_PCT, f"error {e:+.2f} % (estimate {estimate:,} B, measured {measured:,} B)"


@pytest.mark.parametrize("name,config,setup", CASES, ids=[c[0] for c in CASES])
def test_training_peak_within_target(name, config, setup):
    measured = measure_training(config, setup).allocated_peak_bytes
    estimate = training_estimate(spec_from_config(config), setup)["allocated_peak_bytes"]
    _check(estimate, measured)


def test_prefill_peak_within_target():
    setup = PrefillSetup(batch=2, context=128)
    measured = measure_prefill(LLAMA, setup).allocated_peak_bytes
    estimate = prefill_estimate(spec_from_config(LLAMA), setup)["allocated_peak_bytes"]
    _check(estimate, measured)


# Llama 4's reference MoE runs every expert on every token (the prefill holds E-wide intermediates); MPT's model loop
# keeps each block's returned attention probabilities while the next block runs (gpuplan.infer.activations)
LLAMA4_DENSE_EXPERTS = {"model_type": "llama4_text", "hidden_size": 256, "num_hidden_layers": 2,
                        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 64, "vocab_size": 1024,
                        "max_position_embeddings": 4096, "intermediate_size": 512, "intermediate_size_mlp": 512,
                        "num_local_experts": 8, "num_experts_per_tok": 1, "interleave_moe_layer_step": 1,
                        "attention_chunk_size": 8192, "use_qk_norm": True}
MPT = {"model_type": "mpt", "d_model": 256, "n_heads": 8, "n_layers": 3, "expansion_ratio": 4, "max_seq_len": 2048,
       "vocab_size": 1024}


@pytest.mark.parametrize("config,setup", [(LLAMA4_DENSE_EXPERTS, PrefillSetup(batch=1, context=512)),
                                          (MPT, PrefillSetup(batch=2, context=512))], ids=["llama4", "mpt"])
def test_family_prefill_peak_within_target(config, setup):
    measured = measure_prefill(config, setup).allocated_peak_bytes
    estimate = prefill_estimate(spec_from_config(config), setup)["allocated_peak_bytes"]
    _check(estimate, measured)


# the language models of Qwen2.5-VL and Qwen3-VL (transformers has no ...ForCausalLM for their text configs): traced
# inside the image-text model with its tower removed (gpuplan.verify.build.build_vl_text)
QWEN3_VL_TEXT = {"model_type": "qwen3_vl_text", "hidden_size": 128, "intermediate_size": 352, "num_hidden_layers": 2,
                 "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32, "vocab_size": 1024,
                 "max_position_embeddings": 512, "rope_scaling": {"rope_type": "default", "mrope_section": [4, 6, 6],
                                                                   "mrope_interleaved": True}}
QWEN2_5_VL_TEXT = {"model_type": "qwen2_5_vl_text", "hidden_size": 128, "intermediate_size": 352,
                   "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 1024,
                   "max_position_embeddings": 512, "rope_scaling": {"type": "mrope", "mrope_section": [4, 6, 6]}}


@pytest.mark.parametrize("config", [QWEN3_VL_TEXT, QWEN2_5_VL_TEXT], ids=["qwen3_vl_text", "qwen2_5_vl_text"])
def test_vl_language_model_traced_without_its_tower(config):
    from gpuplan.model.params import count_params

    setup = TrainSetup(batch=2, seq=128)
    m = measure_training(config, setup)
    spec = spec_from_config(config)
    assert m.params_trainable == count_params(spec).total
    _check(training_estimate(spec, setup)["allocated_peak_bytes"], m.allocated_peak_bytes)
    prefill = PrefillSetup(batch=2, context=128)
    _check(prefill_estimate(spec, prefill)["allocated_peak_bytes"], measure_prefill(config, prefill).allocated_peak_bytes)
