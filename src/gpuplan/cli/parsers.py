"""The command line's argparse parsers, generated from the declared options (:mod:`gpuplan.options`)."""

from __future__ import annotations

import argparse
from typing import Any, Callable

from gpuplan.errors import InputError
from gpuplan.options import ABSENT, CommandOptions, Option, command_options

# Kinds argparse converts itself (its own words for a bad value); the others go through Option.parse.
_NATIVE = {"int": int, "float": float}


def _converter(opt: Option) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return opt.parse(text)
        except InputError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = opt.label
    return parse


def _arguments(opt: Option) -> tuple[tuple[str, ...], dict[str, Any]]:
    """``add_argument``'s arguments for ``opt``."""
    kw: dict[str, Any] = {"help": opt.help or None}
    default = argparse.SUPPRESS if opt.default is ABSENT else opt.default
    if opt.kind == "positional":
        kw.update(nargs=opt.nargs, metavar=opt.metavar)
        if opt.default is not None:
            kw["default"] = default
        return (opt.name,), {k: v for k, v in kw.items() if v is not None}
    kw.update(dest=opt.name, default=default, metavar=opt.metavar, required=opt.required or None)
    if opt.kind == "flag":
        kw["action"] = "store_true"
    elif opt.kind == "append":
        kw["action"] = "append"
    elif opt.kind == "choice":
        kw["choices"] = opt.choices
        if isinstance(opt.choices[0], int):
            kw["type"] = int
    elif opt.kind in _NATIVE:
        kw["type"] = _NATIVE[opt.kind]
    elif opt.kind != "text":
        kw["type"] = _converter(opt)
    return opt.flags, {k: v for k, v in kw.items() if v is not None or k == "default"}


def add_command_parser(sub: argparse._SubParsersAction, spec: CommandOptions) -> argparse.ArgumentParser:
    """The parser of one command: its options in their declared order, each in its --help section."""
    p = sub.add_parser(spec.name, help=spec.help, description=spec.description, epilog=spec.epilog)
    groups: dict[str, Any] = {}
    for opt in spec.options:
        if opt.group is None:
            target: Any = p
        else:
            target = groups.get(opt.group) or groups.setdefault(opt.group, p.add_argument_group(opt.group))
        flags, kw = _arguments(opt)
        target.add_argument(*flags, **kw)
    if spec.has("config"):
        from gpuplan.scenario import hook_config

        hook_config(p, spec.name)
    from gpuplan.configs import MODEL_FORMATS

    if spec.has("from_file") or spec.name in MODEL_FORMATS:  # outermost: a scenario's values stay over the file's
        from gpuplan.configs import hook_files

        hook_files(p, spec.name)
    return p


def command_parser(sub: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    return add_command_parser(sub, command_options(name))
