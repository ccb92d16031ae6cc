"""Rule probes: small models, one per activation rule that follows transformers' or PyTorch's internals.

Each probe is a two-layer model of one architecture and a training step that exercises the rule; the test suite
(``tests/test_train_accuracy_fixes.py``) traces each one and compares it with the estimate, and
``benchmarks/drift.py`` traces them again under the newest releases to show which rules a release moved.
Torch-free: the configs are plain dicts, traced by ``gpuplan.verify.measure_training``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gpuplan.model.presets import find_preset
from gpuplan.verify.setup import TrainSetup

ACT_AND_PEAK = ("activations_bytes", "allocated_peak_bytes")

_BASE = {"hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 2, "num_attention_heads": 4,
         "num_key_value_heads": 2, "vocab_size": 1024, "max_position_embeddings": 1024}
_GPT2 = {"model_type": "gpt2", "n_embd": 256, "n_head": 4, "n_layer": 2, "vocab_size": 1024, "n_positions": 512}
_FALCON = {"model_type": "falcon", "hidden_size": 256, "num_attention_heads": 8, "num_hidden_layers": 2,
           "vocab_size": 1024, "parallel_attn": True, "bias": False, "new_decoder_architecture": False,
           "alibi": False}


@dataclass(frozen=True)
class Probe:
    """One traced step and the estimate keys it checks; ``rules`` names the gpuplan.versions rules it covers."""

    name: str
    what: str
    config: dict
    setup: TrainSetup
    keys: tuple[str, ...] = ACT_AND_PEAK
    rules: tuple[str, ...] = field(default=())
    tolerance_pct: float = 1.0  # wider only where a known gap has no rule yet (the probe's ``what`` says which)


def _deepseek_small() -> dict:
    cfg = dict(find_preset("deepseek-v2-lite").config)
    cfg.update(hidden_size=256, num_attention_heads=4, num_key_value_heads=4, kv_lora_rank=64,
               qk_rope_head_dim=16, qk_nope_head_dim=32, v_head_dim=32, moe_intermediate_size=128,
               intermediate_size=512, n_routed_experts=8, num_experts_per_tok=2, n_shared_experts=1,
               num_hidden_layers=2, first_k_dense_replace=1, vocab_size=1024, q_lora_rank=None)
    return cfg


def _probes() -> dict[str, Probe]:
    items = [
        Probe("gemma2-softcap", "Gemma 2 eager attention keeps the soft-capping tanh output; fp32 normalised "
              "tensors and four norms per layer; the final soft-capping in the loss region",
              {**_BASE, "model_type": "gemma2", "head_dim": 64, "hidden_activation": "gelu_pytorch_tanh",
               "sliding_window": 128, "attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0},
              TrainSetup(batch=2, seq=256, attention="eager"),
              ("activations_bytes", "logits_bytes", "allocated_peak_bytes")),
        Probe("gpt2-amp-gelu", "CUDA autocast runs pow in fp32: gelu_new's intermediates are fp32 under amp",
              _GPT2, TrainSetup(batch=4, seq=256, precision="amp-bf16")),
        Probe("gpt2-dropout", "GPT-2's dropout: no SDPA mask kept, q/k/v views of c_attn, one-byte dropout masks",
              _GPT2, TrainSetup(batch=4, seq=256, precision="fp32")),
        Probe("mixtral-lora-fused-experts", "PEFT ParamWrapper on transformers-5 fused experts",
              {**_BASE, "model_type": "mixtral", "num_local_experts": 4, "num_experts_per_tok": 2},
              TrainSetup(batch=2, seq=128, method="lora", lora_rank=8)),
        Probe("falcon-mqa", "Falcon multi-query attention under SDPA (math kernel up to transformers 5.24, shared "
              "SDPA with a materialised mask from 5.25)", {**_FALCON, "multi_query": True},
              TrainSetup(batch=2, seq=256), rules=("falcon-mqa-sdpa-math", "falcon-mqa-shared-sdpa")),
        Probe("falcon-mha", "Falcon with a K/V head per query head: the causal mask Falcon always materialises is "
              "kept by the memory-efficient kernel", {**_FALCON, "multi_query": False}, TrainSetup(batch=2, seq=256)),
        Probe("gpt-neox-gelu-fast", "FastGELU keeps seven ffn-sized tensors; partial rotary copies the attention "
              "output", {"model_type": "gpt_neox", "hidden_size": 256, "num_attention_heads": 4,
                         "num_hidden_layers": 2, "intermediate_size": 1024, "vocab_size": 1024, "rotary_pct": 0.25,
                         "hidden_act": "gelu_fast", "max_position_embeddings": 1024},
              TrainSetup(batch=2, seq=256)),
        Probe("phi3-window-mask", "a sequence longer than Phi-3's window: SDPA keeps an explicit mask",
              {**_BASE, "model_type": "phi3", "num_key_value_heads": 4, "sliding_window": 127, "pad_token_id": 0},
              TrainSetup(batch=2, seq=256)),
        Probe("olmo2-post-norms", "OLMo-2 post norms keep fp32 normalised tensors", {**_BASE, "model_type": "olmo2"},
              TrainSetup(batch=2, seq=256)),
        Probe("deepseek-mla-router", "DeepSeek MLA's v is a view of kv_b_proj's output; fp32 router input copies",
              _deepseek_small(), TrainSetup(batch=2, seq=256)),
        Probe("glm4-moe-sigmoid-router", "GLM-4.5: grouped-query attention with q/k/v biases, per-head q/k norms and "
              "half-width rotary, under DeepSeek-V3's sigmoid group-limited router and shared experts; the rotary's "
              "torch.cat copies the attention output",
              {**_BASE, "model_type": "glm4_moe", "head_dim": 64, "moe_intermediate_size": 128,
               "n_routed_experts": 8, "num_experts_per_tok": 2, "n_shared_experts": 1, "first_k_dense_replace": 1,
               "attention_bias": True, "use_qk_norm": True, "partial_rotary_factor": 0.5,
               "num_nextn_predict_layers": 0},
              TrainSetup(batch=2, seq=256)),
    ]
    return {p.name: p for p in items}


PROBES = _probes()
