"""The command line's argparse parsers, generated from the declared options (:mod:`gpuplan.options`)."""

from __future__ import annotations

import argparse
from typing import Any, Callable

from gpuplan.errors import InputError
from gpuplan.options import ABSENT, CommandOptions, Option, command_options

# Kinds argparse converts itself (its own words for a bad value); the others go through Option.parse.
_NATIVE = {"int": int, "float": float}
# The language of --help (each option's help or help_zh, the group titles): set by gpuplan.cli.main from --lang or
# the locale before the parsers are built.
HELP_LANG = "en"


# argparse's own words (its gettext messages) in Chinese, used when --help or an argument error is in Chinese
_ARGPARSE_ZH = {
    "usage: ": "用法：", "options": "选项", "positional arguments": "位置参数",
    "show this help message and exit": "显示此帮助并退出", "show program's version number and exit": "显示版本号并退出",
    "the following arguments are required: %s": "缺少必填参数：%s", "unrecognized arguments: %s": "无法识别的参数：%s",
    "invalid choice: %(value)r (choose from %(choices)s)": "无效的取值：%(value)r（可选：%(choices)s）",
    "argument %(argument_name)s: %(message)s": "参数 %(argument_name)s：%(message)s",
    "%(prog)s: error: %(message)s\n": "%(prog)s：错误：%(message)s\n", "expected one argument": "需要一个参数值",
    "invalid %(type)s value: %(value)r": "无效的 %(type)s 值：%(value)r",
}


_ARGPARSE_GETTEXT = argparse._  # argparse looks its messages up through this module-level gettext alias


class _LocalizedTypeError(argparse.ArgumentTypeError):
    """Our converters' messages (``field=value: rule``) with the rule in Chinese."""

    def __init__(self, message: str) -> None:
        from gpuplan.i18n import translate_line

        field, sep, rule = str(message).partition(": ")
        super().__init__(f"{field}：{translate_line(rule, 'zh')}" if sep else message)


_TypeError: type[argparse.ArgumentTypeError] = argparse.ArgumentTypeError


def use_help_lang(lang: str) -> None:
    """Set the language of --help and of argparse's messages for this call of the CLI (English restores
    argparse's own words, so one process can run both)."""
    global HELP_LANG, _TypeError
    HELP_LANG = lang
    if lang == "zh":
        argparse._ = lambda text: _ARGPARSE_ZH.get(text, _ARGPARSE_GETTEXT(text))
        _TypeError = _LocalizedTypeError
    else:
        argparse._ = _ARGPARSE_GETTEXT
        _TypeError = argparse.ArgumentTypeError


def _help(opt: Option) -> str | None:
    return (opt.help_zh or opt.help) if HELP_LANG == "zh" else opt.help


def _group_title(title: str) -> str:
    from gpuplan.i18n import has, t

    key = "group." + title
    return t(key, HELP_LANG) if HELP_LANG == "zh" and has(key) else title


def _converter(opt: Option) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return opt.parse(text)
        except InputError as exc:
            raise _TypeError(str(exc)) from None

    parse.__name__ = opt.label
    return parse


def _arguments(opt: Option) -> tuple[tuple[str, ...], dict[str, Any]]:
    """``add_argument``'s arguments for ``opt``."""
    kw: dict[str, Any] = {"help": _help(opt) or None}
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
            target = groups.get(opt.group) or groups.setdefault(opt.group, p.add_argument_group(_group_title(opt.group)))
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
