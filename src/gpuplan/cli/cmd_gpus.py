"""``gpuplan gpus``: the hardware catalog."""

from __future__ import annotations

import argparse

from gpuplan.cli.common import add_output_arguments, print_json, render_table
from gpuplan.hardware.catalog import load_catalog
from gpuplan.i18n import headers, lang_of
from gpuplan.units import GiB


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("gpus", help="the hardware catalog: memory, peak FLOP/s per dtype, bandwidth, interconnect",
                       description="The accelerator catalog. Peak FLOP/s are dense (no sparsity); memory is what a "
                                   "process sees (usable) next to the datasheet figure (marketed).")
    p.add_argument("query", nargs="?", default="", help="substring of the id, name or vendor")
    add_output_arguments(p)
    return p


def _tflops(g, dtype: str) -> str:
    v = g.peak_flop_per_s_for(dtype)
    return "-" if v is None else f"{v / 1e12:,.0f}"


def run(args: argparse.Namespace) -> int:
    q = args.query.lower()
    gpus = [g for g in load_catalog().values()
            if q in g.id or q in g.name.lower() or q in g.vendor.lower() or any(q in a.lower() for a in g.aliases)]
    if args.json:
        print_json([{"id": g.id, "name": g.name, "vendor": g.vendor, "memory_usable_bytes": g.memory_usable_bytes,
                     "memory_marketed_bytes": g.memory_marketed_bytes,
                     "memory_nvidia_smi_bytes": g.memory_nvidia_smi_bytes, "peak_flop_per_s": g.peak_flop_per_s,
                     "hbm_bandwidth_bytes_per_s": g.hbm_bandwidth_bytes_per_s, "interconnect": g.interconnect,
                     "interconnect_bytes_per_s": g.interconnect_bytes_per_s, "tdp_w": g.tdp_w, "source": g.source}
                    for g in gpus])
        return 0
    rows = [(g.id, g.name, f"{g.memory_usable_bytes / GiB:,.1f}", f"{g.memory_marketed_bytes / 1e9:,.0f}",
             _tflops(g, "bf16"), _tflops(g, "fp8"), f"{g.hbm_bandwidth_bytes_per_s / 1e9:,.0f}",
             f"{g.interconnect} {g.interconnect_bytes_per_s / 1e9:,.0f}", f"{g.tdp_w:,.0f}") for g in gpus]
    names = ("id", "name", "usable", "marketed", "bf16", "fp8", "hbm", "interconnect", "tdp")
    print(render_table(headers("gpus.header", names, lang_of(args)), rows, "llrrrrrlr"))
    return 0
