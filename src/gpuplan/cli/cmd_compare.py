"""``gpuplan compare A.toml B.toml``: scenarios side by side (their options, memory per GPU, fit), printed."""

from __future__ import annotations

import argparse
from typing import Any

from gpuplan.advise.runner import runner
from gpuplan.cli.common import print_json
from gpuplan.cli.parsers import command_parser
from gpuplan.cli.render import render_table
from gpuplan.commands.compare import payload
from gpuplan.i18n import colon, lang_of, localize, memory_label, t, tr_headers
from gpuplan.report import MEMORY_KEYS
from gpuplan.units import GiB


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    return command_parser(sub, "compare")


def _cell(value: Any, lang: str) -> str:
    if value is None:
        return t("word.na", lang)
    if isinstance(value, bool):
        return t("word.yes" if value else "word.no", lang)
    if isinstance(value, float):
        return f"{value:,.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value)


def _diff(values: list[Any], scale: float = 1.0) -> str:
    a, b = values
    if isinstance(a, bool) or isinstance(b, bool) or not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
        return ""
    d = (b - a) / scale if scale != 1.0 else b - a
    if scale != 1.0:
        return f"{d:+,.2f}"
    return f"{d:+,}" if isinstance(d, int) else f"{d:+,.4g}"


def run(args: argparse.Namespace) -> int:
    out = payload(args)
    if args.json:
        print_json(out)
        return 0
    lang = lang_of(args)
    results = out["scenarios"]
    two = len(results) == 2
    headers = [t("header.option", lang)] + [r["name"] for r in results]
    rows: list[list[str]] = [[t("compare.command", lang)] + [r["command"] for r in results]]
    dests: list[str] = []
    for r in results:
        dests.extend(k for k in r["resolved"] if k not in dests)
    for dest in dests:
        values = []
        for r in results:
            if dest in r["resolved"]:
                values.append(r["resolved"][dest])
            else:  # not in this file: the command's default
                values.append(runner(r["command"]).defaults.get(dest))
        rows.append([dest.replace("_", "-")] + [_cell(v, lang) for v in values])
    print(render_table(headers, rows, "l" * len(headers)))
    print()
    mem_rows: list[list[str]] = []
    for key in MEMORY_KEYS:
        values = [r["result"].get("memory", {}).get(key, 0) for r in results]
        if not any(values):
            continue
        mem_rows.append([memory_label(key, lang)] + [f"{v / GiB:,.2f}" for v in values]
                        + ([_diff(values, GiB)] if two else []))
    for key in ("kv_cache_bytes_per_token", "max_batch", "fits"):
        values = [r["result"].get(key) for r in results]
        if all(v is None for v in values):
            continue
        label = t(f"header.{key}", lang) if key == "fits" else key
        mem_rows.append([label] + [_cell(v, lang) for v in values] + ([_diff(values)] if two else []))
    trainable = [(r["result"].get("params") or {}).get("trainable") for r in results]
    if any(trainable):
        mem_rows.append([t("header.trainable", lang)] + [_cell(v, lang) for v in trainable]
                        + ([_diff(trainable)] if two else []))
    mem_headers = tr_headers(["component"], lang) + [f"{r['name']} (GiB)" for r in results] + (
        [f"{t('compare.difference', lang)} (GiB)"] if two else [])
    print(render_table(mem_headers, mem_rows))
    for r in results:
        for w in r["result"].get("warnings", []):
            print(f"{r['name']}{colon(lang)}{t('section.warnings', lang)}{colon(lang)}{localize(w, lang)}")
    return 0
