"""LLaMA-Factory YAML configs (``gpuplan train llama3_lora_sft.yaml``, as for ``llamafactory-cli train``).

Keys follow LLaMA-Factory's argument classes (src/llamafactory/hparams/model_args.py, data_args.py,
finetuning_args.py, LLaMA-Factory 0.9) on top of the Trainer's TrainingArguments: ``model_name_or_path``,
``finetuning_type`` (lora / freeze / full; default lora), ``lora_rank`` (default 8), ``lora_target`` (``all``: every
linear layer, or module names separated by commas), ``additional_target`` (trained in full: PEFT's
modules_to_save), ``quantization_bit`` with ``quantization_method`` (bnb 4-bit: QLoRA), ``cutoff_len`` (default
2048), ``disable_gradient_checkpointing`` (checkpointing is on unless set), ``flash_attn``, ``pure_bf16``.
Precision (model/adapter.py ``init_adapter``): the model is loaded in the compute dtype (``bf16`` / ``fp16``);
trainable parameters are cast to fp32 unless ``pure_bf16`` or DeepSpeed ZeRO-3 (whose engine keeps fp32 masters),
so full fine-tuning is fp32 weights with autocast and LoRA is a half base with fp32 adapters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gpuplan.configs import hf
from gpuplan.configs.checks import Keys
from gpuplan.configs.report import ConfigReport

PROJECT = "LLaMA-Factory"
_NO = hf.NO_MEMORY
_STAGES = ("sft", "pt")
_FLASH = {"auto": "sdpa", "sdpa": "sdpa", "fa2": "flash", "disabled": "eager"}
_IGNORED = {
    "stage": "sft / pt: the model trained on its own (no reference or reward model)",
    "dataset": "data: " + _NO, "eval_dataset": "evaluation data", "template": "prompt formatting: " + _NO,
    "max_samples": "data size: " + _NO, "overwrite_cache": "data cache", "preprocessing_num_workers":
    "host-side data preparation", "val_size": "evaluation split", "lora_alpha": "the adapters' scaling: " + _NO,
    "quantization_method": "read with quantization_bit", "quantization_type": "read with quantization_bit",
    "packing": "rows packed to cutoff_len: the estimate is for cutoff_len tokens per row",
    "neat_packing": "rows packed to cutoff_len: the estimate is for cutoff_len tokens per row",
    "tokenized_path": "data cache", "streaming": "data loading", "mix_strategy": "data mixing: " + _NO,
    "create_new_adapter": "adapter setup: " + _NO, "adapter_name_or_path": "adapter loading",
    "export_dir": "export only", "image_max_pixels": "multimodal input size: the text model is estimated",
    "video_max_pixels": "multimodal input size: the text model is estimated",
}


def read(data: dict[str, Any], name: str, report: ConfigReport, folder: Path | None) -> str:
    """Map a LLaMA-Factory config into ``report``; returns the model (a preset id, or the Hugging Face id)."""
    k = Keys(name)
    report.set("(file)", "stack", "llama-factory", "a LLaMA-Factory config: the llama-factory stack's defaults")
    stage = k.str("stage", data.get("stage", "sft"))
    if stage not in _STAGES:
        raise k.error("stage", stage, "is not modelled by gpuplan (sft and pt are: dpo, kto, ppo and rm also hold a "
                      "reference, reward or value model)")
    method = k.str("finetuning_type", data.get("finetuning_type", "lora"), ("lora", "freeze", "full"))
    if method == "freeze":
        raise k.error("finetuning_type", method, "freeze tuning by layer count is not read by gpuplan",
                      hint="give --method freeze --trainable GLOB with the model's parameter names")
    bits = data.get("quantization_bit")
    if bits is not None:
        bits = k.int("quantization_bit", bits)
        qmethod = k.str("quantization_method", data.get("quantization_method", "bnb"))
        if bits != 4 or qmethod != "bnb":
            raise k.error("quantization_bit", bits, f"with quantization_method {qmethod} is not modelled by gpuplan "
                          "(4 with bnb is: QLoRA's NF4)")
        if method != "lora":
            raise k.error("quantization_bit", bits, f"contradicts finetuning_type: {method} (a quantized base is "
                          "trained only through LoRA adapters)")
    key = "finetuning_type" + ("" if "finetuning_type" in data else " (LLaMA-Factory default)")
    final = "qlora" if bits else method
    report.set(key, "method", final, "LoRA adapters on a 4-bit bitsandbytes base (quantization_bit 4)"
               if bits else "")
    if bits:
        report.set("quantization_bit", "qlora_base", "nf4")
        # ModelArguments.double_quantization (default true): bnb_4bit_use_double_quant of the BitsAndBytesConfig
        dq = k.bool("double_quantization", data.get("double_quantization", True))
        report.set("double_quantization" + ("" if "double_quantization" in data else " (LLaMA-Factory default true)"),
                   "qlora_double_quant", "on" if dq else "off")
    if method == "lora":
        rank = k.int("lora_rank", data.get("lora_rank", 8))
        report.set("lora_rank" + ("" if "lora_rank" in data else " (LLaMA-Factory default)"), "lora_rank", rank)
    if "cutoff_len" not in data:
        report.set("cutoff_len (LLaMA-Factory default)", "seq", 2048)
    if "disable_gradient_checkpointing" not in data:
        report.set("disable_gradient_checkpointing (LLaMA-Factory default false)", "recompute", "full",
                   "gradient checkpointing on")
    if "model_name_or_path" not in data:
        raise k.error("model_name_or_path", None, "is required (the model to fine-tune)")
    ds, model = False, ""
    for key, value in data.items():
        if key in ("stage", "finetuning_type", "quantization_bit", "lora_rank", "bf16", "fp16", "pure_bf16",
                   "double_quantization"):
            if key == "stage":
                report.ignore(key, _IGNORED[key])
            elif key == "lora_rank" and method != "lora":
                report.ignore(key, "used only with finetuning_type: lora")
            elif key == "double_quantization" and not bits:
                report.ignore(key, "nested quantization of the NF4 scales: used only with quantization_bit 4")
            continue
        if key == "model_name_or_path":
            model = hf.model_id(k, key, value, report)
        elif key in ("lora_target", "additional_target", "lora_dropout") and method != "lora":
            report.ignore(key, "used only with finetuning_type: lora")
        elif key in ("lora_target", "additional_target"):
            names = [n.strip() for n in k.str(key, value).split(",") if n.strip()]
            if not names:
                raise k.error(key, value, "must name modules (comma-separated), or all")
            if key == "lora_target":
                report.set(key, "lora_targets", ["all-linear"] if names == ["all"] else names,
                           "all: every linear layer but the output head" if names == ["all"] else "")
            else:
                report.set(key, "lora_modules_to_save", names)
        elif key == "lora_dropout":
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value < 1:
                raise k.error(key, value, "must be a number in [0, 1)")
            report.set(key, "lora_dropout", float(value))
        elif key == "cutoff_len":
            report.set(key, "seq", k.int(key, value))
        elif key == "disable_gradient_checkpointing":
            off = k.bool(key, value)
            report.set(key, "recompute", "none" if off else "full")
        elif key == "flash_attn":
            report.set(key, "attention", _FLASH[k.str(key, value, tuple(_FLASH))])
        elif key == "deepspeed":
            ds = hf.deepspeed_file(k, key, value, folder, report)
        elif key == "use_unsloth":
            if k.bool(key, value):
                raise k.error(key, value, "Unsloth's kernels are not read from a LLaMA-Factory config",
                              hint="give the model with --stack unsloth")
            report.ignore(key, "false")
        elif key in ("use_galore", "use_apollo", "use_badam", "use_dora", "pissa_init", "use_llama_pro"):
            if k.bool(key, value):
                raise k.error(key, value, "is a fine-tuning method gpuplan does not model")
            report.ignore(key, "false")
        elif hf.training_arguments(k, key, value, report):
            continue
        elif key in _IGNORED:
            report.ignore(key, _IGNORED[key])
        else:
            hf.unknown(report, key, PROJECT)
    hf.batch_default(data, report)
    _precision(k, data, final, ds, report)
    return model


def _precision(k: Keys, data: dict[str, Any], method: str, deepspeed: bool, report: ConfigReport) -> None:
    half = hf.half(k, data)
    pure = "pure_bf16" in data and k.bool("pure_bf16", data["pure_bf16"])
    for f in ("bf16", "fp16"):
        if f in data and f != half:
            report.ignore(f, "false")
    if pure:
        report.set("pure_bf16", "precision", "bf16", "pure_bf16: weights and optimizer states in bf16")
        if half:
            report.ignore(half, "read with pure_bf16")
        return
    if "pure_bf16" in data:
        report.ignore("pure_bf16", "false")
    key = half or "(no bf16 or fp16)"
    if deepspeed:
        precision = f"mixed-{half}" if half else "fp32"
        note = "DeepSpeed's bf16/fp16 engine (its \"auto\" follows this flag): half weights, fp32 master and states"
    elif half and method in ("lora", "qlora"):
        precision, note = half, f"the base loaded in {half}, the adapters cast to fp32"
    elif half:
        precision, note = f"amp-{half}", "trainable parameters cast to fp32, compute in " + half
    else:
        precision, note = "fp32", "fp32 weights, no autocast"
    report.set(key, "precision", precision, note)
