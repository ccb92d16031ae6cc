"""``gpuplan verify MODEL``: measured memory against the estimate, printed.

PyTorch and transformers (extra ``[verify]``) are imported only when the command runs, never for ``--help``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from gpuplan.cli.common import print_json
from gpuplan.cli.parsers import command_parser
from gpuplan.cli.render import render_table
from gpuplan.commands.verify import evaluate, to_json
from gpuplan.i18n import has, headers, lang_of, localize, memory_label, t
from gpuplan.units import format_bytes
from gpuplan.verify.setup import PrefillSetup


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    return command_parser(sub, "verify")


def run(args: argparse.Namespace) -> int:
    r = evaluate(args)
    if args.json:
        print_json(to_json(r))
        return 0
    lang = lang_of(args)
    print(render(r.spec, r.setup, r.measured, r.estimate, r.detail, lang))
    for note in r.detail["notes"]:
        if _to_stderr(note):
            print(t("verify.note", lang, note=localize(note, lang)), file=sys.stderr)
    return 0


def _to_stderr(note: str) -> bool:
    return getattr(note, "key", None) == "verify.no_estimate"


def render(spec, setup, measured, estimate: dict[str, int] | None, detail: dict[str, Any], lang: str) -> str:
    """The human-readable comparison in ``lang`` (the "no estimate" note is left to stderr)."""
    from gpuplan.verify.compare import compare_memory

    def label(key: str) -> str:  # English keeps the JSON key, other languages the component's name
        return key if lang == "en" else memory_label(key, lang)

    what = (t("verify.prefill", lang, batch=setup.batch, context=setup.context) if isinstance(setup, PrefillSetup)
            else t("verify.train_step", lang, batch=setup.batch, seq=setup.seq))
    lines = [t("verify.summary", lang, name=spec.name, what=what, backend=measured.backend,
               seconds=f"{measured.wall_s:.1f}")]
    if estimate is None:
        rows = [(label(k), "", format_bytes(v, digits=3), "") for k, v in measured.memory_dict().items() if v]
    else:
        rows = [(label(r.key), format_bytes(r.estimate_bytes, digits=3), format_bytes(r.measured_bytes, digits=3),
                 "" if r.error_pct is None else f"{r.error_pct:+.2f} %")
                for r in compare_memory(estimate, measured.memory_dict())]
    lines.append(render_table(headers("verify.header", ("component", "estimate", "measured", "error"), lang), rows))
    if measured.peak_phase:
        phase = measured.peak_phase
        lines.append(t("verify.peak_phase", lang, phase=t(f"verify.phase.{phase}", lang) if has(f"verify.phase.{phase}")
                       else phase))
    for key in ("reserved_peak_bytes", "device_used_bytes"):
        if key in measured.extra:
            lines.append(f"{t('verify.' + key, lang)}: {format_bytes(measured.extra[key], digits=3)}")
    if "step_time_s" in measured.extra:
        lines.append(t("verify.step_time", lang, seconds=f"{measured.extra['step_time_s']:.3f}"))
    lines.extend(t("verify.note", lang, note=localize(note, lang)) for note in detail["notes"] if not _to_stderr(note))
    return "\n".join(lines)
