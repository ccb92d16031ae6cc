"""The Python API: each command of the CLI as a function of keyword options, returning what
``gpuplan <command> --json`` prints (the JSON of docs/interface.md, as Python dicts and lists).

    from gpuplan import api

    r = api.train("llama-3.1-8b", batch=4, seq=4096, gpu="h100-sxm")
    r["memory"]["total_bytes"], r["fits"]
    api.infer("llama-3.1-70b", weights="awq", context="32k", gpu="a100-80gb", tp=2)["max_batch"]
    api.time("llama-3.1-8b", tokens="15T", gpus=1024, gpu="h100-sxm")["days"]

Options are the command-line options with underscores for dashes (``grad_accum=8``, ``lora_targets=["q_proj",
"v_proj"]``); values are Python numbers, booleans and strings, or the texts the command line takes
(``tokens="15T"``). The command's declared options (:mod:`gpuplan.options`) check them, so what the CLI refuses raises
:class:`gpuplan.errors.InputError` here, naming the option, the value and the rule; an option the command does not
have is refused the same way. MODEL is anything the command line takes: a preset id, a Hugging Face id, a path to
a ``config.json``; or leave it out and give dimensions (``layers=32, hidden=4096, heads=32``) or ``params="7B"``.
Options that write files or only change the printed text (``--plot``, ``--config``, ``--lang``, ``--json``,
``--check``) are not offered. The typed engine underneath is described in docs/python-api.md.
"""

from __future__ import annotations

import difflib
from typing import Any

from gpuplan.commands.registry import Command, evaluate, load_commands
from gpuplan.errors import InputError

__all__ = ["run", "options", "models", "gpus", "params", "train", "infer", "time", "plan", "sweep"]


def _command(name: str) -> Command:
    commands = load_commands()
    if name not in commands:
        raise InputError("command", name, f"must be one of {', '.join(commands)}")
    return commands[name]


def options(command: str) -> list[dict[str, Any]]:
    """The options ``command`` takes: name, flag, kind, default, choices, help (as the web API lists them)."""
    return [o.as_dict() for o in _command(command).options]


def run(command: str, model: str | None = None, /, **opts: Any) -> Any:
    """The JSON of ``gpuplan <command> [MODEL] <options> --json`` as Python objects."""
    cmd = _command(command)
    if model is not None and not cmd.takes_model:
        raise InputError("model", model, f"`gpuplan {command}` takes no model")
    for name, value in opts.items():
        if name not in cmd.by_dest and not (name == "query" and cmd.query is not None):
            close = difflib.get_close_matches(name, list(cmd.by_dest), n=3)
            raise InputError(name, value, f"is not an option of `gpuplan {command}`",
                             hint=f"did you mean {', '.join(close)}?" if close else
                             f"gpuplan.api.options({command!r}) lists them")
    return evaluate(cmd, opts, model)


def models(query: str | None = None) -> Any:
    """The presets (``gpuplan models [QUERY] --json``)."""
    return run("models", query=query)


def gpus(query: str | None = None) -> Any:
    """The hardware catalog (``gpuplan gpus [QUERY] --json``)."""
    return run("gpus", query=query)


def params(model: str | None = None, /, **opts: Any) -> dict[str, Any]:
    """Exact parameter counts by component (``gpuplan params``)."""
    return run("params", model, **opts)


def train(model: str | None = None, /, **opts: Any) -> dict[str, Any]:
    """Memory per GPU for training or fine-tuning, and whether it fits (``gpuplan train``)."""
    return run("train", model, **opts)


def infer(model: str | None = None, /, **opts: Any) -> dict[str, Any]:
    """Memory per GPU for serving, KV cache, how many sequences fit, speed (``gpuplan infer``)."""
    return run("infer", model, **opts)


def time(model: str | None = None, /, **opts: Any) -> dict[str, Any]:
    """FLOPs, days, GPU count, GPU-hours and cost of a training run (``gpuplan time``)."""
    return run("time", model, **opts)


def plan(model: str | None = None, /, **opts: Any) -> dict[str, Any]:
    """The parallel layouts that fit, ranked (``gpuplan plan``)."""
    return run("plan", model, **opts)


def sweep(model: str | None = None, /, **opts: Any) -> dict[str, Any]:
    """Memory per GPU against one swept option (``gpuplan sweep``): ``over="seq", values="1k,2k,4k"`` and any
    option of ``train`` (or of ``infer`` with ``mode="infer"``)."""
    return run("sweep", model, **opts)
