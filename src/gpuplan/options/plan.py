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
from gpuplan.options.cluster import CLUSTER_OPTIONS, CLUSTER_PUE, XLSX
from gpuplan.options.field import Option
from gpuplan.options.time import DEFAULT_SEQ, PRECISION_DTYPE
from gpuplan.compute.schedules import SCHEDULES
from gpuplan.train.stacks import stack_names

SERVE_GROUP = "serving plan (--serve)"
SERVE_OPTIONS = (
    Option("serve", "flag", "--serve", default=False, group=SERVE_GROUP,
           help="plan a deployment for serving: GPUs, TP/PP/EP/replicas, batch, TTFT, TPOT, cost per million tokens",
           help_zh="规划推理服务部署：GPU、TP/PP/EP/副本数、批大小、TTFT、TPOT、每百万 token 成本"),
    Option("rps", "real", "--rps", group=SERVE_GROUP, bounds=(("gt", 0), ("le", 1e6)),
           help="requests per second (Poisson arrivals); or give --concurrency",
           help_zh="每秒请求数（泊松到达）；或给出 --concurrency"),
    Option("concurrency", "count", "--concurrency", group=SERVE_GROUP,
           help="requests in flight (closed loop); or give --rps",
           help_zh="同时在途的请求数（闭环）；或给出 --rps"),
    Option("prompt", "count", "--prompt", default=1024, group=SERVE_GROUP,
           help="mean prompt length in tokens (default 1024)", help_zh="平均提示长度，token 数（默认 1024）"),
    Option("output", "count", "--output", default=256, group=SERVE_GROUP,
           help="mean output length in tokens (default 256)", help_zh="平均输出长度，token 数（默认 256）"),
    Option("prefix_hit", "real", "--prefix-hit", default=0.0, group=SERVE_GROUP, bounds=(("ge", 0), ("lt", 1)),
           help="share of prompt tokens served from the prefix cache (default 0)",
           help_zh="由前缀缓存命中的提示 token 比例（默认 0）"),
    Option("ttft", "real", "--ttft", group=SERVE_GROUP, bounds=(("gt", 0),),
           help="target time to first token, seconds", help_zh="首 token 延迟目标，秒"),
    Option("tpot", "real", "--tpot", group=SERVE_GROUP, bounds=(("gt", 0),),
           help="target time per output token, seconds", help_zh="每个输出 token 的时间目标，秒"),
    Option("e2e", "real", "--e2e", group=SERVE_GROUP, bounds=(("gt", 0),),
           help="target end-to-end request latency, seconds", help_zh="请求端到端延迟目标，秒"),
    Option("percentile", "choice", "--percentile", default="p50", choices=("p50", "p90", "p99"), group=SERVE_GROUP,
           help="the percentile the targets hold at (default p50)", help_zh="目标所针对的分位数（默认 p50）"),
    Option("weights", "text", "--weights", default="bf16", group=SERVE_GROUP,
           help="weight dtype or quantization for serving (default bf16; as gpuplan infer)",
           help_zh="推理时权重的数据类型或量化格式（默认 bf16；同 gpuplan infer）"),
    Option("engine", "choice", "--engine", default="vllm", choices=("vllm", "sglang", "trtllm"), group=SERVE_GROUP,
           help="whose start-up arithmetic sizes each replica's KV pool (default vllm; as gpuplan infer)",
           help_zh="按哪个推理引擎的启动算法确定每个副本的 KV 池（默认 vllm；同 gpuplan infer）"),
    Option("disaggregate", "flag", "--disaggregate", default=False, group=SERVE_GROUP,
           help="prefill and decode on separate replica pools, the prompt's KV sent between them (DistServe, "
                "Splitwise; needs --rps)",
           help_zh="预填充与解码分离到两组副本，提示词的 KV 在两组之间传输（DistServe、Splitwise；需给出 --rps）"),
    Option("max_num_batched_tokens", "count", "--max-num-batched-tokens", default=None, group=SERVE_GROUP,
           help="token budget of one step with chunked prefill (default: vLLM V1's for each GPU type, 8192 on GPUs "
                "of at least 70 GiB other than the A100, 2048 on the others; 8192 for sglang and trtllm)",
           help_zh="分块预填充时每步的 token 预算（默认按 GPU 类型取 vLLM V1 的默认值：70 GiB 及以上且非 A100 为 8192，"
                   "其余为 2048；sglang 与 trtllm 为 8192）"),
    Option("max_num_seqs", "count", "--max-num-seqs", default=None, group=SERVE_GROUP,
           help="most sequences one replica runs at once (default: vLLM V1's for each GPU type, 1024 on GPUs of at "
                "least 70 GiB other than the A100, 256 on the others; no cap for sglang and trtllm)",
           help_zh="每个副本同时运行的最多序列数（默认按 GPU 类型取 vLLM V1 的默认值：70 GiB 及以上且非 A100 为 1024，"
                   "其余为 256；sglang 与 trtllm 不设上限）"),
)

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
            "gpu", "append", "--gpu", help="catalog id; repeat or comma-separate to compare GPU types (required, "
            "except with --serve: then every GPU type with a market price in the price table)",
            help_zh="GPU 目录 id；可重复给出或用逗号分隔，以比较不同 GPU 型号（必填；--serve 时可省略："
                    "比较价格表中有市场价的所有 GPU 型号）"
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
            help="memory semantics (default: the --stack's, else megatron: TP/SP/PP, distributed optimizer)",
            help_zh="显存语义（默认：--stack 的设置，否则 megatron：TP/SP/PP、分布式优化器）",
            choices=("megatron", "deepspeed", "torch"),
        ),
        Option(
            "compile",
            "choice",
            "--compile",
            help="on: each decoder layer runs under torch.compile, which changes what it saves for backward "
            "(default: the --stack's, off)",
            help_zh="on：每个解码层在 torch.compile 下运行，这会改变它为反向保存的张量（默认：--stack 的设置，off）",
            choices=("on", "off"),
        ),
        # step-time behaviours of the stack and kernels the run used (gpuplan.compute.schedules, kernels)
        Option(
            "stack",
            "choice",
            "--stack",
            help="the training stack whose defaults fill --framework, --schedule and --attention-impl when not given "
                 "(default: none, Megatron-LM behaviour)",
            help_zh="训练栈：未给出 --framework、--schedule 和 --attention-impl 时采用它的默认值（默认：无，按 Megatron-LM 行为）",
            choices=stack_names(),
        ),
        Option(
            "schedule",
            "choice",
            "--schedule",
            help="pipeline schedule: 1f1b, interleaved (needs --vpp >= 2), zero-bubble (ZB-H1), dualpipe (DeepSeek-V3: "
                 "also hides the MoE all-to-all); default: 1f1b, or interleaved where vpp > 1",
            help_zh="流水线调度：1f1b、interleaved（需 --vpp >= 2）、zero-bubble（ZB-H1）、dualpipe（DeepSeek-V3："
                    "同时隐藏 MoE all-to-all）；默认：1f1b，vpp > 1 时为 interleaved",
            choices=SCHEDULES,
        ),
        Option(
            "attention_impl",
            "choice",
            "--attention-impl",
            help="attention kernel timed: flash (default) or unfused (materialized softmax, with attention dropout "
                 "when the model config has dropout, as Megatron-LM in 2022)",
            help_zh="计时所用的注意力实现：flash（默认）或 unfused（显式 softmax；模型配置有 dropout 时含注意力 dropout，"
                    "如 2022 年的 Megatron-LM）",
            choices=("flash", "unfused"),
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
        *CLUSTER_OPTIONS,
        XLSX,
        CLUSTER_PUE,
        *SERVE_OPTIONS,
        check("exit 3 when no layout fits", "没有放得下的并行方案时以退出码 3 退出"),
        LANG,
        CONFIG,
        FROM,
    ),
)
