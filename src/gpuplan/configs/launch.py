"""One launch command found in a script, split into its launcher, its program and its ``--flag value`` arguments."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from gpuplan.configs.report import ConfigReport
from gpuplan.configs.shell import UNRESOLVED, Command, Script, Word
from gpuplan.errors import InputError


@dataclass
class Arg:
    flag: str  # '--num-layers' (as written; '--flag=value' split)
    values: list[Word]
    line: int

    @property
    def text(self) -> str:
        return " ".join(w.text for w in self.values)

    @property
    def unresolved(self) -> tuple[str, ...]:
        return tuple(u for w in self.values for u in w.unresolved)


@dataclass
class Launch:
    launcher: list[Arg] = field(default_factory=list)  # torchrun's own arguments
    launcher_name: str = ""
    program: list[Word] = field(default_factory=list)  # 'pretrain_gpt.py' or 'vllm serve MODEL'
    args: list[Arg] = field(default_factory=list)
    line: int = 0


def split_args(words: list[Word], line: int, short: dict[str, str] | None = None) -> tuple[list[Word], list[Arg]]:
    """(positional words before the first flag, flags with the words that follow each). ``short`` maps a
    one-dash alias ('-tp') to its long flag."""
    lead: list[Word] = []
    args: list[Arg] = []
    for w in words:
        text = w.text
        is_flag = text.startswith("--") or (short is not None and text in short)
        if is_flag:
            flag, eq, value = text.partition("=")
            flag = (short or {}).get(flag, flag)
            args.append(Arg(flag, [Word(value, w.unresolved)] if eq else [], line))
        elif args:
            args[-1].values.append(w)
        else:
            lead.append(w)
    return lead, args


def other_commands(script: Script, launch_line: int, report: ConfigReport, what: str) -> None:
    """Account for the script's other commands: the ones in blocks not evaluated, and the others."""
    for cmd in script.commands:
        if cmd.line == launch_line and not cmd.conditional:
            continue
        if cmd.conditional:
            _, args = split_args(cmd.words, cmd.line)
            for a in args or [Arg(" ".join(w.text for w in cmd.words), [], cmd.line)]:
                report.ignore(a.flag, f"line {cmd.line}: inside a shell if/for/while block, which gpuplan does not "
                                      "evaluate")
        else:
            head = " ".join(w.text.replace(UNRESOLVED, "?") for w in cmd.words[:2])
            report.ignore(f"(line {cmd.line}) {head}", f"not the {what} command")


def is_launch(cmd: Command, pattern: re.Pattern[str]) -> bool:
    return not cmd.conditional and any(pattern.search(w.text) for w in cmd.words)


def require_resolved(name: str, arg: Arg) -> None:
    """A value that would set an option must be known: an unresolved variable is an InputError naming it."""
    if arg.unresolved:
        raise InputError(f"{name}: {arg.flag}", arg.text.replace(UNRESOLVED, "?"),
                         f"uses the shell variable {', '.join(arg.unresolved)}, which the file does not set",
                         hint="write the value into the file, or give the option on the command line")


def one_value(name: str, arg: Arg) -> str:
    require_resolved(name, arg)
    if len(arg.values) != 1:
        raise InputError(f"{name}: {arg.flag}", arg.text or None, "takes exactly one value")
    return arg.values[0].text


def int_value(name: str, arg: Arg, least: int = 1) -> int:
    text = one_value(name, arg)
    try:
        n = int(text)
    except ValueError:
        raise InputError(f"{name}: {arg.flag}", text, f"must be a whole number >= {least}") from None
    if n < least:
        raise InputError(f"{name}: {arg.flag}", n, f"must be a whole number >= {least}")
    return n


def real_value(name: str, arg: Arg) -> float:
    text = one_value(name, arg)
    try:
        return float(text)
    except ValueError:
        raise InputError(f"{name}: {arg.flag}", text, "must be a number") from None


def no_value(name: str, arg: Arg) -> None:
    if arg.values:
        raise InputError(f"{name}: {arg.flag}", arg.text, "is a switch: it takes no value")
