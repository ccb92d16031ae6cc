"""The options of ``gpuplan gpus``."""

from __future__ import annotations

from gpuplan.options.command import CommandOptions
from gpuplan.options.common import JSON, LANG
from gpuplan.options.field import Option

GPUS = CommandOptions(
    "gpus",
    help="the hardware catalog: memory, peak FLOP/s per dtype, bandwidth, interconnect",
    description="The accelerator catalog. Peak FLOP/s are dense (no sparsity); memory is what a process sees (usable) "
                "next to the datasheet figure (marketed).",
    options=(
        Option("query", "positional", default="", help="substring of the id, name or vendor",
               help_zh="id、名称或厂商中的子串", nargs="?", api=False),
        JSON,
        LANG,
    ),
)
