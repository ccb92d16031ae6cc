"""``gpuplan plan MODEL``: the parallel layouts that fit, ranked, printed with why the winner wins."""

from __future__ import annotations

import argparse
import sys

from gpuplan.cli.common import print_json
from gpuplan.cli.parsers import command_parser
from gpuplan.cli.render import render_table
from gpuplan.commands.plan import emitted, search_layouts, to_json, why_nothing_fits
from gpuplan.i18n import colon, heading, headers, lang_of, localize, t
from gpuplan.units import GiB, format_count


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    return command_parser(sub, "plan")


def _nothing_fits(args, results, spec, warnings) -> int:
    lang = "en" if args.json else lang_of(args)  # with --json (and through the web API) messages stay English
    lines, smallest = why_nothing_fits(args, results, spec, lang)
    if args.json:  # still one JSON document on stdout: no plans, and why
        print_json({"plans": [], "reason": "\n".join(line.strip() for line in lines),
                    "smallest_gpus": smallest, "warnings": [str(w) for w in warnings]})
    print("gpuplan plan: " + "\n".join(lines), file=sys.stderr)
    return 3 if args.check else 2


def run(args: argparse.Namespace) -> int:
    from gpuplan.plan.explain import describe, why_winner

    if args.serve:
        from gpuplan.cli.serve_plan import run as run_serve

        return run_serve(args)

    if args.xlsx:
        from gpuplan.xlsx import check_xlsx_path

        check_xlsx_path(args.xlsx)
    r = search_layouts(args)
    if not r.plans:
        return _nothing_fits(args, r.results, r.spec, r.warnings)
    launch = emitted(args, r)
    if launch is not None and args.emit_out:
        from pathlib import Path

        try:
            Path(args.emit_out).expanduser().write_text(launch["text"], encoding="utf-8")
        except OSError as exc:
            print(f"gpuplan plan: error: --emit-out={args.emit_out}: cannot be written ({exc.strerror or exc})",
                  file=sys.stderr)
            return 2
    if args.xlsx:
        from gpuplan.commands.xlsx import write_plan

        write_plan(args, r)
    if args.json:
        print_json(to_json(r, launch))
        return 0
    spec, results, warnings, plans, win, win_res = r.spec, r.results, r.warnings, r.plans, r.win, r.win_res
    alts, assumptions, flops, seq, global_batch, rank, plan_dict = (r.alts, r.assumptions, r.flops, r.seq,
                                                                     r.global_batch, r.rank, r.plan_dict)
    lang = lang_of(args)
    target = (t("plan.target_gpus", lang, gpus=f"{args.gpus:,}") if args.gpus else
              t("plan.target_days", lang, days=f"{args.days:g}", tokens=format_count(args.tokens)))
    print(t("plan.summary", lang, model=spec.name, params=format_count(flops.weight_params), seq=seq,
            global_batch=global_batch, target=target, rank=t(f"plan.rank.{rank}", lang)))
    rows = []
    for c in plans:
        cost = plan_dict(c)["cost_usd"]
        rows.append((localize(describe(c.layout), lang), c.gpu_id, f"{c.gpus:,}", f"{c.memory_total_bytes / GiB:,.1f}",
                     f"{c.seconds_per_step:.2f}", f"{c.mfu:.1%}", "-" if c.days is None else f"{c.days:,.1f}",
                     "-" if cost is None else f"{cost:,.0f}"))
    names = ("layout", "gpu", "gpus", "memory", "step", "mfu", "days", "cost")
    print(render_table(headers("plan.header", names, lang), rows, "llrrrrrr"))
    print(f"\n{heading('plan.why', lang)}")
    for line in why_winner(win, win_res):
        print(f"- {localize(line, lang)}")
    print(f"\n{heading('plan.alternatives', lang)}")
    for a in alts:
        print(f"- {localize(a.label, lang)}{colon(lang)}{localize(a.verdict, lang)}")
    for gpu, res in results:
        if gpu.id == win.gpu_id:
            continue
        if res.plans:
            b = res.plans[0]
            days = "-" if b.days is None else t("plan.days", lang, days=f"{b.days:.1f}")
            print("- " + t("plan.best_on", lang, gpu=gpu.id, layout=localize(describe(b.layout), lang), gpus=f"{b.gpus:,}", days=days,
                           mfu=f"{b.mfu:.1%}", memory=f"{b.memory_total_bytes / GiB:,.1f}",
                           usable=f"{gpu.memory_usable_bytes / GiB:,.1f}"))
        else:
            print("- " + t("plan.none_on" if args.gpus else "plan.none_on_deadline", lang, gpu=gpu.id))
    if args.explain:
        print(f"\n{heading('plan.winner_memory', lang)}")
        print(f"  {plan_dict(win)['train_command']}")
        print(f"\n{heading('section.assumptions', lang)}")
        for a in assumptions:
            print(f"- {localize(a, lang)}")
    if r.cluster is not None:
        from gpuplan.cli.cluster import render_cluster

        print("\n".join(render_cluster(r.cluster, lang, args.explain)))
    for w in warnings:
        print(f"{t('word.warning', lang)}{colon(lang)}{localize(w, lang)}")
    if r.files is not None:
        print()
        print("\n".join(r.files.text_lines("plan", lang)))
    if launch is not None:
        print()
        if args.emit_out:
            print(t("plan.emit_written", lang, format=launch["format"], path=args.emit_out,
                    command=launch["train_command"]))
        else:
            print(t("plan.emit_shown", lang, format=launch["format"], command=launch["train_command"]))
            print(launch["text"], end="")
    return 0
