"""Every option with an English help also has a Chinese one (the page's help in Chinese), naming the same flags."""

from __future__ import annotations

import re

import pytest

from gpuplan.commands.registry import load_commands
from gpuplan.options import COMMANDS, command_options

CJK = re.compile(r"[\u4e00-\u9fff]")
FLAG = re.compile(r"--[a-z][a-z0-9-]*")


def _cases(options):
    return [pytest.param(o, id=f"{command}:{o.name}") for command, opts in options for o in opts if o.help]


API = [(name, cmd.spec.api_options) for name, cmd in load_commands().items()]
ALL = [(name, command_options(name).options) for name in COMMANDS]


def _check(opt) -> None:
    assert opt.help_zh.strip(), f"{opt.label} has no help_zh"
    assert CJK.search(opt.help_zh), f"{opt.label}: help_zh has no Chinese: {opt.help_zh!r}"
    missing = set(FLAG.findall(opt.help)) - set(FLAG.findall(opt.help_zh))
    assert not missing, f"{opt.label}: help_zh lacks the flags {sorted(missing)} of its help"


@pytest.mark.parametrize("opt", _cases(API))
def test_api_option_has_chinese_help(opt) -> None:
    _check(opt)


@pytest.mark.parametrize("opt", _cases(ALL))
def test_every_declared_option_has_chinese_help(opt) -> None:
    _check(opt)


def test_api_lists_help_zh() -> None:
    for command in load_commands().values():
        for entry in command.spec.describe()["options"]:
            if entry.get("help"):
                assert CJK.search(entry.get("help_zh", "")), (command.name, entry.get("name"))
