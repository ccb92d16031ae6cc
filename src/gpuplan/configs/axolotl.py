"""axolotl YAML configs (``gpuplan train qlora.yml``).

Keys follow axolotl's config reference (docs/config-reference.qmd) and its schema (src/axolotl/utils/schemas/
config.py ``AxolotlInputConfig``, axolotl 0.9+): ``base_model`` (a Hugging Face id or path), ``adapter``
(lora / qlora; absent: full fine-tuning), ``load_in_4bit`` (required by, and only with, ``adapter: qlora``:
the schema refuses the other pairings), ``lora_r``, ``lora_target_modules`` / ``lora_target_linear`` (every linear
layer), ``sequence_len``, ``micro_batch_size``, ``gradient_accumulation_steps``, ``optimizer`` (the Trainer's
``optim`` names), ``bf16`` (true / false / auto: bf16 where the GPU has it), ``gradient_checkpointing`` (true, or
"offload": checkpointed layer inputs kept in host memory), ``flash_attention`` / ``sdp_attention`` /
``attn_implementation``, ``deepspeed`` (a JSON path), ``fsdp`` / ``fsdp_config``. axolotl loads the model in the
bf16 / fp16 it trains in (utils/models.py: ``torch_dtype`` from ``cfg.bf16`` / ``cfg.fp16``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gpuplan.configs import hf
from gpuplan.configs.checks import Keys
from gpuplan.configs.report import ConfigReport

PROJECT = "axolotl"
_NO = hf.NO_MEMORY
_IGNORED = {
    "base_model_config": "the preset gives the architecture", "model_type": "model class: the preset gives "
    "the architecture", "tokenizer_type": "tokenizer: " + _NO, "tokenizer_config": "tokenizer: " + _NO,
    "trust_remote_code": "code loading: the preset gives the architecture", "datasets": "data: " + _NO,
    "test_datasets": "evaluation data", "dataset_prepared_path": "data cache: " + _NO,
    "val_set_size": "evaluation split: evaluation runs between steps", "output_dir": "output folder",
    "chat_template": "prompt formatting: " + _NO, "sample_packing": "samples packed into sequence_len rows: the "
    "estimate is for sequence_len tokens per row", "eval_sample_packing": "evaluation runs between steps",
    "pad_to_sequence_len": "rows padded to sequence_len: the estimate is for sequence_len tokens",
    "lora_model_dir": "adapter loading", "lora_alpha": "the adapters' scaling: " + _NO,
    "lora_fan_in_fan_out": "weight layout: " + _NO, "num_epochs": "run length: " + _NO, "max_steps": "run length",
    "lr_scheduler": "learning-rate schedule", "learning_rate": "hyperparameter: " + _NO,
    "weight_decay": "hyperparameter: " + _NO, "warmup_ratio": "learning-rate schedule",
    "warmup_steps": "learning-rate schedule", "tf32": "TF32 matmuls: " + _NO,
    "gradient_checkpointing_kwargs": "checkpointing detail (use_reentrant): the same saved inputs",
    "resume_from_checkpoint": "checkpoint loading", "logging_steps": "logging only",
    "evals_per_epoch": "evaluation runs between steps", "eval_steps": "evaluation runs between steps",
    "saves_per_epoch": "checkpoint saving, between steps", "save_steps": "checkpoint saving, between steps",
    "special_tokens": "tokenizer: " + _NO, "tokens": "tokenizer: " + _NO, "hub_model_id": "uploading",
    "strict": "config checking", "loss_watchdog_threshold": "loss monitoring", "loss_watchdog_patience":
    "loss monitoring", "early_stopping_patience": "run length", "group_by_length": "batch ordering: " + _NO,
    "train_on_inputs": "loss masking: " + _NO, "seed": _NO, "max_grad_norm": "gradient clipping: no memory of its "
    "own", "xformers_attention": "xformers kernel: counted as sdpa (neither keeps the score matrix)",
    "s2_attention": "shifted sparse attention: not modelled", "torch_compile": "torch.compile: gpuplan estimates "
    "eager-mode memory (fusion is not modelled)", "debug": "debugging only",
}


def read(data: dict[str, Any], name: str, report: ConfigReport, folder: Path | None) -> str:
    """Map an axolotl config into ``report``; returns the model (a preset id, or the Hugging Face id)."""
    k = Keys(name)
    report.set("(file)", "stack", "axolotl", "an axolotl config: the axolotl stack's defaults")
    if "base_model" not in data:
        raise k.error("base_model", None, "is required (the model to fine-tune)")
    adapter = data.get("adapter")
    if adapter is not None:
        adapter = k.str("adapter", adapter, ("lora", "qlora"))
    four = bool(data.get("load_in_4bit")) and k.bool("load_in_4bit", data["load_in_4bit"])
    eight = bool(data.get("load_in_8bit")) and k.bool("load_in_8bit", data["load_in_8bit"])
    if four and adapter != "qlora":
        raise k.error("load_in_4bit", True, f"contradicts adapter: {adapter or '(none)'} (axolotl loads a 4-bit "
                      "base only for adapter: qlora)")
    if adapter == "qlora" and not four:
        raise k.error("adapter", "qlora", "needs load_in_4bit: true (axolotl's schema requires it)")
    if eight and four:
        raise k.error("load_in_8bit", True, "contradicts load_in_4bit: true")
    if eight:
        raise k.error("load_in_8bit", True, "8-bit base weights (bitsandbytes LLM.int8) are not modelled by gpuplan",
                      hint="use adapter: qlora with load_in_4bit, or a 16-bit base")
    linear = bool(data.get("lora_target_linear")) and k.bool("lora_target_linear", data["lora_target_linear"])
    ds = False
    model = ""
    for key, value in data.items():
        if value is None:
            report.ignore(key, "empty: axolotl's default")
        elif key == "base_model":
            model = hf.model_id(k, key, value, report)
        elif key == "adapter":
            report.set(key, "method", adapter, "LoRA adapters on an NF4 base (bitsandbytes)" if adapter == "qlora"
                       else "LoRA adapters")
            if adapter == "qlora":
                report.set(key, "qlora_base", "nf4")
        elif key in ("load_in_4bit", "load_in_8bit"):
            report.ignore(key, "true: read with adapter" if value else "false")
        elif key.startswith("lora_") and key not in _IGNORED and not adapter:
            report.ignore(key, "used only with adapter: lora or qlora")
        elif key == "lora_r":
            report.set(key, "lora_rank", k.int(key, value))
        elif key == "lora_dropout":
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value < 1:
                raise k.error(key, value, "must be a number in [0, 1)")
            report.set(key, "lora_dropout", float(value))
        elif key == "lora_target_linear":
            if linear:
                report.set(key, "lora_targets", ["all-linear"], "every linear layer but the output head")
            else:
                report.ignore(key, "false: lora_target_modules names the modules")
        elif key in ("lora_target_modules", "lora_modules_to_save"):
            names = [value] if isinstance(value, str) else value
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise k.error(key, value, "must be a module name or a list of them")
            if key == "lora_target_modules" and linear:
                report.ignore(key, "lora_target_linear: true already targets every linear layer, these included")
            elif names:
                report.set(key, "lora_targets" if key == "lora_target_modules" else "lora_modules_to_save", names)
            else:
                report.ignore(key, "empty")
        elif key == "sequence_len":
            report.set(key, "seq", k.int(key, value))
        elif key == "micro_batch_size":
            report.set(key, "batch", k.int(key, value))
        elif key == "gradient_accumulation_steps":
            report.set(key, "grad_accum", k.int(key, value))
        elif key == "optimizer":
            hf.optimizer(k, key, value, report)
        elif key in ("bf16", "fp16", "bfloat16", "float16"):
            continue  # the precision, below
        elif key == "gradient_checkpointing":
            _checkpointing(k, key, value, report)
        elif key in ("flash_attention", "sdp_attention", "eager_attention"):
            if k.bool(key, value):
                report.set(key, "attention", {"flash_attention": "flash", "sdp_attention": "sdpa"}.get(key, "eager"))
            else:
                report.ignore(key, "false")
        elif key == "attn_implementation":
            hf.attention(k, key, value, report)
        elif key == "deepspeed":
            ds = hf.deepspeed_file(k, key, value, folder, report)
        elif key == "fsdp":
            hf.fsdp(k, key, value, report)
        elif key == "fsdp_config":
            hf.fsdp_config(k, key, value, report)
        elif key == "fsdp_version":
            report.ignore(key, "FSDP1 or FSDP2: the same sharded states")
        elif key in ("tensor_parallel_size", "context_parallel_size"):
            report.set(key, "tp" if key.startswith("tensor") else "cp", k.int(key, value))
        elif key in ("dp_shard_size",):
            report.set(key, "dp_shard", k.int(key, value))
        elif key == "cut_cross_entropy" or key == "liger_fused_linear_cross_entropy":
            if k.bool(key, value):
                report.set(key, "loss", "fused", "fused linear cross-entropy: logits one chunk at a time")
            else:
                report.ignore(key, "false")
        elif key in _IGNORED:
            report.ignore(key, _IGNORED[key])
        elif key.startswith(("wandb_", "mlflow_", "comet_", "hub_", "eval_", "dataset_", "save_", "plugins")):
            report.ignore(key, "logging, evaluation, data or saving: " + _NO)
        else:
            hf.unknown(report, key, PROJECT)
    _precision(k, data, ds, report)
    return model


def _checkpointing(k: Keys, key: str, value: Any, report: ConfigReport) -> None:
    if value == "offload":
        report.set(key, "recompute", "full", "offload: every decoder layer checkpointed")
        report.set(key, "recompute_offload", "on", "each checkpointed layer's input kept in host memory")
        return
    report.set(key, "recompute", "full" if k.bool(key, value) else "none",
               "Hugging Face gradient checkpointing: every decoder layer" if value else "")


def _precision(k: Keys, data: dict[str, Any], deepspeed: bool, report: ConfigReport) -> None:
    on = []
    for flag in ("bf16", "fp16"):
        value = data.get(flag)
        if value is None:
            continue
        if (value == "auto" and flag == "bf16") or k.bool(flag, value):
            on.append(flag)
        else:
            report.ignore(flag, "false")
    for flag in ("bfloat16", "float16"):
        if data.get(flag) is not None:
            report.ignore(flag, "half-precision loading without autocast: read with bf16 / fp16")
    if len(on) == 2:
        raise k.error("fp16", True, "contradicts bf16 (axolotl trains in one of them)")
    if not on:
        report.set("(no bf16 or fp16)", "precision", "fp32", "fp32 weights and states")
        return
    half = on[0]
    auto = "; auto: bf16 where the GPU has it (Ampere and later)" if data.get(half) == "auto" else ""
    if deepspeed:
        report.set(half, "precision", f"mixed-{half}", "DeepSpeed's bf16/fp16 engine: half weights, fp32 master "
                   "and states" + auto)
    else:
        report.set(half, "precision", half, f"the model and its optimizer states in {half}" + auto)
