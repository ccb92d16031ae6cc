"""The YAML training recipes gpuplan reads, told apart by content: each project's recipe has keys only it uses.

- torchtune: ``model`` is a table whose ``_component_`` is a ``torchtune.models`` builder;
- axolotl: ``base_model`` with ``micro_batch_size``, ``sequence_len``, ``adapter`` or ``datasets``;
- LLaMA-Factory: ``model_name_or_path`` with ``finetuning_type``, ``stage``, ``cutoff_len`` or ``template``;
- TRL / Hugging Face TrainingArguments (YAML or JSON): ``per_device_train_batch_size``, or ``model_name_or_path``
  with Trainer keys (a JSON needs ``per_device_train_batch_size``: a model's config.json never has it).

A gpuplan scenario file (``--config``: option names such as ``batch`` and ``seq``) has none of these keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gpuplan.configs.report import ConfigReport

READERS = ("torchtune", "axolotl", "llama-factory", "trl")
_YAML = (".yaml", ".yml")
_TRAINER_KEYS = ("gradient_checkpointing", "gradient_accumulation_steps", "max_seq_length", "max_length",
                 "use_peft", "learning_rate", "bf16", "optim")


def detect_recipe(data: Mapping[str, Any], suffix: str) -> str | None:
    if "model_type" in data and suffix == ".json":  # a model's config.json
        return None
    if suffix in _YAML:
        model = data.get("model")
        if isinstance(model, dict) and str(model.get("_component_", "")).startswith("torchtune.models."):
            return "torchtune"
        if "base_model" in data and any(k in data for k in ("micro_batch_size", "sequence_len", "adapter",
                                                            "datasets")):
            return "axolotl"
    if suffix in (*_YAML, ".json") and "model_name_or_path" in data and any(
            k in data for k in ("finetuning_type", "stage", "cutoff_len", "template")):
        return "llama-factory"
    if "per_device_train_batch_size" in data or (
            suffix in _YAML and "model_name_or_path" in data and any(k in data for k in _TRAINER_KEYS)):
        return "trl"
    return None


def read(fmt: str, data: dict[str, Any], name: str, report: ConfigReport, folder: Path | None) -> str | None:
    """Map a recipe of format ``fmt`` into ``report``; returns the model it names (a preset id, or a Hugging Face
    id or path that MODEL resolves), or None where it names none."""
    from gpuplan.configs import axolotl, llamafactory, torchtune, trl

    if fmt == "torchtune":
        return torchtune.read(data, name, report)
    if fmt == "axolotl":
        return axolotl.read(data, name, report, folder)
    if fmt == "llama-factory":
        return llamafactory.read(data, name, report, folder)
    return trl.read(data, name, report, folder)
