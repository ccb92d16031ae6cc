"""``gpuplan models [QUERY]``: the presets, printed."""

from __future__ import annotations

import argparse

from gpuplan.cli.common import print_json
from gpuplan.cli.parsers import command_parser
from gpuplan.cli.render import render_table
from gpuplan.commands.models import payload
from gpuplan.i18n import headers, lang_of, t, value_label
from gpuplan.units import format_count


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    return command_parser(sub, "models")


def run(args: argparse.Namespace) -> int:
    rows = payload(args)
    if args.json:
        print_json(rows)
        return 0
    lang = lang_of(args)
    if not rows:
        print(t("models.none", lang, query=repr(args.query)))
        return 0
    print(render_table(headers("models.header", ("id", "hf_id", "family", "params", "active", "released", "modality"),
                               lang),
                       [(r["id"], r["hf_id"] or "-", r["family"], format_count(r["params"]),
                         format_count(r["active"]) if r["active"] != r["params"] else "", r["released"] or "-",
                         value_label("modality", r["modality"], lang) if r["modality"] else "-") for r in rows],
                       "lllrrll"))
    return 0
