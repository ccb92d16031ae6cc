"""A launch script's text read the way bash would run it, far enough to find one command's arguments.

Launch scripts (Megatron-LM's ``examples/*/train_*.sh``, a pasted ``vllm serve ...``) hold the command line
spread over ``\\``-continued lines, in bash arrays (``MODEL_ARGS=( --num-layers 32 ... )`` then
``${MODEL_ARGS[@]}``) and variables (``GPUS_PER_NODE=8``, ``${NNODES:-"1"}``). This module handles that subset of
bash (POSIX shell quoting, comments, assignments, arrays, ``+=``, ``${NAME:-default}``, ``export``) and no more:
nothing is executed, the environment is never read, and a block of ``if``/``for``/``while`` is not evaluated
(its arguments are reported as not read). A variable the file does not assign (``$1``, ``$DATA_PATH`` from the
environment, ``$(( ... ))``) stays unresolved; the readers refuse it, naming the variable, only where its value
would change the estimate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from gpuplan.errors import InputError

_ASSIGN = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(\+?)=(.*)$", re.DOTALL)
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*|[0-9@*#?])(\[[@*0-9]\])?(:?-([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*|[0-9@*#?])"
                  r"|\$\(\((.*?)\)\)|\$\((.*?)\)|`(.*?)`")
_OPEN = ("if", "for", "while", "until", "case")
_CLOSE = ("fi", "done", "esac")
UNRESOLVED = "\x00"  # marks a word holding an unresolved variable


@dataclass
class Word:
    """One argument after expansion; ``unresolved`` names the variables it used that the file never assigned."""

    text: str
    unresolved: tuple[str, ...] = ()


@dataclass
class Command:
    words: list[Word]
    line: int
    conditional: bool = False  # inside an if/for/while block: not evaluated


@dataclass
class Script:
    commands: list[Command] = field(default_factory=list)


def _lex(text: str, field_name: str) -> list[tuple[str | None, int, bool]]:
    """Words (quotes removed) and statement ends (None), with their line numbers and whether the word opened an
    array (a ``NAME=(`` token). Bash's rules: quotes group, ``\\`` escapes, ``\\``-newline joins lines, ``#`` at
    a word's start comments out the rest of the line."""
    out: list[tuple[str | None, int, bool]] = []
    i, n, line = 0, len(text), 1
    word: list[str] | None = None

    def end_word() -> None:
        nonlocal word
        if word is not None:
            out.append(("".join(word), line, False))
            word = None

    while i < n:
        c = text[i]
        if c == "\\" and i + 1 < n and text[i + 1] == "\n":
            i, line = i + 2, line + 1
            continue
        if c in " \t\r":
            end_word()
            i += 1
            continue
        if c in "\n;":
            end_word()
            out.append((None, line, False))
            line += c == "\n"
            i += 1
            continue
        if c == "#" and word is None:
            while i < n and text[i] != "\n":
                i += 1
            continue
        if c in "()":
            end_word()
            out.append((c, line, False))
            i += 1
            continue
        word = word if word is not None else []
        if c == "'":
            j = text.find("'", i + 1)
            if j < 0:
                raise InputError(field_name, f"line {line}", "has an unclosed single quote")
            # single-quoted text is literal: a '$' inside is escaped so that it is not expanded
            word.append(text[i + 1:j].replace("$", "\x01"))
            line += text.count("\n", i, j)
            i = j + 1
            continue
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            if j >= n:
                raise InputError(field_name, f"line {line}", "has an unclosed double quote")
            word.append(re.sub(r'\\([$`"\\\n])', r"\1", text[i + 1:j]))
            line += text.count("\n", i, j)
            i = j + 1
            continue
        if c == "\\" and i + 1 < n:
            word.append(text[i + 1])
            i += 2
            continue
        if c == "$" and text.startswith("$(", i):  # $(( arithmetic )) or $(command): one word to the match
            j, depth = i + 2, 1
            while j < n and depth:
                depth += {"(": 1, ")": -1}.get(text[j], 0)
                j += 1
            word.append(text[i:j])
            i = j
            continue
        word.append(c)
        i += 1
    end_word()
    return out


def _statements(tokens: list[tuple[str | None, int, bool]]) -> list[tuple[list[str], int]]:
    """Tokens grouped into statements; an array assignment ``NAME=( ... )`` spans lines and becomes one word list
    ``['NAME=(', items..., ')']``."""
    out: list[tuple[list[str], int]] = []
    cur: list[str] = []
    start = 0
    depth = 0  # inside NAME=( ... )
    for tok, line, _ in tokens:
        if tok is None:
            if depth == 0 and cur:
                out.append((cur, start))
                cur = []
            continue
        if not cur:
            start = line
        if tok == "(" and cur and _ASSIGN.match(cur[-1]) and cur[-1].endswith("="):
            cur[-1] += "("
            depth += 1
            continue
        if tok == ")" and depth:
            depth -= 1
            cur.append(")")
            continue
        cur.append(tok)
    if cur:
        out.append((cur, start))
    return out


class _Env:
    def __init__(self) -> None:
        self.vars: dict[str, list[Word] | Word] = {}

    def expand(self, text: str) -> Word:
        missing: list[str] = []

        def sub(m: re.Match[str]) -> str:
            if m.group(6) is not None or m.group(7) is not None or m.group(8) is not None:
                missing.append(m.group(0))
                return UNRESOLVED
            name = m.group(1) or m.group(5)
            value = self.vars.get(name)
            if value is None:
                if m.group(3) is not None:  # ${NAME:-default}
                    default = self.expand(m.group(4) or "")
                    missing.extend(default.unresolved)
                    return default.text
                missing.append("$" + name if m.group(5) else "${" + name + "}")
                return UNRESOLVED
            items = value if isinstance(value, list) else [value]
            if isinstance(value, list) and m.group(2) not in ("[@]", "[*]"):
                items = items[:1]
            inner = [u for w in items for u in w.unresolved]
            if inner:
                missing.append(f"${name} (set from {', '.join(dict.fromkeys(inner))})")
            return " ".join(w.text for w in items)

        out = _VAR.sub(sub, text).replace("\x01", "$")
        return Word(out, tuple(dict.fromkeys(missing)))

    def words(self, raw: str) -> list[Word]:
        """``raw`` expanded; ``${NAME[@]}`` of an array splices its items as separate words."""
        m = re.fullmatch(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\[[@*]\]\}", raw)
        if m and isinstance(self.vars.get(m.group(1)), list):
            return list(self.vars[m.group(1)])  # type: ignore[arg-type]
        w = self.expand(raw)
        if w.text == "" and not w.unresolved and raw.startswith("$"):
            return []  # an empty variable adds no word
        return [w]

    def assign(self, name: str, append: bool, value: list[Word] | Word) -> None:
        old = self.vars.get(name)
        if append and isinstance(value, list):
            base = old if isinstance(old, list) else ([old] if old else [])
            self.vars[name] = base + value
        elif append and isinstance(old, Word):
            self.vars[name] = Word(old.text + value.text, old.unresolved + value.unresolved)  # type: ignore[union-attr]
        else:
            self.vars[name] = value


def parse_script(text: str, field_name: str) -> Script:
    """The commands of a script, in order, with variables and arrays expanded as bash would."""
    env = _Env()
    script = Script()
    depth = 0
    for words, line in _statements(_lex(text, field_name)):
        head = words[0]
        if head in _OPEN or head in ("then", "do", "else", "elif"):
            depth += head in _OPEN
            rest = words[1:] if head in ("then", "do", "else") else []
            if rest:
                script.commands.append(Command([Word(w) for w in rest], line, conditional=True))
            continue
        if head in _CLOSE:
            depth = max(0, depth - 1)
            continue
        if head in ("export", "readonly", "local", "declare"):
            words = words[1:] or [""]
            if words[0].startswith("-"):
                words = words[1:] or [""]
        m = _ASSIGN.match(words[0])
        if m and (len(words) == 1 or m.group(3).endswith("(")):
            if depth:  # an assignment inside a block that is not evaluated: its arguments are reported
                items_raw = words[1:-1] if m.group(3).endswith("(") else []
                if items_raw:
                    script.commands.append(Command([env.expand(w) for w in items_raw], line, conditional=True))
                continue
            name, append, value = m.group(1), bool(m.group(2)), m.group(3)
            if value.endswith("(") and words[-1] == ")":
                items: list[Word] = []
                for raw in words[1:-1]:
                    items += env.words(raw)
                env.assign(name, append, items)
            else:
                env.assign(name, append, env.expand(value))
            continue
        while words and _ASSIGN.match(words[0]):  # VAR=value command ...: an environment for that command only
            words = words[1:]
        if not words:
            continue
        expanded: list[Word] = []
        for raw in words:
            expanded += env.words(raw)
        script.commands.append(Command(expanded, line, conditional=depth > 0))
    return script
