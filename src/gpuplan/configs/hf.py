"""What the YAML recipe readers (axolotl, LLaMA-Factory, TRL / Hugging Face Trainer) share: the model named by a
Hugging Face id, the Trainer's ``optim`` names, attention implementations, and a DeepSpeed JSON named by path.

Sources: transformers training_args.py (``OptimizerNames``, ``TrainingArguments`` fields and defaults,
transformers 4.56), and the DeepSpeed integration (transformers/integrations/deepspeed.py ``trainer_config_process``
fills a DeepSpeed config's ``"auto"`` from the TrainingArguments: bf16.enabled from ``bf16``, the batch sizes from
``per_device_train_batch_size`` and ``gradient_accumulation_steps``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gpuplan.configs.checks import Keys
from gpuplan.configs.report import ConfigReport

# transformers OptimizerNames -> (gpuplan --optimizer, --optimizer-impl or None)
OPTIM = {
    "adamw_torch": ("adamw", "foreach"), "adamw_torch_fused": ("adamw", "fused"), "adamw_hf": ("adamw", "for-loop"),
    "adamw_apex_fused": ("adamw", "fused"), "adamw_torch_xla": ("adamw", "foreach"),
    "adamw_bnb_8bit": ("adamw-8bit", None), "adamw_8bit": ("adamw-8bit", None), "bnb_8bit": ("adamw-8bit", None),
    "paged_adamw_8bit": ("paged-adamw-8bit", None), "paged_adamw_32bit": ("paged-adamw", None),
    "paged_adamw": ("paged-adamw", None), "adafactor": ("adafactor", None), "sgd": ("sgd", None),
    "lion_32bit": ("lion", None), "paged_lion_32bit": ("lion", None),
    # torchao's 8-bit AdamW (torchao/optim AdamW8bit: block-wise 8-bit states), as axolotl names it
    "adamw_torch_8bit": ("adamw-8bit", None),
}
OPTIM_SOURCE = "transformers training_args.py OptimizerNames"

# attn_implementation (transformers from_pretrained) -> --attention
ATTENTION = {"flash_attention_2": "flash", "flash_attention_3": "flash", "sdpa": "sdpa", "eager": "eager",
             # kernels that, like SDPA's memory-efficient one, never hold the score matrix
             "xformers": "sdpa", "flex_attention": "sdpa"}

NO_MEMORY = "no memory effect"
# TrainingArguments keys that change nothing gpuplan estimates, with why (transformers training_args.py)
TRAINER_IGNORED = {
    "output_dir": "output folder", "overwrite_output_dir": "output folder", "logging_dir": "logging only",
    "logging_steps": "logging only", "logging_strategy": "logging only", "logging_first_step": "logging only",
    "log_level": "logging only", "report_to": "logging only", "run_name": "logging only",
    "disable_tqdm": "logging only", "plot_loss": "logging only", "save_steps": "checkpoint saving, between steps",
    "save_strategy": "checkpoint saving, between steps", "save_total_limit": "checkpoint saving, between steps",
    "save_only_model": "checkpoint saving, between steps", "save_safetensors": "checkpoint saving",
    "resume_from_checkpoint": "checkpoint loading", "push_to_hub": "uploading", "hub_model_id": "uploading",
    "hub_strategy": "uploading", "hub_private_repo": "uploading", "learning_rate": "hyperparameter: " + NO_MEMORY,
    "weight_decay": "hyperparameter: " + NO_MEMORY, "adam_beta1": "hyperparameter: " + NO_MEMORY,
    "adam_beta2": "hyperparameter: " + NO_MEMORY, "adam_epsilon": "hyperparameter: " + NO_MEMORY,
    "max_grad_norm": "gradient clipping: no memory of its own", "lr_scheduler_type": "learning-rate schedule",
    "lr_scheduler_kwargs": "learning-rate schedule", "warmup_ratio": "learning-rate schedule",
    "warmup_steps": "learning-rate schedule", "num_train_epochs": "run length: " + NO_MEMORY,
    "max_steps": "run length: " + NO_MEMORY, "seed": NO_MEMORY, "data_seed": NO_MEMORY,
    "do_train": "what runs: training", "do_eval": "evaluation runs between training steps",
    "eval_strategy": "evaluation runs between training steps", "evaluation_strategy": "evaluation runs between "
    "training steps", "eval_steps": "evaluation runs between training steps",
    "per_device_eval_batch_size": "evaluation batch: evaluation runs between training steps",
    "dataloader_num_workers": "host-side data loading", "dataloader_pin_memory": "host-side data loading",
    "remove_unused_columns": "data columns: " + NO_MEMORY, "ddp_timeout": "collective timeout: " + NO_MEMORY,
    "ddp_find_unused_parameters": "DDP bookkeeping: not modelled", "tf32": "TF32 matmuls: " + NO_MEMORY,
    "gradient_checkpointing_kwargs": "checkpointing detail (use_reentrant): the same saved inputs",
    "torch_compile": "torch.compile: gpuplan estimates eager-mode memory (fusion is not modelled)",
    "group_by_length": "batch ordering: " + NO_MEMORY, "optim_args": "optimizer hyperparameters: " + NO_MEMORY,
    "model_revision": "which revision of the model: the preset gives the architecture",
    "trust_remote_code": "code loading: the preset gives the architecture",
}


def model_id(k: Keys, key: str, value: Any, report: ConfigReport) -> str:
    """The model a Hugging Face id (or a local path) names: the preset that has the id, else the id itself, which
    MODEL resolves later (a config.json path, or fetched when online; offline an unknown id is a clear error)."""
    from gpuplan.model.presets import find_preset

    name = k.str(key, value).strip()
    if not name:
        raise k.error(key, value, "must name a model (a Hugging Face id or a local folder)")
    preset = find_preset(name)
    if preset is not None:
        report.set(key, "model", preset.id, f"{name}: the preset {preset.id}" if preset.id != name else "")
        return preset.id
    report.set(key, "model", name, "no preset has this id: read as MODEL (a path, or fetched by id when online)")
    return name


def optimizer(k: Keys, key: str, value: Any, report: ConfigReport) -> None:
    name = k.str(key, value)
    hit = OPTIM.get(name.lower())
    if hit is None:
        raise k.error(key, name, "is an optimizer gpuplan does not model",
                      hint="known: " + ", ".join(sorted(OPTIM)) + "; or give --optimizer")
    report.set(key, "optimizer", hit[0], OPTIM_SOURCE)
    if hit[1] is not None:
        report.set(key, "optimizer_impl", hit[1])


def attention(k: Keys, key: str, value: Any, report: ConfigReport) -> None:
    name = k.str(key, value)
    if name.startswith("kernels-community/") and "flash" in name:  # a Hub kernel of FlashAttention
        report.set(key, "attention", "flash", "a FlashAttention kernel from the Hub")
        return
    name = k.str(key, value, tuple(ATTENTION))
    report.set(key, "attention", ATTENTION[name], "" if name in ("flash_attention_2", "flash_attention_3", "sdpa",
                                                                  "eager") else "no score matrix held: as sdpa")


def deepspeed_file(k: Keys, key: str, value: Any, folder: Path | None, report: ConfigReport) -> bool:
    """A DeepSpeed config named by the recipe (a path, or inline as a table): read with the DeepSpeed reader and
    its keys listed under ``key``. A path is looked up as the trainer would (from the working folder), then beside
    the recipe; ``folder`` None (a pasted recipe, the web API's) reads no file at all. Returns whether the
    DeepSpeed engine runs (so the precision is DeepSpeed's)."""
    from gpuplan.configs import deepspeed
    from gpuplan.configs.files import parse

    if value is None or value == "":
        report.ignore(key, "empty: no DeepSpeed")
        return False
    if isinstance(value, dict):
        data, shown = value, "(inline)"
    else:
        text = k.str(key, value)
        if folder is None:
            report.set(key, "framework", "deepspeed", f"{text}: a pasted recipe's files are not read; give --zero "
                       "and --offload")
            return True
        candidates = [Path(text).expanduser()]
        if not Path(text).is_absolute():
            candidates.append(folder / text)
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            report.set(key, "framework", "deepspeed", f"{text} is not here (looked in the working folder and beside "
                       "the file): its ZeRO stage and offload are not applied; give --zero and --offload")
            return True
        data, shown = parse(found, key), found.name
    sub = ConfigReport(path=shown, format="deepspeed", role="from")
    deepspeed.read(data, shown, sub)
    report.set(key, "framework", "deepspeed", f"the DeepSpeed engine, configured by {shown}")
    for m in sub.mapped:
        if m.option != "stack":
            report.set(f"{key}: {m.key}", m.option, m.value, m.note)
    for sub_key, why in sub.ignored:
        report.ignore(f"{key}: {sub_key}", why)
    return True


def fsdp(k: Keys, key: str, value: Any, report: ConfigReport) -> None:
    """TrainingArguments ``fsdp``: a string or list of FSDP options (full_shard, shard_grad_op, hybrid_shard,
    offload, auto_wrap)."""
    items = value.split() if isinstance(value, str) else value
    if isinstance(items, bool):  # axolotl and accelerate accept fsdp: true for full sharding
        items = ["full_shard"] if items else []
    if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
        raise k.error(key, value, "must be FSDP options (full_shard, shard_grad_op, offload, auto_wrap)")
    if not items:
        report.ignore(key, "empty: no FSDP")
        return
    stage = 3 if any(v in ("full_shard", "hybrid_shard") for v in items) else 2 if "shard_grad_op" in items else None
    if stage is None:
        raise k.error(key, value, "names no sharding strategy (full_shard, shard_grad_op, hybrid_shard)")
    report.set(key, "zero", stage, "FSDP " + ("full_shard: parameters, gradients and states sharded" if stage == 3
                                              else "shard_grad_op: gradients and states sharded"))
    if "offload" in items:
        report.set(key, "offload", "optimizer+params", "FSDP CPU offload: parameters and states on the host")


def training_arguments(k: Keys, key: str, value: Any, report: ConfigReport) -> bool:
    """One TrainingArguments key that gpuplan reads the same way in every Trainer-based recipe; False when the key
    is not one of them."""
    if key == "per_device_train_batch_size":
        report.set(key, "batch", k.int(key, value))
    elif key == "gradient_accumulation_steps":
        report.set(key, "grad_accum", k.int(key, value))
    elif key == "gradient_checkpointing":
        report.set(key, "recompute", "full" if k.bool(key, value) else "none",
                   "Hugging Face gradient checkpointing: every decoder layer" if value else "")
    elif key == "optim":
        optimizer(k, key, value, report)
    elif key == "attn_implementation":
        attention(k, key, value, report)
    elif key in TRAINER_IGNORED:
        report.ignore(key, TRAINER_IGNORED[key])
    else:
        return False
    return True


def batch_default(data: dict[str, Any], report: ConfigReport) -> None:
    """TrainingArguments' own default micro-batch, 8, where the recipe gives none (training_args.py)."""
    if "per_device_train_batch_size" not in data:
        report.set("per_device_train_batch_size (TrainingArguments default)", "batch", 8)


def half(k: Keys, data: dict[str, Any]) -> str | None:
    """'bf16' or 'fp16' from the Trainer's ``bf16`` / ``fp16`` flags (None: neither); both on is a contradiction."""
    on = [f for f in ("bf16", "fp16") if f in data and data[f] not in (None, False) and k.bool(f, data[f])]
    if len(on) == 2:
        raise k.error("fp16", True, "contradicts bf16: true (the Trainer trains in one of them)")
    return on[0] if on else None


def unknown(report: ConfigReport, key: str, project: str) -> None:
    report.ignore(key, f"not a setting gpuplan reads ({project}: no GPU-memory effect it models)")


def fsdp_config(k: Keys, key: str, value: Any, report: ConfigReport) -> None:
    """TrainingArguments / axolotl ``fsdp_config``: the keys with a memory effect (Accelerate's FSDP plugin names,
    with or without the ``fsdp_`` prefix); the others are listed as ignored."""
    table = k.table(key, value)
    for sub, v in table.items():
        dotted, bare = f"{key}.{sub}", sub.removeprefix("fsdp_")
        if bare in ("offload_params", "cpu_offload"):
            if k.bool(dotted, v):
                report.set(dotted, "offload", "optimizer+params", "FSDP CPU offload: parameters and states on the "
                           "host")
            else:
                report.ignore(dotted, "false: nothing offloaded")
        elif bare == "reshard_after_forward":
            if v in (False, "NO_SHARD", "SHARD_GRAD_OP"):
                report.set(dotted, "no_reshard", True, f"{v}: gathered parameters kept from forward to backward")
            else:
                report.ignore(dotted, f"{v}: FSDP's default, parameters freed after each layer's forward")
        elif bare == "activation_checkpointing":
            report.set(dotted, "recompute", "full" if k.bool(dotted, v) else "none",
                       "FSDP activation checkpointing: every decoder layer" if v else "")
        elif bare == "sharding_strategy":
            name = str(v).upper()
            stages = {"FULL_SHARD": 3, "HYBRID_SHARD": 3, "SHARD_GRAD_OP": 2, "NO_SHARD": 0, "1": 3, "2": 2, "3": 0}
            if name not in stages:
                raise k.error(dotted, v, "must be FULL_SHARD, SHARD_GRAD_OP, HYBRID_SHARD or NO_SHARD")
            report.set(dotted, "zero", stages[name])
        else:
            report.ignore(dotted, "FSDP wrapping, state-dict and loading detail: not modelled")
    if table and "zero" not in report.values:  # fsdp_config alone (axolotl's fsdp_version 2): FSDP's FULL_SHARD
        report.set(key, "zero", 3, "FSDP, full sharding (FULL_SHARD, the default strategy)")
