"""Evaluate a command's options through the command itself, so every number is the one ``gpuplan <command>`` prints.

Options are a dict keyed by argparse ``dest`` (``{"model": "llama-3.1-70b", "zero": 3, "gpus": 16}``). A
:class:`CommandRunner` builds the command's own parser once, fills in its defaults, overlays the options, runs the
command with ``--json`` in-process and returns the parsed JSON. :meth:`CommandRunner.argv` turns options back into
the command line that reproduces them. The advisor, ``gpuplan sweep`` and ``gpuplan compare`` all go through here.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Mapping

from gpuplan.errors import InputError

# Options forced while evaluating: machine-readable output and nothing that recurses or writes files.
_FORCED = {"json": True, "advise": False, "plot": None, "check": False, "explain": False, "per_rank": False,
           "max_batch": False, "max_seq": False, "config": None}


def _flag_for(action: argparse.Action) -> str | None:
    longs = [o for o in action.option_strings if o.startswith("--")]
    return max(longs, key=len) if longs else (action.option_strings[0] if action.option_strings else None)


@dataclass
class CommandRunner:
    """One command (``train``, ``infer``, …) ready to be evaluated many times with different options."""

    command: str
    module: ModuleType = field(repr=False)
    parser: argparse.ArgumentParser = field(repr=False)
    defaults: dict[str, Any] = field(repr=False)

    @classmethod
    def load(cls, command: str) -> "CommandRunner":
        try:
            module = importlib.import_module(f"gpuplan.cli.cmd_{command}")
        except ModuleNotFoundError as exc:
            if exc.name == f"gpuplan.cli.cmd_{command}":
                raise InputError("command", command, "is not available in this version of gpuplan") from None
            raise
        top = argparse.ArgumentParser(prog="gpuplan")
        from gpuplan.cli.main import add_command_parser

        parser = add_command_parser(command, module, top.add_subparsers(dest="command"))
        defaults: dict[str, Any] = {}
        for action in parser._actions:
            if action.dest in (argparse.SUPPRESS, "help") or action.default is argparse.SUPPRESS:
                continue
            default = action.default
            if isinstance(default, str) and action.type is not None:
                default = action.type(default)
            defaults[action.dest] = default
        return cls(command, module, parser, defaults)

    def action(self, dest: str) -> argparse.Action | None:
        for a in self.parser._actions:
            if a.dest == dest:
                return a
        return None

    def has(self, dest: str, value: Any = None) -> bool:
        """Whether the command has option ``dest`` (and, when ``value`` is given and choices exist, accepts it)."""
        a = self.action(dest)
        if a is None:
            return False
        return value is None or a.choices is None or value in a.choices

    def namespace(self, options: Mapping[str, Any]) -> argparse.Namespace:
        unknown = [k for k in options if k not in self.defaults]
        if unknown:
            raise InputError(unknown[0], options[unknown[0]], f"is not an option of `gpuplan {self.command}`")
        ns = argparse.Namespace(**{**self.defaults, **options})
        ns.command = self.command
        for key, value in _FORCED.items():
            if hasattr(ns, key):
                setattr(ns, key, value)
        return ns

    def run_json(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """Run the command with ``options`` and ``--json``; its JSON as a dict. InputError passes through."""
        ns = self.namespace(options)
        payload_fn = getattr(self.module, "payload", None)
        if callable(payload_fn):  # a command that exposes its JSON directly: no printing needed
            return payload_fn(ns)
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            self.module.run(ns)
        try:
            return json.loads(buf.getvalue())
        except json.JSONDecodeError as exc:
            raise RuntimeError(f"`gpuplan {self.command} --json` printed no JSON ({exc})") from None

    def argv(self, options: Mapping[str, Any], *, keep_defaults: bool = False) -> list[str]:
        """The command-line arguments (after the command name) that reproduce ``options``; values equal to the
        command's defaults are left out unless ``keep_defaults`` (for a change applied on top of other options)."""
        out: list[str] = []
        positional: list[str] = []
        for dest, value in options.items():
            action = self.action(dest)
            if action is None or dest in _FORCED or value is None or value in ("", (), []):
                continue
            if value == self.defaults.get(dest) and not (keep_defaults and action.nargs != 0):
                continue
            if not action.option_strings:
                positional.append(str(value))
                continue
            flag = _flag_for(action)
            if action.nargs == 0:
                if isinstance(action, argparse.BooleanOptionalAction):
                    out.append(flag if value else "--no-" + flag[2:])
                elif value == action.const:
                    out.append(flag)
                continue
            if isinstance(value, (list, tuple)):
                if action.nargs in ("*", "+") or isinstance(action.nargs, int):
                    out.extend([flag, *map(str, value)])
                else:
                    out.extend([flag, ",".join(map(str, value))])
                continue
            out.extend([flag, str(value)])
        return positional + out


_RUNNERS: dict[str, CommandRunner] = {}


def runner(command: str) -> CommandRunner:
    """A cached :class:`CommandRunner` for ``command``."""
    if command not in _RUNNERS:
        _RUNNERS[command] = CommandRunner.load(command)
    return _RUNNERS[command]


def options_from_args(args: argparse.Namespace, command: str) -> dict[str, Any]:
    """The options of a parsed namespace that the command knows, minus the forced ones (for re-evaluation)."""
    r = runner(command)
    return {k: v for k, v in vars(args).items() if k in r.defaults and k not in _FORCED}
