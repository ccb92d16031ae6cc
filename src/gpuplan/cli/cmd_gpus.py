"""``gpuplan gpus [QUERY]``: the hardware catalog, printed."""

from __future__ import annotations

import argparse

from gpuplan.cli.common import print_json
from gpuplan.cli.parsers import command_parser
from gpuplan.cli.render import render_table
from gpuplan.commands.gpus import matching, payload
from gpuplan.hardware.catalog import GpuSpec
from gpuplan.i18n import headers, lang_of
from gpuplan.units import GiB


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    return command_parser(sub, "gpus")


def _tflops(g: GpuSpec, dtype: str) -> str:
    v = g.peak_flop_per_s_for(dtype)
    if v is None and dtype == "bf16" and g.bf16_fallback:  # no bf16 units: bf16 models run in the fallback dtype
        fallback = g.peak_flop_per_s_for(g.bf16_fallback)
        return f"({g.bf16_fallback} {fallback / 1e12:,.0f})" if fallback else "-"
    return "-" if v is None else f"{v / 1e12:,.0f}"


def run(args: argparse.Namespace) -> int:
    if args.json:
        print_json(payload(args))
        return 0
    rows = [(g.id, g.name, f"{g.memory_usable_bytes / GiB:,.1f}", f"{g.memory_marketed_bytes / 1e9:,.0f}",
             _tflops(g, "bf16"), _tflops(g, "fp8"), f"{g.hbm_bandwidth_bytes_per_s / 1e9:,.0f}",
             f"{g.interconnect} {g.interconnect_bytes_per_s / 1e9:,.0f}", f"{g.gpus_per_node}",
             "-" if g.inter_node_bytes_per_s is None else f"{g.inter_node_bytes_per_s / 1e9:,.4g}", f"{g.tdp_w:,.0f}")
            for g in matching(args.query)]
    names = ("id", "name", "usable", "marketed", "bf16", "fp8", "hbm", "interconnect", "per_node", "network", "tdp")
    print(render_table(headers("gpus.header", names, lang_of(args)), rows, "llrrrrrlrrr"))
    return 0
