"""TRL / Hugging Face Trainer recipes as YAML or JSON (``gpuplan train config_qlora.yaml``): the flat mapping of
TrainingArguments, TRL's SFTConfig and ModelConfig fields that ``TrlParser`` reads (alignment-handbook recipes,
TRL's examples/ and ``trl sft --config``).

Fields and defaults: transformers training_args.py ``TrainingArguments`` (transformers 4.56), TRL trl/trainer/
sft_config.py ``SFTConfig`` (``max_length``, formerly ``max_seq_length``; ``packing``) and trl/trainer/model_config.py
``ModelConfig`` (``model_name_or_path``, ``torch_dtype``, ``attn_implementation``, ``use_peft``, ``lora_r``,
``lora_target_modules``, ``load_in_4bit``, ``bnb_4bit_quant_type``, ``use_bnb_nested_quant``). The weights are held
in ``torch_dtype`` (absent: fp32, from_pretrained's default before transformers 5); ``bf16`` / ``fp16`` are the
autocast dtype; with ``load_in_4bit`` the base is NF4 and the LoRA adapters fp32 (PEFT).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gpuplan.configs import hf
from gpuplan.configs.checks import Keys
from gpuplan.configs.report import ConfigReport

PROJECT = "TRL / TrainingArguments"
_DTYPES = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32", "auto": "auto"}
_IGNORED = {
    "chat_template": "prompt formatting: " + hf.NO_MEMORY, "packing": "rows packed to max_length: the estimate "
    "is for max_length tokens per row", "dataset_num_proc": "host-side data preparation",
    "dataset_text_field": "data: " + hf.NO_MEMORY, "lora_alpha": "the adapters' scaling: " + hf.NO_MEMORY,
    "lora_task_type": "PEFT task type: " + hf.NO_MEMORY, "use_rslora": "rank-stabilized scaling: " + hf.NO_MEMORY,
    "use_bnb_nested_quant": "nested quantization of the NF4 scales: the base is counted as QLoRA's NF4",
    "bnb_4bit_quant_storage": "storage dtype of the packed NF4 codes: the same bytes",
}


def read(data: dict[str, Any], name: str, report: ConfigReport, folder: Path | None) -> str | None:
    """Map TrainingArguments (with TRL's fields) into ``report``; returns the model, or None when none is named."""
    k = Keys(name)
    report.set("(file)", "stack", "hf-trainer", "Trainer arguments: the hf-trainer stack's defaults")
    model = None
    peft = "use_peft" in data and k.bool("use_peft", data["use_peft"])
    four = "load_in_4bit" in data and k.bool("load_in_4bit", data["load_in_4bit"])
    if "load_in_8bit" in data and k.bool("load_in_8bit", data["load_in_8bit"]):
        raise k.error("load_in_8bit", True, "8-bit base weights (bitsandbytes LLM.int8) are not modelled by gpuplan",
                      hint="use load_in_4bit (QLoRA) or a 16-bit base")
    if four and not peft:
        raise k.error("load_in_4bit", True, "contradicts use_peft: false (a 4-bit base cannot be trained; QLoRA "
                      "trains LoRA adapters on it)")
    lora_keys = [key for key in data if key.startswith("lora_")]
    if lora_keys and not peft:
        for key in lora_keys:
            report.ignore(key, "used only with use_peft: true")
    ds = False
    for key, value in data.items():
        if key == "model_name_or_path":
            model = hf.model_id(k, key, value, report)
        elif key == "use_peft":
            if peft:
                report.set(key, "method", "qlora" if four else "lora",
                           "LoRA adapters on an NF4 base (load_in_4bit)" if four else "LoRA adapters")
            else:
                report.ignore(key, "false: full fine-tuning")
        elif key == "load_in_4bit":
            if four:
                report.set(key, "qlora_base", "nf4")
            else:
                report.ignore(key, "false")
        elif key == "load_in_8bit":
            report.ignore(key, "false")
        elif key == "bnb_4bit_quant_type":
            k.str(key, value, ("nf4", "fp4"))
            report.ignore(key, f"{value}: 4-bit codes, counted as NF4 (the same bytes)")
        elif key in ("lora_r", "lora_dropout", "lora_target_modules", "lora_modules_to_save") and peft:
            _lora(k, key, value, report)
        elif key in lora_keys and not peft:
            continue
        elif key in ("max_seq_length", "max_length"):
            if value is None:
                report.ignore(key, "null: samples not truncated; give --seq")
            else:
                report.set(key, "seq", k.int(key, value))
        elif key in ("torch_dtype", "dtype", "bf16", "fp16"):
            continue  # the precision, below
        elif key == "deepspeed":
            ds = hf.deepspeed_file(k, key, value, folder, report)
        elif key == "fsdp":
            hf.fsdp(k, key, value, report)
        elif key == "fsdp_config":
            hf.fsdp_config(k, key, value, report)
        elif key == "use_liger_kernel":
            if k.bool(key, value):
                report.set(key, "loss", "fused", "Liger's fused linear cross-entropy: logits one chunk at a time")
            else:
                report.ignore(key, "false")
        elif hf.training_arguments(k, key, value, report):
            continue
        elif key in _IGNORED:
            report.ignore(key, _IGNORED[key])
        elif key.startswith(("dataset", "eval_", "hub_", "push_to_hub", "logging_", "save_")):
            report.ignore(key, "data, evaluation, logging or saving: " + hf.NO_MEMORY)
        else:
            hf.unknown(report, key, PROJECT)
    hf.batch_default(data, report)
    _precision(k, data, ds, report)
    return model


def _lora(k: Keys, key: str, value: Any, report: ConfigReport) -> None:
    if key == "lora_r":
        report.set(key, "lora_rank", k.int(key, value))
    elif key == "lora_dropout":
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value < 1:
            raise k.error(key, value, "must be a number in [0, 1)")
        report.set(key, "lora_dropout", float(value))
    else:
        option = "lora_targets" if key == "lora_target_modules" else "lora_modules_to_save"
        names = [value] if isinstance(value, str) else value
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise k.error(key, value, "must be a module name or a list of them")
        report.set(key, option, names)


def _precision(k: Keys, data: dict[str, Any], deepspeed: bool, report: ConfigReport) -> None:
    half = hf.half(k, data)
    dkey = "dtype" if "dtype" in data else "torch_dtype"
    held = "fp32"
    if dkey in data and data[dkey] is not None:
        held = _DTYPES.get(k.str(dkey, data[dkey], tuple(_DTYPES)))  # type: ignore[assignment]
        if held == "auto":
            held = half or "bf16"
            report.ignore(dkey, f"auto: the checkpoint's dtype, taken as {held}")
        else:
            report.ignore(dkey, f"{data[dkey]}: the weights are held in {held}")
    flags = [f for f in ("bf16", "fp16") if f in data]
    for f in flags:
        if f != half:
            report.ignore(f, "false")
    key = half or dkey
    if deepspeed:
        precision = f"mixed-{half}" if half else "fp32"
        note = ("DeepSpeed's bf16/fp16 engine (its \"auto\" follows this flag): half weights, fp32 master and "
                "states" if half else "no bf16/fp16: DeepSpeed trains in fp32")
    elif held in ("bf16", "fp16"):
        precision, note = held, f"weights and optimizer states in {held}; autocast changes no stored dtype"
    elif half:
        precision, note = f"amp-{half}", "fp32 weights (no torch_dtype) with autocast"
    else:
        precision, note = "fp32", "fp32 weights, no autocast"
    if key not in data:
        key = "(no bf16, fp16 or torch_dtype)"
    report.set(key, "precision", precision, note)
