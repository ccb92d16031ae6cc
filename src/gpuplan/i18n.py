"""Human-readable output in English or Chinese (``--lang en|zh``); JSON keys never change.

Strings live in ``gpuplan/data/strings.toml``, one table per key with an ``en`` and a ``zh`` entry. ``t(key, lang)``
looks a key up; a key with no entry is returned as it is, so an English table header with no translation still
prints. The default language comes from the locale (``LC_ALL``, then ``LC_MESSAGES``, then ``LANG``, the POSIX
order of precedence; ``GPUPLAN_LANG`` overrides them): any locale starting with ``zh`` gives Chinese.

How a command uses it::

    from gpuplan.i18n import add_lang_argument, lang_of, t, tr_headers
    add_lang_argument(parser)                       # in add_parser
    lang = lang_of(args)                            # in run
    print(render_table(tr_headers(["component", "GiB"], lang), rows))
    print(t("fits", lang), t("memory.weights_bytes", lang))

Lines that also go into JSON (assumptions, warnings) can be made with ``message(key, **fields)``: the value is the
English text, so the JSON and any code comparing strings see English, and ``localize(line, lang)`` prints it in the
output language. Any other string (free text written in the engines) prints as it is.
"""

from __future__ import annotations

import argparse
import os
import re
import tomllib
from functools import cache
from importlib import resources
from typing import Any, Iterable, Mapping

LANGS = ("en", "zh")


@cache
def strings() -> dict[str, dict[str, str]]:
    """The packaged string table: ``{key: {"en": ..., "zh": ...}}``; checked once on load."""
    text = resources.files("gpuplan.data").joinpath("strings.toml").read_text(encoding="utf-8")
    raw = tomllib.loads(text)
    table: dict[str, dict[str, str]] = {}

    def walk(prefix: str, node: Mapping[str, Any]) -> None:
        if "en" in node and isinstance(node["en"], str):
            missing = [lang for lang in LANGS if not isinstance(node.get(lang), str)]
            if missing:
                raise ValueError(f"strings.toml: key {prefix!r} lacks {missing}")
            table[prefix] = {lang: node[lang] for lang in LANGS}
            return
        for name, child in node.items():
            if not isinstance(child, Mapping):
                raise ValueError(f"strings.toml: {prefix + '.' if prefix else ''}{name} is not a table")
            walk(f"{prefix}.{name}" if prefix else name, child)

    walk("", raw)
    return table


def default_lang(environ: Mapping[str, str] | None = None) -> str:
    """``zh`` when the locale (GPUPLAN_LANG, LC_ALL, LC_MESSAGES, LANG: the first one set) starts with ``zh``."""
    env = os.environ if environ is None else environ
    for var in ("GPUPLAN_LANG", "LC_ALL", "LC_MESSAGES", "LANG"):
        value = env.get(var, "")
        if value:
            return "zh" if value.lower().startswith("zh") else "en"
    return "en"


def normalize_lang(lang: str | None) -> str:
    """``None`` → the locale default; ``zh-CN``, ``zh_TW.UTF-8`` → ``zh``; anything else English."""
    if not lang:
        return default_lang()
    return "zh" if lang.lower().startswith("zh") else "en"


def t(key: str, lang: str | None = None, **fields: Any) -> str:
    """The text of ``key`` in ``lang`` (English when the key has no entry), formatted with ``fields``."""
    entry = strings().get(key)
    text = key if entry is None else entry[normalize_lang(lang)]
    return text.format(**fields) if fields else text


def colon(lang: str | None) -> str:
    """The colon after a label: ": " in English, the full-width "：" (no space) in Chinese."""
    return "：" if normalize_lang(lang) == "zh" else ": "


def heading(key: str, lang: str | None) -> str:
    """A section heading ending in a colon (``assumptions:`` / ``假设：``)."""
    return t(key, lang) + colon(lang).rstrip()


def has(key: str) -> bool:
    return key in strings()


def tr_headers(headers: Iterable[str], lang: str | None) -> list[str]:
    """Translate table headers: each header is looked up as ``header.<text>`` then as ``<text>``."""
    out = []
    for h in headers:
        for key in (f"header.{h}", h):
            if has(key):
                out.append(t(key, lang))
                break
        else:
            out.append(h)
    return out


def memory_label(key: str, lang: str | None) -> str:
    """Readable name of a memory key (``weights_bytes`` → "weights" / "权重")."""
    return t(f"memory.{key}", lang) if has(f"memory.{key}") else key.removesuffix("_bytes").replace("_", " ")


_PHASE_PATTERNS = (
    (re.compile(r"^stage (\d+): (.+)$"), "phase.stage"),
    (re.compile(r"^layer (\d+) backward$"), "phase.layer_backward"),
    (re.compile(r"^(prefill|decode) \(layer (\d+) (.+)\)$"), "phase.in_layer"),
)


def phase_label(phase: str, lang: str | None) -> str:
    """A peak phase in the output language: the fixed names through ``phase.<name>`` in strings.toml, and the
    numbered ones (``stage 0: loss backward``, ``layer 31 backward``) by pattern; anything else as it is."""
    key = "phase." + phase.replace(" ", "_").replace("(", "").replace(")", "")
    if has(key):
        return t(key, lang)
    for pattern, name in _PHASE_PATTERNS:
        m = pattern.match(phase)
        if m:
            if name == "phase.stage":
                return t(name, lang, stage=m.group(1), phase=phase_label(m.group(2), lang))
            if name == "phase.in_layer":
                return t(name, lang, phase=phase_label(m.group(1), lang), layer=m.group(2), part=m.group(3))
            return t(name, lang, layer=m.group(1))
    return phase


def value_label(kind: str, value: str, lang: str | None) -> str:
    """An option value printed inside a sentence (``recompute`` ``full`` → "完整"), as it is when not catalogued."""
    key = f"value.{kind}.{value}"
    return t(key, lang) if has(key) else value


def add_lang_argument(parser: argparse.ArgumentParser) -> None:
    """``--lang en|zh`` for the human-readable output; the default comes from the locale."""
    parser.add_argument("--lang", choices=LANGS, default=None,
                        help="language of the human-readable output (default from the locale: LANG/LC_ALL); "
                             "JSON keys stay English")


def lang_of(args: argparse.Namespace) -> str:
    """The language a command should print in: ``--lang`` when given (or absent from the parser), else the locale."""
    return normalize_lang(getattr(args, "lang", None))


def headers(prefix: str, names: Iterable[str], lang: str | None) -> list[str]:
    """Table headers from keys ``<prefix>.<name>`` (``headers("gpus.header", ["id", "name"], "zh")``)."""
    return [t(f"{prefix}.{name}", lang) for name in names]


class Message(str):
    """A line whose value is its English text (what JSON carries and code compares), which also remembers its key
    and fields so that human-readable output can print it in another language with :func:`localize`."""

    key: str
    fields: dict[str, Any]

    def __new__(cls, key: str, **fields: Any) -> "Message":
        obj = super().__new__(cls, t(key, "en", **fields))
        obj.key, obj.fields = key, fields
        return obj


def message(key: str, **fields: Any) -> Message:
    """``Message(key, **fields)``: English as a string, translatable later."""
    return Message(key, **fields)


def localize(text: str, lang: str | None) -> str:
    """``text`` in ``lang`` when it is a :class:`Message`; any other string (free text) is returned unchanged."""
    if not isinstance(text, Message):
        return text
    return t(text.key, lang, **{k: localize(v, lang) if isinstance(v, str) else v for k, v in text.fields.items()})
