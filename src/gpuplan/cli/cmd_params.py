"""``gpuplan params MODEL``: the exact parameter count by component, printed."""

from __future__ import annotations

import argparse

from gpuplan.cli.common import print_json
from gpuplan.cli.parsers import command_parser
from gpuplan.cli.render import render_table
from gpuplan.commands.params import payload, tensors_json
from gpuplan.errors import UnknownFamily
from gpuplan.i18n import colon, headers, lang_of, localize, t
from gpuplan.model.params import count_params
from gpuplan.model.resolve import model_from_options
from gpuplan.model.tensors import COMPONENTS
from gpuplan.units import format_count


def _run_traced(args: argparse.Namespace, exc: UnknownFamily, lang: str) -> int:
    """A family gpuplan has no rules for: the tensors transformers builds on the meta device."""
    from gpuplan.commands.generic import left_out_lines, params_json, tensors_json, traced_model

    model = traced_model(exc)
    if args.tensors:
        if args.json:
            print_json(tensors_json(model))
            return 0
        print(render_table(headers("params.traced_tensor_header", ("tensor", "shape", "component", "kind", "params"),
                                   lang),
                           [(x.name, "x".join(map(str, x.shape)), t(f"component.{x.component}", lang), x.layer_kind,
                             f"{x.numel:,}") for x in model.tensors], "llllr"))
        return 0
    out = params_json(model)
    out["warnings"] += left_out_lines(exc.config, model)
    if args.json:
        print_json(out)
        return 0
    print(t("params.traced_summary", lang, name=model.name, family=model.family, arch=model.architecture,
            layers=model.num_layers, hidden=model.hidden_size, vocab=model.vocab_size))
    rows = [(t(f"component.{c}", lang), f"{n:,}", format_count(n)) for c, n in model.component_params().items() if n]
    rows.append((t("params.total", lang), f"{model.params_total:,}", format_count(model.params_total)))
    print(render_table(headers("params.header", ("component", "parameters"), lang) + [""], rows))
    kinds = [(k, f"{n:,}", f"{p:,}") for k, (n, p) in model.kind_params().items()]
    print(render_table(headers("params.kind_header", ("kind", "layers", "params_per_layer"), lang), kinds, "lrr"))
    for note in out["warnings"]:
        print(f"{t('word.warning', lang)}{colon(lang)}{localize(note, lang)}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    return command_parser(sub, "params")


def run(args: argparse.Namespace) -> int:
    lang = lang_of(args)
    try:
        spec = model_from_options(args, encoders=True, count_only=True)
    except UnknownFamily as exc:
        return _run_traced(args, exc, lang)
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
