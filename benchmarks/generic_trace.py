"""Families gpuplan has no rules for: the reduced-depth traces extrapolated per layer kind against the full trace.

For each config, the training step (and the prefill) is traced on the CPU (fake tensors, gpuplan.verify.trace) at
full depth and through ``gpuplan.verify.generic`` (two copies of the first layers, one repeat of the layer
pattern apart: 2 and 3 layers for a model of one layer kind, 6 and 10 for Cohere2's three sliding-window layers and
one full-attention layer; extrapolated by whole repeats); the table gives both allocated peaks, the error of the
extrapolation and the seconds each took.

    python benchmarks/generic_trace.py            # the tiny test configs and three larger ones
    python benchmarks/generic_trace.py --quick    # the tiny test configs only (tests/data/families)
    python benchmarks/generic_trace.py --only t5  # the models whose label matches
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FAMILIES = ROOT / "tests" / "data" / "families"


def _tiny(name: str) -> dict:
    return json.loads((FAMILIES / name).read_text())


def cases(quick: bool) -> list[tuple[str, dict]]:
    out = [("olmoe-tiny (8 layers, h 256, 8 experts)", _tiny("olmoe-tiny.json")),
           ("cohere2-tiny (14 layers, h 256, 3 sliding + 1 full)", _tiny("cohere2-tiny.json")),
           ("granite-tiny (8 layers, h 256)", _tiny("granite-tiny.json")),
           ("t5-tiny (5 + 5 layers, h 128)", _tiny("t5-tiny.json")),
           ("qwen3_5-tiny (12 layers, h 64, 3 linear + 1 full, multimodal wrapper)", _tiny("qwen3_5-tiny.json"))]
    if not quick:
        out += [("olmoe 16 layers, h 1024, 16 experts, vocab 50304",
                 {**_tiny("olmoe-tiny.json"), "hidden_size": 1024, "intermediate_size": 512, "num_hidden_layers": 16,
                  "num_attention_heads": 16, "num_key_value_heads": 16, "num_experts": 16, "vocab_size": 50304}),
                ("cohere2 30 layers, h 1024, window 512, vocab 32000",
                 {**_tiny("cohere2-tiny.json"), "hidden_size": 1024, "intermediate_size": 2816,
                  "num_hidden_layers": 30, "num_attention_heads": 16, "num_key_value_heads": 8,
                  "sliding_window": 512, "vocab_size": 32000}),
                ("granite 24 layers, h 1024, vocab 49155",
                 {**_tiny("granite-tiny.json"), "hidden_size": 1024, "intermediate_size": 2816,
                  "num_hidden_layers": 24, "num_attention_heads": 16, "num_key_value_heads": 8,
                  "vocab_size": 49155}),
                # google/flan-t5-base's shape: 12 encoder and 12 decoder layers, d_model 768, 12 heads of 64
                ("flan-t5-base shape (12 + 12 layers, h 768, vocab 32128)",
                 {**_tiny("t5-tiny.json"), "d_model": 768, "d_ff": 2048, "d_kv": 64, "num_heads": 12,
                  "num_layers": 12, "num_decoder_layers": 12, "vocab_size": 32128})]
    return out


def run(quick: bool, batch: int, seq: int, only: str | None = None) -> list[dict]:
    from gpuplan.verify.generic import trace_prefill, trace_training, traced_model
    from gpuplan.verify.setup import PrefillSetup, TrainSetup
    from gpuplan.verify.build import is_encoder_decoder
    from gpuplan.verify.trace import measure_prefill, measure_seq2seq_prefill, measure_training

    rows = []
    for label, config in cases(quick):
        if only and not re.search(only, label, re.I):
            continue
        model = traced_model(config, label)
        prefill = measure_seq2seq_prefill if is_encoder_decoder(config) else measure_prefill
        for workload, setup, full_fn, traced_fn in (
                ("train", TrainSetup(batch=batch, seq=seq), measure_training, trace_training),
                ("prefill", PrefillSetup(batch=batch, context=seq), prefill, trace_prefill)):
            t0 = time.perf_counter()
            full = full_fn(config, setup)
            full_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            traced = traced_fn(config, model, setup)
            traced_s = time.perf_counter() - t0
            peak = traced.peak()[1]
            rows.append({"model": label, "workload": workload, "layers": model.num_layers,
                         "depths": list(traced.depths), "full_peak_bytes": full.allocated_peak_bytes,
                         "traced_peak_bytes": peak,
                         "error_pct": 100.0 * (peak - full.allocated_peak_bytes) / full.allocated_peak_bytes,
                         "full_s": full_s, "traced_s": traced_s})
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| model | workload | layers | traced depths | full trace peak (bytes) | extrapolated peak (bytes) "
             "| error | full trace s | reduced traces s |", "|---|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['workload']} | {r['layers']} | {', '.join(map(str, r['depths']))} | "
                     f"{r['full_peak_bytes']:,} | {r['traced_peak_bytes']:,} | {r['error_pct']:+.3f} % | "
                     f"{r['full_s']:.1f} | {r['traced_s']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the tiny test configs only")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--json", type=Path, help="also write the rows to this file")
    ap.add_argument("--only", help="regular expression over the model labels")
    args = ap.parse_args()
    rows = run(args.quick, args.batch, args.seq, args.only)
    print(markdown(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
