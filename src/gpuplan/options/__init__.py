"""The options of every command, declared once (:mod:`.field`, :mod:`.command`, one module per command).

The command line's parsers (``gpuplan.cli.parsers``), the web API's request schemas (``gpuplan.web.schemas``), the
page's forms (``GET /api/v1/options``), the Python API (``gpuplan.api``), scenario files and the advisor all read
these declarations; the commands compute from the checked :class:`Values`. Nothing here imports argparse or a web
framework.
"""

from __future__ import annotations

import importlib

from gpuplan.options.command import CommandOptions, Values
from gpuplan.options.field import ABSENT, Option

__all__ = ["ABSENT", "COMMANDS", "CommandOptions", "Option", "Values", "command_options"]

# In the order `gpuplan --help` lists them.
COMMANDS = ("models", "gpus", "params", "train", "infer", "time", "plan", "verify", "serve", "sweep", "compare")


def command_options(name: str) -> CommandOptions:
    """The declared options of command ``name`` (KeyError for an unknown command)."""
    if name not in COMMANDS:
        raise KeyError(name)
    return getattr(importlib.import_module(f"gpuplan.options.{name}"), name.upper())
