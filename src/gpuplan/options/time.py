"""The options of ``gpuplan time``."""

from __future__ import annotations

from gpuplan.options.command import CommandOptions
from gpuplan.options.common import CONFIG, EXPLAIN, JSON, LANG, MODEL_OPTIONS
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
            "tokens", "count", "--tokens", help="training tokens (2T, 15.6e12); required, except with --list-prices"
        ),
        Option("gpu", "text", "--gpu", help="catalog id (h100-sxm, a800, ascend-910b; see `gpuplan gpus`)"),
        Option("gpus", "count", "--gpus", help="number of GPUs (solve for days)"),
        Option("days", "real", "--days", help="deadline in days (solve for GPUs)", bounds=(("gt", 0),)),
        Option(
            "mfu",
            "real",
            "--mfu",
            help="model FLOPs utilization as a fraction (0.40); default: published figure for the GPU family and "
                 "cluster size",
            bounds=(("gt", 0), ("le", 1)),
        ),
        Option(
            "tokens_per_gpu_s",
            "real",
            "--tokens-per-gpu-s",
            help="a measured or published throughput per GPU, instead of --mfu",
            bounds=(("ge", 1e-3), ("le", 1e9)),
        ),
        Option(
            "gpu_multiple",
            "count",
            "--gpu-multiple",
            default=1,
            help="round a solved GPU count up to a multiple of this (8 = whole nodes)",
        ),
        Option(
            "seq",
            "count",
            "--seq",
            help=f"sequence length for the attention term (default {DEFAULT_SEQ})",
            group="FLOP counting",
        ),
        Option(
            "attention_flops",
            "choice",
            "--attention-flops",
            default="full",
            help="attention term: full = 12·L·h·s (torchtitan, MosaicML, Megatron papers, Llama 3), causal = half "
                 "(NeMo), none = plain 6·P (default full)",
            group="FLOP counting",
            choices=("full", "causal", "none"),
        ),
        Option(
            "precision",
            "choice",
            "--precision",
            default="bf16",
            help="training precision; picks the GPU's peak FLOP/s for that dtype (default bf16)",
            group="FLOP counting",
            choices=tuple(PRECISION_DTYPE),
        ),
        Option(
            "peak_tflops",
            "real",
            "--peak-tflops",
            help="override the GPU's dense peak (TFLOP/s), or give it for a GPU not in the catalog",
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
            group="fine-tuning and recomputation",
        ),
        Option(
            "lora_rank", "count", "--lora-rank", help="LoRA rank (default 16)", group="fine-tuning and recomputation"
        ),
        Option(
            "lora_targets",
            "text",
            "--lora-targets",
            help="PEFT target_modules leaf names, comma-separated (default all linear)",
            group="fine-tuning and recomputation",
        ),
        Option(
            "recompute",
            "choice",
            "--recompute",
            default="none",
            help="activation recomputation; its FLOPs are reported apart from model FLOPs",
            group="fine-tuning and recomputation",
            choices=("none", "selective", "full"),
        ),
        Option(
            "price",
            "text",
            "--price",
            help="USD per GPU-hour, a price-table id, or 'table' (newest entry for --gpu)",
            group="cost and energy",
        ),
        Option(
            "list_prices",
            "flag",
            "--list-prices",
            default=False,
            help="print the dated price table and exit",
            group="cost and energy",
            api=False,
        ),
        Option(
            "gpu_power_w",
            "real",
            "--gpu-power-w",
            help="watts per GPU (default: its TDP)",
            group="cost and energy",
            bounds=(("gt", 0),),
        ),
        Option(
            "pue",
            "real",
            "--pue",
            help="power usage effectiveness (default 1.1)",
            group="cost and energy",
            bounds=(("gt", 0),),
        ),
        Option(
            "co2_kg_per_kwh",
            "real",
            "--co2-kg-per-kwh",
            help="grid carbon intensity; adds CO2 (LLaMA papers used 0.385)",
            group="cost and energy",
            bounds=(("gt", 0),),
        ),
        Option(
            "check",
            "flag",
            "--check",
            default=False,
            help="exit 3 when the run as given cannot work: the MFU solved from --gpus and --days is above 1, or (full "
                 "training with --gpu) the GPU count, given or solved, is below the fewest of those GPUs that hold the "
                 "training states (weights, gradients, AdamW states under --precision) fully sharded, ZeRO-3; either "
                 "case also prints a warning, with or without --check",
            api=False,
        ),
        LANG,
        CONFIG,
    ),
)
