"""Write docs/accuracy.md from the accuracy suite's results (see accuracy.py)."""

from __future__ import annotations

import statistics
from pathlib import Path

GIB = 1024**3
PEERS = (("accelerate", "accelerate"), ("deepspeed", "DeepSpeed"), ("megatron", "Megatron"))
TARGET_MEDIAN, TARGET_MAX, TARGET_UNDER = 1.0, 3.0, -1.0


def err(estimate: float | None, measured: float | None) -> float | None:
    if estimate is None or not measured:
        return None
    return 100.0 * (estimate - measured) / measured


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x:+.2f} %"


def _gib(x: float | None) -> str:
    return "—" if x is None else f"{x / GIB:,.2f}"


def _component_miss(r: dict) -> str:
    """The component whose estimate is furthest (in bytes) from the measurement."""
    if r.get("layout_ignored"):
        return "the estimate ignores the layout (equals the one-GPU estimate)"
    est, mea = r.get("estimate") or {}, r.get("measured") or {}
    keys = [k for k in mea if k != "allocated_peak_bytes" and k in est]
    if not keys:
        return ""
    k = max(keys, key=lambda k: abs(est[k] - mea[k]))
    diff = est[k] - mea[k]
    if diff == 0:
        return ""
    e = err(est[k], mea[k])
    return f"{k.removesuffix('_bytes')} {diff / GIB:+.2f} GiB" + (f" ({e:+.1f} %)" if e is not None else "")


def _summary(rows: list[dict], key) -> dict:
    errs = [e for e in (key(r) for r in rows) if e is not None]
    if not errs:
        return {"n": 0}
    abs_errs = [abs(e) for e in errs]
    return {"n": len(errs), "median": statistics.median(abs_errs), "max": max(abs_errs),
            "under": sum(e < 0 for e in errs), "under1": sum(e < TARGET_UNDER for e in errs),
            "within1": sum(a <= 1.0 for a in abs_errs), "within3": sum(a <= 3.0 for a in abs_errs)}


def _gpuplan_err(r: dict) -> float | None:
    return err((r.get("estimate") or {}).get("allocated_peak_bytes"),
               (r.get("measured") or {}).get("allocated_peak_bytes"))


def _peer_err(name: str):
    return lambda r: err((r.get("peers") or {}).get(name), (r.get("measured") or {}).get("allocated_peak_bytes"))


def _summary_rows(rows: list[dict]) -> list[str]:
    out = ["| tool | rows answered | median abs. error | max abs. error | underestimates (of which > 1 %) "
           "| within 1 % | within 3 % |",
           "|---|---:|---:|---:|---:|---:|---:|"]
    for label, key in (("gpuplan", _gpuplan_err), *((lab, _peer_err(k)) for k, lab in PEERS)):
        s = _summary(rows, key)
        if not s["n"]:
            out.append(f"| {label} | 0 | — | — | — | — | — |")
            continue
        out.append(f"| {label} | {s['n']} | {s['median']:.2f} % | {s['max']:.2f} % | {s['under']} ({s['under1']}) | "
                   f"{s['within1']} | {s['within3']} |")
    return out


def _targets(rows: list[dict]) -> str:
    s = _summary(rows, _gpuplan_err)
    if not s["n"]:
        return "no rows"
    ok = lambda c: "met" if c else "**missed**"  # noqa: E731
    return (f"median {s['median']:.2f} % (target ≤ {TARGET_MEDIAN:g} %: {ok(s['median'] <= TARGET_MEDIAN)}), "
            f"max {s['max']:.2f} % (target ≤ {TARGET_MAX:g} %: {ok(s['max'] <= TARGET_MAX)}), "
            f"{s['under1']} underestimates beyond 1 % (target 0: {ok(s['under1'] == 0)})")


def write_report(results: list[dict], meta: dict, path: Path, matrix) -> None:
    order = {cid: i for i, (cid, *_rest) in enumerate(matrix)}
    results = sorted(results, key=lambda r: order.get(r["id"], 1e9))
    single = [r for r in results if r["kind"] in ("train", "infer")]
    dist = [r for r in results if r["kind"] in ("fsdp2", "tp")]
    vision = [r for r in results if r["kind"] == "vision"]
    v = meta.get("versions", {})
    lines = [
        "# Accuracy: gpuplan's memory estimate against what PyTorch allocates",
        "",
        "Each row builds the real Hugging Face transformers model (random weights, no download) and traces one step "
        "on the CPU with fake tensors: the second, steady-state training step (forward, loss, backward, "
        "`optimizer.step()`, `zero_grad()`), or an inference prefill plus one decode step as `generate()` runs them. "
        "`torch.distributed._tools.mem_tracker.MemTracker` counts every tensor, rounded up to the CUDA caching "
        "allocator's 512-byte blocks; the measured peak is what `torch.cuda.max_memory_allocated()` would report for "
        "tensors (`gpuplan verify`, `src/gpuplan/verify/`). gpuplan's `allocated_peak_bytes` for the same options is "
        "compared with it; error = (estimate − measured) / measured, negative = underestimate (an OOM risk).",
        "",
        "Not seen by the trace (and not part of `allocated_peak_bytes`): the CUDA context, cuBLAS / attention "
        "workspaces, NCCL buffers, the caching allocator's unsplit blocks and fragmentation — `total_bytes` adds "
        "them as named assumptions, checked only by `gpuplan verify --device cuda` on a GPU.",
        "",
        f"Environment: torch {v.get('torch', '?')}, transformers {v.get('transformers', '?')}, peft "
        f"{v.get('peft', '?')}, accelerate {v.get('accelerate', '?')}, deepspeed {v.get('deepspeed', '?')}; "
        + "; ".join(f"{r['rows']} rows measured from {r['started']} in {r['s']} s ({r['workers']} worker processes, "
                    "2 shared CPU cores)" for r in meta.get("runs", [])) + ".",
        "",
        "Reproduce: `pip install -e '.[verify,bench]' && python benchmarks/accuracy.py` (raw bytes: "
        "`benchmarks/results/accuracy.json`); one row: e.g. `gpuplan verify llama-3.1-8b --batch 1 --seq 2048`.",
        "",
        "## Summary",
        "",
        f"Single GPU ({len(single)} rows), gpuplan: {_targets(single)}.",
        "",
        *_summary_rows(single),
        "",
    ]
    if dist:
        lines += [f"FSDP2 / tensor parallel, per rank ({len(dist)} rows), gpuplan: {_targets(dist)}.", "",
                  *_summary_rows(dist), ""]
    if vision:
        lines += [f"Vision towers at real width ({len(vision)} rows, activations saved for backward while one image "
                  f"is encoded), gpuplan: {_targets(vision)}.", ""]
    lines += [
        "Peers answer a different question than the traced step in places, which is part of what the table shows: "
        "accelerate's \"Training using Adam\" is a multiple of the fp32 model size (no activations, no batch or "
        "sequence); DeepSpeed's estimators give model states only, for its mixed-precision recipe; Megatron-LM's "
        "`theoretical_memory_usage` assumes bf16 mixed precision with fp32 master weights (18 bytes/parameter) and "
        "its own activation formula. \"—\": the tool cannot answer that configuration (LoRA, freezing, inference for "
        "Megatron/DeepSpeed). accelerate and DeepSpeed are the installed packages' own functions (extra `bench`); "
        "Megatron-LM's formulas are reproduced from its `theoretical_memory_usage.py` (not a pip package). "
        "llm-analysis was not installed for this run and is not in the table. Details and sources: "
        "`benchmarks/accuracy_peers.py`.",
        "",
        "## Per configuration",
        "",
        "Sizes in GiB (2^30 bytes).",
        "",
        "| configuration | measured peak | gpuplan | error | accelerate | DeepSpeed | Megatron | peak phase "
        "| largest component difference |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in [r for r in results if r["kind"] != "vision"]:
        if "error" in r:
            lines.append(f"| {r['id']} | failed | | | | | | | {r['error'][:120]} |")
            continue
        m = r["measured"]["allocated_peak_bytes"]
        est = (r.get("estimate") or {}).get("allocated_peak_bytes")
        peers = r.get("peers") or {}
        cells = [_pct(err(peers.get(k), m)) for k, _ in PEERS]
        note = _component_miss(r) if est is not None else f"no estimate: {r.get('estimate_error', '')[:80]}"
        lines.append(f"| {r['id']} | {_gib(m)} | {_gib(est)} | {_pct(err(est, m))} | {' | '.join(cells)} | "
                     f"{r.get('peak_phase', '')} | {note} |")
    if vision:
        lines += ["", "### Vision towers", "",
                  "A multimodal model's tower and projector encode one image for training, at the model's real widths "
                  "and depth, with random bf16 weights and real tensors on the CPU (the towers' patch-merging code "
                  "needs the image grid's values, which fake tensors cannot supply): the distinct storages autograd "
                  "saves, parameters left out (`gpuplan.verify.vision`), against `vision_activations_bytes` "
                  "(`gpuplan.model.vision`). Sizes in GiB.", "",
                  "| configuration | patches | traced | gpuplan | error |", "|---|---:|---:|---:|---:|"]
        for r in vision:
            if "error" in r:
                lines.append(f"| {r['id']} | failed | | | {r['error'][:120]} |")
                continue
            m, est = r["measured"]["activations_bytes"], r["estimate"]["activations_bytes"]
            lines.append(f"| {r['id']} | {r.get('peak_phase', '').split()[0]} | {_gib(m)} | {_gib(est)} | "
                         f"{_pct(err(est, m))} |")
    misses = [r for r in results if (e := _gpuplan_err(r)) is not None and (abs(e) > TARGET_MAX or e < TARGET_UNDER)]
    lines += ["", "## Where the estimate misses the target", ""]
    if not misses:
        lines.append("None: every row is within 3 % and no row underestimates by more than 1 %.")
    for r in misses:
        lines.append(f"- **{r['id']}**: {_pct(_gpuplan_err(r))}; largest component difference: {_component_miss(r)}.")
    lines += [
        "",
        "## Checking your own configuration",
        "",
        "`gpuplan verify MODEL [the train options] [--json]` runs the same trace for any preset, Hugging Face id or "
        "config.json and prints the estimate next to the measurement per component; `--workload infer --context N` "
        "does the prefill + decode step. `--device cuda` runs the step for real on a GPU and adds "
        "`max_memory_reserved()`, the device's used memory and the step time. No GPU was available where this "
        "table was produced, so the CUDA back end and the context / workspace / fragmentation terms of "
        "`total_bytes` are not checked here (there is no `docs/accuracy-gpu.md` yet).",
        "",
        "## Component meanings in the trace",
        "",
        "`weights` all parameters; `gradients` at the end of backward; `optimizer` persistent states after the step "
        "(Adam's per-parameter step counters excluded for non-fused Adam: PyTorch keeps them on the CPU); "
        "`activations` tensors saved for backward when the output head starts; `logits` the loss region's "
        "high-water mark above that point (forward or start of backward); `buffers` the optimizer step's "
        "temporaries plus the model's buffers. Inference: `kv_cache` after the decode step, `logits` the last "
        "position's logits and generate's fp32 copy, `activations` the prefill peak minus weights, KV cache, logits "
        "and input.",
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
