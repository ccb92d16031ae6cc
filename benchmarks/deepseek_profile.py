"""gpuplan's kernel model against DeepSeek's published training profile of DeepSeek-V3 (docs/time-model.md).

    python benchmarks/deepseek_profile.py                     # the table, from the summary in benchmarks/results
    python benchmarks/deepseek_profile.py --markdown          # the table of docs/time-model.md
    python benchmarks/deepseek_profile.py --trace train.json  # summarize the trace again (rewrites the summary)

The profile (github.com/deepseek-ai/profile-data, train.json, Feb 2025) is one DualPipe pair of a forward and a
backward chunk of 4 MoE layers of DeepSeek-V3 at its pre-training layout (EP64, TP1, 4K tokens per micro-batch) on
H800, with routing made perfectly balanced and the pipeline transfers left out. The summary keeps its kernel time
per kind (summed over streams), read from the kernel names; the model side is gpuplan's step-time model for one MoE
layer of the same micro-batch (`gpuplan.compute.steptime`), with the computation on the 112 SMs that DualPipe's
all-to-all kernels leave. The FP8 GEMM efficiencies of `gpuplan.compute.kernels` are the ones this comparison
gives (`efficiencies()`; tests/test_deepseek_profile.py checks that they still agree).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

SUMMARY = Path(__file__).resolve().parent / "results" / "deepseek_v3_profile.json"
SOURCE = ("github.com/deepseek-ai/profile-data train.json (Feb 2025): DeepSeek-V3 DualPipe forward + backward "
          "chunk pair, 4 MoE layers, EP64 TP1, 4K tokens, H800, balanced routing")
KINDS = ("gemm_fwd_dgrad", "gemm_wgrad", "gemm_bf16", "attention", "fp8_cast", "other", "all_to_all")
LABELS = {
    "gemm_fwd_dgrad": "FP8 GEMMs, forward + data gradient",
    "gemm_wgrad": "FP8 GEMMs, weight gradient",
    "gemm_bf16": "BF16 GEMMs (router)",
    "attention": "attention (FlashAttention forward + backward)",
    "fp8_cast": "FP8 quantization kernels",
    "other": "other elementwise (norms, SwiGLU, RoPE, permutation)",
    "all_to_all": "expert all-to-all (its own SMs)",
}


def kind_of(name: str) -> str:
    """The kind of one kernel of the trace, from DeepSeek's kernel names."""
    low = name.lower()
    if "ep::" in name:
        return "all_to_all"
    if "dptp128c_acc" in name:
        return "gemm_wgrad"
    if "ptp128c" in name:
        return "gemm_fwd_dgrad"
    if "gemm_bf16" in low:
        return "gemm_bf16"
    if "flash" in low:
        return "attention"
    if "cast" in name or "transpose" in name or "expand_to_fused" in name:
        return "fp8_cast"
    return "other"


def summarize(trace_path: Path) -> dict:
    """Kernel milliseconds per kind and per MoE layer, and the wall time per layer, from the PyTorch profiler trace."""
    events = json.loads(trace_path.read_text())["traceEvents"]
    kernels = [e for e in events if e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset")]
    layers = sum(1 for e in events if e.get("cat") == "user_annotation" and e.get("name") == "attn(F)")
    totals = dict.fromkeys(KINDS, 0.0)
    for e in kernels:
        totals[kind_of(e["name"])] += e["dur"] / 1000
    wall = (max(e["ts"] + e["dur"] for e in kernels) - min(e["ts"] for e in kernels)) / 1000
    return {"source": SOURCE, "layers": layers, "wall_ms_per_layer": round(wall / layers, 3),
            "kernel_ms_per_layer": {k: round(v / layers, 3) for k, v in totals.items()}}


def model_ms() -> dict[str, float]:
    """gpuplan's milliseconds of one DeepSeek-V3 MoE layer, forward + backward of one 4,096-token micro-batch at
    EP64 TP1 on H800 in FP8, computation on the 112 SMs the all-to-all leaves (DualPipe)."""
    from gpuplan.compute import schedules
    from gpuplan.compute import steptime as st
    from gpuplan.compute.comm import default_network
    from gpuplan.compute.kernels import ATTENTION_BACKWARD_FACTOR, elementwise_s, fp8_cast_bytes
    from gpuplan.hardware.catalog import get_gpu
    from gpuplan.model.presets import find_preset

    spec = find_preset("deepseek-v3").spec()
    gpu = get_gpu("h800")
    dev, _ = st.make_device(gpu, "fp8")
    work = st.Workload(seq=4096, global_batch=15360)
    lay = st.Layout(tp=1, ep=64, micro_batch=1)
    shape = next(s for s in st._distinct_shapes(spec, work.seq) if s.expert is not None)
    tokens = 4096
    slow = schedules.comm_sm_slowdown(dev.sms)
    gemm = st._gemm_pass_s(shape, tokens, lay, dev)
    wgrad = st._gemm_pass_s(shape, tokens, lay, dev.wgrad_device)
    fwd, bwd, attn = st._layer_times(spec, shape, tokens, lay, dev, work)
    cast_f, cast_b = fp8_cast_bytes(st._layer_linears(shape, tokens, lay))
    cast = elementwise_s(cast_f + cast_b, dev)
    attention = attn * (1 + ATTENTION_BACKWARD_FACTOR)
    other = fwd + bwd - 2 * gemm - wgrad - attention - cast
    net = default_network(gpu)
    a2a = st.ep_layer_s(spec, lay, dev, net, tokens * spec.hidden_size * dev.elem_bytes, passes=2)
    ms = {"gemm_fwd_dgrad": 2 * gemm * slow, "gemm_wgrad": wgrad * slow, "gemm_bf16": 0.0,
          "attention": attention * slow, "fp8_cast": cast * slow, "other": other * slow, "all_to_all": a2a}
    return {k: v * 1000 for k, v in ms.items()}


def efficiencies(summary: dict) -> tuple[float, float]:
    """The FP8 GEMM efficiencies (forward + data gradient, weight gradient) at which gpuplan's GEMM model, wave
    quantization included, takes the profile's kernel time on the 112 SMs left to computation."""
    from gpuplan.compute import schedules
    from gpuplan.compute import steptime as st
    from gpuplan.hardware.catalog import get_gpu
    from gpuplan.model.presets import find_preset

    spec = find_preset("deepseek-v3").spec()
    dev, _ = st.make_device(get_gpu("h800"), "fp8", gemm_eff=1.0)
    lay = st.Layout(tp=1, ep=64, micro_batch=1)
    shape = next(s for s in st._distinct_shapes(spec, 4096) if s.expert is not None)
    at_peak_ms = st._gemm_pass_s(shape, 4096, lay, dev) * schedules.comm_sm_slowdown(dev.sms) * 1000
    measured = summary["kernel_ms_per_layer"]
    return 2 * at_peak_ms / measured["gemm_fwd_dgrad"], at_peak_ms / measured["gemm_wgrad"]


def rows(summary: dict) -> list[tuple[str, float, float]]:
    model = model_ms()
    return [(LABELS[k], summary["kernel_ms_per_layer"][k], model[k]) for k in KINDS]


def compute_total(table: list[tuple[str, float, float]]) -> tuple[float, float]:
    """Kernel milliseconds of everything but the all-to-all (which runs beside it on its own SMs)."""
    kept = [r for r in table if r[0] != LABELS["all_to_all"]]
    return sum(r[1] for r in kept), sum(r[2] for r in kept)


def render(summary: dict, markdown: bool) -> str:
    table = rows(summary)
    measured_total, model_total = compute_total(table)
    fd, wg = efficiencies(summary)
    lines = []
    if markdown:
        lines += ["| per MoE layer (forward + backward, one 4,096-token micro-batch) | profile ms | gpuplan ms |",
                  "|---|---:|---:|"]
        for label, meas, mod in table:
            lines.append(f"| {label} | {meas:.2f} | {mod:.2f} |")
        lines.append(f"| computation, all but the all-to-all | {measured_total:.2f} | {model_total:.2f} |")
        lines.append(f"| wall time per layer (both streams) | {summary['wall_ms_per_layer']:.2f} | "
                     f"{max(model_total, model_ms()['all_to_all']):.2f} |")
    else:
        width = max(len(r[0]) for r in table) + 2
        lines.append(f"{'per MoE layer':<{width}}{'profile ms':>12}{'gpuplan ms':>12}")
        for label, meas, mod in table:
            lines.append(f"{label:<{width}}{meas:>12.2f}{mod:>12.2f}")
        lines.append(f"{'computation, all but the all-to-all':<{width}}{measured_total:>12.2f}{model_total:>12.2f}")
    lines.append("")
    lines.append(f"FP8 GEMM efficiency the profile gives: forward + data gradient {fd:.3f}, weight gradient {wg:.3f} "
                 "(of the FP8 peak, on the 112 SMs left to computation)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trace", type=Path, help="DeepSeek's train.json: summarize it again into " + str(SUMMARY))
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args(argv)
    if args.trace:
        SUMMARY.write_text(json.dumps(summarize(args.trace), indent=1) + "\n")
    summary = json.loads(SUMMARY.read_text())
    print(render(summary, args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
