"""What each command computes: checked option values (:mod:`gpuplan.options`) to the JSON that ``--json`` prints.

One module per command, each with ``payload(values)``; the command line (``gpuplan.cli``) parses and prints around
them, and :mod:`gpuplan.commands.registry` offers them to the web API and the Python API. Modules are imported on
first use, so one command's optional dependency never loads for another.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any, Callable

# Commands that compute a payload (``serve`` only starts the web server).
PAYLOAD_COMMANDS = ("models", "gpus", "params", "train", "infer", "time", "plan", "verify", "sweep", "compare")


def command_module(name: str) -> ModuleType:
    """The module computing command ``name`` (KeyError for a command without a payload)."""
    if name not in PAYLOAD_COMMANDS:
        raise KeyError(name)
    return importlib.import_module(f"gpuplan.commands.{name}")


def payload_function(name: str) -> Callable[[Any], Any]:
    """``payload(values)`` of command ``name``: its ``--json`` output."""
    return command_module(name).payload
