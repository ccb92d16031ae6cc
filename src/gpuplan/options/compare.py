"""The options of ``gpuplan compare``."""

from __future__ import annotations

from gpuplan.options.command import CommandOptions
from gpuplan.options.common import JSON, LANG
from gpuplan.options.field import Option

COMPARE = CommandOptions(
    "compare",
    help="two or more scenario files side by side",
    description='Evaluate scenario files (see `--config` on train/infer) with the command each names '
                '(`command = "train"`, the default, or "infer") and show their options, memory per GPU and fit side '
                'by side.',
    options=(
        Option(
            "scenarios",
            "positional",
            help="scenario files (.toml, or .yaml with PyYAML)",
            help_zh="场景文件（.toml，或安装了 PyYAML 时的 .yaml）",
            metavar="SCENARIO",
            required=True,
            nargs="+",
            api=False,
        ),
        Option(
            "default_command",
            "choice",
            "--command",
            default="train",
            help="command for scenarios that name none (default train)",
            help_zh="未指定命令的场景所用的命令（默认 train）",
            choices=("train", "infer"),
        ),
        JSON,
        LANG,
    ),
)
