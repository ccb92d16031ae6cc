"""The explained terms, assumptions and warnings of an inference estimate (``--explain``, JSON ``terms``)."""

from __future__ import annotations

from typing import Any

from gpuplan.infer import kv
from gpuplan.infer.config import EstimateContext, InferReport
from gpuplan.model.spec import ModelSpec, family_warnings
from gpuplan.report import Term
from gpuplan.units import format_bytes

def explain(c: EstimateContext, report: InferReport, row: dict[str, Any], s: int, prompt: int) -> None:
    """Add the terms, assumptions and warnings of one estimate to ``report.memory``."""
    spec, cfg, mem = c.spec, c.cfg, report.memory
    tp = cfg.layout.tp
    elems = kv.kv_elements_per_token_layer(spec, tp)
    kv_formula = ("(kv_lora_rank + qk_rope_head_dim) x b x layers" if spec.mla else
                  "2 x kv_heads_per_gpu x head_dim x b x layers")
    mem.terms += [
        Term("weights_bytes", row["weights"], f"sum over tensors of their {cfg.weights.name} bytes, TP/EP/PP share",
             "gpuplan.infer.quant (format layouts), gpuplan.infer.parallel", {"format": cfg.weights.name}),
        Term("kv_cache_bytes_per_token", report.kv_cache_bytes_per_token, kv_formula,
             "DeepSeek-V2 paper section 2.1.3 (MLA); source document 002 section 3.5",
             {"elements_per_layer": elems, "kv_dtype": c.kv_dtype, "layers": len(c.stages[s])}),
    ]
    mem.warnings += family_warnings(spec)
    mem.assumptions.append(f"engine {c.engine}; weights {cfg.weights.name} "
                           f"(unquantized tensors {cfg.weights.dtype}); KV cache {c.kv_dtype}")
    if c.engine == "hf":
        h = cfg.hf
        mem.terms += [
            Term("activations_bytes", row["activations"], "largest live transient of the prefill forward",
                 "gpuplan.infer.activations (transformers 5 eager code paths)", {"prompt": prompt, "batch": cfg.batch}),
            Term("logits_bytes", row["logits"], "B x V x (b + 4 x fp32_copies), logits_to_keep=1",
                 "transformers generation/utils.py _sample", {"fp32_copies": h.logits_fp32_copies}),
            Term("allocated_peak_bytes", row["peak"],
                 "max(weights + KV(prompt) + prefill transient, weights + KV(context) + decode transient + logits)",
                 "torch.cuda.max_memory_allocated() of model.generate", {"phase": row["phase"]}),
            Term("buffers_bytes", row["buffers"], "CUDA context + allocator reserve fraction x (peak - weights)",
                 "HfProfile", {"cuda_context_bytes": h.cuda_context_bytes,
                               "allocator_reserve_fraction": h.allocator_reserve_fraction}),
        ]
        mem.assumptions += [
            f"transformers generate, DynamicCache, SDPA attention, logits_to_keep=1, prefill of {prompt} tokens",
            f"CUDA context {format_bytes(h.cuda_context_bytes)} ({h.cuda_module_loading} module loading), "
            f"allocator reserve "
            f"{h.allocator_reserve_fraction:.0%} of the allocated peak above the weights",
        ]
        if spec.sliding_window and prompt > spec.sliding_window:
            mem.warnings.append(f"transformers keeps the whole prompt's K/V storage in {_local(spec)} layers until "
                                "the first decode step (DynamicSlidingWindowLayer slices a view); the prefill peak "
                                "counts it")
        if cfg.weights.family == "gguf":
            mem.warnings.append("transformers dequantizes GGUF weights to the torch dtype when loading: weights are "
                                f"counted in {cfg.weights.dtype}; use --engine vllm (or llama.cpp) to run them quantized")
        if spec.moe and cfg.weights.family in ("nf4", "bnb-int8"):
            mem.warnings.append("transformers 5 stores MoE experts as fused 3-D parameters, which its bitsandbytes "
                                "integration (nn.Linear only) leaves unquantized; counted in " + cfg.weights.dtype)
        if cfg.layout.tp > 1 or cfg.layout.pp > 1:
            mem.warnings.append("hf with --tp/--pp: transformers tp_plan / device_map splits assumed to shard like "
                                "Megatron (heads and MLP columns per rank, whole layers per stage)")
    elif c.profile in ("sglang", "trtllm"):
        _paged_terms(c, row, mem)
    elif c.profile == "llamacpp":
        _llamacpp_terms(c, row, mem)
    else:
        p = cfg.vllm
        mem.terms += [
            Term("available_kv_bytes", row["available"],
                 "total_gpu_memory x gpu_memory_utilization - weights - non_torch - activation peak",
                 "vLLM Worker.determine_available_memory (memory profiling, vLLM PR #10511)",
                 {"total_gpu_memory": c.capacity, "gpu_memory_utilization": p.gpu_memory_utilization}),
            Term("num_gpu_blocks", row["blocks"], "available_kv // (block_size x KV bytes per token)",
                 "vLLM start-up log '# GPU blocks' / 'GPU KV cache size'", {"block_size": p.block_size,
                                                                         "block_bytes": row["block_bytes"]}),
            Term("activations_bytes", row["act_peak"],
                 "max(profile forward of max_num_batched_tokens, sampler on max_num_seqs rows)",
                 "vLLM profile_run", {"max_num_batched_tokens": p.max_num_batched_tokens,
                                      "max_num_seqs": p.max_num_seqs}),
        ]
        mem.assumptions += [
            f"vLLM gpu_memory_utilization {p.gpu_memory_utilization}, block_size {p.block_size}, max_num_seqs "
            f"{p.max_num_seqs}, max_num_batched_tokens {p.max_num_batched_tokens}",
            f"non-torch memory {format_bytes(row['non_torch'])}, CUDA graphs {format_bytes(row['graphs'])} "
            "(outside the utilization budget)",
            f"device memory {format_bytes(c.capacity or 0)} as the process sees it",
        ]
        if any(spec.is_sliding_layer(i) for i in range(spec.num_layers)):
            mem.warnings.append(f"{_local(spec)} layers: vLLM's hybrid KV cache manager (V1 >= 0.10) keeps only the "
                                "window (or current chunk) per request; the pool is counted as if every layer cached "
                                "every token")
        if row["available"] <= 0:
            mem.warnings.append(f"no memory left for the KV cache: gpu_memory_utilization "
                                f"{cfg.vllm.gpu_memory_utilization:g} x {format_bytes(c.capacity or 0)} is "
                                f"{format_bytes(-row['available'])} short of weights, activation peak and non-torch "
                                "memory, so nothing fits and vLLM would fail at start-up ('No available memory for "
                                "the cache blocks'); raise --gpu-memory-utilization or use more GPUs")
        elif row["concurrency"] < 1:
            mem.warnings.append(f"the KV pool ({format_bytes(row['kv'])}) cannot hold one request of "
                                f"{cfg.context} tokens: vLLM refuses this max_model_len")
    if cfg.layout.dp > 1:
        mem.assumptions.append(f"{cfg.layout.dp} data-parallel replicas: memory per GPU is unchanged")


def _local(spec: ModelSpec) -> str:
    """How the model's bounded-span attention layers are called in warnings."""
    return "chunked-attention" if any(spec.is_chunked_layer(i) for i in range(spec.num_layers)) else "sliding-window"


def _paged_terms(c: EstimateContext, row: dict[str, Any], mem) -> None:
    """Terms and assumptions of the SGLang and TensorRT-LLM pools (data/engines/<name>.toml)."""
    from gpuplan.infer.engine_profiles import load_engine_profile

    prof = load_engine_profile(c.profile)
    if c.profile == "sglang":
        formula = "(device - non_torch) x mem_fraction_static - weights"
        inputs = {"mem_fraction_static": row["fraction"], "device": c.capacity}
        name = "mem_fraction_static"
    else:
        formula = "(device - non_torch - weights - activation peak) x free_gpu_memory_fraction"
        inputs = {"free_gpu_memory_fraction": row["fraction"], "device": c.capacity}
        name = "free_gpu_memory_fraction"
    mem.terms += [Term("available_kv_bytes", row["available"], formula, prof.sources["kv_pool"], inputs),
                  Term("num_gpu_blocks", row["blocks"], "available_kv // (tokens per block x KV bytes per token)",
                       prof.title + " KV pool", {"block_size": row["block_size"], "block_bytes": row["block_bytes"]})]
    mem.assumptions += [
        f"{prof.title} ({prof.version}): {name} {row['fraction']:g}, {row['block_size']} tokens per block",
        f"non-torch memory {format_bytes(row['non_torch'])}, CUDA graphs {format_bytes(row['graphs'])}",
        f"device memory {format_bytes(c.capacity or 0)} as the process sees it",
    ]
    if row["available"] <= 0:
        mem.warnings.append(f"no memory left for {prof.title}'s KV cache ({format_bytes(-row['available'])} short)")


def _llamacpp_terms(c: EstimateContext, row: dict[str, Any], mem) -> None:
    """Terms and assumptions of llama.cpp's GPU/host split (data/engines/llamacpp.toml)."""
    from gpuplan.infer.engine_profiles import load_engine_profile

    prof, sp, lp = load_engine_profile("llamacpp"), row["split"], c.cfg.llamacpp
    mem.terms += [
        Term("weights_bytes", sp.gpu_weight_bytes, "the last n_gpu_layers layers (+ output when all are offloaded)",
             prof.sources["layer_placement"], {"n_gpu_layers": sp.gpu_layers, "output_on_gpu": sp.output_on_gpu}),
        Term("host_weights_bytes", sp.host_weight_bytes, "token_embd + the layers not offloaded",
             prof.sources["layer_placement"], {}),
        Term("activations_bytes", row["activations"], "n_ubatch x (vocab x 4 + 8 x hidden x 4)",
             prof.sources["compute_buffer"], {"n_ubatch": lp.n_ubatch}),
    ]
    where = "the GPU" if sp.output_on_gpu else "the host"
    host = format_bytes(sp.host_weight_bytes + sp.host_kv_bytes)
    mem.assumptions += [
        (f"{prof.title} ({prof.version}): {sp.gpu_layers}/{c.spec.num_layers} layers on the GPU, output layer on "
         f"{where}, token_embd on the host; KV cache with its layer"),
        (f"host memory: {host} (weights {format_bytes(sp.host_weight_bytes)}, KV {format_bytes(sp.host_kv_bytes)}); "
         f"host bandwidth {lp.host_bandwidth_bytes_per_s / 1e9:g} GB/s x {lp.host_bandwidth_efficiency:g}"),
        f"CUDA context {format_bytes(row['buffers'])}",
    ]
    if c.cfg.weights.family != "gguf":
        mem.warnings.append("llama.cpp runs GGUF files: pass --weights q4_k_m (or another GGUF type) for its sizes")
