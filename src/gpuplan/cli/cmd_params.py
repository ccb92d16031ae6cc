"""``gpuplan params MODEL``: the exact parameter count by component."""

from __future__ import annotations

import argparse

from gpuplan.cli.common import add_model_arguments, add_output_arguments, model_from_args, print_json, render_table
from gpuplan.model.params import count_params
from gpuplan.model.tensors import COMPONENTS
from gpuplan.units import format_count


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("params", help="the parameter count, exact, by component",
                       description="Exact parameter count by component, from the model's tensor table.")
    add_model_arguments(p)
    add_output_arguments(p)
    p.add_argument("--tensors", action="store_true", help="list every tensor with its checkpoint name and shape")
    return p


def run(args: argparse.Namespace) -> int:
    spec = model_from_args(args)
    counts = count_params(spec)
    if args.tensors:
        from gpuplan.model.tensors import tensor_table

        table = tensor_table(spec)
        if args.json:
            print_json([{"name": t.name, "shape": list(t.shape), "component": t.component, "tp": t.tp}
                        for t in table])
        else:
            print(render_table(["tensor", "shape", "component", "params"],
                               [(t.name, "x".join(map(str, t.shape)), t.component, f"{t.numel:,}") for t in table],
                               "llll"))
        return 0
    if args.json:
        payload = counts.as_dict()
        if not payload["mtp"]:
            payload.pop("mtp")
        print_json(payload)
        return 0
    rows = [(c, f"{getattr(counts, c):,}", format_count(getattr(counts, c))) for c in COMPONENTS
            if getattr(counts, c)]
    rows.append(("total", f"{counts.total:,}", format_count(counts.total)))
    if counts.active != counts.total:
        rows.append(("active per token", f"{counts.active:,}", format_count(counts.active)))
    if counts.mtp:
        rows.append(("MTP modules (not in total)", f"{counts.mtp:,}", format_count(counts.mtp)))
    print(f"{spec.name} ({spec.family}): {spec.num_layers} layers, hidden {spec.hidden_size}, "
          f"{spec.num_heads} heads / {spec.num_kv_heads} KV heads, vocab {spec.vocab_size}")
    print(render_table(["component", "parameters", ""], rows))
    return 0
