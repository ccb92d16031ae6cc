"""What reading a stack's config file did: which key set which option, which keys were ignored and why."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Mapped:
    key: str  # the file's key, dotted ('zero_optimization.stage')
    option: str  # the option's name ('zero')
    value: Any  # the option's value, as the command line would store it
    note: str = ""  # how the file's value became the option's, when not one to one


@dataclass
class ConfigReport:
    """One config file read into option values (``values``), and the account of every key in it."""

    path: str
    format: str  # 'torchtitan', 'deepspeed', 'torchtune'
    role: str  # 'model' (MODEL was the file) or 'from' (--from FILE)
    mapped: list[Mapped] = field(default_factory=list)
    ignored: list[tuple[str, str]] = field(default_factory=list)  # (key, why)
    # filled when the estimate is made: options given explicitly that won over the file's value, and the stack's
    # defaults that set what neither the file nor the command line gave
    overridden: list[str] = field(default_factory=list)
    stack_defaults: list[tuple[str, Any, str]] = field(default_factory=list)
    # DeepSpeed's train_batch_size, checked (or used) once the data-parallel degree is known
    batch_rule: dict[str, int] = field(default_factory=dict)

    def set(self, key: str, option: str, value: Any, note: str = "") -> None:
        self.mapped.append(Mapped(key, option, value, note))

    def ignore(self, key: str, why: str) -> None:
        self.ignored.append((key, why))

    @property
    def values(self) -> dict[str, Any]:
        """Option values by name; a later key setting the same option wins (none does in the readers)."""
        return {m.option: m.value for m in self.mapped}

    def keys(self) -> list[str]:
        """Every key accounted for: mapped or ignored."""
        return [m.key for m in self.mapped] + [k for k, _ in self.ignored]

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path, "format": self.format, "role": self.role,
            "mapped": [{"key": m.key, "option": m.option, "value": _jsonable(m.value),
                        **({"note": m.note} if m.note else {}),
                        **({"overridden": True} if m.option in self.overridden else {})} for m in self.mapped],
            "ignored": [{"key": k, "reason": why} for k, why in self.ignored],
            "overridden_by_options": list(self.overridden),
            "stack_defaults": [{"option": o, "value": _jsonable(v), "source": s} for o, v, s in self.stack_defaults],
        }

    def text_lines(self, command: str = "train", lang: str | None = "en") -> list[str]:
        """The account printed under the answer of ``command``, in ``lang`` (the keys, options and sources as
        written; the notes and reasons through :func:`gpuplan.i18n.localize`)."""
        from gpuplan.i18n import colon, localize, normalize_lang, t
        from gpuplan.options import command_options

        spec = command_options(command)
        zh = normalize_lang(lang) == "zh"

        def flag(name: str) -> str:
            opt = spec.option(name)
            return opt.label if opt is not None and opt.flag else name

        def paren(text: str) -> str:
            return f"（{text}）" if zh else f"({text})"

        lines = [t("config.file", lang, path=self.path, format=self.format)]
        for m in self.mapped:
            shown = ",".join(map(str, m.value)) if isinstance(m.value, (list, tuple)) else m.value
            if isinstance(shown, bool):
                shown = "on" if shown else "off"
            extra = ("" if zh else "  ") + paren(localize(m.note, lang)) if m.note else ""
            won = "  " + t("config.overridden", lang) if m.option in self.overridden else ""
            lines.append(f"  {m.key} -> {flag(m.option)} {shown}{extra}{won}")
        if self.ignored:
            lines.append("  " + t("config.ignored", lang))
            lines.extend(f"    {k}{colon(lang)}{localize(why, lang)}" for k, why in self.ignored)
        if self.stack_defaults:
            lines.append("  " + t("config.stack_defaults", lang))
            source = t("term.source", lang) if zh else ""  # English keeps the bare source in parentheses
            space = "" if zh else " "
            lines.extend(f"    {flag(o)} {_shown(v)}{space}{paren(source + s)}" for o, v, s in self.stack_defaults)
        return lines


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    return value
