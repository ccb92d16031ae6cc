"""``gpuplan models [QUERY]``: the presets."""

from __future__ import annotations

import argparse

from gpuplan.cli.common import print_json, render_table
from gpuplan.i18n import headers, lang_of, t
from gpuplan.model.params import count_params
from gpuplan.model.presets import load_presets
from gpuplan.units import format_count
from gpuplan.cli.parsers import command_parser


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    return command_parser(sub, "models")


def payload(args) -> list[dict]:
    """The JSON of ``gpuplan models [QUERY] --json``."""
    q = (args.query or "").lower()
    presets = [p for p in load_presets().values()
               if q in p.id or q in (p.hf_id or "").lower() or q in p.family or any(q in a.lower() for a in p.aliases)]
    rows = []
    for p in presets:
        c = count_params(p.spec())
        rows.append({"id": p.id, "hf_id": p.hf_id, "family": p.family, "params": c.total, "active": c.active,
                     "published_params": p.published_params})
    return rows


def run(args: argparse.Namespace) -> int:
    rows = payload(args)
    if args.json:
        print_json(rows)
        return 0
    lang = lang_of(args)
    if not rows:
        print(t("models.none", lang, query=repr(args.query)))
        return 0
    print(render_table(headers("models.header", ("id", "hf_id", "family", "params", "active"), lang),
                       [(r["id"], r["hf_id"] or "-", r["family"], format_count(r["params"]),
                         format_count(r["active"]) if r["active"] != r["params"] else "") for r in rows], "lllrr"))
    return 0
