"""Regression tests for activation terms fixed against CPU traces (docs/accuracy.md): each builds a small model of
the architecture, traces one steady-state training step (``gpuplan.verify``) and compares the training engine's
estimate for the component the term belongs to. Without the term each comparison is off by well over the 1 %
tolerance used here; the real-size figures are in benchmarks/accuracy.py.
"""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from gpuplan.model.hf_config import spec_from_config  # noqa: E402
from gpuplan.model.presets import find_preset  # noqa: E402
from gpuplan.verify import TrainSetup, measure_training  # noqa: E402
from gpuplan.verify.compare import error_pct  # noqa: E402
from gpuplan.verify.estimate import train_config, training_estimate  # noqa: E402

TOLERANCE_PCT = 1.0

BASE = {"hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "vocab_size": 1024, "max_position_embeddings": 1024}


def _compare(config: dict, setup: TrainSetup, keys: tuple[str, ...] = ("activations_bytes",
                                                                         "allocated_peak_bytes")) -> dict:
    m = measure_training(config, setup)
    measured = m.memory_dict()
    estimate = training_estimate(spec_from_config(config), TrainSetup(**{**setup.__dict__,
                                                                        "attention": m.extra["attention"]}))
    for key in keys:
        err = error_pct(estimate[key], measured[key])
        assert err is not None and abs(err) <= TOLERANCE_PCT, \
            f"{key}: estimate {estimate[key]:,} vs measured {measured[key]:,} B ({err:+.2f} %)"
    return {"measured": m, "estimate": estimate}


def test_gemma2_softcapping_and_post_norms():
    """Gemma 2 eager attention keeps the soft-capping tanh output ([b, heads, s, s]); its RMSNorm keeps an fp32
    normalised tensor and four norms per layer; the final soft-capping keeps e·T·V more in the loss region."""
    cfg = {**BASE, "model_type": "gemma2", "head_dim": 64, "hidden_activation": "gelu_pytorch_tanh",
           "sliding_window": 128, "attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0}
    _compare(cfg, TrainSetup(batch=2, seq=256, attention="eager"), ("activations_bytes", "logits_bytes",
                                                                    "allocated_peak_bytes"))


def test_gpt2_amp_gelu_new_parts_are_fp32():
    """CUDA autocast runs ``pow`` in fp32, so gelu_new's tanh-formula intermediates are fp32 under amp."""
    cfg = {"model_type": "gpt2", "n_embd": 256, "n_head": 4, "n_layer": 2, "vocab_size": 1024, "n_positions": 512}
    _compare(cfg, TrainSetup(batch=4, seq=256, precision="amp-bf16"))


def test_gpt2_dropout_views_and_bool_masks():
    """GPT-2's default dropout (0.1): SDPA with dropout keeps no [b, heads, s, s] mask, q/k/v are views of the
    fused c_attn output, residual and embedding dropout keep one-byte masks (CUDA ``native_dropout``)."""
    cfg = {"model_type": "gpt2", "n_embd": 256, "n_head": 4, "n_layer": 2, "vocab_size": 1024, "n_positions": 512}
    out = _compare(cfg, TrainSetup(batch=4, seq=256, precision="fp32"))
    assert spec_from_config(cfg).hidden_dropout == pytest.approx(0.1)
    assert out["measured"].extra["attention"] == "sdpa"


def test_mixtral_lora_on_fused_experts():
    """PEFT wraps transformers-5 fused experts (ParamWrapper): rank 2r on gate_up, W + ΔW of the expert stack
    materialised and kept each forward; the trainable count follows PEFT."""
    cfg = {**BASE, "model_type": "mixtral", "num_local_experts": 4, "num_experts_per_tok": 2}
    setup = TrainSetup(batch=2, seq=128, method="lora", lora_rank=8)
    out = _compare(cfg, setup)
    from gpuplan.train.engine import estimate_training
    from gpuplan.train.peft import peft_adapter_params

    spec = spec_from_config(cfg)
    assert peft_adapter_params(spec, train_config(setup)) == out["measured"].params_trainable
    for key in ("gradients_bytes", "optimizer_bytes"):
        # exact up to the 512-byte rounding of the trace's small adapter tensors
        assert abs(out["estimate"][key] - out["measured"].memory_dict()[key]) <= 512 * 64
    report = estimate_training(spec, train_config(setup))
    assert any("ParamWrapper" in w and f"{out['measured'].params_trainable:,}" in w for w in report.memory.warnings)


def test_falcon_multi_query_runs_math_sdpa():
    """Falcon's single K/V head without enable_gqa sends SDPA to the math kernel: fp32 probabilities per layer."""
    cfg = {"model_type": "falcon", "hidden_size": 256, "num_attention_heads": 8, "num_hidden_layers": 2,
           "vocab_size": 1024, "multi_query": True, "parallel_attn": True, "bias": False,
           "new_decoder_architecture": False, "alibi": False}
    _compare(cfg, TrainSetup(batch=2, seq=256))


def test_gpt_neox_gelu_fast_and_output_copy():
    """FastGELU keeps seven ffn-sized tensors; partial rotary (torch.cat) makes the attention output copy."""
    cfg = {"model_type": "gpt_neox", "hidden_size": 256, "num_attention_heads": 4, "num_hidden_layers": 2,
           "intermediate_size": 1024, "vocab_size": 1024, "rotary_pct": 0.25, "hidden_act": "gelu_fast",
           "max_position_embeddings": 1024}
    _compare(cfg, TrainSetup(batch=2, seq=256))


def test_phi3_sliding_window_mask():
    """A sequence longer than Phi-3's window gives SDPA an explicit mask, kept by the memory-efficient kernel."""
    cfg = {**BASE, "model_type": "phi3", "num_key_value_heads": 4, "sliding_window": 127, "pad_token_id": 0}
    _compare(cfg, TrainSetup(batch=2, seq=256))


def test_olmo2_post_norms():
    """OLMo-2 normalises the attention and MLP outputs (no input norm) and keeps fp32 normalised tensors."""
    _compare({**BASE, "model_type": "olmo2"}, TrainSetup(batch=2, seq=256))


def test_deepseek_mla_and_fp32_router():
    """DeepSeek: MLA's v is a view of kv_b_proj's output; the router keeps fp32 copies of its input."""
    cfg = dict(find_preset("deepseek-v2-lite").config)
    cfg.update(hidden_size=256, num_attention_heads=4, num_key_value_heads=4, kv_lora_rank=64,
               qk_rope_head_dim=16, qk_nope_head_dim=32, v_head_dim=32, moe_intermediate_size=128,
               intermediate_size=512, n_routed_experts=8, num_experts_per_tok=2, n_shared_experts=1,
               num_hidden_layers=2, first_k_dense_replace=1, vocab_size=1024, q_lora_rank=None)
    _compare(cfg, TrainSetup(batch=2, seq=256))
