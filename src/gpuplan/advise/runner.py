"""Evaluate a command's options through the command itself, so every number is the one ``gpuplan <command>`` prints.

Options are a dict keyed by option name (``{"model": "llama-3.1-70b", "zero": 3, "gpus": 16}``). A
:class:`CommandRunner` reads the command's declared options (:mod:`gpuplan.options`) for its defaults, overlays the
options, and computes the command's JSON payload in-process. :meth:`CommandRunner.argv` turns options back into
the command line that reproduces them. The advisor, ``gpuplan sweep`` and ``gpuplan compare`` all go through here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from gpuplan.commands import payload_function
from gpuplan.errors import InputError
from gpuplan.options import CommandOptions, Option, Values, command_options

# Options forced while evaluating: machine-readable output and nothing that recurses or writes files.
_FORCED = {"json": True, "advise": False, "plot": None, "check": False, "explain": False, "per_rank": False,
           "max_batch": False, "max_seq": False, "config": None}


@dataclass
class CommandRunner:
    """One command (``train``, ``infer``, …) ready to be evaluated many times with different options."""

    command: str
    spec: CommandOptions = field(repr=False)
    payload: Callable[[Any], Any] = field(repr=False)

    @classmethod
    def load(cls, command: str) -> "CommandRunner":
        try:
            spec = command_options(command)
        except KeyError:
            raise InputError("command", command, "is not available in this version of gpuplan") from None
        # the command's JSON payload (what the CLI's --json and the APIs print)
        return cls(command, spec, payload_function(command))

    @property
    def defaults(self) -> dict[str, Any]:
        return self.spec.defaults

    def option(self, name: str) -> Option | None:
        return self.spec.option(name)

    def has(self, name: str, value: Any = None) -> bool:
        """Whether the command has option ``name`` (and, when ``value`` is given and choices exist, accepts it)."""
        return self.spec.has(name, value)

    def namespace(self, options: Mapping[str, Any]) -> Values:
        unknown = [k for k in options if k not in self.spec.by_name]
        if unknown:
            raise InputError(unknown[0], options[unknown[0]], f"is not an option of `gpuplan {self.command}`")
        values = self.spec.values(options)
        for key, value in _FORCED.items():
            if hasattr(values, key):
                setattr(values, key, value)
        return values

    def run_json(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """The command's JSON for ``options`` (checked values keyed by name). InputError passes through."""
        return self.payload(self.namespace(options))

    def argv(self, options: Mapping[str, Any], *, keep_defaults: bool = False) -> list[str]:
        """The command-line arguments (after the command name) that reproduce ``options``; values equal to the
        command's defaults are left out unless ``keep_defaults`` (for a change applied on top of other options)."""
        out: list[str] = []
        positional: list[str] = []
        for name, value in options.items():
            opt = self.spec.option(name)
            if opt is None or name in _FORCED or value is None or value in ("", (), []):
                continue
            if value == self.defaults.get(name) and not (keep_defaults and opt.kind != "flag"):
                continue
            if opt.flag is None:
                positional.append(str(value))
                continue
            flag = max(opt.flags, key=len)
            if opt.kind == "flag":
                if value:
                    out.append(flag)
                continue
            if isinstance(value, (list, tuple)):
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


def options_from_args(args: Any, command: str) -> dict[str, Any]:
    """The options of parsed values that the command knows, minus the forced ones (for re-evaluation)."""
    r = runner(command)
    return {k: v for k, v in vars(args).items() if k in r.spec.by_name and k not in _FORCED}
