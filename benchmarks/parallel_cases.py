"""The cases of ``benchmarks/parallel_accuracy.py``: model configurations, the three matrices (calibration,
layer-dominated, held-out) and the case ids the stored traces are keyed by.

Calibration and layer-dominated rows (``cases()``) run at batch 2 x seq 1024; held-out rows (``heldout_cases()``)
carry their own batch x seq and are built from released config.json dimensions cut to a few layers.
"""

from __future__ import annotations

import itertools

from gpuplan.verify.reference_configs import TRACE_CONFIGS, TRACE_PRECISIONS

BATCH, SEQ = 2, 1024

CONFIGS = {name: TRACE_CONFIGS[name] for name in ("llama-2048x8", "qwen2-0.5b", "qwen2-3584x4", "llama-2048x4-v2048",
                                                     "qwen2-1536x4-v4096-tied")}
LAYER_DOMINATED = ("llama-2048x4-v2048", "qwen2-1536x4-v4096-tied")
PRECISIONS = TRACE_PRECISIONS  # measured precision -> (trace keyword arguments, gpuplan --precision)

CALIBRATION_PRECISIONS = ("bf16", "fp32-shard/bf16-compute")


def cases() -> list[dict]:
    """The matrix: FSDP2 at world 4 and 8 (bf16 and fp32 shards with bf16 compute, with and without activation
    checkpointing, reshard_after_forward on and off), DTensor TP at world 4."""
    out = []
    for name in ("llama-2048x8", "qwen2-0.5b"):
        for world, prec, rc, raf in itertools.product((4, 8), CALIBRATION_PRECISIONS, (False, True), (True, False)):
            out.append(dict(layout="fsdp2", config=name, world_size=world, precision=prec, recompute=rc,
                            reshard_after_forward=raf))
    for world, prec, rc in itertools.product((4, 8), CALIBRATION_PRECISIONS, (False, True)):
        out.append(dict(layout="fsdp2", config="qwen2-3584x4", world_size=world, precision=prec, recompute=rc,
                        reshard_after_forward=True))
    for name, rc in itertools.product(("llama-2048x8", "qwen2-3584x4"), (False, True)):
        out.append(dict(layout="tp", config=name, world_size=4, precision="bf16", recompute=rc,
                        reshard_after_forward=None))
    for name in LAYER_DOMINATED:
        for world, prec, rc, raf in itertools.product((4, 8), PRECISIONS, (False, True), (True, False)):
            out.append(dict(layout="fsdp2", config=name, world_size=world, precision=prec, recompute=rc,
                            reshard_after_forward=raf))
        for world, rc in itertools.product((2, 4), (False, True)):
            if CONFIGS[name]["num_key_value_heads"] % world == 0:
                out.append(dict(layout="tp", config=name, world_size=world, precision="bf16", recompute=rc,
                                reshard_after_forward=None))
    return out


# Held-out matrix: configurations no rule of the engine was written from. Dimensions are those of released
# checkpoints (config.json of the named repository), cut to a few layers so that a trace takes seconds.
HELDOUT_CONFIGS = {
    # Qwen/Qwen3-0.6B, 4 of 28 layers: qk-norm, head_dim 128 with hidden 1024 (q width 2048), tied 151,936 vocab
    "qwen3-1024x4-v151936-tied": dict(model_type="qwen3", hidden_size=1024, intermediate_size=3072,
                                      num_hidden_layers=4, num_attention_heads=16, num_key_value_heads=8,
                                      head_dim=128, vocab_size=151936, max_position_embeddings=40960,
                                      tie_word_embeddings=True),
    # Qwen/Qwen3-1.7B dimensions, 4 of 28 layers, a mid-size untied vocabulary (32,768)
    "qwen3-2048x4-v32768": dict(model_type="qwen3", hidden_size=2048, intermediate_size=6144, num_hidden_layers=4,
                                num_attention_heads=16, num_key_value_heads=8, head_dim=128, vocab_size=32768,
                                max_position_embeddings=40960, tie_word_embeddings=False),
    # mistralai/Mistral-7B-v0.1 dimensions, 2 of 32 layers, sliding window 1024 (the release: 4096) so that the
    # window is shorter than the 4096-token rows
    "mistral-4096x2-sw1024": dict(model_type="mistral", hidden_size=4096, intermediate_size=14336,
                                  num_hidden_layers=2, num_attention_heads=32, num_key_value_heads=8,
                                  vocab_size=32000, max_position_embeddings=32768, sliding_window=1024,
                                  tie_word_embeddings=False),
    # google/gemma-2-2b, 2 of 26 layers (one sliding, one global): head_dim 256, logit soft-capping, GeGLU,
    # sandwich norms, tied 256,000 vocabulary; transformers runs it with eager attention
    "gemma2-2304x2-v256000-tied": dict(model_type="gemma2", hidden_size=2304, intermediate_size=9216,
                                       num_hidden_layers=2, num_attention_heads=8, num_key_value_heads=4,
                                       head_dim=256, vocab_size=256000, max_position_embeddings=8192,
                                       sliding_window=4096, query_pre_attn_scalar=256, attn_logit_softcapping=50.0,
                                       final_logit_softcapping=30.0, tie_word_embeddings=True),
    # google/gemma-3-1b-pt, 4 of 26 layers (all sliding, window 512): one KV head, qk-norm, tied 262,144 vocabulary
    "gemma3-1152x4-v262144-tied": dict(model_type="gemma3_text", hidden_size=1152, intermediate_size=6912,
                                       num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=1,
                                       head_dim=256, vocab_size=262144, max_position_embeddings=32768,
                                       sliding_window=512, query_pre_attn_scalar=256, tie_word_embeddings=True),
    # microsoft/Phi-3-mini-4k-instruct, 2 of 32 layers: fused qkv and gate/up projections, no GQA (32 KV heads),
    # sliding window 2047 (config.json), 32,064 vocabulary
    "phi3-3072x2-v32064": dict(model_type="phi3", hidden_size=3072, intermediate_size=8192, num_hidden_layers=2,
                               num_attention_heads=32, num_key_value_heads=32, vocab_size=32064,
                               max_position_embeddings=4096, original_max_position_embeddings=4096,
                               sliding_window=2047, pad_token_id=32000, bos_token_id=1, eos_token_id=32000,
                               tie_word_embeddings=False),
    # mistralai/Mixtral-8x7B-v0.1 proportions at a quarter of the width (8 experts, top 2), 4 layers
    "mixtral-1024x4-e8": dict(model_type="mixtral", hidden_size=1024, intermediate_size=3584, num_hidden_layers=4,
                              num_attention_heads=8, num_key_value_heads=2, num_local_experts=8,
                              num_experts_per_tok=2, vocab_size=32000, max_position_embeddings=32768,
                              sliding_window=None, tie_word_embeddings=False),
    # Qwen/Qwen3-30B-A3B dimensions with 32 of its 128 experts (top 8, expert ffn 768), 2 of 48 layers
    "qwen3moe-2048x2-e32": dict(model_type="qwen3_moe", hidden_size=2048, intermediate_size=6144,
                                moe_intermediate_size=768, num_hidden_layers=2, num_attention_heads=32,
                                num_key_value_heads=4, head_dim=128, num_experts=32, num_experts_per_tok=8,
                                norm_topk_prob=True, vocab_size=151936, max_position_embeddings=40960,
                                tie_word_embeddings=False),
    # meta-llama/Llama-2-7b-hf dimensions, 2 of 32 layers: multi-head attention (32 KV heads), ffn/hidden 2.69
    "llama-4096x2-mha": dict(model_type="llama", hidden_size=4096, intermediate_size=11008, num_hidden_layers=2,
                             num_attention_heads=32, num_key_value_heads=32, vocab_size=32000,
                             max_position_embeddings=4096, tie_word_embeddings=False),
    # HuggingFaceTB/SmolLM-135M, 4 of 30 layers: narrow (576), 9 heads / 3 KV heads, tied 49,152 vocabulary
    "llama-576x4-v49152-tied": dict(model_type="llama", hidden_size=576, intermediate_size=1536,
                                    num_hidden_layers=4, num_attention_heads=9, num_key_value_heads=3,
                                    vocab_size=49152, max_position_embeddings=2048, tie_word_embeddings=True),
}
# (config, world size, precision, checkpointing, reshard_after_forward, batch, seq); FSDP2
_HELDOUT_FSDP2 = (
    ("qwen3-1024x4-v151936-tied", 4, "bf16", False, True, 2, 1024),
    ("qwen3-1024x4-v151936-tied", 8, "fp32-shard/bf16-compute", True, False, 1, 4096),
    ("qwen3-1024x4-v151936-tied", 2, "fp32", False, True, 4, 512),
    ("qwen3-2048x4-v32768", 4, "bf16", False, True, 2, 1024),
    ("qwen3-2048x4-v32768", 4, "bf16", True, False, 2, 1024),
    ("qwen3-2048x4-v32768", 8, "fp32-shard/bf16-compute", False, False, 1, 4096),
    ("qwen3-2048x4-v32768", 2, "fp32", True, True, 4, 512),
    ("mistral-4096x2-sw1024", 8, "bf16", False, True, 1, 4096),
    ("mistral-4096x2-sw1024", 8, "bf16", True, True, 1, 4096),
    ("mistral-4096x2-sw1024", 4, "fp32-shard/bf16-compute", False, False, 1, 4096),
    ("gemma2-2304x2-v256000-tied", 4, "bf16", False, True, 2, 1024),
    ("gemma2-2304x2-v256000-tied", 8, "fp32-shard/bf16-compute", True, True, 1, 4096),
    ("gemma2-2304x2-v256000-tied", 2, "bf16", True, False, 4, 512),
    ("gemma3-1152x4-v262144-tied", 4, "bf16", True, True, 1, 4096),
    ("gemma3-1152x4-v262144-tied", 8, "fp32-shard/bf16-compute", False, False, 2, 1024),
    ("phi3-3072x2-v32064", 4, "bf16", False, True, 2, 1024),
    ("phi3-3072x2-v32064", 8, "fp32", True, False, 4, 512),
    ("phi3-3072x2-v32064", 2, "fp32-shard/bf16-compute", False, True, 1, 4096),
    ("mixtral-1024x4-e8", 4, "bf16", False, True, 2, 1024),
    ("mixtral-1024x4-e8", 8, "fp32-shard/bf16-compute", True, True, 4, 512),
    ("mixtral-1024x4-e8", 2, "bf16", True, False, 1, 4096),
    ("qwen3moe-2048x2-e32", 4, "bf16", False, True, 2, 1024),
    ("qwen3moe-2048x2-e32", 8, "bf16", True, False, 1, 4096),
    ("qwen3moe-2048x2-e32", 2, "fp32-shard/bf16-compute", False, True, 4, 512),
    ("llama-4096x2-mha", 8, "bf16", False, True, 1, 4096),
    ("llama-4096x2-mha", 8, "fp32-shard/bf16-compute", True, False, 2, 1024),
    ("llama-576x4-v49152-tied", 2, "bf16", False, True, 8, 256),
    ("llama-576x4-v49152-tied", 4, "fp32", True, False, 2, 1024),
)
# (config, world size, precision, checkpointing, batch, seq); DTensor TP (the plan needs separate q/k/v and
# gate/up projections and dense MLPs: no Phi-3, no MoE)
_HELDOUT_TP = (
    ("qwen3-1024x4-v151936-tied", 2, "bf16", False, 2, 1024),
    ("qwen3-1024x4-v151936-tied", 8, "bf16", True, 1, 4096),
    ("qwen3-2048x4-v32768", 4, "bf16", False, 4, 512),
    ("qwen3-2048x4-v32768", 8, "bf16", True, 2, 1024),
    ("qwen3-2048x4-v32768", 2, "fp32", True, 1, 4096),
    ("mistral-4096x2-sw1024", 4, "bf16", False, 1, 4096),
    ("mistral-4096x2-sw1024", 8, "bf16", True, 1, 4096),
    ("gemma2-2304x2-v256000-tied", 2, "bf16", False, 2, 1024),
    ("gemma2-2304x2-v256000-tied", 4, "bf16", True, 1, 4096),
    ("llama-4096x2-mha", 8, "bf16", False, 2, 1024),
    ("llama-4096x2-mha", 4, "fp32", True, 4, 512),
)



def attention_for(config: dict) -> str:
    """The attention implementation the trace runs: transformers has no SDPA path for Gemma 2 and falls back to
    eager (``gpuplan.verify.build.build_model``); the estimate is asked for the same."""
    return "eager" if config["model_type"] == "gemma2" else "sdpa"


def heldout_cases() -> list[dict]:
    """The held-out matrix (see HELDOUT_CONFIGS): FSDP2 at world 2, 4 and 8 in bf16, fp32 and fp32 shards with
    bf16 compute, checkpointing and reshard_after_forward on and off; DTensor TP at world 2, 4 and 8 in bf16 and
    fp32; batch x seq 1 x 4096, 2 x 1024, 4 x 512 and 8 x 256."""
    out = []
    for name, world, prec, rc, raf, batch, seq in _HELDOUT_FSDP2:
        out.append(dict(layout="fsdp2", config=name, world_size=world, precision=prec, recompute=rc,
                        reshard_after_forward=raf, batch=batch, seq=seq,
                        attention=attention_for(HELDOUT_CONFIGS[name])))
    for name, world, prec, rc, batch, seq in _HELDOUT_TP:
        out.append(dict(layout="tp", config=name, world_size=world, precision=prec, recompute=rc,
                        reshard_after_forward=None, batch=batch, seq=seq,
                        attention=attention_for(HELDOUT_CONFIGS[name])))
    return out


def case_id(c: dict) -> str:
    shape = f" {c['batch']}x{c['seq']}" if "batch" in c else ""
    if c["layout"] == "tp":
        return f"tp {c['config']} W{c['world_size']} {c['precision']} {'AC' if c['recompute'] else 'noAC'}{shape}"
    return (f"fsdp2 {c['config']} W{c['world_size']} {c['precision']} {'AC' if c['recompute'] else 'noAC'} "
            f"raf={c['reshard_after_forward']}{shape}")


def matrix_of(c: dict) -> str:
    if "batch" in c:
        return "held-out"
    return "layer-dominated" if c["config"] in LAYER_DOMINATED else "calibration"


def config_of(c: dict) -> dict:
    """The config.json dict of a case: the one stored with a held-out trace, else the definition above."""
    if "hf_config" in c:
        return dict(c["hf_config"])
    return dict((HELDOUT_CONFIGS if matrix_of(c) == "held-out" else CONFIGS)[c["config"]])

