"""The options of ``gpuplan sweep``: its own, then every option of ``train`` and of ``infer`` (passed on to the
command that computes each point; left out of the values unless given)."""

from __future__ import annotations

from dataclasses import replace

from gpuplan.options.command import CommandOptions
from gpuplan.options.common import CONFIG, LANG, MODEL
from gpuplan.options.field import ABSENT, Option
from gpuplan.options.infer import INFER
from gpuplan.options.train import TRAIN

OVER = ("batch", "seq", "gpus", "context")
# Options of sweep itself, and options of the commands that make no sense per point.
OWN = frozenset({"model", "over", "values", "mode", "plot", "json", "lang", "config"})
# from_file: a stack config file is read by train itself, not passed on point by point (not in this slice)
SKIP = frozenset({"advise", "check", "explain", "per_rank", "max_batch", "max_seq", "from_file"})

_OWN_OPTIONS = (
    MODEL,
    Option("over", "choice", "--over", help="the option to sweep",
           help_zh="要扫描的选项", choices=OVER, required=True),
    Option("values", "values", "--values", help="comma-separated values: 1,2,4,8 or 1k,2k,4k",
           help_zh="逗号分隔的取值：1,2,4,8 或 1k,2k,4k", required=True),
    Option("mode", "choice", "--mode", choices=("train", "infer"),
           help="which command computes each point (default: infer for --over context, else train)",
           help_zh="由哪个命令计算每个点（默认：--over context 时为 infer，否则为 train）"),
    Option("plot", "text", "--plot", metavar="FILE", api=False,
           help="also draw the sweep to FILE.png or FILE.svg (needs matplotlib)",
           help_zh="同时把扫描结果画到 FILE.png 或 FILE.svg（需要 matplotlib）"),
    Option("json", "flag", "--json", default=False, help="print machine-readable JSON (bytes)",
           help_zh="输出机器可读的 JSON（字节）", api=False),
    LANG,
)


def _passed_on() -> tuple[Option, ...]:
    """train's options, then infer's that train lacks (one definition serves both), with no default of their own."""
    out: list[Option] = []
    seen: set[str] = set()
    for command in (TRAIN, INFER):
        group = f"options of `gpuplan {command.name}`"
        for opt in command.options:
            if opt.flag is None or opt.name in OWN | SKIP or opt.flag in seen:
                continue
            seen.add(opt.flag)
            out.append(replace(opt, default=ABSENT, required=False, group=group))
    return tuple(out)


SWEEP = CommandOptions(
    "sweep",
    help="memory per GPU against batch, sequence, GPU count or context (table, chart)",
    description="Every option of ``gpuplan train`` (and of ``gpuplan infer`` with ``--mode infer``, the default for "
                "``--over\ncontext``) is accepted and passed on; each point is computed by that command itself, so the "
                "numbers are the ones it\nprints. ``--plot FILE.png|.svg`` draws the components and the device total "
                "against the swept value with the GPU's\nusable capacity as a line.",
    options=(*_OWN_OPTIONS, *_passed_on(), CONFIG),
)
