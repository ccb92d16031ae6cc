"""Human labels of the options, in English and Chinese, as forms show them (the web page; ``GET /api/v1/options``).

The command line speaks in flags (``--grad-accum``); a form speaks in words ("Gradient accumulation steps"). Labels
are keyed by the option's name, so one entry serves every command that has the option. An option without an entry
gets a label derived from its name (:func:`derived_label`), so a new option always has one; the common options have
their own here. ``HELP`` gives a form's help to the few options declared without one (the declared help wins).
Units are not part of a label: the form shows them from :attr:`gpuplan.options.Option.unit`.
"""

from __future__ import annotations

# name -> (English, Chinese)
LABELS: dict[str, tuple[str, str]] = {
    # model from raw dimensions
    "layers": ("Layers", "层数"),
    "hidden": ("Hidden size", "隐藏维度"),
    "heads": ("Attention heads", "注意力头数"),
    "kv_heads": ("KV heads", "KV 头数"),
    "head_dim": ("Head dimension", "头维度"),
    "ffn": ("MLP intermediate size", "FFN 中间维度"),
    "vocab": ("Vocabulary size", "词表大小"),
    "experts": ("Routed experts", "路由专家数"),
    "top_k": ("Experts per token", "每 token 专家数"),
    "params": ("Parameters (count only)", "参数量（仅数量）"),
    "explain": ("Explain every number", "解释每个数字"),
    # workload
    "batch": ("Batch size", "批大小"),
    "seq": ("Sequence length", "序列长度"),
    "grad_accum": ("Gradient accumulation steps", "梯度累积步数"),
    "precision": ("Precision", "精度"),
    "stack": ("Training stack", "训练栈"),
    "framework": ("Sharding semantics", "分片语义"),
    "optimizer": ("Optimizer", "优化器"),
    "optimizer_impl": ("Optimizer implementation", "优化器实现"),
    "optimizer_in_backward": ("Optimizer step in backward", "反向中执行优化器"),
    "compile": ("torch.compile", "torch.compile"),
    "recompute": ("Activation recomputation", "激活重计算"),
    "selective_policy": ("Selective recompute policy", "选择性重计算策略"),
    "recompute_offload": ("Offload checkpoints to CPU", "检查点卸载到 CPU"),
    "attention": ("Attention kernel", "注意力实现"),
    "model_impl": ("Modelling code", "建模代码"),
    "lora_dtype": ("LoRA adapter dtype", "LoRA 适配器数据类型"),
    "activation_model": ("Activation model", "激活值模型"),
    "loss": ("Loss computation", "损失计算"),
    "loss_chunk": ("Loss chunk", "损失分块大小"),
    "loss_parallel": ("Vocabulary-parallel loss", "词表并行损失"),
    "keep_logits": ("Keep logits alive", "保留 logits"),
    "zero_grad": ("Gradients between steps", "步间梯度处理"),
    "reserved": ("Replay the caching allocator", "重放缓存分配器"),
    "dropout": ("Dropout", "Dropout 比例"),
    "transformers_version": ("transformers version", "transformers 版本"),
    # fine-tuning
    "method": ("Training method", "训练方式"),
    "trainable": ("Trainable parameters (names)", "可训练参数（名称）"),
    "lora_rank": ("LoRA rank", "LoRA 秩"),
    "lora_targets": ("LoRA target modules", "LoRA 目标模块"),
    "lora_modules_to_save": ("Modules trained in full", "完整训练的模块"),
    "lora_dropout": ("LoRA dropout", "LoRA dropout"),
    "qlora_base": ("QLoRA base format", "QLoRA 基座格式"),
    "qlora_group_size": ("QLoRA group size", "QLoRA 分组大小"),
    # parallel layout
    "gpus": ("GPUs", "GPU 数量"),
    "dp": ("Data parallel (DP)", "数据并行 DP"),
    "tp": ("Tensor parallel (TP)", "张量并行 TP"),
    "pp": ("Pipeline stages (PP)", "流水线并行 PP"),
    "ep": ("Expert parallel (EP)", "专家并行 EP"),
    "cp": ("Context parallel (CP)", "上下文并行 CP"),
    "vpp": ("Virtual pipeline stages (VPP)", "虚拟流水线 VPP"),
    "sp": ("Sequence parallel", "序列并行"),
    "zero": ("ZeRO stage", "ZeRO 阶段"),
    "dp_shard": ("Shard group size (HSDP)", "分片组大小（HSDP）"),
    "microbatches": ("Micro-batches per step", "每步微批数"),
    "offload": ("Offload to CPU", "卸载到 CPU"),
    "no_reshard": ("Keep gathered parameters", "保留聚合后的参数"),
    "fsdp_embedding_groups": ("Embedding and head as FSDP groups", "嵌入与输出头单独分组"),
    "bitsandbytes_version": ("bitsandbytes release", "bitsandbytes 版本"),
    "torch_version": ("PyTorch release", "PyTorch 版本"),
    "kbit_prepare": ("PEFT k-bit preparation", "PEFT k-bit 训练准备"),
    "qlora_head": ("Quantized output head", "量化输出头"),
    "stable_embedding": ("StableEmbedding (litgpt QLoRA)", "StableEmbedding（litgpt QLoRA）"),
    "qlora_double_quant": ("QLoRA double quantization", "QLoRA 双重量化"),
    "ds_reduce_bucket": ("DeepSpeed reduce bucket", "DeepSpeed reduce 桶大小"),
    "ds_overlap_comm": ("DeepSpeed overlapped communication", "DeepSpeed 通信重叠"),
    "ds_contiguous_gradients": ("DeepSpeed contiguous gradients", "DeepSpeed 连续梯度"),
    "ds_prefetch_bucket": ("DeepSpeed prefetch bucket", "DeepSpeed 预取桶大小"),
    "ds_max_live_params": ("DeepSpeed max live parameters", "DeepSpeed 最大常驻参数"),
    "per_rank": ("Show every rank", "显示每个 rank"),
    # fit and overheads
    "gpu": ("GPU", "GPU"),
    "max_batch": ("Find the largest batch", "求最大批大小"),
    "max_seq": ("Find the longest sequence", "求最长序列"),
    "cuda_context": ("CUDA context", "CUDA 上下文"),
    "workspace": ("Library workspaces", "库工作区"),
    "cuda_module_loading": ("CUDA module loading", "CUDA 模块加载"),
    "allocator_reserve": ("Allocator reserve", "分配器预留比例"),
    "advise": ("Suggest how to make it fit", "给出放得下的建议"),
    # serving
    "context": ("Context length", "上下文长度"),
    "prompt": ("Prompt length", "提示词长度"),
    "weights": ("Weight format", "权重格式 / 量化"),
    "dtype": ("Activation dtype", "激活数据类型"),
    "group_size": ("Quantization group size", "量化分组大小"),
    "kv_dtype": ("KV cache dtype", "KV 缓存类型"),
    "rope_scaling": ("RoPE scaling factor", "RoPE 缩放倍数"),
    "engine": ("Serving engine", "推理引擎"),
    "gpu_memory_gib": ("GPU memory seen", "可见显存"),
    "gpu_memory_utilization": ("vLLM memory utilization", "vLLM 显存利用率"),
    "block_size": ("vLLM block size", "vLLM 块大小"),
    "max_num_seqs": ("vLLM max sequences", "vLLM 最大序列数"),
    "max_num_batched_tokens": ("vLLM max batched tokens", "vLLM 最大批 token 数"),
    "enforce_eager": ("No CUDA graphs (eager)", "不用 CUDA Graph（eager）"),
    "non_torch_gib": ("Memory outside PyTorch", "PyTorch 之外的显存"),
    "memory_fraction": ("SGLang / TensorRT-LLM memory fraction", "SGLang / TensorRT-LLM 显存比例"),
    "cuda_graph_gib": ("CUDA graph memory", "CUDA Graph 显存"),
    "cuda_context_gib": ("CUDA context", "CUDA 上下文"),
    "compute_efficiency": ("Prefill compute efficiency", "预填充算力效率"),
    "bandwidth_efficiency": ("Decode bandwidth efficiency", "解码带宽效率"),
    # time and cost
    "tokens": ("Training tokens", "训练 token 数"),
    "days": ("Deadline", "期限"),
    "mfu": ("MFU", "MFU（算力利用率）"),
    "tokens_per_gpu_s": ("Throughput per GPU", "每卡吞吐"),
    "gpu_multiple": ("Round GPUs up to a multiple of", "GPU 数取整到倍数"),
    "attention_flops": ("Attention FLOPs", "注意力 FLOPs 计法"),
    "peak_tflops": ("Peak throughput", "峰值算力"),
    "trainable_params": ("Trainable parameters", "可训练参数量"),
    "price": ("Price", "价格"),
    "gpu_power_w": ("Power per GPU", "每卡功耗"),
    "pue": ("PUE", "PUE（能源使用效率）"),
    "co2_kg_per_kwh": ("Grid carbon intensity", "电网碳强度"),
    # cluster plan
    "global_batch": ("Global batch", "全局批大小"),
    "rank": ("Rank plans by", "方案排序依据"),
    "top": ("Plans to show", "显示方案数"),
    "micro_batch": ("Micro-batch sizes", "微批大小"),
    "no_hsdp": ("No hybrid sharding", "不用混合分片"),
    "compare": ("Compare with layout", "对比的布局"),
    "gpus_per_node": ("GPUs per node", "每节点 GPU 数"),
    "inter_node_gbps": ("Network bandwidth per GPU", "每卡网络带宽"),
    "intra_node_gbps": ("NVLink bandwidth per GPU", "每卡 NVLink 带宽"),
    "gemm_efficiency": ("GEMM efficiency", "GEMM 效率"),
    "attention_efficiency": ("Attention efficiency", "注意力效率"),
    "tp_overlap": ("TP traffic hidden", "TP 通信隐藏比例"),
    "dp_overlap": ("DP traffic hidden", "DP 通信隐藏比例"),
    # sweep
    "over": ("Swept option", "扫描的选项"),
    "values": ("Values", "取值"),
    "mode": ("Computed by", "计算方式"),
}

# Units a form shows beside an option's input, by option name (options typed in MiB carry theirs as metavar MIB).
UNITS: dict[str, str] = {
    "seq": "tokens", "context": "tokens", "prompt": "tokens", "tokens": "tokens", "loss_chunk": "tokens",
    "days": "days", "peak_tflops": "TFLOP/s", "tokens_per_gpu_s": "tokens/s", "gpu_power_w": "W",
    "co2_kg_per_kwh": "kg/kWh", "inter_node_gbps": "GB/s", "intra_node_gbps": "GB/s", "price": "USD/GPU-h",
    "ds_reduce_bucket": "elements", "ds_prefetch_bucket": "elements", "ds_max_live_params": "elements",
}

# A form's help for options declared without one: name -> (English, Chinese).
HELP: dict[str, tuple[str, str]] = {
    "attention": ("attention kernel: sdpa (PyTorch's default), flash (FlashAttention 2) or eager (the score "
                  "matrix is kept)", "注意力实现：sdpa（PyTorch 默认）、flash（FlashAttention 2）或 eager（保存注意力分数矩阵）"),
    "method": ("full fine-tuning, LoRA adapters, QLoRA (4-bit frozen base), freeze (only --trainable is trained)",
               "全参数微调、LoRA 适配器、QLoRA（4 比特冻结基座）、freeze（只训练 --trainable 指定的参数）"),
    "lora_rank": ("rank r of each LoRA adapter (default 16)", "每个 LoRA 适配器的秩 r（默认 16）"),
    "lora_dropout": ("dropout on the LoRA input (adds a saved mask per target; default: the stack's, 0 or "
                     "litgpt's 0.05)", "LoRA 输入上的 dropout（每个目标模块多保存一个掩码；默认：训练栈的设置，0 或 litgpt 的 0.05）"),
    "gpu_memory_utilization": ("the fraction of GPU memory vLLM may use (vLLM default 0.9)",
                               "vLLM 可使用的显存比例（vLLM 默认 0.9）"),
    "block_size": ("tokens per KV cache block (vLLM default 16)", "每个 KV 缓存块的 token 数（vLLM 默认 16）"),
    "max_num_seqs": ("most sequences vLLM schedules at once (vLLM default 256)",
                     "vLLM 同时调度的最多序列数（vLLM 默认 256）"),
    "max_num_batched_tokens": ("most tokens in one vLLM step; sizes the profiling run (default 8192)",
                               "vLLM 每步最多 token 数；决定显存探测运行的大小（默认 8192）"),
    "cuda_graph_gib": ("memory of the captured CUDA graphs (default 0.5 GiB)", "捕获的 CUDA Graph 占用的显存（默认 0.5 GiB）"),
    "micro_batch": ("micro-batch sizes to try, comma-separated", "要尝试的微批大小，逗号分隔"),
    "gpus_per_node": ("GPUs per node: TP stays inside a node (default 8)", "每节点 GPU 数：张量并行限制在节点内（默认 8）"),
    "attention_efficiency": ("fraction of peak the attention kernels reach (default: measured per GPU family)",
                             "注意力内核达到的峰值比例（默认：按 GPU 系列的实测值）"),
    "tp": ("tensor-parallel degrees to try, comma-separated", "要尝试的张量并行度，逗号分隔"),
    "pp": ("pipeline degrees to try, comma-separated", "要尝试的流水线并行度，逗号分隔"),
    "cp": ("context-parallel degrees to try, comma-separated", "要尝试的上下文并行度，逗号分隔"),
    "ep": ("expert-parallel degrees to try, comma-separated", "要尝试的专家并行度，逗号分隔"),
    "vpp": ("virtual pipeline degrees to try, comma-separated", "要尝试的虚拟流水线度，逗号分隔"),
    "zero": ("ZeRO stages to try, comma-separated (0-3)", "要尝试的 ZeRO 阶段，逗号分隔（0-3）"),
    "precision": ("training precision (bf16, fp8...)", "训练精度（bf16、fp8 等）"),
}

_SPELLED = {"gpus": "GPUs", "tflops": "TFLOP/s", "gbps": "GB/s", "kwh": "kWh"}
_UPPER = {"tp", "dp", "pp", "ep", "cp", "vpp", "sp", "gpu", "kv", "mfu", "ffn", "cuda", "lora", "qlora", "pue",
          "co2", "ds", "gib", "mib", "hf", "hsdp", "rope", "gemm", "usd"}


def derived_label(name: str) -> str:
    """A label from the option's name: 'kv_block_count' -> 'KV block count' (a new option has one at once)."""
    words = [_SPELLED.get(w) or (w.upper() if w in _UPPER else w) for w in name.split("_") if w]
    if not words:
        return name
    first = words[0]
    return " ".join([first[:1].upper() + first[1:], *words[1:]])


def label_of(name: str) -> tuple[str, str]:
    """(English, Chinese) label of option ``name``; a derived English label for both when none is written."""
    if name in LABELS:
        return LABELS[name]
    text = derived_label(name)
    return text, text
