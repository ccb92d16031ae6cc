"""The options of ``gpuplan params``."""

from __future__ import annotations

from gpuplan.options.command import CommandOptions
from gpuplan.options.common import JSON, LANG, MODEL_OPTIONS
from gpuplan.options.field import Option

PARAMS = CommandOptions(
    "params",
    help="the parameter count, exact, by component",
    description="Exact parameter count by component, from the model's tensor table.",
    options=(
        *MODEL_OPTIONS,
        JSON,
        Option(
            "tensors",
            "flag",
            "--tensors",
            default=False,
            help="list every tensor with its checkpoint name and shape",
            help_zh="列出每个张量及其检查点名称和形状",
            api=False,
        ),
        LANG,
    ),
)
