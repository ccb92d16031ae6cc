"""The ``gpuplan`` command. Each subcommand lives in its own module exposing ``add_parser`` (its parser, generated
from the declared options in :mod:`gpuplan.options`) and ``run``."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from gpuplan import __version__
from gpuplan.errors import InputError

# (command, module): a module is imported only when its command is defined, so a missing optional
# dependency of one command never breaks the others.
COMMANDS = (
    ("models", "gpuplan.cli.cmd_models"),
    ("gpus", "gpuplan.cli.cmd_gpus"),
    ("params", "gpuplan.cli.cmd_params"),
    ("train", "gpuplan.cli.cmd_train"),
    ("infer", "gpuplan.cli.cmd_infer"),
    ("time", "gpuplan.cli.cmd_time"),
    ("plan", "gpuplan.cli.cmd_plan"),
    ("verify", "gpuplan.cli.cmd_verify"),
    ("serve", "gpuplan.cli.cmd_serve"),
    ("sweep", "gpuplan.cli.cmd_sweep"),
    ("compare", "gpuplan.cli.cmd_compare"),
)


# Commands that draw their result with --plot.
_PLOT_COMMANDS = ("train", "infer")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The command line; ``only``: define just that command (what ``main`` does when the first argument names
    one, so a run imports and builds one command's options, not all of them)."""
    parser = argparse.ArgumentParser(
        prog="gpuplan",
        description="Will it fit, on which GPUs, with which parallel layout, how long, at what cost: "
                    "memory, compute and cluster planning for LLM training, fine-tuning and serving.",
        epilog="Memory is shown in GiB (2^30 bytes). Counts accept 7e9, 7B, 2T, 128k: whole numbers, each "
               "within its bound (gpuplan/limits.py). Exit codes: 0 ok, 2 bad input, 3 --check and it does not "
               "fit.")
    parser.add_argument("--version", action="version", version=f"gpuplan {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS:
        if only is not None and name != only:
            continue
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:  # command not built yet
                continue
            raise
        p = module.add_parser(sub)  # generated from the command's declared options (gpuplan.options)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    from gpuplan.cli import parsers
    from gpuplan.i18n import arg_lang, error_text

    lang = arg_lang(sys.argv[1:] if argv is None else argv)
    parsers.use_help_lang(lang)  # --help, its groups and argparse's messages in the language of the output
    args_in = sys.argv[1:] if argv is None else argv
    first = args_in[0] if args_in else None
    parser = build_parser(first if first in dict(COMMANDS) else None)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help/--version (0) or a bad option (2, message already printed)
        return int(exc.code or 0)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        code = int(args._run(args) or 0)
        if getattr(args, "plot", None) and args.command in _PLOT_COMMANDS:
            from gpuplan.commands import payload_function
            from gpuplan.plot import plot_payload

            plot_payload(args, payload_function(args.command)(args))
        return code
    except InputError as exc:
        sep = "：错误：" if lang == "zh" else ": error: "
        print(f"gpuplan {args.command}{sep}{error_text(exc, lang)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a bug, not bad input: say so briefly; GPUPLAN_DEBUG=1 shows the traceback
        if os.environ.get("GPUPLAN_DEBUG"):
            raise
        print(f"gpuplan {args.command}: internal error: {type(exc).__name__}: {exc} "
              "(set GPUPLAN_DEBUG=1 for the traceback and please report it)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
