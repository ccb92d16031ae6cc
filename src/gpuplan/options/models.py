"""The options of ``gpuplan models``."""

from __future__ import annotations

from gpuplan.options.command import CommandOptions
from gpuplan.options.common import JSON, LANG
from gpuplan.options.field import Option

MODELS = CommandOptions(
    "models",
    help="the presets: id, Hugging Face id, family, parameter count",
    description="List the model presets, optionally filtered by a case-insensitive QUERY.",
    options=(
        Option(
            "query",
            "positional",
            default="",
            help="substring of the id, Hugging Face id or family",
            help_zh="id、Hugging Face id 或系列中的子串",
            nargs="?",
            api=False,
        ),
        JSON,
        LANG,
    ),
)
