"""The options of ``gpuplan plan``."""

from __future__ import annotations

from gpuplan.options.command import CommandOptions
from gpuplan.options.common import CONFIG, EXPLAIN, JSON, LANG, MODEL_OPTIONS
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
            "gpu", "append", "--gpu", help="catalog id; repeat or comma-separate to compare GPU types", required=True
        ),
        Option("gpus", "count", "--gpus", help="GPU count to plan for"),
        Option("tokens", "count", "--tokens", help="training tokens (for days, and with --days)"),
        Option("days", "real", "--days", help="deadline: find the fewest GPUs that meet it", bounds=(("gt", 0),)),
        Option("seq", "count", "--seq", help=f"sequence length (default {DEFAULT_SEQ})"),
        Option(
            "global_batch", "count", "--global-batch", help="sequences per optimizer step (default: 4M tokens / seq)"
        ),
        Option(
            "rank",
            "choice",
            "--rank",
            help="order: time (default with --gpus), gpus (default with --days), cost (GPU-hours)",
            choices=("time", "cost", "gpus"),
        ),
        Option("top", "count", "--top", default=5, help="plans to show (default 5)"),
        Option("precision", "choice", "--precision", default="bf16", choices=tuple(PRECISION_DTYPE)),
        Option(
            "framework",
            "choice",
            "--framework",
            default="megatron",
            help="memory semantics (default megatron: TP/SP/PP, distributed optimizer)",
            choices=("megatron", "deepspeed", "torch"),
        ),
        Option(
            "attention_flops",
            "choice",
            "--attention-flops",
            default="full",
            help="FLOP convention for MFU (default full, as Megatron/torchtitan/Llama 3)",
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
            group="restrict the search (comma lists)",
        ),
        Option(
            "no_hsdp",
            "flag",
            "--no-hsdp",
            default=False,
            help="shard ZeRO/FSDP states over all data-parallel ranks only (no hybrid sharding, --dp-shard)",
            group="restrict the search (comma lists)",
        ),
        Option(
            "compare",
            "append",
            "--compare",
            default=[],
            help="a layout to compare with the winner, e.g. 'tp=4,pp=4' (unset fields from the winner)",
            group="restrict the search (comma lists)",
        ),
        Option("gpus_per_node", "count", "--gpus-per-node", default=8, group="cluster and efficiency inputs"),
        Option(
            "gpu_multiple",
            "count",
            "--gpu-multiple",
            help="GPU counts tried with --days are multiples of this (default: the node size)",
            group="cluster and efficiency inputs",
        ),
        Option(
            "inter_node_gbps",
            "real",
            "--inter-node-gbps",
            help="per-GPU network bandwidth, GB/s one direction (400 Gb/s NIC = 50)",
            group="cluster and efficiency inputs",
            bounds=(("gt", 0),),
        ),
        Option(
            "intra_node_gbps",
            "real",
            "--intra-node-gbps",
            help="per-GPU NVLink/HCCS bandwidth, GB/s one direction (default: the catalog)",
            group="cluster and efficiency inputs",
            bounds=(("gt", 0),),
        ),
        Option(
            "gemm_efficiency",
            "real",
            "--gemm-efficiency",
            help="fraction of peak large GEMMs reach (default: measured MAMF per GPU family)",
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
            group="cluster and efficiency inputs",
        ),
        Option(
            "dp_overlap",
            "float",
            "--dp-overlap",
            default=1.0,
            help="fraction of backward that can hide DP traffic",
            group="cluster and efficiency inputs",
        ),
        Option(
            "price",
            "text",
            "--price",
            help="USD per GPU-hour, a price-table id, or 'table'",
            group="cluster and efficiency inputs",
        ),
        Option("check", "flag", "--check", default=False, help="exit 3 when no layout fits", api=False),
        LANG,
        CONFIG,
    ),
)
