"""``gpuplan time MODEL``: FLOPs, days, GPU count, GPU-hours, cost and energy of a training run, printed."""

from __future__ import annotations

import argparse
from typing import Any

from gpuplan.cli.common import finish_estimate
from gpuplan.cli.parsers import command_parser
from gpuplan.cli.render import render_table
from gpuplan.commands.time import TimeRun, evaluate, to_json
from gpuplan.i18n import colon, heading, headers, lang_of, localize, t
from gpuplan.units import format_count


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    return command_parser(sub, "time")


def _list_prices(lang: str) -> int:
    from gpuplan.compute.prices import load_prices

    rows = [(p.id, p.gpu, f"{p.usd_per_gpu_hour:.2f}" + (f" ({p.low:.2f}-{p.high:.2f})" if p.low else ""), p.date,
             p.kind) for p in load_prices()]
    print(render_table(headers("prices.header", ("id", "gpu", "usd", "date", "kind"), lang), rows, "llrll"))
    for p in load_prices():
        print(f"- {p.id}: {p.source}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.list_prices:
        return _list_prices(lang_of(args))
    if args.xlsx:
        from gpuplan.xlsx import check_xlsx_path

        check_xlsx_path(args.xlsx)
    r = evaluate(args)
    if args.xlsx:
        from gpuplan.commands.xlsx import write_time

        write_time(args, r)
    return finish_estimate(args, "time", to_json(args, r) if args.json else {}, lambda: render(r, args),
                           not r.cannot_work)


def render(r: TimeRun, args: argparse.Namespace) -> str:
    """The human-readable answer in ``--lang``."""
    lang = lang_of(args)
    est, flops, gpu, peak = r.est, r.flops, r.gpu, r.peak

    def tr(key: str, **fields: Any) -> str:
        return t(key, lang, **fields)

    name = r.spec.name if r.spec is not None else tr("time.params_name", params=format_count(flops.weight_params))
    lines = [tr("time.summary", name=name, tokens=format_count(args.tokens),
                gpu=gpu.name if gpu else tr("time.custom_gpu"))]
    rows = [
        (tr("time.row.flop_per_token"), f"{flops.model_flop_per_token:.4g}",
         tr("time.note.flop_split", dense=f"{flops.dense_flop_per_token:.4g}",
            attention=f"{flops.attention_flop_per_token:.4g}")),
        (tr("time.row.total_flop"), f"{est.total_flop:.4g}", tr("time.note.total_flop")),
    ]
    if est.recompute_flop:
        rows.append((tr("time.row.recompute_flop"), f"{est.recompute_flop:.4g}",
                     tr("time.note.recompute", mode=args.recompute)))
    rows.append((tr("time.row.mfu"), f"{est.mfu:.1%}",
                 tr("time.note.solved") if est.solved_for == "mfu" else tr("time.note.used")))
    if est.gpus is not None:
        extra = (tr("time.note.gpus_needed", gpus=f"{est.gpus_exact:,.1f}") if est.gpus_exact is not None
                 else tr("time.note.given"))
        rows.append((tr("time.row.gpus"), f"{est.gpus:,}", extra))
    if est.days is not None:
        rows.append((tr("time.row.days"), f"{est.days:,.2f}",
                     tr("time.note.solved") if est.solved_for == "days" else tr("time.note.at_gpus")))
    if args.days:
        rows.append((tr("time.row.required"), f"{est.total_flop / (args.days * 86400) / 1e12:,.0f}",
                     tr("time.note.required")))
    rows += [
        (tr("time.row.gpu_hours"), f"{est.gpu_hours:,.0f}", ""),
        (tr("time.row.tokens_per_s"), f"{est.tokens_per_s_per_gpu:,.0f}", ""),
        (tr("time.row.achieved"), f"{est.achieved_flop_per_s_per_gpu / 1e12:,.1f}",
         tr("time.note.of_peak", peak=f"{peak / 1e12:g}")),
    ]
    if est.cost_usd is not None:
        rng = (tr("time.note.cost_range", low=f"{est.cost_usd_range[0]:,.0f}", high=f"{est.cost_usd_range[1]:,.0f}")
               if est.cost_usd_range else "")
        rows.append((tr("time.row.cost"), f"{est.cost_usd:,.0f}", rng))
    rows.append((tr("time.row.energy"), f"{est.energy_kwh / 1000:,.1f}", f"{est.power_w_per_gpu:g} W x PUE {r.pue:g}"))
    if est.co2_kg is not None:
        rows.append((tr("time.row.co2"), f"{est.co2_kg / 1000:,.2f}", f"{args.co2_kg_per_kwh:g} kg/kWh"))
    lines.append(render_table(headers("time.header", ("quantity", "value", "note"), lang), rows, "lrl"))
    if args.explain:
        for term in (*flops.terms, *est.terms):
            lines.append(f"- {term.key} = {term.value:.6g}: {term.formula}"
                         + (f"  [{term.source}]" if term.source else ""))
    lines.append(heading("section.assumptions", lang))
    lines.extend(f"- {localize(a, lang)}" for a in r.assumptions)
    if r.cluster is not None:
        from gpuplan.cli.cluster import render_cluster

        lines.extend(render_cluster(r.cluster, lang, args.explain))
    lines.extend(f"{tr('word.warning')}{colon(lang)}{localize(w, lang)}" for w in r.warnings)
    return "\n".join(lines)
