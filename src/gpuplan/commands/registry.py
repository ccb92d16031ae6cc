"""The commands the web API (``gpuplan.web``) and the Python API (``gpuplan.api``) offer, and option values to
a command's JSON.

Each command's options are its declarations in :mod:`gpuplan.options` (the same ones the command line's parser is
generated from): the values are checked and converted by them, the command's defaults fill in the rest, and the
command's ``payload`` (:mod:`gpuplan.commands`) computes the JSON that ``--json`` prints, with the advice under
``advise``. No argument list and no parser is involved.

Options that name files or only shape the printed text (``--config``, ``--plot``, ``--json``...) are not offered.
Which models a caller may name is the caller's rule: the web API takes presets and pasted configs only
(:mod:`gpuplan.web.limits`) and never reads a path or a URL that a request names; the Python API takes whatever the
command line takes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any, Callable, Iterable

from gpuplan.commands import payload_function
from gpuplan.errors import InputError
from gpuplan.limits import COUNT_BOUNDS
from gpuplan.options import CommandOptions, Option, command_options

# Commands the APIs offer, in the order the CLI lists them.
API_COMMANDS = ("models", "gpus", "params", "train", "infer", "time", "plan", "sweep")
# Computing commands take a model (preset, pasted config or raw dimensions).
MODEL_COMMANDS = ("params", "train", "infer", "time", "plan", "sweep")

# Upper bounds on counts: one table in the core (gpuplan.limits); kept under this name for the web API.
COUNT_CAPS = COUNT_BOUNDS


@dataclass(frozen=True)
class Command:
    name: str
    spec: CommandOptions
    payload: Callable[[Any], Any]

    @cached_property
    def options(self) -> tuple[Option, ...]:
        """The options the APIs offer (MODEL is a field of its own)."""
        return tuple(o for o in self.spec.api_options if o.kind != "positional")

    @cached_property
    def by_dest(self) -> dict[str, Option]:
        return {o.name: o for o in self.options}

    def option(self, dest: str) -> Option | None:
        return self.by_dest.get(dest)

    @property
    def takes_model(self) -> bool:
        return self.spec.takes_model

    @property
    def description(self) -> str:
        return self.spec.description or ""

    @property
    def query(self) -> Option | None:
        """The catalogs' QUERY positional (``models``, ``gpus``)."""
        return self.spec.option("query")


@lru_cache(maxsize=1)
def load_commands(names: tuple[str, ...] = API_COMMANDS) -> dict[str, Command]:
    """The API's commands, keyed by name."""
    return {name: Command(name, command_options(name), payload_function(name)) for name in names}


def evaluate(command: Command, values: dict[str, Any], model: str | None) -> Any:
    """The JSON of ``command`` for option ``values`` (keyed by name; None = absent) and MODEL. A value an option
    refuses raises InputError naming the option, the value and the rule."""
    table = command.by_dest if command.query is None else {**command.by_dest, "query": command.query}
    checked = command.spec.check(values, offered=table.values())
    report = None
    from gpuplan.configs import MODEL_FORMATS

    if command.spec.has("from_file") or command.name in MODEL_FORMATS:
        from gpuplan.configs import apply_files

        model, checked, report = apply_files(command.name, model, checked)
    for opt in table.values():  # the API's own check of what the CLI's parser requires
        if opt.required and opt.kind != "positional" and opt.name not in checked:
            raise InputError(opt.flag or opt.name, None, "is required")
    if model is not None:
        checked["model"] = model
    opts = command.spec.values(checked)
    if report is not None:
        opts.config_file = report
    if "json" in command.spec.by_name:
        opts.json = True
    out = command.payload(opts)
    if getattr(opts, "advise", False):
        from gpuplan.advise import attach_advice

        attach_advice(opts, command.name, out)
    return out


def describe(commands: Iterable[Command]) -> dict[str, Any]:
    """The options of each command, for the page's forms and for scripts."""
    return {c.name: {"description": c.description, "takes_model": c.takes_model,
                     "options": [o.as_dict() for o in c.options]} for c in commands}
