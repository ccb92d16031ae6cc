"""The advisor's answer (``--advise``) as text, after a command's table: the diagnosis, then the changes by step."""

from __future__ import annotations

import argparse

from gpuplan.advise import AdviceResult, advice_for_args
from gpuplan.advise.core import STEPS, AdviceItem
from gpuplan.cli.render import render_table
from gpuplan.i18n import lang_of, memory_label, t, tr_headers
from gpuplan.units import GiB


def render_diagnosis(result: AdviceResult, lang: str | None = None) -> list[str]:
    """Which component dominates, with its share of the components, and whether activations are large."""
    d = result.diagnosis
    if d is None or d.dominant is None:
        return []
    sep = "、" if (lang or "").startswith("zh") else ", "  # a Chinese list is joined with the enumeration comma
    others = sep.join(f"{memory_label(k, lang)} {d.share(k):.0%}" for k in sorted(d.bytes, key=d.share, reverse=True)
                      if k != d.dominant)
    lines = [t("advice.diagnosis", lang, component=memory_label(d.dominant, lang),
               gib=f"{d.bytes[d.dominant] / GiB:,.2f}", share=f"{d.share(d.dominant):.0%}", others=others or "-")]
    if result.command == "train":
        lines.append(t("advice.activations_large" if d.activations_large else "advice.activations_small", lang,
                       share=f"{d.activations_share:.0%}"))
    return lines


def render_advice(result: AdviceResult, lang: str | None = None, limit: int = 10) -> str:
    """The advice as text: the diagnosis, the first change to try, then one table per step of the tree (at most
    ``limit`` rows each)."""
    if result.base.fits:
        lines = [t("section.advice_fits", lang), t("advice.no_change", lang)]
        lines += render_diagnosis(result, lang)
        if result.items:
            lines.append(t("advice.savers_when_fits", lang))
    else:
        lines = [t("section.advice", lang)] + render_diagnosis(result, lang)
        fitting = result.fitting
        if not fitting:
            lines.append(t("advice.none", lang))
        else:
            first = fitting[0]
            lines.append(t("advice.first", lang, change=first.candidate.label(lang), factor=_tf(first.time_factor)))
            fastest = min(fitting, key=lambda it: float("inf") if it.time_factor is None else it.time_factor)
            if fastest is not first and (fastest.time_factor or 0) < (first.time_factor or 0):
                lines.append(t("advice.cheapest", lang, change=fastest.candidate.label(lang),
                               factor=_tf(fastest.time_factor)))
    left_out = 0
    for category, step in STEPS.items():
        rows = [_row(it, result, lang) for it in result.items if it.category == category]
        left_out += max(0, len(rows) - limit)
        rows = rows[:limit]
        if rows:
            lines.append(t(f"advice.step.{category}", lang, n=step, gpus=result.base_gpus, gpu=result.base_gpu))
            lines.append(render_table(tr_headers(["change", "total GiB", "saved GiB", "fits", "time_factor", "note",
                                                  "options"], lang), rows, "lrrrrll"))
    if left_out:
        lines.append(f"(+{left_out}; --json lists all)")
    if result.items:
        lines.append(t("advice.time_note", lang))
    return "\n".join(lines)


def _row(it: AdviceItem, result: AdviceResult, lang: str | None) -> tuple:
    notes = []
    if not it.candidate.same_result:
        key = "advice.changes_result" if it.category == "what_is_trained" else "advice.changes_numerics"
        notes.append(t("advice.changes_result_infer" if result.command == "infer" else key, lang))
    if it.candidate.hardware:
        notes.append(t("advice.new_hardware", lang))
    saved = (result.base.total_bytes - it.outcome.total_bytes) / GiB
    return (it.candidate.label(lang), f"{it.outcome.total_bytes / GiB:,.1f}", f"{saved:,.1f}",
            t("word.yes" if it.outcome.fits else "word.no", lang), _tf(it.time_factor),
            ("；" if (lang or "").startswith("zh") else "; ").join(notes),
            " ".join(it.argv_delta))


def print_advice(args: argparse.Namespace, command: str) -> None:
    """With ``--advise``: print the advice (in ``--lang``)."""
    if getattr(args, "advise", False):
        print()
        print(render_advice(advice_for_args(args, command), lang_of(args)))


def _tf(value: float | None) -> str:
    return "?" if value is None else f"{value:.2f}"
