"""``gpuplan sweep``: the swept estimates as a table (or JSON), with ``--plot FILE.png|.svg`` drawing the
components and the device total against the swept value, the GPU's usable capacity as a line."""

from __future__ import annotations

import argparse

from gpuplan.cli.common import print_json
from gpuplan.cli.parsers import command_parser
from gpuplan.cli.render import render_table
from gpuplan.commands.sweep import payload
from gpuplan.i18n import lang_of, memory_label, t, tr_headers
from gpuplan.report import MEMORY_KEYS
from gpuplan.units import GiB


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    return command_parser(sub, "sweep")


def _over_key(over: str, command: str) -> str:
    return "infer_batch" if (over, command) == ("batch", "infer") else over


def run(args: argparse.Namespace) -> int:
    lang = lang_of(args)
    if args.plot:
        from gpuplan.plot import check_plot_path

        check_plot_path(args.plot)
    result = payload(args)
    rows = result["rows"]
    over_key = _over_key(args.over, result["command"])
    if args.plot:
        from gpuplan.plot import plot_sweep

        plot_sweep([row["value"] for row in rows], [row["memory"] for row in rows], args.plot, over=over_key,
                   model=args.model or "", capacity_bytes=result["capacity_bytes"], gpu=result["gpu"], lang=lang)
    if args.json:
        print_json(result)
        return 0
    keys = [k for k in MEMORY_KEYS if any(row["memory"] and row["memory"].get(k) for row in rows)]
    headers = [t(f"sweep.over.{over_key}", lang)] + [f"{memory_label(k, lang)} GiB" for k in keys]
    if result["capacity_bytes"]:
        headers += tr_headers(["fits"], lang)
    table, notes = [], []
    for row in rows:
        if row["memory"] is None:  # the message goes under the table, so one long line does not widen every column
            notes.append(f"[{len(notes) + 1}] {row['value']:,}: {row['error']}")
            table.append([f"{row['value']:,}", f"{t('word.error', lang)} [{len(notes)}]"] + [""] * (len(headers) - 2))
            continue
        cells = [f"{row['value']:,}"] + [f"{row['memory'].get(k, 0) / GiB:,.2f}" for k in keys]
        if result["capacity_bytes"]:
            cells.append(t("word.yes" if row["fits"] else "word.no", lang))
        table.append(cells)
    print(" ".join(result["argv"]) + f"  {result['option']} " + ",".join(map(str, args.values)))
    print(render_table(headers, table))
    for note in notes:
        print(note)
    if result["capacity_bytes"]:
        fitting = [row["value"] for row in rows if row["fits"]]
        over = t(f"sweep.over.{over_key}", lang)
        if not fitting:
            print(t("sweep.none_fit", lang, over=over))
        elif args.over == "gpus":  # more GPUs shard more: the question is the fewest that fit
            print(t("sweep.smallest_fit", lang, over=over, value=f"{min(fitting):,}"))
        else:
            print(t("sweep.largest_fit", lang, over=over, value=f"{max(fitting):,}"))
    if args.plot:
        print(f"→ {args.plot}")
    return 0
