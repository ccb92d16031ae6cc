"""Scenario files: a command's options in a TOML (or YAML) file, ``gpuplan train --config scenario.toml``.

A scenario is a flat table of options, named as on the command line (``grad-accum``, ``--grad-accum`` and
``grad_accum`` all work), plus the positional ``model`` and three reserved keys: ``command`` (the command the file
is for; checked when given), ``name`` (a label for ``gpuplan compare``) and ``description``::

    command = "train"
    name = "70B LoRA on 8 x H100"
    model = "llama-3.1-70b"
    gpu = "h100-sxm"
    method = "lora"
    batch = 1
    seq = 4096
    recompute = "full"

Values go through the option's declaration in :mod:`gpuplan.options` (``"7B"`` or ``7000000000`` for a count, a
choice checked against the allowed ones), flags are booleans, comma lists may be written as arrays. Options given on the command line win over
the file: the file's values become the parser's defaults for that one parse. TOML is read with the standard
library's ``tomllib``; YAML needs PyYAML (``pip install 'gpuplan[yaml]'``).
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from gpuplan.errors import InputError
from gpuplan.options import CommandOptions, Option

RESERVED_KEYS = ("command", "name", "description")


@dataclass(frozen=True)
class Scenario:
    """A loaded scenario file: the command it names (or None), a label and the raw option values."""

    path: str
    command: str | None
    name: str
    description: str
    options: dict[str, Any] = field(default_factory=dict)


def _read_mapping(path: Path) -> dict[str, Any]:
    suffix = path.suffix.lower()
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise InputError("--config", str(path), f"cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise InputError("--config", str(path), f"is not UTF-8 text ({exc.reason} at byte {exc.start})",
                         hint="save the scenario as UTF-8") from None
    try:
        data = _parse(path, suffix, text)
    except RecursionError:  # arrays or tables nested thousands deep: no scenario looks like that
        raise InputError("--config", str(path), "is nested too deeply (a scenario is a flat table of options)") \
            from None
    if not isinstance(data, dict):
        raise InputError("--config", str(path), "must hold a table of options (key = value) at the top level")
    return data


def _parse(path: Path, suffix: str, text: str) -> Any:
    if suffix == ".toml":
        try:
            data: Any = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise InputError("--config", str(path), f"is not valid TOML: {exc}") from None
    elif suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise InputError("--config", str(path), "is YAML, which needs PyYAML",
                             hint="pip install 'gpuplan[yaml]', or write the scenario as TOML") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise InputError("--config", str(path), f"is not valid YAML: {exc}") from None
        if data is None:
            data = {}
    else:
        raise InputError("--config", str(path), "must end in .toml, .yaml or .yml")
    return data


def load_scenario(path: str | Path) -> Scenario:
    """Read a scenario file; the options stay raw until :func:`scenario_defaults` checks them against a parser."""
    p = Path(path).expanduser()
    data = _read_mapping(p)
    options: dict[str, Any] = {}
    for key, value in data.items():
        if key in RESERVED_KEYS:
            continue
        if isinstance(value, dict):
            raise InputError(f"{p.name}: {key}", value, "nested tables are not options; write key = value pairs")
        options[str(key)] = value
    if isinstance(options.get("model"), str):
        beside = p.parent / options["model"]
        if not Path(options["model"]).is_absolute() and beside.exists():  # a config.json next to the scenario
            options["model"] = str(beside)
    command = data.get("command")
    if command is not None and not isinstance(command, str):
        raise InputError(f"{p.name}: command", command, "must be a command name such as \"train\" or \"infer\"")
    return Scenario(path=str(p), command=command, name=str(data.get("name") or p.stem),
                    description=str(data.get("description") or ""), options=options)


def _find_option(spec: CommandOptions, key: str) -> Option | None:
    bare = key.lstrip("-")
    for opt in spec.options:
        if opt.name == "config":
            continue
        if f"--{bare}" in opt.flags or opt.name == bare.replace("-", "_"):
            return opt
    return None


def _option_names(spec: CommandOptions) -> list[str]:
    names = []
    for opt in spec.options:
        if opt.name != "config":
            names.extend([f[2:] for f in opt.flags if f.startswith("--")] or [opt.name])
    return names


def _convert_one(opt: Option, field_name: str, value: Any) -> Any:
    if isinstance(value, (dict, list)):
        raise InputError(field_name, value, "must be a single value here")
    if isinstance(value, bool):
        raise InputError(field_name, value, "is not a flag: give a value, not true/false")
    if isinstance(value, float) and not math.isfinite(value):
        raise InputError(field_name, value, "must be a finite number")
    converted: Any = value
    if opt.kind not in ("text", "positional", "append") and not (opt.kind == "choice" and isinstance(opt.choices[0], str)):
        try:
            converted = opt.parse(value if isinstance(value, str) else str(value))
        except (TypeError, ValueError) as exc:
            raise InputError(field_name, value, str(exc) or "is not a valid value") from None
    if opt.choices is not None and converted not in opt.choices:
        allowed = ", ".join(str(c) for c in opt.choices)
        raise InputError(field_name, value, f"must be one of {allowed}")
    return converted


def _convert(opt: Option, field_name: str, value: Any) -> Any:
    """Turn a file value into what the command line would have stored for the same option."""
    if opt.kind == "flag":
        if not isinstance(value, bool):
            raise InputError(field_name, value, "is a flag: write true or false")
        return value
    if opt.kind == "append" or opt.nargs == "+":
        items = value if isinstance(value, list) else [value]
        return [_convert_one(opt, field_name, v) for v in items]
    if isinstance(value, list):  # options written NAME[,NAME] on the command line
        if any(isinstance(v, (dict, list, bool)) for v in value):
            raise InputError(field_name, value, "a list here holds plain values only")
        value = ",".join(str(v) for v in value)
    return _convert_one(opt, field_name, value)


def scenario_defaults(spec: CommandOptions, scenario: Scenario, command: str | None = None) -> dict[str, Any]:
    """The scenario's options as ``{name: value}`` for command ``spec``; unknown keys and bad values raise
    InputError."""
    command = command or spec.name
    if command and scenario.command and scenario.command != command:
        raise InputError(f"{Path(scenario.path).name}: command", scenario.command,
                         f"this scenario is for `gpuplan {scenario.command}`, not `gpuplan {command}`")
    out: dict[str, Any] = {}
    for key, value in scenario.options.items():
        field_name = f"{Path(scenario.path).name}: {key}"
        opt = _find_option(spec, key)
        if opt is None:
            close = difflib.get_close_matches(key.lstrip("-"), _option_names(spec), n=3)
            hint = ("did you mean " + ", ".join(close) + "?") if close else "see --help for the options"
            where = f"`gpuplan {command}`" if command else "this command"
            raise InputError(field_name, value, f"is not an option of {where}", hint=hint)
        out[opt.name] = _convert(opt, field_name, value)
    return out


def _command_of(parser: argparse.ArgumentParser) -> str | None:
    words = parser.prog.split()
    return words[-1] if len(words) > 1 else None


def _config_path(tokens: list[str]) -> str | None:
    """The value of ``--config`` (or ``--config=FILE``, or an unambiguous prefix such as ``--conf``) in
    ``tokens``, read before parsing so that options the file supplies may be required ones."""
    found = None
    for i, tok in enumerate(tokens):
        if tok == "--":
            break
        name, eq, value = tok.partition("=")
        if len(name) >= 5 and "--config".startswith(name):
            if eq:
                found = value
            elif i + 1 < len(tokens):
                found = tokens[i + 1]
    return found


def add_config_argument(parser: argparse.ArgumentParser, command: str | None = None) -> None:
    """Give ``parser`` the ``--config FILE`` option (as declared in gpuplan.options) and :func:`hook_config`."""
    if getattr(parser, "_gpuplan_config", False):
        return
    from gpuplan.options.common import CONFIG

    parser.add_argument(CONFIG.flag, metavar=CONFIG.metavar, default=None, help=CONFIG.help)
    hook_config(parser, command or _command_of(parser))


def hook_config(parser: argparse.ArgumentParser, command: str | None) -> None:
    """Make ``parser``'s ``--config FILE`` supply defaults under the explicit options.

    The parser's ``parse_known_args`` is wrapped on this instance only: the arguments are scanned for
    ``--config``; when there is one, the file's values are installed as defaults, the arguments parsed (explicit
    options win), and the parser's own defaults restored. Works for sub-parsers too, since argparse
    calls ``parse_known_args`` on them.
    """
    if getattr(parser, "_gpuplan_config", False):
        return
    from gpuplan.options import command_options

    original = parser.parse_known_args

    def parse_known_args(args=None, namespace=None):  # type: ignore[no-untyped-def]
        path = _config_path(list(sys.argv[1:] if args is None else args))
        if not path:
            return original(args, namespace)
        try:
            values = scenario_defaults(command_options(command), load_scenario(path), command)
        except (InputError, KeyError) as exc:
            parser.error(f"--config: {exc}")
        saved_actions = [(a, a.default, a.required) for a in parser._actions]
        saved_defaults = dict(parser._defaults)
        try:
            parser.set_defaults(**values)
            for action in parser._actions:  # a required option the file supplies is no longer required
                if action.dest in values:
                    action.required = False
            return original(args, namespace)
        finally:
            for action, default, required in saved_actions:
                action.default, action.required = default, required
            parser._defaults.clear()
            parser._defaults.update(saved_defaults)

    parser.parse_known_args = parse_known_args  # type: ignore[method-assign]
    parser._gpuplan_config = True  # type: ignore[attr-defined]


def _toml_value(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InputError(key, value, "cannot be written to a scenario (not finite)")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(key, v) for v in value) + "]"
    raise InputError(key, value, "cannot be written to a scenario (use a string, number, flag or list)")


def dump_scenario(options: Mapping[str, Any], *, command: str | None = None, name: str | None = None,
                  description: str | None = None) -> str:
    """A TOML scenario holding ``options`` (keys as on the command line); :func:`load_scenario` reads it back."""
    lines = []
    for key, value in (("command", command), ("name", name), ("description", description)):
        if value:
            lines.append(f"{key} = {_toml_value(key, value)}")
    for key, value in options.items():
        if value is None:
            continue
        bare = key.lstrip("-").replace("_", "-")
        lines.append(f"{bare} = {_toml_value(bare, value)}")
    return "\n".join(lines) + "\n"


def explicit_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, Any]:
    """The options of ``args`` that differ from ``parser``'s defaults, keyed by long option name (or dest)."""
    out: dict[str, Any] = {}
    for action in parser._actions:
        if action.dest in (argparse.SUPPRESS, "help", "config") or not hasattr(args, action.dest):
            continue
        value = getattr(args, action.dest)
        if value == action.default or value is None:
            continue
        longs = [o[2:] for o in action.option_strings if o.startswith("--")]
        out[longs[0] if longs else action.dest] = value
    return out
