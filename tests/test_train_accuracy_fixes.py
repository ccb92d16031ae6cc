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
from gpuplan.verify import TrainSetup, measure_training  # noqa: E402
from gpuplan.verify.compare import error_pct  # noqa: E402
from gpuplan.verify.estimate import train_config, training_estimate  # noqa: E402
from gpuplan.verify.probes import PROBES  # noqa: E402

TOLERANCE_PCT = 1.0


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


def _probe(name: str) -> dict:
    """Trace one rule probe (gpuplan.verify.probes, also re-traced by benchmarks/drift.py) and compare it."""
    p = PROBES[name]
    assert p.tolerance_pct == TOLERANCE_PCT
    return _compare(p.config, p.setup, p.keys)


def test_gemma2_softcapping_and_post_norms():
    """Gemma 2 eager attention keeps the soft-capping tanh output ([b, heads, s, s]); its RMSNorm keeps an fp32
    normalised tensor and four norms per layer; the final soft-capping keeps e·T·V more in the loss region."""
    _probe("gemma2-softcap")


def test_gpt2_amp_gelu_new_parts_are_fp32():
    """CUDA autocast runs ``pow`` in fp32, so gelu_new's tanh-formula intermediates are fp32 under amp."""
    _probe("gpt2-amp-gelu")


def test_gpt2_dropout_views_and_bool_masks():
    """GPT-2's default dropout (0.1): SDPA with dropout keeps no [b, heads, s, s] mask, q/k/v are views of the
    fused c_attn output, residual and embedding dropout keep one-byte masks (CUDA ``native_dropout``)."""
    out = _probe("gpt2-dropout")
    assert spec_from_config(PROBES["gpt2-dropout"].config).hidden_dropout == pytest.approx(0.1)
    assert out["measured"].extra["attention"] == "sdpa"


def test_mixtral_lora_on_fused_experts():
    """PEFT wraps transformers-5 fused experts (ParamWrapper): rank 2r on gate_up, W + ΔW of the expert stack
    materialised and kept each forward; the trainable count follows PEFT."""
    cfg, setup = PROBES["mixtral-lora-fused-experts"].config, PROBES["mixtral-lora-fused-experts"].setup
    out = _probe("mixtral-lora-fused-experts")
    from gpuplan.train.engine import estimate_training
    from gpuplan.train.peft import peft_adapter_params

    spec = spec_from_config(cfg)
    assert peft_adapter_params(spec, train_config(setup)) == out["measured"].params_trainable
    for key in ("gradients_bytes", "optimizer_bytes"):
        # exact up to the 512-byte rounding of the trace's small adapter tensors
        assert abs(out["estimate"][key] - out["measured"].memory_dict()[key]) <= 512 * 64
    report = estimate_training(spec, train_config(setup))
    assert any("ParamWrapper" in w and f"{out['measured'].params_trainable:,}" in w for w in report.memory.warnings)


def test_falcon_multi_query_follows_the_installed_transformers():
    """Falcon's single K/V head: up to transformers 5.24 its own SDPA call without enable_gqa runs the math kernel
    (fp32 probabilities per layer); from 5.25 the shared SDPA path keeps a materialised mask. The estimate takes
    the installed release's rule (gpuplan.versions)."""
    _probe("falcon-mqa")


def test_falcon_multi_head_mask():
    """Falcon with a K/V head per query head: the causal mask it always materialises (so ALiBi can be added to it)
    reaches SDPA and the memory-efficient kernel keeps it, [b, 1, s, s] per layer."""
    _probe("falcon-mha")


def test_gpt_neox_gelu_fast_and_output_copy():
    """FastGELU keeps seven ffn-sized tensors; partial rotary (torch.cat) makes the attention output copy."""
    _probe("gpt-neox-gelu-fast")


def test_phi3_sliding_window_mask():
    """A sequence longer than Phi-3's window gives SDPA an explicit mask, kept by the memory-efficient kernel."""
    _probe("phi3-window-mask")


def test_olmo2_post_norms():
    """OLMo-2 normalises the attention and MLP outputs (no input norm) and keeps fp32 normalised tensors."""
    _probe("olmo2-post-norms")


def test_deepseek_mla_and_fp32_router():
    """DeepSeek: MLA's v is a view of kv_b_proj's output; the router keeps fp32 copies of its input."""
    _probe("deepseek-mla-router")


def test_glm4_moe_follows_the_deepseek_layout():
    """GLM-4.5 is estimated with the DeepSeek MoE rules (fp32 sigmoid router, shared experts) and llama-style
    attention, except that its rotary embedding ends in ``torch.cat`` (``activations.rotary_cat``): q is left
    contiguous per head, so the attention output is copied for o_proj, e·q_dim bytes per token per layer.
    Traced on transformers 5.23: activations +0.65 %, peak +0.23 % (-2.8 % / -1.3 % without that copy)."""
    p = PROBES["glm4-moe-sigmoid-router"]
    m = measure_training(p.config, p.setup)
    measured = m.memory_dict()
    estimate = training_estimate(spec_from_config(p.config),
                                 TrainSetup(**{**p.setup.__dict__, "attention": m.extra["attention"]}))
    for key in p.keys:
        err = error_pct(estimate[key], measured[key])
        assert err is not None and abs(err) <= p.tolerance_pct, f"{key}: {err:+.2f} %"


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("saved", [("lm_head",), ("embed_tokens", "lm_head")])
def test_lora_modules_to_save(tied: bool, saved: tuple[str, ...]):
    """PEFT modules_to_save: a frozen original plus a trainable copy of each module (copies untied even when the
    model ties its embeddings); the trained head saves its input for its weight gradient."""
    pytest.importorskip("peft")
    from gpuplan.train.peft import peft_adapter_params

    config = {"model_type": "llama", "hidden_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
              "num_key_value_heads": 4, "intermediate_size": 688, "vocab_size": 1024, "max_position_embeddings": 512,
              "tie_word_embeddings": tied}
    setup = TrainSetup(batch=2, seq=128, method="lora", lora_modules_to_save=saved)
    out = _compare(config, setup, ("weights_bytes", "gradients_bytes", "optimizer_bytes", "activations_bytes",
                                   "allocated_peak_bytes"))
    assert peft_adapter_params(spec_from_config(config), train_config(setup)) == out["measured"].params_trainable


def test_quantized_head_of_litgpt_qlora():
    """litgpt's QLoRA quantizes every Linear through Lightning's BitsandbytesPrecision, the output head included
    (--qlora-head on, the stack's default): the head's weight is NF4, and each of its matmuls dequantizes the whole
    head to fp16 and casts it to bf16 (bitsandbytes MatMul4Bit), 4 bytes per head element during the head's forward
    and backward. Elsewhere (PEFT / transformers) the head stays bf16."""
    from gpuplan.model.presets import find_preset
    from gpuplan.train.config import TrainConfig
    from gpuplan.train.engine import estimate_training
    from gpuplan.train.peft import nf4_bytes

    spec = find_preset("llama-3.1-8b").spec()
    common = dict(stack="litgpt", method="qlora", lora_rank=32, lora_targets=("q_proj", "v_proj"), batch=2, seq=512,
                  precision="bf16", qlora_double_quant=False)
    on = estimate_training(spec, TrainConfig(**common))
    off = estimate_training(spec, TrainConfig(**common, qlora_head=False))
    head = spec.vocab_size * spec.hidden_size
    assert off.memory.weights_bytes - on.memory.weights_bytes == 2 * head - nf4_bytes(head, 64, False)
    loss_bwd = {p.name: p.bytes for p in on.phases}["loss backward"] - {p.name: p.bytes for p in off.phases}[
        "loss backward"]
    assert loss_bwd == 4 * head - (2 * head - nf4_bytes(head, 64, False))
    plain = estimate_training(spec, TrainConfig(**{**common, "stack": "torch"})).memory
    assert any("output head and routers stay unquantized" in a for a in plain.assumptions)
    assert any("the output head is quantized too" in a for a in on.memory.assumptions)
