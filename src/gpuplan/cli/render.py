"""Text that several commands print: tables, explained terms, assumptions and warnings."""

from __future__ import annotations

import unicodedata
from typing import Any, Iterable, Sequence

from gpuplan.report import Term
from gpuplan.units import format_bytes


def term_number(value: float) -> str:
    """A term's value: whole numbers with separators, others to three decimals without trailing zeros."""
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.3f}".rstrip("0").rstrip(".")


def term_lines(terms: Iterable[Term], lang: str | None = "en") -> list[str]:
    """Each term as ``key = value`` with its formula, source and inputs on the lines below (``--explain``); the
    labels and the formula's words in ``lang``, the source as written."""
    from gpuplan.i18n import localize, normalize_lang, t

    lines = []
    pad = "" if normalize_lang(lang) == "zh" else " "  # the full-width colon already takes two columns
    for term in terms:
        value = format_bytes(term.value) if term.key.endswith("_bytes") else term_number(term.value)
        lines.append(f"{term.key} = {value}")
        lines.append(f"    {t('term.formula', lang)} {localize(term.formula, lang)}")
        if term.source:
            lines.append(f"    {t('term.source', lang)}{pad} {term.source}")
        if term.inputs:
            lines.append(f"    {t('term.inputs', lang)}{pad} {short_inputs(term.inputs)}")
    return lines


def short_inputs(inputs: dict[str, Any]) -> str:
    """``a=1,024; b: {c=2}``: integers with thousands separators, one level of nesting."""
    parts = []
    for k, v in inputs.items():
        if isinstance(v, dict):
            inner = ", ".join(f"{kk}={vv:,}" if _is_int(vv) else f"{kk}={vv}" for kk, vv in v.items())
            parts.append(f"{k}: {{{inner}}}")
        else:
            parts.append(f"{k}={v:,}" if _is_int(v) else f"{k}={v}")
    return "; ".join(parts)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def note_lines(assumptions: Sequence[str], warnings: Sequence[str], lang: str) -> list[str]:
    """The assumptions (``-``) and warnings (``!``) sections; empty sections are left out."""
    from gpuplan.i18n import heading, localize

    lines = []
    if assumptions:
        lines.append(heading("section.assumptions", lang))
        lines.extend(f"  - {localize(a, lang)}" for a in assumptions)
    if warnings:
        lines.append(heading("section.warnings", lang))
        lines.extend(f"  ! {localize(w, lang)}" for w in warnings)
    return lines


def display_width(text: str) -> int:
    """Terminal columns of ``text``: East Asian wide and fullwidth characters (Chinese) take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def render_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None) -> str:
    """Plain-text table; ``align`` is one char per column ('l' or 'r'), default: first left, rest right.
    Widths are terminal columns, so Chinese labels line up."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(display_width(r[i]) for r in cells) for i in range(len(headers))]
    align = align or "l" + "r" * (len(headers) - 1)

    def pad(c: str, w: int, a: str) -> str:
        fill = " " * (w - display_width(c))
        return c + fill if a == "l" else fill + c

    lines = []
    for n, r in enumerate(cells):
        lines.append("  ".join(pad(c, w, a) for c, w, a in zip(r, widths, align)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def vision_rows(vision: dict | None, lang: str) -> list[tuple[str, str]]:
    """The vision tower's rows of a memory table (none without --images)."""
    from gpuplan.i18n import t
    from gpuplan.units import format_bytes

    if not vision:
        return []
    keys = ("weights_bytes", "states_bytes", "activations_bytes")
    return [(t(f"vision.{k}", lang), format_bytes(vision[k])) for k in keys if vision.get(k)]


def vision_lines(vision: dict | None, lang: str) -> list[str]:
    """The images' line under a memory table: tokens per image and the tower's FLOPs."""
    from gpuplan.i18n import t

    if not vision:
        return []
    h, w = vision["image_size"]
    rh, rw = vision["resized"]
    return [t("vision.line", lang, images=vision["images_per_sequence"], size=f"{h}x{w}", resized=f"{rh}x{rw}",
              patches=f"{vision['patches_per_image']:,}", tokens=f"{vision['tokens_per_image']:,}",
              total=f"{vision['image_tokens_per_sequence']:,}",
              gflop=f"{vision['forward_flop_per_image'] / 1e9:,.1f}")]
