"""KV cache bytes per token are exact for every attention type: checked against the cache tensors transformers
allocates (tiny models run on CPU; real dimensions on the meta device), and against vLLM's layouts."""

import pytest

from gpuplan.errors import InputError
from gpuplan.infer import kv
from gpuplan.model.hf_config import spec_from_config

from infer_reference import build, kv_after_prefill_and_decode

TINY = {
    # GQA with an explicit head_dim different from hidden / heads (Qwen3 style)
    "qwen3-gqa": dict(model_type="qwen3", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=24, vocab_size=100),
    "llama-gqa": dict(model_type="llama", hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                      num_attention_heads=8, num_key_value_heads=2, vocab_size=100),
    "gpt2-mha": dict(model_type="gpt2", n_embd=64, n_layer=2, n_head=4, vocab_size=100, n_positions=256),
    # Falcon-7B style: multi-query (one shared K/V head), parallel attention
    "falcon-mqa": dict(model_type="falcon", hidden_size=64, num_hidden_layers=2, num_attention_heads=8,
                       vocab_size=100, multi_query=True, new_decoder_architecture=False, parallel_attn=True,
                       bias=False),
    "deepseek_v2-mla": dict(model_type="deepseek_v2", hidden_size=64, intermediate_size=128, moe_intermediate_size=32,
                            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4, n_routed_experts=4,
                            num_experts_per_tok=2, n_shared_experts=1, first_k_dense_replace=1, kv_lora_rank=32,
                            q_lora_rank=None, qk_rope_head_dim=8, qk_nope_head_dim=16, v_head_dim=16,
                            vocab_size=100),
    "gemma2-hybrid": dict(model_type="gemma2", hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                          num_attention_heads=4, num_key_value_heads=2, head_dim=16, vocab_size=100,
                          sliding_window=8),
    "mistral-sliding": dict(model_type="mistral", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                            num_attention_heads=4, num_key_value_heads=2, vocab_size=100, sliding_window=8),
}


@pytest.mark.parametrize("name", sorted(TINY))
def test_hf_cache_bytes_match_transformers(name):
    """After prefill and after one decode step, the storage transformers holds equals gpuplan's --engine hf KV."""
    cfg = TINY[name]
    spec = spec_from_config(cfg)
    batch, prompt = 2, 20
    real_prefill, real_decode = kv_after_prefill_and_decode(build(cfg), batch, prompt)
    ours_prefill = kv.kv_cache_bytes(spec, batch=batch, context=prompt, prompt=prompt, phase="prefill",
                                     kv_dtype="bf16", engine="hf")
    ours_decode = kv.kv_cache_bytes(spec, batch=batch, context=prompt + 1, prompt=prompt, phase="decode",
                                    kv_dtype="bf16", engine="hf")
    assert ours_prefill == real_prefill
    assert ours_decode == real_decode


def test_sliding_layers_hold_the_prompt_until_the_first_decode_step():
    """transformers' DynamicSlidingWindowLayer keeps a view of the prompt-sized tensor after prefill; the window
    is only enforced in storage after the next torch.cat. gpuplan counts both states."""
    cfg = TINY["mistral-sliding"]
    spec = spec_from_config(cfg)
    per_token_all_layers = kv.kv_bytes_per_token(spec, kv_dtype="bf16", engine="hf")
    prefill, decode = kv_after_prefill_and_decode(build(cfg), 1, 20)
    assert prefill == 20 * per_token_all_layers  # whole prompt, not the window of 8
    assert decode == 8 * per_token_all_layers  # window-sized after one decode step


def test_mla_caches_the_latent_in_transformers_5():
    """transformers 5 DeepseekV2Attention caches (kv_lora_rank + qk_rope_head_dim) per token, not full K/V."""
    spec = spec_from_config(TINY["deepseek_v2-mla"])
    assert kv.kv_elements_per_token_layer(spec) == 32 + 8
    full_kv = 2 * spec.num_heads * spec.mla.qk_head_dim
    assert kv.kv_elements_per_token_layer(spec) < full_kv


REAL = {
    # meta-llama/Llama-3.1-8B config.json: 32 layers, 8 KV heads, head_dim 128 -> 131072 bytes/token in bf16
    "llama-3.1-8b": (dict(model_type="llama", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                          num_attention_heads=32, num_key_value_heads=8, vocab_size=128256), 131072),
    # Qwen/Qwen2.5-7B: 28 layers, 4 KV heads -> 57344 bytes/token
    "qwen2.5-7b": (dict(model_type="qwen2", hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                        num_attention_heads=28, num_key_value_heads=4, vocab_size=152064), 57344),
    # deepseek-ai/DeepSeek-V2-Lite: 27 layers, kv_lora_rank 512 + rope 64 -> 27 * 576 * 2 = 31104 bytes/token
    "deepseek-v2-lite": (dict(model_type="deepseek_v2", hidden_size=2048, intermediate_size=10944,
                              moe_intermediate_size=1408, num_hidden_layers=27, num_attention_heads=16,
                              num_key_value_heads=16, n_routed_experts=64, num_experts_per_tok=6, n_shared_experts=2,
                              first_k_dense_replace=1, kv_lora_rank=512, q_lora_rank=None, qk_rope_head_dim=64,
                              qk_nope_head_dim=128, v_head_dim=128, vocab_size=102400), 31104),
}


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_dimensions_on_meta_device(name):
    cfg, per_token = REAL[name]
    spec = spec_from_config(cfg)
    assert kv.kv_bytes_per_token(spec, kv_dtype="bf16", engine="hf") == per_token
    prefill, _ = kv_after_prefill_and_decode(build(cfg, meta=True), 2, 64, meta=True)
    assert prefill == 2 * 64 * per_token


def test_vllm_mla_latent_is_replicated_across_tp():
    spec = spec_from_config(REAL["deepseek-v2-lite"][0])
    one = kv.kv_bytes_per_token(spec, kv_dtype="bf16", tp=1)
    assert kv.kv_bytes_per_token(spec, kv_dtype="bf16", tp=4) == one == 31104


def test_tp_splits_kv_heads_then_replicates():
    spec = spec_from_config(REAL["llama-3.1-8b"][0])  # 8 KV heads
    assert kv.kv_heads_per_gpu(spec, 2) == 4
    assert kv.kv_heads_per_gpu(spec, 8) == 1
    assert kv.kv_heads_per_gpu(spec, 16) == 1  # replicated: each rank keeps one KV head
    assert kv.kv_bytes_per_token(spec, kv_dtype="bf16", tp=16) == 131072 // 8
    with pytest.raises(InputError, match="--tp"):
        kv.kv_heads_per_gpu(spec, 3)


def test_kv_dtype_bytes_and_engine_support():
    spec = spec_from_config(REAL["llama-3.1-8b"][0])
    assert kv.kv_bytes_per_token(spec, kv_dtype="fp8") == 65536
    # transformers QuantizedCache int4: 0.5 byte + fp16 scale and zero point per group of 64 elements
    assert kv.kv_bytes_per_token(spec, kv_dtype="int4", engine="hf") == 32 * 2 * 8 * 128 * (0.5 + 4 / 64)
    with pytest.raises(InputError, match="fp8"):
        kv.check_kv_dtype("int4", "vllm")
    with pytest.raises(InputError, match="no fp8"):
        kv.check_kv_dtype("fp8", "hf")
    with pytest.raises(InputError, match="must be one of"):
        kv.check_kv_dtype("fp6", "vllm")


def test_vllm_keeps_the_window_plus_one_block():
    spec = spec_from_config(TINY["gemma2-hybrid"])  # layers 0, 2 sliding (window 8), 1, 3 full
    assert kv.tokens_held(spec, 0, context=1000, prompt=1000, engine="vllm", phase="decode", block_size=16) == 24
    assert kv.tokens_held(spec, 1, context=1000, prompt=1000, engine="vllm", phase="decode", block_size=16) == 1000
