"""The advisor: what to change when a workload does not fit (``--advise`` on ``train`` and ``infer``).

Seed document 002 §8 gives the decision tree for 显存不够 (not enough memory): training → ZeRO → activation
checkpointing → TP/PP; inference → quantize weights → GQA/MQA → KV-cache quantization / paging / shorter context →
TP. gpuplan tries every branch and more (FSDP, recompute, micro-batch with accumulation, CPU offload, 8-bit
optimizer, LoRA/QLoRA, chunked cross-entropy, TP/PP layouts, more or larger GPUs; weight and KV quantization,
shorter context, smaller batch, TP), re-estimates each with the command's own engine, and orders them as the tree
does: the dominant component first, then changes on the same GPUs, changes to what is trained, more GPUs of the
same kind, other hardware (:data:`gpuplan.advise.core.STEPS`); inside a step those that fit come first, by the
tree's order and then ``time_factor`` (see :mod:`gpuplan.advise.timefactor`).

:func:`attach_advice` adds the advice to a command's JSON; the command line prints it as text
(``gpuplan.cli.advice``).
"""

from __future__ import annotations

from typing import Any, Mapping

from gpuplan.advise.core import AdviceItem, AdviceResult

__all__ = ["AdviceItem", "AdviceResult", "advise", "advice_for_args", "attach_advice"]


def advise(command: str, options: Mapping[str, Any], **kwargs: Any) -> AdviceResult:
    """Advice for ``command`` ("train" or "infer") with ``options`` keyed by option name."""
    if command == "train":
        from gpuplan.advise.train import advise_training

        return advise_training(options, **kwargs)
    if command == "infer":
        from gpuplan.advise.infer import advise_inference

        return advise_inference(options)
    raise ValueError(f"no advisor for command {command!r}")


def advice_for_args(args: Any, command: str) -> AdviceResult:
    from gpuplan.advise.runner import options_from_args

    return advise(command, options_from_args(args, command))


def attach_advice(args: Any, command: str, payload: dict[str, Any]) -> None:
    """With ``--advise``: add ``"advice"`` (in the tree's order), ``"advice_diagnosis"`` (the dominant component
    and each one's share) and ``"advice_assumptions"`` to the JSON payload."""
    if getattr(args, "advise", False):
        result = advice_for_args(args, command)
        payload["advice"] = result.as_json()
        payload["advice_diagnosis"] = result.diagnosis.as_json() if result.diagnosis else None
        payload["advice_assumptions"] = list(result.assumptions)
