"""Option values to the CLI's commands: the same parsers, the same options, the same JSON, for the web API
(``gpuplan.web``) and the Python API (``gpuplan.api``).

Each command's options are read from its own argparse parser (so every CLI option is reachable from the API, the
page and Python, and a new option appears there without an edit here), the values become an argument list, the
parser checks it exactly as on the command line, and the command produces its JSON. A command module may expose
``payload(args) -> dict`` (the JSON ``--json`` prints); the bridge calls it when present, and otherwise runs
``run(args)`` with ``--json`` and reads what it prints.

Options that name files (``--config``, ``--plot``...) are not offered. Which models a caller may name is the
caller's rule: the web API takes presets and pasted configs only (:mod:`gpuplan.web.limits`) and never reads a
path or a URL that a request names; the Python API takes whatever the command line takes.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import threading
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any, Callable, Iterable

from gpuplan.errors import InputError
from gpuplan.cli.fastparse import fast_namespace
from gpuplan.limits import COUNT_BOUNDS, MAX_SAFE_INT, count_bound  # noqa: F401 - MAX_SAFE_INT re-exported

# Commands the API offers, in the order the CLI lists them.
API_COMMANDS = ("models", "gpus", "params", "train", "infer", "time", "plan")
# Computing commands take a model (preset, pasted config or raw dimensions).
MODEL_COMMANDS = ("params", "train", "infer", "time", "plan")

# Options never offered: output plumbing, and anything that reads or writes a file named by the caller.
HIDDEN_DESTS = frozenset({"help", "json", "check", "lang", "config", "plot", "output", "out", "save", "device",
                          "progress", "tensors", "model", "list_prices"})
_FILE_WORDS = ("FILE", "PATH", "DIR")

# Upper bounds on counts: one table in the core (gpuplan.limits), which the command line's count parser applies
# too; kept under these names for the web API's schemas.
COUNT_CAPS = COUNT_BOUNDS


@dataclass(frozen=True)
class Option:
    """One CLI option as the API sees it. ``kind``: bool, count, int, float, choice, str, list, append (a
    repeatable option: one text or a list of them) or value."""

    dest: str
    flag: str
    kind: str
    choices: tuple[Any, ...] | None
    default: Any
    help: str
    group: str
    positional: bool = False
    required: bool = False
    bounds: tuple[tuple[str, float], ...] = ()  # a number's range: ('gt', 0), ('le', 1)... (JSON Schema's words)

    @property
    def maximum(self) -> int:
        return count_bound(self.dest)

    def as_dict(self) -> dict[str, Any]:
        out = {"name": self.dest, "flag": self.flag, "kind": self.kind, "default": _jsonable(self.default),
               "help": self.help, "group": self.group, "required": self.required}
        if self.choices is not None:
            out["choices"] = list(self.choices)
        if self.kind in ("count", "int"):
            out["maximum"] = self.maximum
        if self.bounds:
            out["bounds"] = dict(self.bounds)
        return out


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value)


class _ParserError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class _Parser(argparse.ArgumentParser):
    """An argparse parser that raises instead of printing usage and exiting."""

    def error(self, message: str):  # type: ignore[override]
        raise _ParserError(message)

    def exit(self, status: int = 0, message: str | None = None):  # type: ignore[override]
        raise _ParserError(message or f"exit {status}")


@dataclass(frozen=True)
class Command:
    name: str
    module: Any
    parser: argparse.ArgumentParser
    options: tuple[Option, ...]
    takes_model: bool
    description: str

    def option(self, dest: str) -> Option | None:
        return self.by_dest.get(dest)

    @cached_property
    def by_dest(self) -> dict[str, Option]:
        return {o.dest: o for o in self.options}

    @cached_property
    def order(self) -> dict[str, int]:
        """Each option's place in :attr:`options` (argument lists are built in that order)."""
        return {o.dest: i for i, o in enumerate(self.options)}


def _kind(action: argparse.Action) -> str:
    """bool, list, choice, str, int, float, count (gpuplan.cli.common.count: '7B', '128k'), or value (another
    converter: a number or text, handed to the CLI's converter as text)."""
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        return "bool"
    if isinstance(action, argparse._AppendAction):
        return "append"
    if action.nargs in ("*", "+") or isinstance(action.nargs, int) and action.nargs > 1:
        return "list"
    if action.choices is not None:
        return "choice"
    t = action.type
    if t is None or t is str:
        return "str"
    if t is int:
        return "int"
    if t is float:
        return "float"
    qualname = getattr(t, "__qualname__", "")
    if getattr(t, "__module__", "") == "gpuplan.cli.common" and qualname.startswith("count."):
        return "count"
    if "float" in qualname.split(".<locals>")[0].lower():
        return "float"
    return "value"


def _is_file_option(action: argparse.Action) -> bool:
    words = " ".join(str(x) for x in (action.metavar or "", action.dest)).upper()
    return action.type is argparse.FileType or isinstance(action.type, argparse.FileType) or \
        any(w in words for w in _FILE_WORDS)


def _options(parser: argparse.ArgumentParser) -> tuple[Option, ...]:
    group_of: dict[int, str] = {}
    for g in parser._action_groups:  # argparse keeps group membership only here
        for a in g._group_actions:
            group_of[id(a)] = g.title or ""
    out = []
    for a in parser._actions:
        if a.dest in HIDDEN_DESTS or a.dest.startswith("_") or a.help == argparse.SUPPRESS or _is_file_option(a):
            continue
        if "and exit" in (a.help or ""):  # prints something else than the JSON (a table, a version)
            continue
        if isinstance(a, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
            continue
        if not isinstance(a, (argparse._StoreAction, argparse._StoreTrueAction, argparse._StoreFalseAction,
                              argparse._AppendAction)):
            continue  # count/const/custom actions: not offered until mapped here
        flag = next((s for s in a.option_strings if s.startswith("--")), a.option_strings[0] if a.option_strings
                    else a.dest)
        choices = tuple(a.choices) if a.choices is not None else None
        out.append(Option(dest=a.dest, flag=flag, kind=_kind(a), choices=choices,
                          default=None if a.default is argparse.SUPPRESS else a.default,
                          help=(a.help or "") % {"default": a.default} if "%(" in (a.help or "") else (a.help or ""),
                          group=group_of.get(id(a), ""), positional=not a.option_strings,
                          required=bool(a.required) and bool(a.option_strings),
                          bounds=tuple((getattr(a.type, "bounds", None) or {}).items())))
    return tuple(out)


@lru_cache(maxsize=1)
def load_commands(names: tuple[str, ...] = API_COMMANDS) -> dict[str, Command]:
    """The API's commands whose CLI modules exist in this build, keyed by name."""
    from gpuplan.cli.main import COMMANDS

    modules = dict(COMMANDS)
    root = _Parser(prog="gpuplan", add_help=False)
    sub = root.add_subparsers(dest="command")
    out: dict[str, Command] = {}
    for name in names:
        module_name = modules.get(name)
        if module_name is None:
            continue
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue  # command not built yet
            raise
        from gpuplan.cli.main import add_command_parser

        parser = add_command_parser(name, module, sub)
        takes_model = any(a.dest == "model" for a in parser._actions)
        out[name] = Command(name=name, module=module, parser=parser, options=_options(parser),
                            takes_model=takes_model, description=parser.description or "")
    return out


def build_argv(command: Command, values: dict[str, Any], model: str | None) -> list[str]:
    """Turn validated option values into the argument list the CLI would receive."""
    argv: list[str] = []
    positionals: list[str] = []
    by_dest = command.by_dest
    for dest in sorted((d for d in values if d in by_dest), key=command.order.__getitem__):
        opt, value = by_dest[dest], values[dest]
        if value is None:
            continue
        if opt.positional:
            positionals.append(str(value))
        elif opt.kind == "bool":
            if bool(value) != bool(opt.default):
                argv.append(opt.flag)
        elif opt.kind == "list":
            items = [str(v) for v in value]
            if any(item.startswith("-") for item in items):  # would be read as an option (e.g. --config)
                raise InputError(opt.dest, value, "items must not start with '-'")
            argv.append(opt.flag)
            argv.extend(items)
        elif opt.kind == "append":  # a repeatable option: one flag per item
            argv.extend(f"{opt.flag}={v}" for v in ([value] if isinstance(value, str) else value))
        else:
            argv.append(f"{opt.flag}={value}")
    if model is not None:
        positionals.insert(0, model)
    if positionals:
        argv.append("--")
        argv.extend(positionals)
    return argv


def _flag_to_dest(command: Command, message: str) -> str:
    """Name the option an argparse message is about: 'argument --batch: ...' -> 'batch'."""
    required = "the following arguments are required: "
    if message.startswith(required):
        message = "argument " + message[len(required):].split(",")[0].strip() + ":"
    if message.startswith("argument "):
        flags = message[len("argument "):].split(":", 1)[0]
        for flag in flags.split("/"):
            for a in command.parser._actions:
                if flag in a.option_strings or flag == a.dest or flag == a.metavar:
                    return a.dest
    return "options"


def parse_args(command: Command, argv: list[str]) -> argparse.Namespace:
    """Parse exactly as the CLI does; argparse's complaints become InputError naming the option. The regular
    argument lists that :func:`build_argv` makes are read by :func:`.fastparse.fast_namespace` (argparse's rules
    without its cost); anything else, every error included, by argparse itself."""
    args = fast_namespace(command.parser, argv)
    if args is None:
        try:
            args = command.parser.parse_args(argv)
        except _ParserError as exc:
            raise InputError(_flag_to_dest(command, exc.message), None, exc.message) from None
    args.command = command.name
    if hasattr(args, "json"):
        args.json = True
    return args


def evaluate(command: Command, values: dict[str, Any], model: str | None) -> Any:
    """The JSON of ``command`` for option ``values`` (keyed by dest) and MODEL: argument list, parser, command. A
    value the parser refuses is named in the InputError (argparse names only the option)."""
    try:
        return run_command(command, parse_args(command, build_argv(command, values, model)))
    except InputError as exc:
        if exc.value is None and exc.field in values:
            raise InputError(exc.field, values[exc.field], exc.rule, exc.hint) from None
        raise


_STDOUT_LOCK = threading.Lock()


def run_command(command: Command, args: argparse.Namespace) -> Any:
    """The JSON the CLI prints for ``args``: ``payload(args)`` when the command exposes it (and no advice is
    asked for: the commands attach it in ``run`` only), else ``run`` with ``--json`` and its standard output read
    back (serialized, since ``sys.stdout`` is process-wide)."""
    payload: Callable[[argparse.Namespace], Any] | None = getattr(command.module, "payload", None)
    if payload is not None and not getattr(args, "advise", False):  # payload() leaves the advice out
        return payload(args)
    out, err = io.StringIO(), io.StringIO()
    with _STDOUT_LOCK, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = command.module.run(args)
    if code not in (0, None):  # a command that reported a problem itself (on stderr) instead of raising
        text = "; ".join(line.strip() for line in err.getvalue().splitlines() if line.strip()) or f"exit code {code}"
        for prefix in (f"gpuplan {command.name}: error: ", f"gpuplan {command.name}: "):
            text = text[len(prefix):] if text.startswith(prefix) else text
        raise InputError(command.name, None, text)
    text = out.getvalue()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise RuntimeError(f"gpuplan {command.name} --json printed no JSON: {text[:200]!r}") from None


def describe(commands: Iterable[Command]) -> dict[str, Any]:
    """The options of each command, for the page's forms and for scripts."""
    return {c.name: {"description": c.description, "takes_model": c.takes_model,
                     "options": [o.as_dict() for o in c.options]} for c in commands}
