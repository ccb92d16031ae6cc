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

Lines that also go into JSON (assumptions, warnings, notes) stay English in the JSON and are printed in the output
language by ``localize(line, lang)``, through one catalog with two kinds of entry:

- a line with a fixed shape is made at its source with ``message(key, **fields)``: its value is the English text (what
  the JSON carries and code compares), and it remembers its key and fields, so ``localize`` formats ``strings.toml``'s
  ``zh`` entry of that key;
- free English text written by the engines (lines that embed computed values) is matched against the pattern table
  ``gpuplan/data/strings_patterns.toml``: each ``[[pattern]]`` has an ``en`` regular expression that must match the
  whole line, with named groups, and a ``zh`` template naming those groups. A group's value is localized in turn (it
  may be a whole line of its own, a glossary term or an option value), except a group whose name starts with ``src``:
  a source citation (file, paper, datasheet) printed as written, after "来源："; a group named after a kind of
  option value (``recompute``) prints through ``value.<kind>.<value>``.

The glossary (``glossary.*`` in strings.toml) gives one Chinese term per concept; a field or group whose whole value
is a glossary term prints as that term. A line that neither is a Message nor matches a pattern prints as it is.
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
    """The text of ``key`` in ``lang`` (English when the key has no entry), formatted with ``fields``; in Chinese a
    field whose value is a glossary term (``optimizer states``) prints as its Chinese term."""
    entry = strings().get(key)
    lang = normalize_lang(lang)
    text = key if entry is None else entry[lang]
    if lang == "zh" and fields:
        terms = glossary()
        fields = {k: terms.get(v, v) if isinstance(v, str) and not isinstance(v, Message) else v
                  for k, v in fields.items()}
    return text.format(**fields) if fields else text


@cache
def glossary() -> dict[str, str]:
    """``{English term: Chinese term}`` from the ``glossary.*`` entries of strings.toml: one term per concept."""
    return {e["en"]: e["zh"] for k, e in strings().items() if k.startswith("glossary.")}


GROUP = re.compile(r"\{(\w+)\}")


@cache
def patterns() -> tuple[tuple[re.Pattern[str], str], ...]:
    """The pattern table (``strings_patterns.toml``): ``(compiled English regex, Chinese template)`` in file order;
    checked on load: each template names exactly the regex's groups."""
    text = resources.files("gpuplan.data").joinpath("strings_patterns.toml").read_text(encoding="utf-8")
    out = []
    for n, entry in enumerate(tomllib.loads(text)["pattern"]):
        if set(entry) != {"en", "zh"}:
            raise ValueError(f"strings_patterns.toml: pattern {n + 1} has keys {sorted(entry)}, wants en and zh")
        regex = re.compile(entry["en"])
        named = set(regex.groupindex)
        if set(GROUP.findall(entry["zh"])) != named:
            raise ValueError(f"strings_patterns.toml: pattern {n + 1} ({entry['en']!r}): the zh template names "
                             f"{sorted(set(GROUP.findall(entry['zh'])))}, the regex {sorted(named)}")
        out.append((regex, entry["zh"]))
    return tuple(out)


def translate_line(text: str, lang: str | None) -> str:
    """Free English text in ``lang``: a glossary term, else the first pattern that matches the whole line (its
    groups translated in turn, ``src*`` groups kept), else the text as it is."""
    if normalize_lang(lang) != "zh" or not text:
        return text
    term = glossary().get(text)
    if term is not None:
        return term
    phase = phase_label(text, "zh")
    if phase != text:
        return phase
    for regex, template in patterns():
        m = regex.fullmatch(text)
        if m:
            return template.format(**{k: _group(k, v or "") for k, v in m.groupdict().items()})
    if "; " in text:  # a line of several clauses: each one on its own
        parts = text.split("; ")
        done = [translate_line(p, "zh") for p in parts]
        if done != parts:
            return "；".join(done)
    return text


def error_text(exc: Any, lang: str | None) -> str:
    """An :class:`~gpuplan.errors.InputError` as the CLI prints it, in ``lang``: ``field=value: rule (hint)``, the
    rule and hint through the pattern table (the field and value stay as typed)."""
    if normalize_lang(lang) != "zh" or not hasattr(exc, "rule"):
        return str(exc)
    from gpuplan.errors import _short_repr

    text = f"{exc.field}={_short_repr(exc.value)}：{translate_line(exc.rule, 'zh')}"
    if exc.hint:
        text += f"（{translate_line(exc.hint, 'zh')}）"
    return text


def arg_lang(argv: Iterable[str]) -> str:
    """The output language of a command line before it is parsed (``--lang zh`` or ``--lang=zh``, else the locale):
    what ``--help`` and argument errors are written in."""
    args = list(argv)
    for i, a in enumerate(args):
        if a == "--lang" and i + 1 < len(args):
            return normalize_lang(args[i + 1])
        if a.startswith("--lang="):
            return normalize_lang(a.split("=", 1)[1])
    return default_lang()


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


def _group(name: str, value: str) -> str:
    """A pattern group's value in Chinese: ``src*`` as written, ``<kind>`` through ``value.<kind>.<value>``, any
    other through :func:`translate_line`."""
    if name.startswith("src"):
        return value
    if has(f"value.{name}.{value}"):
        return t(f"value.{name}.{value}", "zh")
    return translate_line(value, "zh")


def localize(text: str, lang: str | None) -> str:
    """``text`` in ``lang``: a :class:`Message` through its key, any other string through the glossary and the
    pattern table (:func:`translate_line`); English output is the text unchanged."""
    if not isinstance(text, Message):
        return translate_line(text, lang)
    return t(text.key, lang, **{k: localize(v, lang) if isinstance(v, str) else v for k, v in text.fields.items()})
