"""The options of ``gpuplan plan``."""

from __future__ import annotations

from gpuplan.options.command import CommandOptions
from gpuplan.options.common import (
    check,
    CONFIG,
    EXPLAIN,
    FROM,
    JSON,
    LANG,
    MODEL_OPTIONS,
)
from gpuplan.configs.emit import EMIT_FORMATS
from gpuplan.options.field import Option
from gpuplan.options.time import DEFAULT_SEQ, PRECISION_DTYPE

PLAN = CommandOptions(
    "plan",
    help="the parallel layouts that fit, ranked",
    description="Search TP x PP (x VPP) x DP x EP x CP x ZeRO (full or hybrid sharding) x micro-batch x recompute, "
                "keep the layouts the training-memory engine says fit, rank them by a transparent step-time model, and "
                "explain why the winner wins. Give --gpus N, or --tokens and --days.",
    options=(
        *MODEL_OPTIONS,
        JSON,
        EXPLAIN,
        Option(
            "gpu", "append", "--gpu", help="catalog id; repeat or comma-separate to compare GPU types",
            help_zh="GPU 目录 id；可重复给出或用逗号分隔，以比较不同 GPU 型号", required=True
        ),
        Option("gpus", "count", "--gpus", help="GPU count to plan for",
               help_zh="规划所用的 GPU 数"),
        Option("tokens", "count", "--tokens", help="training tokens (for days, and with --days)",
               help_zh="训练 token 数（用于计算天数，以及配合 --days）"),
        Option("days", "real", "--days", help="deadline: find the fewest GPUs that meet it",
               help_zh="期限：找出满足期限的最少 GPU 数", bounds=(("gt", 0),)),
        Option("seq", "count", "--seq", help=f"sequence length (default {DEFAULT_SEQ})",
               help_zh=f"序列长度（默认 {DEFAULT_SEQ}）"),
        Option(
            "global_batch", "count", "--global-batch", help="sequences per optimizer step (default: 4M tokens / seq)",
            help_zh="每个优化器步的序列数（默认：4M tokens / seq）"
        ),
        Option(
            "rank",
            "choice",
            "--rank",
            help="order: time (default with --gpus), gpus (default with --days), cost (GPU-hours)",
            help_zh="排序依据：time（给 --gpus 时的默认）、gpus（给 --days 时的默认）、cost（GPU 小时）",
            choices=("time", "cost", "gpus"),
        ),
        Option("top", "count", "--top", default=5, help="plans to show (default 5)",
               help_zh="显示的方案数（默认 5）"),
        Option("precision", "choice", "--precision", default="bf16", choices=tuple(PRECISION_DTYPE)),
        Option(
            "framework",
            "choice",
            "--framework",
            default="megatron",
            help="memory semantics (default megatron: TP/SP/PP, distributed optimizer)",
            help_zh="显存语义（默认 megatron：TP/SP/PP、分布式优化器）",
            choices=("megatron", "deepspeed", "torch"),
        ),
        Option(
            "attention_flops",
            "choice",
            "--attention-flops",
            default="full",
            help="FLOP convention for MFU (default full, as Megatron/torchtitan/Llama 3)",
            help_zh="MFU 的 FLOP 口径（默认 full，与 Megatron/torchtitan/Llama 3 相同）",
            choices=("full", "causal", "none"),
        ),
        Option("tp", "int_list", "--tp", group="restrict the search (comma lists)"),
        Option("pp", "int_list", "--pp", group="restrict the search (comma lists)"),
        Option("cp", "int_list", "--cp", group="restrict the search (comma lists)"),
        Option("ep", "int_list", "--ep", group="restrict the search (comma lists)"),
        Option("vpp", "int_list", "--vpp", group="restrict the search (comma lists)"),
        Option("zero", "int_list", "--zero", group="restrict the search (comma lists)", least=0),
        Option("micro_batch", "int_list", "--micro-batch", group="restrict the search (comma lists)"),
        Option(
            "recompute",
            "text",
            "--recompute",
            help="none,selective,full (any subset)",
            help_zh="none,selective,full（任意子集）",
            group="restrict the search (comma lists)",
        ),
        Option(
            "no_hsdp",
            "flag",
            "--no-hsdp",
            default=False,
            help="shard ZeRO/FSDP states over all data-parallel ranks only (no hybrid sharding, --dp-shard)",
            help_zh="ZeRO/FSDP 状态只在全部数据并行 rank 上分片（不用混合分片，--dp-shard）",
            group="restrict the search (comma lists)",
        ),
        Option(
            "compare",
            "append",
            "--compare",
            default=[],
            help="a layout to compare with the winner, e.g. 'tp=4,pp=4' (unset fields from the winner)",
            help_zh="与最优方案对比的并行方案，例如 'tp=4,pp=4'（未给出的字段取自最优方案）",
            group="restrict the search (comma lists)",
        ),
        Option("gpus_per_node", "count", "--gpus-per-node", default=8, group="cluster and efficiency inputs"),
        Option(
            "gpu_multiple",
            "count",
            "--gpu-multiple",
            help="GPU counts tried with --days are multiples of this (default: the node size)",
            help_zh="给 --days 时尝试的 GPU 数都是该数的倍数（默认：节点大小）",
            group="cluster and efficiency inputs",
        ),
        Option(
            "inter_node_gbps",
            "real",
            "--inter-node-gbps",
            help="per-GPU network bandwidth, GB/s one direction (400 Gb/s NIC = 50)",
            help_zh="每卡网络带宽，GB/s 单向（400 Gb/s 网卡 = 50）",
            group="cluster and efficiency inputs",
            bounds=(("gt", 0),),
        ),
        Option(
            "intra_node_gbps",
            "real",
            "--intra-node-gbps",
            help="per-GPU NVLink/HCCS bandwidth, GB/s one direction (default: the catalog)",
            help_zh="每卡 NVLink/HCCS 带宽，GB/s 单向（默认：取自目录）",
            group="cluster and efficiency inputs",
            bounds=(("gt", 0),),
        ),
        Option(
            "gemm_efficiency",
            "real",
            "--gemm-efficiency",
            help="fraction of peak large GEMMs reach (default: measured MAMF per GPU family)",
            help_zh="大型 GEMM 能达到的峰值比例（默认：按 GPU 系列实测的 MAMF）",
            group="cluster and efficiency inputs",
            bounds=(("gt", 0), ("le", 1)),
        ),
        Option(
            "attention_efficiency",
            "real",
            "--attention-efficiency",
            group="cluster and efficiency inputs",
            bounds=(("gt", 0), ("le", 1)),
        ),
        Option(
            "tp_overlap",
            "float",
            "--tp-overlap",
            default=0.0,
            help="fraction of TP traffic hidden (default 0)",
            help_zh="被隐藏的 TP 通信比例（默认 0）",
            group="cluster and efficiency inputs",
        ),
        Option(
            "dp_overlap",
            "float",
            "--dp-overlap",
            default=1.0,
            help="fraction of backward that can hide DP traffic",
            help_zh="反向传播中可用来隐藏 DP 通信的比例",
            group="cluster and efficiency inputs",
        ),
        Option(
            "price",
            "text",
            "--price",
            help="USD per GPU-hour, a price-table id, or 'table'",
            help_zh="每 GPU 小时的美元价格、价格表 id，或 'table'",
            group="cluster and efficiency inputs",
        ),
        Option(
            "emit",
            "choice",
            "--emit",
            help="write the chosen (first) layout as that stack's launch config: torchtitan TOML job config, "
                 "DeepSpeed JSON, Megatron-LM argument list, accelerate config YAML (vllm: refused, plan's layouts "
                 "are for training); checked to read back to the same `gpuplan train` memory",
            help_zh="把选中的（第一个）并行方案写成该训练栈的启动配置：torchtitan TOML 任务配置、DeepSpeed JSON、"
                    "Megatron-LM 参数列表、accelerate 配置 YAML（vllm：拒绝，plan 的方案用于训练）；写出后会读回"
                    "检查 `gpuplan train` 的显存是否相同",
            group="launch config",
            choices=EMIT_FORMATS,
        ),
        Option(
            "emit_out",
            "text",
            "--emit-out",
            metavar="PATH",
            api=False,
            help="write the --emit config to PATH instead of printing it",
            help_zh="把 --emit 生成的配置写入 PATH，而不是打印出来",
            group="launch config",
        ),
        check("exit 3 when no layout fits", "没有放得下的并行方案时以退出码 3 退出"),
        LANG,
        CONFIG,
        FROM,
    ),
)
