"""A command's options as one declaration, and the checked values the command computes from."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Iterable, Mapping

from gpuplan.errors import InputError
from gpuplan.options.field import ABSENT, Option


class Values:
    """Checked option values by name, read as attributes (``opts.batch``); what every command computes from."""

    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Values) and vars(self) == vars(other)

    def __repr__(self) -> str:
        return "Values(" + ", ".join(f"{k}={v!r}" for k, v in vars(self).items()) + ")"


@dataclass(frozen=True)
class CommandOptions:
    name: str
    help: str
    description: str | None
    options: tuple[Option, ...]
    epilog: str | None = None

    @cached_property
    def by_name(self) -> dict[str, Option]:
        return {o.name: o for o in self.options}

    def option(self, name: str) -> Option | None:
        return self.by_name.get(name)

    @cached_property
    def defaults(self) -> dict[str, Any]:
        """Every option's default (an ABSENT one left out)."""
        return {o.name: o.default for o in self.options if o.default is not ABSENT}

    @cached_property
    def api_options(self) -> tuple[Option, ...]:
        """The options the web API and the Python API offer."""
        return tuple(o for o in self.options if o.api)

    @cached_property
    def takes_model(self) -> bool:
        return "model" in self.by_name

    def has(self, name: str, value: Any = None) -> bool:
        """Whether the command has option ``name`` (and, when ``value`` is given and choices exist, accepts it)."""
        opt = self.by_name.get(name)
        return opt is not None and (value is None or opt.choices is None or value in opt.choices)

    def values(self, given: Mapping[str, Any] | None = None) -> Values:
        """Defaults overlaid with ``given`` (already checked, keyed by name)."""
        out = dict(self.defaults)
        if given:
            out.update(given)
        return Values(command=self.name, **out)

    def check(self, given: Mapping[str, Any], *, offered: Iterable[Option] | None = None) -> dict[str, Any]:
        """``given`` values (JSON or Python: numbers, flags, lists or the texts the command line takes) checked and
        converted by their options; None means absent. Unknown names are refused."""
        table = self.by_name if offered is None else {o.name: o for o in offered}
        out: dict[str, Any] = {}
        for name, value in given.items():
            opt = table.get(name)
            if opt is None:
                raise InputError(name, value, f"is not an option of `gpuplan {self.name}`")
            if value is not None:
                out[name] = opt.coerce(value)
        return out

    def describe(self) -> dict[str, Any]:
        return {"description": self.description or "", "takes_model": self.takes_model,
                "options": [o.as_dict() for o in self.api_options if o.kind != "positional"]}
