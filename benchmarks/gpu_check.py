"""One prepared run on a single GPU: what the device really uses, next to gpuplan's estimate.

    PYTHONPATH=src python3 benchmarks/gpu_check.py --out DIR            # on the GPU machine (H100 / H200)
    PYTHONPATH=src python3 benchmarks/gpu_check.py --out DIR --device cpu --quick   # rehearsal on a CPU

For each configuration (small dense and MoE models in bf16 / amp-bf16 / fp32, foreach and fused AdamW, full
recomputation, LoRA, SDPA; an inference prefill and a ``generate()``) it records ``max_memory_allocated``,
``max_memory_reserved``, the device's used memory, the step time and the achieved TFLOP/s, next to gpuplan's
``allocated_peak_bytes``, ``reserved_bytes``, ``total_bytes`` and predicted step time *for the installed library
versions* (the GPU machine may have other releases than ``constraints.txt``). Once per run: the CUDA context
(device used memory before and after the first CUDA tensor, read through NVML / ``nvidia-smi``), and GEMM and
attention microbenchmarks at a few shapes (achieved TFLOP/s against the catalog peak, which sets the step-time
model's kernel efficiencies). Writes ``gpu_check.json`` and ``gpu_check.md`` to DIR; one configuration's failure is
recorded and the run goes on. Budget: about 8 minutes on an H100 (``--quick`` is a smoke run for the CPU).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

GiB = 1 << 30
MiB = 1 << 20

# Small dimensions of real models (their config.json), a few layers each, so every row fits one 80 GB card.
CONFIGS = {
    # meta-llama/Llama-3.1-8B config.json, 4 of 32 layers
    "llama3-8b-x4": dict(model_type="llama", hidden_size=4096, intermediate_size=14336, num_hidden_layers=4,
                         num_attention_heads=32, num_key_value_heads=8, vocab_size=128256,
                         max_position_embeddings=131072, rope_theta=500000.0, tie_word_embeddings=False),
    # Qwen/Qwen2.5-0.5B config.json, all 24 layers (tied embeddings, q/k/v bias)
    "qwen2.5-0.5b": dict(model_type="qwen2", hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                         num_attention_heads=14, num_key_value_heads=2, vocab_size=151936,
                         max_position_embeddings=32768, tie_word_embeddings=True),
    # Qwen/Qwen3-30B-A3B config.json (MoE, 128 experts top-8), 2 of 48 layers
    "qwen3-moe-x2": dict(model_type="qwen3_moe", hidden_size=2048, intermediate_size=6144, moe_intermediate_size=768,
                         num_hidden_layers=2, num_attention_heads=32, num_key_value_heads=4, head_dim=128,
                         num_experts=128, num_experts_per_tok=8, vocab_size=151936, max_position_embeddings=40960,
                         decoder_sparse_step=1, mlp_only_layers=[], norm_topk_prob=True, tie_word_embeddings=False),
}


@dataclass
class Case:
    id: str
    config: str
    kind: str  # train | prefill | generate
    options: dict = field(default_factory=dict)


CASES = [
    Case("llama-bf16-b2-s2048", "llama3-8b-x4", "train", dict(batch=2, seq=2048)),
    Case("llama-bf16-b4-s4096", "llama3-8b-x4", "train", dict(batch=4, seq=4096)),
    Case("llama-amp-b2-s2048", "llama3-8b-x4", "train", dict(batch=2, seq=2048, precision="amp-bf16")),
    Case("llama-fp32-b1-s2048", "llama3-8b-x4", "train", dict(batch=1, seq=2048, precision="fp32")),
    Case("llama-bf16-fused-b2-s2048", "llama3-8b-x4", "train", dict(batch=2, seq=2048, optimizer_impl="fused")),
    Case("llama-bf16-full-rc-b8-s4096", "llama3-8b-x4", "train", dict(batch=8, seq=4096, recompute="full")),
    Case("llama-lora-b4-s4096", "llama3-8b-x4", "train",
         dict(batch=4, seq=4096, method="lora", lora_rank=16)),
    Case("qwen-bf16-b8-s2048", "qwen2.5-0.5b", "train", dict(batch=8, seq=2048)),
    Case("qwen-amp-fused-b4-s4096", "qwen2.5-0.5b", "train",
         dict(batch=4, seq=4096, precision="amp-bf16", optimizer_impl="fused")),
    Case("qwen-full-rc-b8-s4096", "qwen2.5-0.5b", "train", dict(batch=8, seq=4096, recompute="full")),
    Case("moe-bf16-b2-s2048", "qwen3-moe-x2", "train", dict(batch=2, seq=2048)),
    Case("moe-amp-b2-s4096", "qwen3-moe-x2", "train", dict(batch=2, seq=4096, precision="amp-bf16")),
    Case("llama-prefill-b4-c8192", "llama3-8b-x4", "prefill", dict(batch=4, context=8192)),
    Case("qwen-prefill-b16-c4096", "qwen2.5-0.5b", "prefill", dict(batch=16, context=4096)),
    Case("llama-generate-b8-p1024-n64", "llama3-8b-x4", "generate", dict(batch=8, prompt=1024, new_tokens=64)),
]
QUICK = {"qwen-bf16-b8-s2048": dict(batch=1, seq=128), "qwen-prefill-b16-c4096": dict(batch=1, context=128),
         "llama-generate-b8-p1024-n64": dict(batch=1, prompt=32, new_tokens=4)}
QUICK_CONFIG = {"llama3-8b-x4": dict(hidden_size=256, intermediate_size=512, num_attention_heads=8,
                                     num_key_value_heads=2, vocab_size=1024, num_hidden_layers=2)}

GEMM_SHAPES = [(4096, 4096, 4096), (8192, 8192, 8192), (16384, 4096, 14336), (16384, 14336, 4096),
               (2048, 128256, 4096)]
ATTENTION_SHAPES = [(4, 32, 8, 4096, 128), (2, 32, 8, 8192, 128), (1, 64, 8, 16384, 128)]  # b, heads, kv, s, d


def versions() -> dict:
    out = {"python": platform.python_version()}
    for name in ("torch", "transformers", "peft", "accelerate"):
        try:
            out[name] = __import__(name).__version__
        except Exception as exc:  # a missing library is recorded, not fatal
            out[name] = f"missing ({type(exc).__name__})"
    return out


def nvidia_smi_used_bytes() -> int | None:
    """Device used memory from nvidia-smi (MiB), read before this process touches CUDA."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"],
                             capture_output=True, text=True, timeout=20, check=True).stdout.strip()
        return int(float(out.splitlines()[0])) * MiB
    except Exception:
        return None


def device_info(torch, device: str) -> dict:
    if device != "cuda":
        return {"device": "cpu", "name": platform.processor() or "cpu"}
    props = torch.cuda.get_device_properties(0)
    info = {"device": "cuda", "name": props.name, "total_memory_bytes": props.total_memory,
            "sm_count": props.multi_processor_count, "cuda": torch.version.cuda}
    try:
        info["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                        capture_output=True, text=True, timeout=20).stdout.strip()
    except Exception:
        info["driver"] = None
    return info


def cuda_context(torch) -> dict:
    """Device used memory before CUDA is initialised and after a 1 x 1 tensor: the context of this process."""
    before = nvidia_smi_used_bytes()
    x = torch.ones(1, 1, device="cuda")
    torch.cuda.synchronize()
    after = nvidia_smi_used_bytes()
    del x
    return {"used_before_bytes": before, "used_after_bytes": after,
            "context_bytes": None if before is None or after is None else after - before}


def catalog_gpu(info: dict):
    """The catalog entry matching the device name (for the peak and gpuplan's fit and step-time model)."""
    from gpuplan.hardware.catalog import get_gpu

    name = (info.get("name") or "").lower()
    for key, gpu_id in (("h200", "h200"), ("h100", "h100-sxm"), ("a100", "a100-80gb"), ("l40s", "l40s")):
        if key in name:
            try:
                return get_gpu(gpu_id)
            except Exception:
                return None
    return None


def estimate(case: Case, cfg: dict, installed: str) -> dict:
    """gpuplan's answer for the case, for the installed transformers release."""
    from gpuplan.model.hf_config import spec_from_config

    spec = spec_from_config(cfg, case.config)
    if case.kind == "train":
        from gpuplan.train.engine import estimate_training
        from gpuplan.verify.estimate import train_config
        from gpuplan.verify.setup import TrainSetup

        setup = TrainSetup(**{k: v for k, v in case.options.items()})
        report = estimate_training(spec, train_config(setup, transformers_version=installed))
        m = report.memory
        return {"allocated_peak_bytes": m.allocated_peak_bytes, "reserved_bytes": m.reserved_bytes,
                "total_bytes": m.total_bytes, "peak_phase": m.peak_phase}
    from gpuplan.infer.engine import InferConfig, estimate_inference
    from gpuplan.infer.quant import WeightFormat

    prompt = case.options.get("context") or case.options["prompt"]
    context = prompt + case.options.get("new_tokens", 1)
    cfg_i = InferConfig(batch=case.options["batch"], context=context, prompt=prompt,
                        weights=WeightFormat("bf16", "float"), engine="hf", search=False)
    m = estimate_inference(spec, cfg_i).memory
    return {"allocated_peak_bytes": m.allocated_peak_bytes, "reserved_bytes": None, "total_bytes": m.total_bytes,
            "peak_phase": m.peak_phase}


def predicted_step_s(case: Case, cfg: dict, gpu) -> float | None:
    """gpuplan's step-time model for one GPU (the training rows)."""
    if case.kind != "train" or gpu is None:
        return None
    from gpuplan.compute import comm
    from gpuplan.compute.steptime import Layout, Workload, make_device, step_time
    from gpuplan.model.hf_config import spec_from_config

    spec = spec_from_config(cfg, case.config)
    o = case.options
    dev, _ = make_device(gpu, "fp32" if o.get("precision") == "fp32" else "bf16")
    net = comm.default_network(gpu, single_node=True)
    lay = Layout(micro_batch=o["batch"], recompute=o.get("recompute", "none"), zero=0)
    return step_time(spec, lay, Workload(seq=o["seq"], global_batch=o["batch"]), dev, net).step_s


def model_flop(case: Case, cfg: dict) -> float | None:
    """FLOPs of one training step (6·P·tokens + attention, full convention; LoRA counted as full training)."""
    if case.kind != "train":
        return None
    from gpuplan.compute.flops import training_flops
    from gpuplan.model.hf_config import spec_from_config

    spec = spec_from_config(cfg, case.config)
    f = training_flops(spec, seq=case.options["seq"])
    return f.model_flop_per_token * case.options["batch"] * case.options["seq"]


def measure(case: Case, cfg: dict, device: str) -> dict:
    from gpuplan.verify.setup import PrefillSetup, TrainSetup

    if case.kind == "train":
        setup = TrainSetup(**case.options)
        if device == "cuda":
            from gpuplan.verify.cuda import measure_training_cuda

            m = measure_training_cuda(cfg, setup)
        else:
            from gpuplan.verify.trace import measure_training

            m = measure_training(cfg, setup)
    elif case.kind == "prefill":
        setup = PrefillSetup(batch=case.options["batch"], context=case.options["context"])
        if device == "cuda":
            from gpuplan.verify.cuda import measure_prefill_cuda

            m = measure_prefill_cuda(cfg, setup)
        else:
            from gpuplan.verify.trace import measure_prefill

            m = measure_prefill(cfg, setup)
    else:
        return measure_generate(case, cfg, device)
    extra = dict(m.extra or {})
    return {"allocated_peak_bytes": m.allocated_peak_bytes, "reserved_bytes": extra.get("reserved_peak_bytes"),
            "device_used_bytes": extra.get("device_used_bytes"), "step_s": extra.get("step_time_s"),
            "backend": m.backend}


def measure_generate(case: Case, cfg: dict, device: str) -> dict:
    """``model.generate`` with greedy decoding of ``new_tokens`` after a ``prompt``-token prefill."""
    import torch

    from gpuplan.verify.build import build_model

    o = case.options
    dev = torch.device(device)
    with dev:
        model = build_model(cfg, dtype="bf16" if device == "cuda" else "fp32", attention="sdpa")
    model.eval()
    ids = torch.randint(0, cfg["vocab_size"], (o["batch"], o["prompt"]), device=dev)
    if device == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    with torch.no_grad():
        model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=o["new_tokens"],
                       min_new_tokens=o["new_tokens"], do_sample=False)
    if device == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - t
    if device != "cuda":
        return {"allocated_peak_bytes": None, "reserved_bytes": None, "device_used_bytes": None, "step_s": wall,
                "backend": "cpu (no memory counters)"}
    return {"allocated_peak_bytes": int(torch.cuda.max_memory_allocated()),
            "reserved_bytes": int(torch.cuda.max_memory_reserved()),
            "device_used_bytes": nvidia_smi_used_bytes(), "step_s": wall, "backend": "cuda",
            "weights_bytes": int(base)}


def gemm_bench(torch, device: str, quick: bool) -> list[dict]:
    rows = []
    shapes = [(256, 256, 256)] if quick else GEMM_SHAPES
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    for m, n, k in shapes:
        try:
            a = torch.randn(m, k, device=device, dtype=dtype)
            b = torch.randn(k, n, device=device, dtype=dtype)
            for _ in range(3):
                a @ b
            reps = 2 if quick else 20
            if device == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            for _ in range(reps):
                a @ b
            if device == "cuda":
                torch.cuda.synchronize()
            s = (time.perf_counter() - t) / reps
            rows.append({"m": m, "n": n, "k": k, "s": s, "tflops": 2 * m * n * k / s / 1e12})
            del a, b
        except Exception as exc:
            rows.append({"m": m, "n": n, "k": k, "error": f"{type(exc).__name__}: {exc}"})
    return rows


def attention_bench(torch, device: str, quick: bool) -> list[dict]:
    import torch.nn.functional as F

    rows = []
    shapes = [(1, 4, 2, 128, 64)] if quick else ATTENTION_SHAPES
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    for b, h, kv, s, d in shapes:
        try:
            q = torch.randn(b, h, s, d, device=device, dtype=dtype, requires_grad=True)
            k = torch.randn(b, kv, s, d, device=device, dtype=dtype, requires_grad=True)
            v = torch.randn(b, kv, s, d, device=device, dtype=dtype, requires_grad=True)

            def run(q, k, v):
                out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
                out.sum().backward()

            run(q, k, v)
            reps = 1 if quick else 10
            if device == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            for _ in range(reps):
                run(q, k, v)
            if device == "cuda":
                torch.cuda.synchronize()
            sec = (time.perf_counter() - t) / reps
            # causal: half of the 4·b·h·s²·d forward FLOPs; backward 2.5x the forward (FlashAttention-2 paper)
            flop = 3.5 * 0.5 * 4 * b * h * s * s * d
            rows.append({"batch": b, "heads": h, "kv_heads": kv, "seq": s, "head_dim": d, "fwd_bwd_s": sec,
                         "tflops": flop / sec / 1e12})
            del q, k, v
        except Exception as exc:
            rows.append({"batch": b, "heads": h, "seq": s, "error": f"{type(exc).__name__}: {exc}"})
    return rows


def pct(est, meas):
    if est is None or not meas:
        return None
    return 100.0 * (est - meas) / meas


def run_case(case: Case, device: str, quick: bool, gpu, installed: str) -> dict:
    cfg = dict(CONFIGS[case.config])
    if quick:
        cfg.update(QUICK_CONFIG.get(case.config, {}))
        case = Case(case.id, case.config, case.kind, {**case.options, **QUICK.get(case.id, {})})
    row = {"id": case.id, "config": case.config, "kind": case.kind, "options": case.options}
    t0 = time.perf_counter()
    try:
        row["estimate"] = estimate(case, cfg, installed)
    except Exception as exc:
        row["estimate_error"] = f"{type(exc).__name__}: {exc}"
    try:
        row["predicted_step_s"] = predicted_step_s(case, cfg, gpu)
    except Exception as exc:
        row["predicted_step_error"] = f"{type(exc).__name__}: {exc}"
    try:
        row["measured"] = measure(case, cfg, device)
        flop = model_flop(case, cfg)
        step = row["measured"].get("step_s")
        if flop and step:
            row["achieved_tflops"] = flop / step / 1e12
    except Exception as exc:
        row["error"] = f"{type(exc).__name__}: {exc}"
        row["traceback"] = traceback.format_exc(limit=6)
    finally:
        if device == "cuda":
            import torch

            torch.cuda.empty_cache()
    est, meas = row.get("estimate") or {}, row.get("measured") or {}
    row["error_pct"] = {
        "allocated": pct(est.get("allocated_peak_bytes"), meas.get("allocated_peak_bytes")),
        "reserved": pct(est.get("reserved_bytes"), meas.get("reserved_bytes")),
        "device": pct(est.get("total_bytes"), meas.get("device_used_bytes")),
        "step": pct(row.get("predicted_step_s"), meas.get("step_s")),
    }
    row["wall_s"] = time.perf_counter() - t0
    return row


def gib(x):
    return "—" if x is None else f"{x / GiB:.2f}"


def fmt_pct(x):
    return "—" if x is None else f"{x:+.1f} %"


def markdown(result: dict) -> str:
    env, dev = result["versions"], result["device"]
    lines = [f"# GPU check: {dev.get('name')} ({result['device_kind']})", "",
             f"Command: `{result['command']}`  ",
             "Versions: " + ", ".join(f"{k} {v}" for k, v in env.items()) + "  ",
             f"Driver {dev.get('driver')}, CUDA {dev.get('cuda')}; CUDA context "
             f"{gib((result.get('context') or {}).get('context_bytes'))} GiB; total wall {result['wall_s']:.0f} s", "",
             "| case | allocated est / meas GiB | err | reserved est / meas GiB | err | device est / meas GiB | err |"
             " step est / meas s | err | TFLOP/s |",
             "|---|---|---:|---|---:|---|---:|---|---:|---:|"]
    for r in result["cases"]:
        if "error" in r:
            lines.append(f"| {r['id']} | error: {r['error'][:120]} | | | | | | | | |")
            continue
        e, m, p = r.get("estimate") or {}, r["measured"], r["error_pct"]
        step_e = r.get("predicted_step_s")
        lines.append(
            f"| {r['id']} | {gib(e.get('allocated_peak_bytes'))} / {gib(m.get('allocated_peak_bytes'))} | "
            f"{fmt_pct(p['allocated'])} | {gib(e.get('reserved_bytes'))} / {gib(m.get('reserved_bytes'))} | "
            f"{fmt_pct(p['reserved'])} | {gib(e.get('total_bytes'))} / {gib(m.get('device_used_bytes'))} | "
            f"{fmt_pct(p['device'])} | {'—' if step_e is None else f'{step_e:.3f}'} / "
            f"{'—' if m.get('step_s') is None else format(m['step_s'], '.3f')} | {fmt_pct(p['step'])} | "
            f"{'—' if r.get('achieved_tflops') is None else format(r['achieved_tflops'], '.0f')} |")
    lines += ["", "| GEMM m x n x k | s | TFLOP/s |", "|---|---:|---:|"]
    for g in result["gemm"]:
        lines.append(f"| {g['m']} x {g['n']} x {g['k']} | " + (f"{g['s']:.5f} | {g['tflops']:.0f} |" if "s" in g
                                                               else f"{g['error']} | |"))
    lines += ["", "| attention b, heads, kv, seq, d | fwd+bwd s | TFLOP/s |", "|---|---:|---:|"]
    for a in result["attention"]:
        shape = f"{a['batch']}, {a['heads']}, {a.get('kv_heads', '')}, {a['seq']}, {a.get('head_dim', '')}"
        lines.append(f"| {shape} | " + (f"{a['fwd_bwd_s']:.5f} | {a['tflops']:.0f} |" if "fwd_bwd_s" in a
                                        else f"{a['error']} | |"))
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="folder for gpu_check.json and gpu_check.md")
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                    help="cuda (default) or cpu: a rehearsal through the CPU trace, no device counters")
    ap.add_argument("--quick", action="store_true", help="tiny shapes: a smoke run of the script itself")
    ap.add_argument("--only", default="", help="comma-separated case ids")
    ap.add_argument("--budget-s", type=float, default=420.0, help="stop starting new cases after this many seconds")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    before_torch = nvidia_smi_used_bytes() if args.device == "cuda" else None
    import torch

    from gpuplan.versions import installed_version

    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: run with --device cpu for a rehearsal", file=sys.stderr)
        return 2
    result = {"command": " ".join(["python3", "benchmarks/gpu_check.py", *(argv or sys.argv[1:])]),
              "device_kind": args.device, "versions": versions(), "device": device_info(torch, args.device)}
    if args.device == "cuda":
        ctx = cuda_context(torch)
        ctx["used_before_import_bytes"] = before_torch
        result["context"] = ctx
    gpu = catalog_gpu(result["device"]) if args.device == "cuda" else None
    result["catalog_gpu"] = getattr(gpu, "id", None)
    installed = installed_version("transformers")
    only = {s for s in args.only.split(",") if s}
    result["cases"] = []
    for case in CASES:
        if only and case.id not in only:
            continue
        if time.perf_counter() - t0 > args.budget_s:
            result["cases"].append({"id": case.id, "error": "skipped: time budget spent"})
            continue
        row = run_case(case, args.device, args.quick, gpu, installed)
        result["cases"].append(row)
        print(f"{row['id']}: " + ("error " + row["error"] if "error" in row else
                                  ", ".join(f"{k} {fmt_pct(v)}" for k, v in row["error_pct"].items())), flush=True)
    result["gemm"] = gemm_bench(torch, args.device, args.quick)
    result["attention"] = attention_bench(torch, args.device, args.quick)
    if gpu is not None:
        peak = gpu.peak_flop_per_s_for("bf16")
        result["gemm_efficiency"] = [g["tflops"] * 1e12 / peak for g in result["gemm"] if "tflops" in g]
        result["attention_efficiency"] = [a["tflops"] * 1e12 / peak for a in result["attention"] if "tflops" in a]
    result["wall_s"] = time.perf_counter() - t0
    (out / "gpu_check.json").write_text(json.dumps(result, indent=1, default=str))
    (out / "gpu_check.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
