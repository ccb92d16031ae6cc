"""``gpuplan train MODEL``: memory per GPU for one training or fine-tuning step, printed as a table."""

from __future__ import annotations

import argparse
from typing import Any

from gpuplan.cli.common import finish_estimate
from gpuplan.cli.parsers import command_parser
from gpuplan.cli.render import note_lines, render_table, term_lines, vision_lines, vision_rows
from gpuplan.commands.train import evaluate
from gpuplan.report import MEMORY_KEYS
from gpuplan.units import format_bytes, format_count


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    return command_parser(sub, "train")


def run(args: argparse.Namespace) -> int:
    spec, report, out = evaluate(args)
    return finish_estimate(args, "train", out, lambda: render(spec, report, out, args), report.fits)


def render(spec: Any, report: Any, out: dict[str, Any], args: argparse.Namespace) -> str:
    from gpuplan.i18n import heading, headers, lang_of, memory_label, phase_label, t, tr_headers, value_label

    lang = lang_of(args)
    m = report.memory
    lines = []
    name = spec.name if spec else t("train.params_name", lang, params=format_count(report.params_total))
    lines.append(t("train.summary", lang, name=name, params=format_count(report.params_total),
                   trainable=format_count(report.params_trainable), batch=args.batch, seq=args.seq,
                   precision=args.precision, optimizer=report.config.optimizer, impl=report.config.optimizer_impl,
                   recompute=value_label("recompute", report.config.recompute, lang),
                   method=value_label("method", args.method, lang)))
    rows = [(memory_label(k, lang), format_bytes(getattr(m, k))) for k in MEMORY_KEYS[:-2] if getattr(m, k)]
    rows += vision_rows(out.get("vision"), lang)
    rows.append((memory_label("allocated_peak_bytes", lang), format_bytes(m.allocated_peak_bytes)
                 + "  " + t("train.peak_at", lang, phase=phase_label(m.peak_phase, lang))))
    rows.append((memory_label("total_bytes", lang), format_bytes(m.total_bytes)))
    lines.append(render_table(tr_headers(["component", "GiB"], lang), rows, "lr"))
    lines.append(t("train.components_note", lang))
    lines += vision_lines(out.get("vision"), lang)
    if report.capacity_bytes is not None:
        room = format_bytes(abs(report.headroom_bytes))
        lines.append(t("fit.fits" if report.fits else "fit.does_not_fit", lang, gpu=args.gpu,
                       capacity=format_bytes(report.capacity_bytes), headroom=room, over=room))
    else:
        lines.append(t("fit.no_gpu", lang))
    if getattr(args, "per_rank", False) and report.per_rank:
        lines.append("")
        lines.append(t("train.per_rank_title", lang))
        rows = [(r["stage"], r["layers"], ("E" if r["embedding"] else "") + ("H" if r["head"] else ""),
                 format_count(r["params"]), format_bytes(r["weights_bytes"]), format_bytes(r["gradients_bytes"]),
                 format_bytes(r["optimizer_bytes"] + r["master_weights_bytes"]),
                 format_bytes(r["activations_bytes"]), f"{r['inflight_microbatches']:g}",
                 format_bytes(r["allocated_peak_bytes"]), format_bytes(r["total_bytes"]),
                 phase_label(r["peak_phase"], lang))
                for r in report.per_rank]
        lines.append(render_table(headers("train.rank", ["stage", "layers", "eh", "params", "weights", "grads", "optim",
                                                         "activations", "in_flight", "peak", "total", "peak_phase"],
                                          lang), rows, "rllrrrrrrrrl"))
    for key in ("max_batch", "max_seq"):
        if key in out:
            lines.append(t(f"train.{key}", lang, n=f"{out[key]:,}"))
    if getattr(args, "explain", False):
        lines.append("")
        lines.append(heading("section.phases", lang))
        lines.append(render_table([t("train.phase_column", lang), t("header.allocated", lang)],
                                  [(phase_label(p.name, lang), format_bytes(p.bytes)) for p in report.phases], "lr"))
        lines.append("")
        lines.extend(term_lines(m.terms, lang))
    lines.extend(note_lines(m.assumptions, m.warnings, lang))
    if getattr(args, "config_file", None) is not None:
        lines.append("")
        lines.extend(args.config_file.text_lines(lang=lang))
    return "\n".join(lines)
