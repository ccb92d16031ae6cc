"""The options of ``gpuplan verify``."""

from __future__ import annotations

from gpuplan.options.command import CommandOptions
from gpuplan.options.common import CONFIG, JSON, LANG, MODEL_OPTIONS
from gpuplan.options.field import Option
from gpuplan.verify.setup import (
    ATTENTIONS,
    INFER_DTYPES,
    METHODS,
    OPTIMIZER_IMPLS,
    OPTIMIZERS,
    PRECISIONS,
    RECOMPUTE_MODES,
)

VERIFY = CommandOptions(
    "verify",
    help="runs the real model in PyTorch and compares measured memory with the estimate",
    description="Build the Hugging Face transformers model from its config (random weights, no download), run the step "
                "the estimate describes (a steady-state training step, or an inference prefill) and print estimate vs "
                "measurement per component and for the peak. Default back end: a CPU trace on fake tensors (no GPU "
                "needed); --device cuda runs it for real. Needs gpuplan[verify].",
    epilog="error = (estimate - measured) / measured; negative = underestimate (an OOM risk).",
    options=(
        *MODEL_OPTIONS,
        Option(
            "workload",
            "choice",
            "--workload",
            default="train",
            help="a training step (default) or an inference prefill",
            help_zh="一个训练步（默认）或一次推理预填充",
            choices=("train", "infer"),
        ),
        Option(
            "device",
            "choice",
            "--device",
            default="cpu",
            help="cpu: trace on fake tensors (default); cuda: a real step on the GPU",
            help_zh="cpu：在 fake tensor 上追踪（默认）；cuda：在 GPU 上真实运行一步",
            choices=("cpu", "cuda"),
            api=False,
        ),
        Option("batch", "count", "--batch", default=1, help="micro-batch (train) or sequences (infer)",
               help_zh="micro-batch（train）或序列数（infer）"),
        Option(
            "seq",
            "count",
            "--seq",
            default=2048,
            help="sequence length (default 2048)",
            help_zh="序列长度（默认 2048）",
            group="training step (--workload train)",
        ),
        Option(
            "precision",
            "choice",
            "--precision",
            default="bf16",
            help="parameter / compute recipe",
            help_zh="参数 / 计算的精度方案",
            group="training step (--workload train)",
            choices=PRECISIONS,
        ),
        Option(
            "optimizer",
            "choice",
            "--optimizer",
            default="adamw",
            group="training step (--workload train)",
            choices=OPTIMIZERS,
        ),
        Option(
            "optimizer_impl",
            "choice",
            "--optimizer-impl",
            default="foreach",
            help="PyTorch optimizer implementation (default foreach, as on CUDA)",
            help_zh="PyTorch 优化器实现（默认 foreach，与 CUDA 上相同）",
            group="training step (--workload train)",
            choices=OPTIMIZER_IMPLS,
        ),
        Option(
            "recompute",
            "choice",
            "--recompute",
            default="none",
            help="full = Hugging Face gradient checkpointing",
            help_zh="full = Hugging Face 的 gradient checkpointing",
            group="training step (--workload train)",
            choices=RECOMPUTE_MODES,
        ),
        Option(
            "attention",
            "choice",
            "--attention",
            default="sdpa",
            group="training step (--workload train)",
            choices=ATTENTIONS,
        ),
        Option(
            "method", "choice", "--method", default="full", group="training step (--workload train)", choices=METHODS
        ),
        Option(
            "trainable",
            "names",
            "--trainable",
            default=(),
            help="GLOB[,GLOB] of trainable parameter names (freeze)",
            help_zh="可训练参数名的 GLOB[,GLOB]（freeze）",
            group="training step (--workload train)",
        ),
        Option("lora_rank", "count", "--lora-rank", default=16, group="training step (--workload train)"),
        Option(
            "lora_targets",
            "names",
            "--lora-targets",
            default=("all-linear",),
            help="module names NAME[,NAME] as PEFT's target_modules (default all-linear)",
            help_zh="模块名 NAME[,NAME]，与 PEFT 的 target_modules 相同（默认 all-linear）",
            group="training step (--workload train)",
        ),
        Option(
            "keep_logits",
            "flag",
            "--keep-logits",
            default=False,
            help="the loop keeps the model output through backward",
            help_zh="训练循环在整个反向传播期间一直持有模型输出",
            group="training step (--workload train)",
        ),
        Option(
            "reserved",
            "flag",
            "--reserved",
            default=False,
            help="also replay the traced allocations through a model of PyTorch's caching allocator and compare "
            "reserved memory (CPU back end, training; traces three steps from the model's creation)",
            help_zh="另将追踪到的分配序列输入 PyTorch 缓存分配器模型重放，比较 reserved 显存（CPU 后端、训练；从建模型起追"
                    "踪三步）",
            group="training step (--workload train)",
        ),
        Option(
            "context",
            "count",
            "--context",
            default=2048,
            help="prompt tokens per sequence",
            help_zh="每条序列的提示词 token 数",
            group="inference prefill (--workload infer)",
        ),
        Option(
            "weights",
            "choice",
            "--weights",
            default="bf16",
            help="weight dtype",
            help_zh="权重 dtype",
            group="inference prefill (--workload infer)",
            choices=INFER_DTYPES,
        ),
        JSON,
        LANG,
        CONFIG,
    ),
)
