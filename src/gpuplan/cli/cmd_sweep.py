"""``gpuplan sweep MODEL --over batch|seq|gpus|context --values …``: memory per GPU against one swept option.

Every option of ``gpuplan train`` (and of ``gpuplan infer`` with ``--mode infer``, the default for ``--over
context``) is accepted and passed on; each point is computed by that command itself, so the numbers are the ones it
prints. ``--plot FILE.png|.svg`` draws the components and the device total against the swept value with the GPU's
usable capacity as a line.
"""

from __future__ import annotations

import argparse
from typing import Any

from gpuplan.cli.common import print_json, render_table
from gpuplan.errors import InputError
from gpuplan.i18n import lang_of, memory_label, t, tr_headers
from gpuplan.report import MEMORY_KEYS
from gpuplan.units import GiB
from gpuplan.cli.parsers import command_parser
from gpuplan.options.sweep import OWN as _OWN, SKIP as _SKIP

# the option each swept quantity sets, per command
OVER_DEST = {"train": {"batch": "batch", "seq": "seq", "gpus": "gpus"},
             "infer": {"batch": "batch", "seq": "context", "context": "context", "gpus": "gpus"}}


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    return command_parser(sub, "sweep")


def _mode(args: argparse.Namespace) -> str:
    return args.mode or ("infer" if args.over == "context" else "train")


def sweep(args: argparse.Namespace) -> dict[str, Any]:
    """Evaluate every value; ``{"over", "command", "option", "gpu", "capacity_bytes", "rows": [...]}``."""
    from gpuplan.advise.runner import runner
    from gpuplan.progress import track

    command = _mode(args)
    dest = OVER_DEST[command].get(args.over)
    r = runner(command)
    if dest is None or not r.has(dest):
        raise InputError("--over", args.over, f"is not an option of `gpuplan {command}`",
                         hint="use --over context with --mode infer" if args.over == "context" else None)
    own = _OWN | _SKIP
    options = {k: v for k, v in vars(args).items() if k not in own and k not in ("command", "_run")}
    wrong = [k for k in options if k not in r.defaults]
    if wrong:
        raise InputError(f"--{wrong[0].replace('_', '-')}", options[wrong[0]],
                         f"is not an option of `gpuplan {command}`", hint="choose the command with --mode")
    if dest in options:
        raise InputError(f"--{dest.replace('_', '-')}", options[dest], f"is swept by --over {args.over}; leave it out")
    if args.model:
        options["model"] = args.model
    gpu = options.get("gpu")
    capacity = None
    if gpu:
        from gpuplan.hardware.catalog import get_gpu

        capacity = get_gpu(gpu).memory_usable_bytes
    rows = []
    for value in track(args.values, t("sweep.progress", lang_of(args), over=args.over)):
        try:
            payload = r.run_json({**options, dest: value})
        except InputError as exc:
            rows.append({"value": value, "memory": None, "fits": None, "error": str(exc)})
            continue
        rows.append({"value": value, "memory": payload.get("memory"), "fits": payload.get("fits"), "error": None})
    return {"over": args.over, "command": command, "option": "--" + dest.replace("_", "-"), "gpu": gpu,
            "capacity_bytes": capacity, "argv": ["gpuplan", command, *r.argv(options)], "rows": rows}


def _over_key(over: str, command: str) -> str:
    return "infer_batch" if (over, command) == ("batch", "infer") else over


def run(args: argparse.Namespace) -> int:
    lang = lang_of(args)
    if args.plot:
        from gpuplan.plot import check_plot_path

        check_plot_path(args.plot)
    result = sweep(args)
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
    table = []
    for row in rows:
        if row["memory"] is None:
            table.append([f"{row['value']:,}", f"{t('word.error', lang)}: {row['error']}"] + [""] * (len(headers) - 2))
            continue
        cells = [f"{row['value']:,}"] + [f"{row['memory'].get(k, 0) / GiB:,.2f}" for k in keys]
        if result["capacity_bytes"]:
            cells.append(t("word.yes" if row["fits"] else "word.no", lang))
        table.append(cells)
    print(" ".join(result["argv"]) + f"  {result['option']} " + ",".join(map(str, args.values)))
    print(render_table(headers, table))
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
