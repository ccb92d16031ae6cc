"""The options of ``gpuplan time``."""

from __future__ import annotations

from gpuplan.options.command import CommandOptions
from gpuplan.options.common import (
    check,
    CONFIG,
    EXPLAIN,
    JSON,
    LANG,
    MODEL_OPTIONS,
)
from gpuplan.options.cluster import CLUSTER_OPTIONS, XLSX
from gpuplan.options.field import Option

DEFAULT_SEQ = 4096
PRECISION_DTYPE = {
    "fp32": "fp32",
    "bf16": "bf16",
    "fp16": "fp16",
    "amp-bf16": "bf16",
    "amp-fp16": "fp16",
    "mixed-bf16": "bf16",
    "mixed-fp16": "fp16",
    "fp8": "fp8",
}

TIME = CommandOptions(
    "time",
    help="FLOPs, days, GPU count, GPU-hours and cost of a training run",
    description="Training FLOPs (6·P per token plus attention), then days = FLOPs / (peak × GPUs × MFU). Give two of "
                "--gpus, --days and --mfu and the third is solved for. Works with --params P alone (no MODEL).",
    options=(
        *MODEL_OPTIONS,
        JSON,
        EXPLAIN,
        Option(
            "tokens", "count", "--tokens", help="training tokens (2T, 15.6e12); required, except with --list-prices",
            help_zh="训练 token 数（2T、15.6e12）；必填，--list-prices 时除外"
        ),
        Option("gpu", "text", "--gpu", help="catalog id (h100-sxm, a800, ascend-910b; see `gpuplan gpus`)",
               help_zh="GPU 目录 id（h100-sxm、a800、ascend-910b；见 `gpuplan gpus`）"),
        Option("gpus", "count", "--gpus", help="number of GPUs (solve for days)",
               help_zh="GPU 数（据此求训练天数）"),
        Option("days", "real", "--days", help="deadline in days (solve for GPUs)",
               help_zh="期限天数（据此求 GPU 数）", bounds=(("gt", 0),)),
        Option(
            "mfu",
            "real",
            "--mfu",
            help="model FLOPs utilization as a fraction (0.40); default: published figure for the GPU family and "
                 "cluster size",
            help_zh="算力利用率 MFU，以比例表示（0.40）；默认：该 GPU 系列和集群规模下已发表的数值",
            bounds=(("gt", 0), ("le", 1)),
        ),
        Option(
            "tokens_per_gpu_s",
            "real",
            "--tokens-per-gpu-s",
            help="a measured or published throughput per GPU, instead of --mfu",
            help_zh="实测或已发表的每卡吞吐量，代替 --mfu",
            bounds=(("ge", 1e-3), ("le", 1e9)),
        ),
        Option(
            "gpu_multiple",
            "count",
            "--gpu-multiple",
            default=1,
            help="round a solved GPU count up to a multiple of this (8 = whole nodes)",
            help_zh="把求得的 GPU 数向上取整到该数的倍数（8 = 整机节点）",
        ),
        Option(
            "seq",
            "count",
            "--seq",
            help=f"sequence length for the attention term (default {DEFAULT_SEQ})",
            help_zh=f"注意力项所用的序列长度（默认 {DEFAULT_SEQ}）",
            group="FLOP counting",
        ),
        Option("target_seq", "count", "--target-seq", default=None,
               help="encoder-decoders (T5): target (decoder) tokens per sequence of --seq input tokens "
                    "(default: --seq)",
               help_zh="编码器-解码器（T5）：每条 --seq 输入序列对应的目标（解码器）token 数（默认同 --seq）",
               group="FLOP counting"),
        Option(
            "attention_flops",
            "choice",
            "--attention-flops",
            default="full",
            help="attention term: full = 12·L·h·s (torchtitan, MosaicML, Megatron papers, Llama 3), causal = half "
                 "(NeMo), none = plain 6·P (default full)",
            help_zh="注意力项：full = 12·L·h·s（torchtitan、MosaicML、Megatron 论文、Llama 3），causal = 一半（NeMo）"
                    "，none = 仅 6·P（默认 full）",
            group="FLOP counting",
            choices=("full", "causal", "none"),
        ),
        Option(
            "precision",
            "choice",
            "--precision",
            default="bf16",
            help="training precision; picks the GPU's peak FLOP/s for that dtype (default bf16)",
            help_zh="训练精度；据此选用 GPU 在该 dtype 下的峰值 FLOP/s（默认 bf16）",
            group="FLOP counting",
            choices=tuple(PRECISION_DTYPE),
        ),
        Option(
            "peak_tflops",
            "real",
            "--peak-tflops",
            help="override the GPU's dense peak (TFLOP/s), or give it for a GPU not in the catalog",
            help_zh="覆盖 GPU 的稠密峰值算力（TFLOP/s），或为目录中没有的 GPU 指定该值",
            group="FLOP counting",
            # 1 GFLOP/s to 1 EFLOP/s per device: beyond any accelerator either way, so the answer stays finite
            bounds=(("ge", 1e-3), ("le", 1e6)),
        ),
        Option(
            "method",
            "choice",
            "--method",
            default="full",
            group="fine-tuning and recomputation",
            choices=("full", "freeze", "lora", "qlora"),
        ),
        Option(
            "trainable_params",
            "count",
            "--trainable-params",
            help="trainable parameters with --method freeze (frozen ones cost 4·P, trainable 6·P)",
            help_zh="--method freeze 时的可训练参数量（冻结参数按 4·P 计，可训练参数按 6·P 计）",
            group="fine-tuning and recomputation",
        ),
        Option(
            "lora_rank", "count", "--lora-rank", help="LoRA rank (default 16)",
            help_zh="LoRA rank（默认 16）", group="fine-tuning and recomputation"
        ),
        Option(
            "lora_targets",
            "text",
            "--lora-targets",
            help="PEFT target_modules leaf names, comma-separated (default all linear)",
            help_zh="PEFT target_modules 的叶子模块名，逗号分隔（默认所有线性层）",
            group="fine-tuning and recomputation",
        ),
        Option(
            "recompute",
            "choice",
            "--recompute",
            default="none",
            help="activation recomputation; its FLOPs are reported apart from model FLOPs",
            help_zh="激活重计算；其 FLOPs 与模型 FLOPs 分开报告",
            group="fine-tuning and recomputation",
            choices=("none", "selective", "full"),
        ),
        Option(
            "price",
            "text",
            "--price",
            help="USD per GPU-hour, a price-table id, or 'table' (newest entry for --gpu)",
            help_zh="每 GPU 小时的美元价格、价格表 id，或 'table'（--gpu 的最新条目）",
            group="cost and energy",
        ),
        Option(
            "list_prices",
            "flag",
            "--list-prices",
            default=False,
            help="print the dated price table and exit",
            help_zh="打印带日期的价格表后退出",
            group="cost and energy",
            api=False,
        ),
        Option(
            "gpu_power_w",
            "real",
            "--gpu-power-w",
            help="watts per GPU (default: its TDP)",
            help_zh="每卡功率，单位 W（默认：其 TDP）",
            group="cost and energy",
            bounds=(("gt", 0),),
        ),
        Option(
            "pue",
            "real",
            "--pue",
            help="power usage effectiveness (default 1.1)",
            help_zh="电能使用效率 PUE（默认 1.1）",
            group="cost and energy",
            bounds=(("gt", 0),),
        ),
        Option(
            "co2_kg_per_kwh",
            "real",
            "--co2-kg-per-kwh",
            help="grid carbon intensity; adds CO2 (LLaMA papers used 0.385)",
            help_zh="电网碳排放强度；会加上 CO2 排放（LLaMA 论文采用 0.385）",
            group="cost and energy",
            bounds=(("gt", 0),),
        ),
        *CLUSTER_OPTIONS,
        XLSX,
        check("exit 3 when the run as given cannot work: the MFU solved from --gpus and --days is above 1, or (full "
              "training with --gpu) the GPU count, given or solved, is below the fewest of those GPUs that hold the "
              "training states (weights, gradients, AdamW states under --precision) fully sharded, ZeRO-3; either "
              "case also prints a warning, with or without --check",
              "给定的训练无法实现时以退出码 3 退出：由 --gpus 和 --days 求得的 MFU 大于 1，或（全参训练且给了 "
              "--gpu 时）给定或求得的 GPU 数少于完全分片（ZeRO-3）时放得下训练状态（权重、梯度、--precision 下的 "
              "AdamW 状态）所需的最少 GPU 数；无论是否给了 --check，这两种情况都会打印警告"),
        LANG,
        CONFIG,
    ),
)
