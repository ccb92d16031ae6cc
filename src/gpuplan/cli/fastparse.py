"""Build a command's ``argparse.Namespace`` from the bridge's argument list without running argparse.

argparse walks every action of the parser and matches patterns over the whole argument list: about a tenth of a
millisecond for a ``gpuplan train`` request, more than half of what the web server spends outside the estimate.
The bridge's argument lists are regular (``--flag=value`` items, bare ``--flag`` switches, then ``--`` and at
most one positional), so for those this module applies argparse's own rules directly:

- every action's default (a string default converted by the action's type, as argparse does for an unseen
  option), then the parser's ``set_defaults`` values;
- ``--flag=value``: the action's type converts the text and the value must be one of its choices;
- ``--flag`` alone on a ``store_true`` / ``store_false`` action: its constant;
- after ``--``: the single optional positional (``nargs='?'``), converted and checked the same way.

Anything else returns ``None`` and the caller runs argparse itself, which then accepts it or words the error
exactly as the command line does: a value the type refuses, a choice not offered, a missing required option, an
unknown flag, a list or repeatable option, a positional that starts with '-', a parser with mutually exclusive
groups or a ``--config`` scenario hook in use. tests/test_web_fastparse.py checks that both give equal namespaces.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Callable

_STORE = argparse._StoreAction
_SWITCHES = (argparse._StoreTrueAction, argparse._StoreFalseAction)


@dataclass(frozen=True)
class _Plan:
    parser: argparse.ArgumentParser
    defaults: dict[str, Any]
    options: dict[str, tuple[argparse.Action, Callable[[str], Any] | None]]  # flag -> (action, converter)
    positional: tuple[argparse.Action, Callable[[str], Any]] | None
    required: frozenset[str]  # dests of required options


_PLANS: dict[int, _Plan | None] = {}


def _converter(parser: argparse.ArgumentParser, action: argparse.Action) -> Callable[[str], Any] | None:
    func = parser._registry_get("type", action.type, action.type)
    return func if callable(func) else None


def _build(parser: argparse.ArgumentParser) -> _Plan | None:
    """The parser's tables, or None when it uses a feature this module does not reproduce."""
    if parser._mutually_exclusive_groups:
        return None
    defaults: dict[str, Any] = {}
    options: dict[str, tuple[argparse.Action, Callable[[str], Any] | None]] = {}
    positional = None
    required = set()
    for action in parser._actions:
        if action.dest is not argparse.SUPPRESS and action.default is not argparse.SUPPRESS \
                and action.dest not in defaults:  # the first action of a dest sets it, as in argparse
            default = action.default
            if isinstance(default, str) and action.option_strings:
                convert = _converter(parser, action)
                if convert is None:
                    return None
                try:  # argparse converts a string default of an option the command line leaves out
                    default = convert(default)
                except Exception:
                    return None
            defaults[action.dest] = default
        if not action.option_strings:
            if positional is not None or action.nargs != "?" or type(action) is not _STORE:
                return None
            convert = _converter(parser, action)
            if convert is None:
                return None
            positional = (action, convert)
            continue
        if type(action) is _STORE and action.nargs is None:
            convert = _converter(parser, action)
            if convert is None:
                return None
        elif isinstance(action, _SWITCHES):
            convert = None
        else:
            continue  # help, append, lists...: an argument list naming one goes to argparse
        for flag in action.option_strings:
            if not _names_config(flag):  # --config loads a scenario file first: argparse's path only
                options[flag] = (action, convert)
        if action.required:
            required.add(action.dest)
    for dest, value in parser._defaults.items():
        defaults.setdefault(dest, value)
    return _Plan(parser, defaults, options, positional, frozenset(required))


def _names_config(flag: str) -> bool:
    """Whether gpuplan.scenario reads ``flag`` as ``--config`` (the option or a prefix of it, 5 characters on)."""
    return len(flag) >= 5 and "--config".startswith(flag)


def _plan(parser: argparse.ArgumentParser) -> _Plan | None:
    plan = _PLANS.get(id(parser), False)
    if plan is False or (plan is not None and plan.parser is not parser):
        plan = _PLANS[id(parser)] = _build(parser)
    return plan


def _value(action: argparse.Action, convert: Callable[[str], Any], text: str) -> tuple[bool, Any]:
    """(ok, value): the converted text when argparse would accept it."""
    try:
        value = convert(text)
    except Exception:
        return False, None
    if action.choices is not None and value not in action.choices:
        return False, None
    return True, value


def fast_namespace(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace | None:
    """What ``parser.parse_args(argv)`` returns, for the regular argument lists the bridge builds; ``None`` when
    argparse must decide (see the module docstring)."""
    plan = _plan(parser)
    if plan is None:
        return None
    values = dict(plan.defaults)
    seen: set[str] = set()
    i = 0
    for i, item in enumerate(argv):  # noqa: B007 - i is read after the loop
        if item == "--":
            break
        if not item.startswith("--"):
            return None
        flag, eq, text = item.partition("=")
        entry = plan.options.get(flag)
        if entry is None or entry[0].dest in seen:
            return None
        action, convert = entry
        if convert is None:  # a switch
            if eq:
                return None
            values[action.dest] = action.const
        else:
            if not eq or not text:
                return None
            ok, value = _value(action, convert, text)
            if not ok:
                return None
            values[action.dest] = value
        seen.add(action.dest)
    else:
        i = len(argv)
    rest = argv[i + 1:]
    if rest:
        if plan.positional is None or len(rest) > 1 or not rest[0] or rest[0].startswith("-"):
            return None
        action, convert = plan.positional
        ok, value = _value(action, convert, rest[0])
        if not ok:
            return None
        values[action.dest] = value
    elif plan.positional is not None:  # an absent nargs='?' positional takes its default, converted if text
        action, convert = plan.positional
        if isinstance(action.default, str):
            ok, value = _value(action, convert, action.default)
            if not ok:
                return None
            values[action.dest] = value
    if not plan.required <= seen:
        return None
    namespace = argparse.Namespace()
    namespace.__dict__.update(values)  # what Namespace(**values) does, without a setattr per option
    return namespace
