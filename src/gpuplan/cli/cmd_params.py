"""``gpuplan params MODEL``: the exact parameter count by component, printed."""

from __future__ import annotations

import argparse

from gpuplan.cli.common import print_json
from gpuplan.cli.parsers import command_parser
from gpuplan.cli.render import render_table
from gpuplan.commands.params import payload, tensors_json
from gpuplan.i18n import colon, headers, lang_of, t
from gpuplan.model.params import count_params
from gpuplan.model.resolve import model_from_options
from gpuplan.model.tensors import COMPONENTS
from gpuplan.units import format_count


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    return command_parser(sub, "params")


def run(args: argparse.Namespace) -> int:
    spec = model_from_options(args, encoders=True, count_only=True)
    lang = lang_of(args)
    if args.tensors:
        if args.json:
            print_json(tensors_json(spec))
            return 0
        from gpuplan.model.tensors import tensor_table
        from gpuplan.model.vision import vision_table

        print(render_table(headers("params.header", ("tensor", "shape", "component", "params"), lang),
                           [(x.name, "x".join(map(str, x.shape)), t(f"component.{x.component}", lang),
                             f"{x.numel:,}") for x in (*tensor_table(spec), *vision_table(spec))],
                           "llll"))
        return 0
    if args.json:
        print_json(payload(args))
        return 0
    counts = count_params(spec)
    rows = [(t(f"component.{c}", lang), f"{getattr(counts, c):,}", format_count(getattr(counts, c)))
            for c in COMPONENTS if getattr(counts, c)]
    rows.append((t("params.total", lang), f"{counts.total:,}", format_count(counts.total)))
    if counts.active != counts.total:
        rows.append((t("params.active", lang), f"{counts.active:,}", format_count(counts.active)))
    if counts.mtp:
        rows.append((t("params.mtp", lang), f"{counts.mtp:,}", format_count(counts.mtp)))
    if counts.vision:
        whole = counts.total + counts.vision
        rows.append((t("params.vision", lang), f"{counts.vision:,}", format_count(counts.vision)))
        rows.append((t("params.whole", lang), f"{whole:,}", format_count(whole)))
    print(t("params.summary", lang, name=spec.name, family=spec.family, layers=spec.num_layers,
            hidden=spec.hidden_size, heads=spec.num_heads, kv_heads=spec.num_kv_heads, vocab=spec.vocab_size))
    print(render_table(headers("params.header", ("component", "parameters"), lang) + [""], rows))
    for note in spec.notes:  # what the count leaves out (a multimodal model's vision tower)
        print(f"{t('word.warning', lang)}{colon(lang)}{note}")
    return 0
