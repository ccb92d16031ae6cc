"""The tensor table equals what transformers builds, name by name and shape by shape, for every family."""

import pytest

from gpuplan.model.hf_config import spec_from_config
from gpuplan.model.params import count_params
from gpuplan.model.tensors import tensor_table

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from hf_reference import hf_named_shapes  # noqa: E402

BASE = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4, vocab_size=128,
            max_position_embeddings=256)

# Small configs that exercise each family's structure (bias, tying, qk-norm, MoE variants, MLA, Falcon variants).
FAMILIES = {
    "llama": dict(model_type="llama", num_key_value_heads=2, **BASE),
    "llama-bias-tied": dict(model_type="llama", num_key_value_heads=1, attention_bias=True, mlp_bias=True,
                            tie_word_embeddings=True, **BASE),
    "mistral": dict(model_type="mistral", num_key_value_heads=2, head_dim=24, sliding_window=64, **BASE),
    "qwen2": dict(model_type="qwen2", num_key_value_heads=2, tie_word_embeddings=True, **BASE),
    "qwen3": dict(model_type="qwen3", num_key_value_heads=2, head_dim=32, **BASE),
    "olmo2": dict(model_type="olmo2", num_key_value_heads=2, **BASE),
    "gemma2": dict(model_type="gemma2", num_key_value_heads=2, head_dim=16, **BASE),
    "gemma3_text": dict(model_type="gemma3_text", num_key_value_heads=2, head_dim=16, **BASE),
    "phi3": dict(model_type="phi3", num_key_value_heads=2, pad_token_id=0, **BASE),
    "mixtral": dict(model_type="mixtral", num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2, **BASE),
    "qwen2_moe": dict(model_type="qwen2_moe", num_key_value_heads=2, num_experts=4, num_experts_per_tok=2,
                      moe_intermediate_size=32, shared_expert_intermediate_size=48, decoder_sparse_step=1,
                      mlp_only_layers=[1], **BASE),
    "qwen3_moe": dict(model_type="qwen3_moe", num_key_value_heads=2, num_experts=4, num_experts_per_tok=2,
                      moe_intermediate_size=32, head_dim=16, decoder_sparse_step=2, **BASE),
    "deepseek_v2": dict(model_type="deepseek_v2", num_key_value_heads=4, n_routed_experts=4, n_shared_experts=2,
                        num_experts_per_tok=2, moe_intermediate_size=32, first_k_dense_replace=1, q_lora_rank=None,
                        kv_lora_rank=16, qk_rope_head_dim=8, qk_nope_head_dim=16, v_head_dim=16, n_group=1,
                        topk_group=1, **BASE),
    "deepseek_v3": dict(model_type="deepseek_v3", num_key_value_heads=4, n_routed_experts=4, n_shared_experts=1,
                        num_experts_per_tok=2, moe_intermediate_size=32, first_k_dense_replace=1, q_lora_rank=24,
                        kv_lora_rank=16, qk_rope_head_dim=8, qk_nope_head_dim=16, v_head_dim=16, n_group=1,
                        topk_group=1, **BASE),
    "gpt2": dict(model_type="gpt2", n_embd=64, n_layer=3, n_head=4, vocab_size=128, n_positions=256),
    "gpt_neox": dict(model_type="gpt_neox", **BASE),
    "falcon-7b-style": dict(model_type="falcon", hidden_size=64, num_hidden_layers=3, num_attention_heads=4,
                            vocab_size=128, multi_query=True, parallel_attn=True, bias=False),
    "falcon-40b-style": dict(model_type="falcon", hidden_size=64, num_hidden_layers=3, num_attention_heads=4,
                             vocab_size=128, new_decoder_architecture=True, num_kv_heads=2),
    "falcon-sequential": dict(model_type="falcon", hidden_size=64, num_hidden_layers=3, num_attention_heads=4,
                              vocab_size=128, multi_query=False, parallel_attn=False, bias=True),
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_tensor_table_matches_transformers(family):
    config = FAMILIES[family]
    ours = {t.name: t.shape for t in tensor_table(spec_from_config(config))}
    theirs = hf_named_shapes(config)
    assert sorted(set(ours) - set(theirs)) == [] and sorted(set(theirs) - set(ours)) == []
    mismatched = {n: (ours[n], theirs[n]) for n in ours if ours[n] != theirs[n]}
    assert mismatched == {}
    assert count_params(spec_from_config(config)).total == sum(
        __import__("math").prod(s) for s in theirs.values())
