"""The small Hugging Face configurations the parallel traces run (``benchmarks/parallel_accuracy.py``,
``tests/hsdp_reference.py``), and the precisions they are traced in: one place, so a stored trace and its
estimate always read the same dimensions."""

from __future__ import annotations

TRACE_CONFIGS = {
    # TinyLlama-1.1B dimensions (TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T config.json), 8 of 22 layers
    "llama-2048x8": dict(model_type="llama", hidden_size=2048, intermediate_size=5632, num_hidden_layers=8,
                         num_attention_heads=32, num_key_value_heads=4, vocab_size=32000,
                         max_position_embeddings=2048, tie_word_embeddings=False),
    # Qwen/Qwen2-0.5B config.json, all 24 layers (tied embeddings, q/k/v bias)
    "qwen2-0.5b": dict(model_type="qwen2", hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                       num_attention_heads=14, num_key_value_heads=2, vocab_size=151936,
                       max_position_embeddings=32768, tie_word_embeddings=True),
    # Qwen/Qwen2-7B dimensions, 4 of 28 layers (untied, q/k/v bias)
    "qwen2-3584x4": dict(model_type="qwen2", hidden_size=3584, intermediate_size=18944, num_hidden_layers=4,
                         num_attention_heads=28, num_key_value_heads=4, vocab_size=152064,
                         max_position_embeddings=32768, tie_word_embeddings=False),
    # second matrix: small vocabularies, so the peak sits in a layer's forward or backward
    "llama-2048x4-v2048": dict(model_type="llama", hidden_size=2048, intermediate_size=5632, num_hidden_layers=4,
                               num_attention_heads=32, num_key_value_heads=4, vocab_size=2048,
                               max_position_embeddings=4096, tie_word_embeddings=False),
    "qwen2-1536x4-v4096-tied": dict(model_type="qwen2", hidden_size=1536, intermediate_size=8960,
                                    num_hidden_layers=4, num_attention_heads=12, num_key_value_heads=2,
                                    vocab_size=4096, max_position_embeddings=4096, tie_word_embeddings=True),
    # Qwen/Qwen2-0.5B dimensions, 6 of 24 layers, vocabulary 151,937 (odd: padded shards), tied embeddings
    "qwen2-896x6-v151937-tied": dict(model_type="qwen2", hidden_size=896, intermediate_size=4864,
                                     num_hidden_layers=6, num_attention_heads=14, num_key_value_heads=2,
                                     vocab_size=151937, max_position_embeddings=32768, tie_word_embeddings=True),
}
# measured precision -> (trace keyword arguments, gpuplan --precision)
TRACE_PRECISIONS = {
    "bf16": (dict(shard_dtype="bf16"), "bf16"),
    "fp32-shard/bf16-compute": (dict(shard_dtype="fp32", param_dtype="bf16", reduce_dtype="fp32"), "amp-bf16"),
    "fp32": (dict(shard_dtype="fp32"), "fp32"),
}
