"""The options of ``gpuplan models``."""

from __future__ import annotations

from gpuplan.options.command import CommandOptions
from gpuplan.options.common import JSON, LANG
from gpuplan.options.field import Option

MODELS = CommandOptions(
    "models",
    help="the presets: id, Hugging Face id, family, parameter count, release date, modality",
    description="List the model presets, optionally filtered by a case-insensitive QUERY, a family (--family) "
                "and to the most recent releases (--newest N, newest first).",
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
        Option("family", "text", "--family", metavar="NAME",
               help="only this family (the config's model_type: llama, qwen3_moe, deepseek_v3, ...)",
               help_zh="只列出这个系列（config 的 model_type：llama、qwen3_moe、deepseek_v3 等）"),
        Option("newest", "count", "--newest", metavar="N",
               help="only the N most recent by release date, newest first",
               help_zh="只列出按发布日期最新的 N 个，最新的在前"),
        JSON,
        LANG,
    ),
)
