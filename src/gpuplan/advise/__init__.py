"""The advisor: what to change when a workload does not fit (``--advise`` on ``train`` and ``infer``).

Seed document 002 §8 gives the decision tree for 显存不够 (not enough memory): training → ZeRO → activation
checkpointing → TP/PP; inference → quantize weights → GQA/MQA → KV-cache quantization / paging / shorter context →
TP. gpuplan tries every branch and more (FSDP, recompute, micro-batch with accumulation, CPU offload, 8-bit
optimizer, LoRA/QLoRA, chunked cross-entropy, TP/PP layouts, more or larger GPUs; weight and KV quantization,
shorter context, smaller batch, TP), re-estimates each with the command's own engine, and ranks those that fit by
``time_factor`` (see :mod:`gpuplan.advise.timefactor`).

For a command (one line each in its ``run``)::

    from gpuplan.advise import add_advise_argument, attach_advice, print_advice
    add_advise_argument(parser)                         # in add_parser, if --advise is not there yet
    attach_advice(args, "train", payload)               # before print_json(payload): adds payload["advice"]
    print_advice(args, "train")                         # after the human-readable table
"""

from __future__ import annotations

import argparse
from typing import Any, Mapping

from gpuplan.advise.core import AdviceItem, AdviceResult

__all__ = ["AdviceItem", "AdviceResult", "advise", "advice_for_args", "attach_advice", "print_advice",
           "render_advice", "add_advise_argument"]


def advise(command: str, options: Mapping[str, Any], **kwargs: Any) -> AdviceResult:
    """Advice for ``command`` ("train" or "infer") with ``options`` keyed by the command's argparse dests."""
    if command == "train":
        from gpuplan.advise.train import advise_training

        return advise_training(options, **kwargs)
    if command == "infer":
        from gpuplan.advise.infer import advise_inference

        return advise_inference(options)
    raise ValueError(f"no advisor for command {command!r}")


def advice_for_args(args: argparse.Namespace, command: str) -> AdviceResult:
    from gpuplan.advise.runner import options_from_args

    return advise(command, options_from_args(args, command))


def add_advise_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--advise", action="store_true",
                        help="when it does not fit (or to save memory): every change that helps, re-estimated, "
                             "ranked by its cost in speed (needs --gpu)")


def attach_advice(args: argparse.Namespace, command: str, payload: dict[str, Any]) -> None:
    """With ``--advise``: add ``"advice"`` (best first) and ``"advice_assumptions"`` to the JSON payload."""
    if getattr(args, "advise", False):
        result = advice_for_args(args, command)
        payload["advice"] = result.as_json()
        payload["advice_assumptions"] = list(result.assumptions)


def render_advice(result: AdviceResult, lang: str | None = None, limit: int = 15) -> str:
    """The advice as text: the cheapest way to fit first, then a table of the changes."""
    from gpuplan.cli.common import render_table
    from gpuplan.i18n import t, tr_headers
    from gpuplan.units import GiB

    lines = [t("section.advice", lang)]
    if result.base.fits:
        lines.append(t("advice.already_fits", lang))
    fitting = result.fitting
    if not fitting:
        lines.append(t("advice.none", lang))
    else:
        best = fitting[0]
        lines.append(t("advice.cheapest", lang, change=best.candidate.label(lang), factor=_tf(best.time_factor)))
        same = next((it for it in fitting if it.candidate.same_result), None)
        if same is not None and same is not best:
            key = "advice.cheapest_same_infer" if result.command == "infer" else "advice.cheapest_same"
            lines.append(t(key, lang, change=same.candidate.label(lang),
                           factor=_tf(same.time_factor)))
    rows = []
    for it in result.items[:limit]:
        notes = []
        if not it.candidate.same_result:
            notes.append(t("advice.changes_result_infer" if result.command == "infer" else "advice.changes_result",
                           lang))
        if it.candidate.hardware:
            notes.append(t("advice.new_hardware", lang))
        rows.append((it.candidate.label(lang), f"{it.outcome.total_bytes / GiB:,.1f}",
                     t("word.yes" if it.outcome.fits else "word.no", lang), _tf(it.time_factor), "; ".join(notes),
                     " ".join(it.argv_delta)))
    if rows:
        lines.append(render_table(tr_headers(["change", "total GiB", "fits", "time_factor", "note", "options"], lang),
                                  rows, "lrrrll"))
    if len(result.items) > limit:
        lines.append(f"(+{len(result.items) - limit}; --json lists all)")
    lines.append(t("advice.time_note", lang))
    return "\n".join(lines)


def print_advice(args: argparse.Namespace, command: str) -> None:
    """With ``--advise``: print the advice table (in ``--lang``)."""
    if getattr(args, "advise", False):
        from gpuplan.i18n import lang_of

        print()
        print(render_advice(advice_for_args(args, command), lang_of(args)))


def _tf(value: float | None) -> str:
    return "?" if value is None else f"{value:.2f}"
