"""The options of ``gpuplan infer``."""

from __future__ import annotations

from gpuplan.infer.quant import WEIGHT_CHOICES
from gpuplan.options.command import CommandOptions
from gpuplan.options.common import (
    ADVISE,
    CONFIG,
    EXPLAIN,
    JSON,
    LANG,
    MODEL_OPTIONS,
    PLOT,
)
from gpuplan.options.field import Option

DEFAULT_CONTEXT = 4096

INFER = CommandOptions(
    "infer",
    help="memory per GPU for serving, KV cache, how many sequences fit, speed",
    description="Serving memory per GPU (weights in any format, KV cache, prefill/decode peak), the KV capacity and "
                "concurrency an engine gets, and a roofline speed estimate.",
    options=(
        *MODEL_OPTIONS,
        JSON,
        EXPLAIN,
        Option("batch", "count", "--batch", default=1, help="concurrent sequences (default 1)", group="workload"),
        Option(
            "context",
            "count",
            "--context",
            help=f"tokens per sequence, prompt + output (default {DEFAULT_CONTEXT}, capped by the model)",
            group="workload",
        ),
        Option(
            "prompt", "count", "--prompt", help="prompt tokens prefilled at once (default: --context)", group="workload"
        ),
        Option(
            "weights",
            "text",
            "--weights",
            default="auto",
            help="auto (the config's quantization_config or dtype), " + ", ".join(WEIGHT_CHOICES),
            group="workload",
            metavar="FORMAT",
        ),
        Option(
            "dtype",
            "text",
            "--dtype",
            help="dtype of unquantized tensors and activations (default: the config's)",
            group="workload",
        ),
        Option(
            "group_size",
            "int",
            "--group-size",
            help="GPTQ/AWQ group size (default 128; -1 = per channel)",
            group="workload",
        ),
        Option(
            "kv_dtype",
            "text",
            "--kv-dtype",
            default="auto",
            help="auto (= --dtype), bf16, fp16, fp32, fp8, int8, int4",
            group="workload",
        ),
        Option(
            "rope_scaling",
            "real",
            "--rope-scaling",
            help="serve beyond max_position_embeddings with RoPE scaling of this factor (e.g. YaRN 4)",
            group="workload",
            metavar="FACTOR",
            bounds=(("gt", 0),),
        ),
        Option(
            "engine",
            "text",
            "--engine",
            default="hf",
            help="hf (transformers generate, default) or vllm",
            group="engine and layout",
        ),
        Option("tp", "count", "--tp", default=1, help="tensor-parallel GPUs (default 1)", group="engine and layout"),
        Option("pp", "count", "--pp", default=1, help="pipeline stages (default 1)", group="engine and layout"),
        Option(
            "ep", "count", "--ep", default=1, help="expert-parallel ranks (MoE) (default 1)", group="engine and layout"
        ),
        Option("dp", "count", "--dp", default=1, help="data-parallel replicas (default 1)", group="engine and layout"),
        Option(
            "gpu",
            "text",
            "--gpu",
            help="catalog id (see `gpuplan gpus`): fit, max batch, longest context, speed",
            group="engine and layout",
        ),
        Option(
            "gpu_memory_gib",
            "real",
            "--gpu-memory-gib",
            help="device memory the process sees, GiB (default: the catalog's usable memory)",
            group="engine and layout",
            bounds=(("gt", 0),),
        ),
        Option(
            "check",
            "flag",
            "--check",
            default=False,
            help="exit 3 when it does not fit",
            group="engine and layout",
            api=False,
        ),
        Option(
            "gpu_memory_utilization",
            "real",
            "--gpu-memory-utilization",
            default=0.9,
            group="vLLM options (--engine vllm)",
            bounds=(("gt", 0), ("le", 1)),
        ),
        Option("block_size", "int", "--block-size", default=16, group="vLLM options (--engine vllm)"),
        Option("max_num_seqs", "count", "--max-num-seqs", default=256, group="vLLM options (--engine vllm)"),
        Option(
            "max_num_batched_tokens",
            "count",
            "--max-num-batched-tokens",
            default=8192,
            group="vLLM options (--engine vllm)",
        ),
        Option(
            "enforce_eager",
            "flag",
            "--enforce-eager",
            default=False,
            help="no CUDA graphs",
            group="vLLM options (--engine vllm)",
        ),
        Option(
            "non_torch_gib",
            "real",
            "--non-torch-gib",
            help="memory outside PyTorch (default 0.5 GiB at TP=1, 1.5 GiB with TP>1)",
            group="vLLM options (--engine vllm)",
            bounds=(("ge", 0),),
        ),
        Option(
            "cuda_graph_gib",
            "real",
            "--cuda-graph-gib",
            default=0.5,
            group="vLLM options (--engine vllm)",
            bounds=(("ge", 0),),
        ),
        Option(
            "cuda_context_gib",
            "real",
            "--cuda-context-gib",
            default=0.5,
            help="CUDA context of a PyTorch process (hf; default 0.5)",
            group="assumptions",
            bounds=(("ge", 0),),
        ),
        Option(
            "compute_efficiency",
            "real",
            "--compute-efficiency",
            default=0.5,
            help="achieved/peak FLOP/s in prefill (default 0.5)",
            group="assumptions",
            bounds=(("gt", 0), ("le", 1)),
        ),
        Option(
            "bandwidth_efficiency",
            "real",
            "--bandwidth-efficiency",
            default=0.8,
            help="achieved/peak HBM bandwidth in decode (default 0.8)",
            group="assumptions",
            bounds=(("gt", 0), ("le", 1)),
        ),
        LANG,
        ADVISE,
        CONFIG,
        PLOT,
    ),
)
