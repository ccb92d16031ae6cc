"""The advisor's answer (``--advise``) as text, after a command's table."""

from __future__ import annotations

import argparse

from gpuplan.advise import AdviceResult, advice_for_args
from gpuplan.cli.render import render_table
from gpuplan.i18n import lang_of, t, tr_headers
from gpuplan.units import GiB


def render_advice(result: AdviceResult, lang: str | None = None, limit: int = 15) -> str:
    """The advice as text: the cheapest way to fit first, then a table of the changes."""
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
        print()
        print(render_advice(advice_for_args(args, command), lang_of(args)))


def _tf(value: float | None) -> str:
    return "?" if value is None else f"{value:.2f}"
