"""Hugging Face generate on CPU: the tensor-memory peak PyTorch allocates vs gpuplan's estimate.

Tiny random models of each family run ``model.generate`` (greedy, DynamicCache, 2 new tokens) under the PyTorch
profiler; the peak of allocation events above the weights is compared with ``allocated_peak_bytes - weights_bytes``
of ``estimate_inference(..., engine="hf")``. CPU kernels differ from CUDA ones (SDPA's CPU flash kernel takes
workspaces, masks are handled differently), so this pins the structure of the transient terms; the CUDA check is
``gpuplan verify``. Run: ``python benchmarks/infer_cpu_trace.py`` (about a minute, needs torch + transformers).
"""

from __future__ import annotations

import warnings

from gpuplan.verify.cpu_profile import generate_peak_bytes

CASES = {
    "llama (GQA)": dict(model_type="llama", hidden_size=256, intermediate_size=704, num_hidden_layers=2,
                        num_attention_heads=8, num_key_value_heads=2, vocab_size=1000, max_position_embeddings=4096),
    "mixtral (MoE)": dict(model_type="mixtral", hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                          num_attention_heads=8, num_key_value_heads=2, vocab_size=1000, num_local_experts=4,
                          num_experts_per_tok=2, max_position_embeddings=4096),
    "qwen2_moe (MoE + shared)": dict(model_type="qwen2_moe", hidden_size=256, intermediate_size=512,
                                     moe_intermediate_size=256, shared_expert_intermediate_size=512,
                                     num_hidden_layers=2, num_attention_heads=8, num_key_value_heads=2, num_experts=4,
                                     num_experts_per_tok=2, vocab_size=1000, max_position_embeddings=4096),
    "gpt2 (MHA, learned positions)": dict(model_type="gpt2", n_embd=256, n_layer=2, n_head=4, vocab_size=1000,
                                          n_positions=4096),
    "gemma2 (eager, sliding)": dict(model_type="gemma2", hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                                    num_attention_heads=4, num_key_value_heads=2, head_dim=64, vocab_size=1000,
                                    sliding_window=256, max_position_embeddings=4096),
    "mistral (SDPA, sliding)": dict(model_type="mistral", hidden_size=256, intermediate_size=512,
                                    num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                    vocab_size=1000, sliding_window=256, max_position_embeddings=4096),
}
SHAPES = ((2, 1024), (4, 512))
NEW_TOKENS = 2


def measured_peak(config: dict, batch: int, prompt: int) -> int:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.utils import logging

    logging.set_verbosity_error()
    kw = dict(config)
    model_type = kw.pop("model_type")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **kw), dtype=torch.bfloat16).eval()
    model.generation_config.pad_token_id = 0
    return generate_peak_bytes(model, batch, prompt, NEW_TOKENS)


def main() -> None:
    from gpuplan.infer.engine import InferConfig, estimate_inference
    from gpuplan.model.hf_config import spec_from_config

    print(f"{'model':32s} {'batch x prompt':>14s} {'measured MiB':>13s} {'gpuplan MiB':>12s} {'error':>7s}  peak at")
    for name, cfg in CASES.items():
        spec = spec_from_config(cfg)
        for batch, prompt in SHAPES:
            real = measured_peak(cfg, batch, prompt)
            r = estimate_inference(spec, InferConfig(batch=batch, context=prompt + NEW_TOKENS, prompt=prompt))
            ours = r.memory.allocated_peak_bytes - r.memory.weights_bytes
            print(f"{name:32s} {f'{batch} x {prompt}':>14s} {real / 2**20:13.2f} {ours / 2**20:12.2f} "
                  f"{100 * (ours - real) / real:+6.1f}%  {r.memory.peak_phase}")


if __name__ == "__main__":
    main()
