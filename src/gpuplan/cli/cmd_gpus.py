"""``gpuplan gpus``: the hardware catalog."""

from __future__ import annotations

import argparse

from gpuplan.cli.common import print_json, render_table
from gpuplan.hardware.catalog import load_catalog
from gpuplan.i18n import headers, lang_of
from gpuplan.units import GiB
from gpuplan.cli.parsers import command_parser


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    return command_parser(sub, "gpus")


def _tflops(g, dtype: str) -> str:
    v = g.peak_flop_per_s_for(dtype)
    return "-" if v is None else f"{v / 1e12:,.0f}"


def _matching(query: str | None) -> list:
    q = (query or "").lower()
    return [g for g in load_catalog().values()
            if q in g.id or q in g.name.lower() or q in g.vendor.lower() or any(q in a.lower() for a in g.aliases)]


def payload(args) -> list[dict]:
    """The JSON of ``gpuplan gpus [QUERY] --json``."""
    return [{"id": g.id, "name": g.name, "vendor": g.vendor, "memory_usable_bytes": g.memory_usable_bytes,
             "memory_marketed_bytes": g.memory_marketed_bytes, "memory_nvidia_smi_bytes": g.memory_nvidia_smi_bytes,
             "peak_flop_per_s": g.peak_flop_per_s, "hbm_bandwidth_bytes_per_s": g.hbm_bandwidth_bytes_per_s,
             "interconnect": g.interconnect, "interconnect_bytes_per_s": g.interconnect_bytes_per_s,
             "tdp_w": g.tdp_w, "source": g.source} for g in _matching(args.query)]


def run(args: argparse.Namespace) -> int:
    gpus = _matching(args.query)
    if args.json:
        print_json(payload(args))
        return 0
    rows = [(g.id, g.name, f"{g.memory_usable_bytes / GiB:,.1f}", f"{g.memory_marketed_bytes / 1e9:,.0f}",
             _tflops(g, "bf16"), _tflops(g, "fp8"), f"{g.hbm_bandwidth_bytes_per_s / 1e9:,.0f}",
             f"{g.interconnect} {g.interconnect_bytes_per_s / 1e9:,.0f}", f"{g.tdp_w:,.0f}") for g in gpus]
    names = ("id", "name", "usable", "marketed", "bf16", "fp8", "hbm", "interconnect", "tdp")
    print(render_table(headers("gpus.header", names, lang_of(args)), rows, "llrrrrrlr"))
    return 0
