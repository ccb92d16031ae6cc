"""Published training runs, kept as data to validate the time model against (tests and docs/time-model.md).

Each record holds what its paper or model card states — model dimensions, tokens, GPU, the published GPU-hours —
and the published throughput (tokens/s/GPU, TFLOP/s/GPU or MFU) the estimate is allowed to use. Nothing here is
fitted: the estimate applies gpuplan's FLOP count to the published throughput and compares GPU-hours.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from gpuplan.model.spec import ModelSpec


@dataclass(frozen=True)
class PublishedRun:
    name: str
    source: str
    tokens: int
    gpu: str
    seq: int
    published_gpu_hours: float
    throughput_basis: str  # "tokens_per_s_per_gpu" | "flop_per_s_per_gpu" | "mfu_of" (MFU borrowed from a sibling run)
    throughput: float
    throughput_source: str
    note: str = ""


def llama2_70b() -> ModelSpec:
    """Llama 2 70B (meta-llama/Llama-2-70b-hf config.json): 80 layers, h 8192, 64 heads, 8 KV heads, FFN 28672."""
    from gpuplan.model.resolve import spec_from_dims

    return spec_from_dims(layers=80, hidden=8192, heads=64, kv_heads=8, ffn=28672, vocab=32000, seq=4096)


def llama1_65b() -> ModelSpec:
    """LLaMA 65B (Touvron et al. 2023 Table 2): 80 layers, h 8192, 64 heads, FFN 22016, vocab 32000."""
    from gpuplan.model.resolve import spec_from_dims

    return spec_from_dims(layers=80, hidden=8192, heads=64, ffn=22016, vocab=32000, seq=2048)


def llama31_405b() -> ModelSpec:
    """Llama 3.1 405B (Llama 3 paper Table 3): 126 layers, h 16384, 128 heads, 8 KV heads, FFN 53248, vocab 128256."""
    from gpuplan.model.resolve import spec_from_dims

    return spec_from_dims(layers=126, hidden=16384, heads=128, kv_heads=8, ffn=53248, vocab=128256, seq=8192)


@cache
def deepseek_v3() -> ModelSpec:
    """DeepSeek-V3 from the fields of deepseek-ai/DeepSeek-V3 config.json (671B total, 37B active)."""
    from gpuplan.model.hf_config import spec_from_config

    cfg = {"model_type": "deepseek_v3", "hidden_size": 7168, "intermediate_size": 18432,
           "moe_intermediate_size": 2048, "num_hidden_layers": 61, "num_attention_heads": 128,
           "num_key_value_heads": 128, "n_routed_experts": 256, "n_shared_experts": 1, "num_experts_per_tok": 8,
           "first_k_dense_replace": 3, "q_lora_rank": 1536, "kv_lora_rank": 512, "qk_rope_head_dim": 64,
           "qk_nope_head_dim": 128, "v_head_dim": 128, "vocab_size": 129280, "max_position_embeddings": 163840,
           "num_nextn_predict_layers": 1, "tie_word_embeddings": False, "hidden_act": "silu", "rms_norm_eps": 1e-6}
    return spec_from_config(cfg, name="deepseek-v3", source="deepseek-ai/DeepSeek-V3 config.json")


LLAMA1_65B_TOKENS_PER_S_PER_GPU = 380.0  # LLaMA paper section 2.4: "around 380 tokens/sec/GPU on 2048 A100 80GB"

RUNS = (
    PublishedRun(
        name="Llama 2 70B", source="Touvron et al. 2023, Llama 2 (arXiv:2307.09288) Table 2 and section 2.2",
        tokens=2_000_000_000_000, gpu="a100-80gb", seq=4096, published_gpu_hours=1_720_320,
        throughput_basis="mfu_of", throughput=LLAMA1_65B_TOKENS_PER_S_PER_GPU,
        throughput_source="Llama 2 publishes no throughput; the MFU of LLaMA-65B on the same A100-80GB fleet "
                          "(380 tokens/s/GPU at seq 2048, LLaMA paper section 2.4) is applied to the 70B at seq 4096",
        note="GPU-hours are A100-80GB hours as the paper's Table 2 reports them"),
    PublishedRun(
        name="Llama 3.1 405B", source="Llama 3.1 model card (30.84M H100-80GB hours for 405B); Llama 3 paper "
                                      "(arXiv:2407.21783) section 3: 15.6T tokens, 3.8e25 FLOPs",
        tokens=15_600_000_000_000, gpu="h100-sxm", seq=8192, published_gpu_hours=30_840_000,
        throughput_basis="flop_per_s_per_gpu", throughput=400e12,
        throughput_source="Llama 3 paper Table 4: 400 TFLOP/s per GPU on 16,384 H100 at seq 8192 (BF16 MFU 41 %)",
        note="the published hours include the long-context stage (up to 128K, 380 TFLOP/s/GPU) and interruptions"),
    PublishedRun(
        name="DeepSeek-V3", source="DeepSeek-V3 Technical Report (arXiv:2412.19437) Table 1: 2.788M H800 GPU-hours "
                                   "(2.664M pre-training on 14.8T tokens, 119K context extension, 5K post-training)",
        tokens=14_800_000_000_000, gpu="h800", seq=4096, published_gpu_hours=2_788_000,
        throughput_basis="tokens_per_s_per_gpu", throughput=1e12 / (180e3 * 3600),
        throughput_source="same report, section 1: 'training DeepSeek-V3 on each trillion tokens requires only 180K "
                          "H800 GPU hours' = 1,543 tokens/s/GPU",
        note="FP8 mixed precision; the published total includes 124K GPU-hours of context extension and post-training "
             "that the pre-training throughput does not cover"),
)


def run_spec(run: PublishedRun) -> ModelSpec:
    return {"Llama 2 70B": llama2_70b, "Llama 3.1 405B": llama31_405b, "DeepSeek-V3": deepseek_v3}[run.name]()


def estimate_gpu_hours(run: PublishedRun, attention: str = "full") -> tuple[float, float]:
    """(estimated GPU-hours, MFU used) for a published run from its published throughput and gpuplan's FLOPs."""
    from gpuplan.compute.flops import training_flops
    from gpuplan.compute.timecost import gpu_hours
    from gpuplan.hardware.catalog import get_gpu

    peak = get_gpu(run.gpu).peak_flop_per_s_for("bf16")
    flops = training_flops(run_spec(run), seq=run.seq, attention=attention)
    total = flops.model_flop_per_token * run.tokens
    if run.throughput_basis == "tokens_per_s_per_gpu":
        mfu = run.throughput * flops.model_flop_per_token / peak
    elif run.throughput_basis == "flop_per_s_per_gpu":
        mfu = run.throughput / peak
    elif run.throughput_basis == "mfu_of":
        sibling = training_flops(llama1_65b(), seq=2048, attention=attention)
        mfu = run.throughput * sibling.model_flop_per_token / peak
    else:
        raise ValueError(run.throughput_basis)
    return gpu_hours(total, peak, mfu), mfu
