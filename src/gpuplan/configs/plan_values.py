"""A stack config file read for ``gpuplan plan`` (``gpuplan plan 8B_full.yaml --gpus 64``): the model, and the
settings that pin plan's layout search.

plan searches full-training layouts with the framework's own optimizer (Adam states) and precision recipe, so
of what a reader mapped for ``train`` only these carry over: ``seq``, ``precision``, ``framework`` (else the
stack's: torch for the fine-tuning stacks, whose FSDP / DeepSpeed semantics plan models), the micro-batch
(``--micro-batch``), the ZeRO stage and the parallel degrees (one-item ``--zero`` / ``--tp`` / ``--pp`` /
``--cp`` / ``--ep`` lists), ``recompute`` and DeepSpeed's ``train_batch_size`` (``--global-batch``). The others are listed as ignored, each with why. A recipe that trains
adapters (LoRA, QLoRA) or freezes parameters is refused: plan's memory is that of full training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gpuplan.configs.report import ConfigReport, Mapped
from gpuplan.errors import InputError

# train option -> (plan option, conversion)
_TO_PLAN = {
    "seq": ("seq", int), "precision": ("precision", str), "framework": ("framework", str),
    "batch": ("micro_batch", lambda v: [int(v)]), "zero": ("zero", lambda v: [int(v)]),
    "tp": ("tp", lambda v: [int(v)]), "pp": ("pp", lambda v: [int(v)]), "cp": ("cp", lambda v: [int(v)]),
    "ep": ("ep", lambda v: [int(v)]), "recompute": ("recompute", str),
}
_WHY = "not a plan setting: plan searches full-training layouts with the framework's Adam states"


def plan_values(report: ConfigReport) -> dict[str, Any]:
    """The plan option values of ``report`` (read for train), with the report rewritten to say what plan used."""
    method = next((m for m in report.mapped if m.option == "method"), None)
    if method is not None and method.value != "full":
        raise InputError(f"{Path(report.path).name}: {method.key}", method.value,
                         "trains only part of the model; plan searches full-training layouts",
                         hint="estimate the recipe with `gpuplan train FILE`")
    from gpuplan.train.stacks import stack_value

    kept: list[Mapped] = []
    out: dict[str, Any] = {}
    stack = None
    for m in report.mapped:
        if m.option == "model":
            kept.append(m)
            continue
        if m.option == "stack":
            stack = m
            continue
        target = _TO_PLAN.get(m.option)
        if target is None:
            shown = ",".join(map(str, m.value)) if isinstance(m.value, (list, tuple)) else m.value
            report.ignore(m.key, f"{m.option} {shown}: {_WHY}")
            continue
        name, convert = target
        out[name] = convert(m.value)
        kept.append(Mapped(m.key, name, out[name], m.note))
    if stack is not None:  # the stack's sharding semantics, where the file names no framework of its own
        framework = stack_value(stack.value, "framework")
        if "framework" in out or framework is None:
            report.ignore(stack.key, f"stack {stack.value}: plan has no stack defaults")
        else:
            out["framework"] = framework
            kept.insert(0, Mapped(stack.key, "framework", framework, f"the {stack.value} stack's framework"))
    total = report.batch_rule.get("train_batch_size")
    if total is not None:  # DeepSpeed's global batch: sequences per optimizer step, plan's --global-batch
        report.ignored = [(key, why) for key, why in report.ignored if key != "train_batch_size"]
        out["global_batch"] = total
        kept.append(Mapped("train_batch_size", "global_batch", total, "sequences per optimizer step"))
    report.mapped = kept
    return out
