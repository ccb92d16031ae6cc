"""``gpuplan infer MODEL``: memory per GPU for serving, KV cache, how many sequences fit, how fast."""

from __future__ import annotations

import argparse

from gpuplan.i18n import lang_of, memory_label, t, tr_headers
from gpuplan.cli.common import (finish_estimate, model_from_args,
                                render_table)
from gpuplan.cli.render import note_lines, term_lines
from gpuplan.errors import InputError
from gpuplan.infer.engine import InferConfig, InferReport, estimate_inference
from gpuplan.infer.engines import HfProfile, VllmProfile
from gpuplan.infer.parallel import ServingLayout
from gpuplan.infer.quant import format_from_quantization_config, normalize_dtype, parse_weights
from gpuplan.infer.source import config_dtype, max_context, quantization_config, raw_config
from gpuplan.infer.speed import SpeedAssumptions
from gpuplan.units import GiB, format_bytes, format_seconds
from gpuplan.cli.parsers import command_parser
from gpuplan.options.infer import DEFAULT_CONTEXT



def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    return command_parser(sub, "infer")


def config_from_args(args: argparse.Namespace):
    """(spec, InferConfig) from the parsed arguments; shared with the web API."""
    from gpuplan.hardware.catalog import get_gpu

    spec = model_from_args(args)
    raw = raw_config(args.model)
    dtype = normalize_dtype(args.dtype, "--dtype") if args.dtype else config_dtype(raw)
    if args.weights.strip().lower() == "auto":
        qc = quantization_config(raw)
        fmt = format_from_quantization_config(qc, dtype) if qc else parse_weights(dtype, dtype=dtype)
    else:
        fmt = parse_weights(args.weights, dtype=dtype, group_size=args.group_size)
    limit, why = max_context(spec, raw, args.rope_scaling)
    context = args.context or min(DEFAULT_CONTEXT, limit)
    kv_dtype = None if args.kv_dtype.strip().lower() == "auto" else args.kv_dtype
    vllm = VllmProfile(gpu_memory_utilization=args.gpu_memory_utilization, block_size=args.block_size,
                       max_num_seqs=args.max_num_seqs, max_num_batched_tokens=args.max_num_batched_tokens,
                       enforce_eager=args.enforce_eager,
                       non_torch_bytes=None if args.non_torch_gib is None else int(args.non_torch_gib * GiB),
                       cuda_graph_bytes=int(args.cuda_graph_gib * GiB))
    if args.gpu_memory_utilization > 1:
        raise InputError("--gpu-memory-utilization", args.gpu_memory_utilization, "must be in (0, 1]")
    cfg = InferConfig(
        batch=args.batch, context=context, prompt=args.prompt, weights=fmt, kv_dtype=kv_dtype, engine=args.engine,
        layout=ServingLayout(tp=args.tp, pp=args.pp, ep=args.ep, dp=args.dp),
        gpu=get_gpu(args.gpu) if args.gpu else None,
        gpu_memory_bytes=int(args.gpu_memory_gib * GiB) if args.gpu_memory_gib else None,
        max_context=limit, max_context_source=why, vllm=vllm,
        hf=HfProfile(cuda_context_bytes=int(args.cuda_context_gib * GiB)),
        speed=SpeedAssumptions(compute_efficiency=args.compute_efficiency,
                               bandwidth_efficiency=args.bandwidth_efficiency))
    return spec, cfg


def evaluate(args: argparse.Namespace):
    spec, cfg = config_from_args(args)
    report = estimate_inference(spec, cfg)
    out = report.as_dict()
    if getattr(args, "explain", False):
        out["terms"] = [t.as_dict() for t in report.memory.terms]
    return spec, cfg, report, out


def payload(args: argparse.Namespace) -> dict:
    """The JSON of ``gpuplan infer --json`` (used in-process by the advisor, sweep and compare)."""
    return evaluate(args)[3]


def run(args: argparse.Namespace) -> int:
    spec, cfg, report, out = evaluate(args)
    return finish_estimate(args, "infer", out,
                           lambda: _render(spec, cfg, report, explain=args.explain, lang=lang_of(args)), report.fits)


def _render(spec, cfg: InferConfig, r: InferReport, *, explain: bool, lang: str = "en") -> str:
    m = r.memory
    lay = cfg.layout
    lines = [t("infer.summary", lang, name=spec.name, engine=cfg.engine, batch=cfg.batch, context=cfg.context,
               weights=cfg.weights.name, kv=cfg.kv_dtype or cfg.weights.dtype, tp=lay.tp, pp=lay.pp, ep=lay.ep,
               dp=lay.dp, gpus=lay.gpus)]
    keys = ("weights_bytes", "kv_cache_bytes", "activations_bytes", "logits_bytes", "buffers_bytes",
            "allocated_peak_bytes", "total_bytes")
    rows = [(memory_label(k, lang), format_bytes(getattr(m, k))) for k in keys]
    lines.append(render_table(tr_headers(["component", "GiB"], lang), rows))
    lines.append(t("infer.kv_line", lang, per_token=f"{r.kv_cache_bytes_per_token:,}", context=cfg.context,
                   per_seq=format_bytes(r.kv_cache_bytes_per_sequence), phase=m.peak_phase))
    if r.engine.get("name") == "vllm":
        e = r.engine
        lines.append(t("infer.vllm_line", lang, blocks=f"{e['num_gpu_blocks']:,}", block_size=e["block_size"],
                       tokens=f"{e['kv_cache_tokens']:,}", context=cfg.context, concurrency=e["max_concurrency"],
                       exact=f"{e['max_concurrency_exact']:.2f}"))
    if r.fits is not None:
        gpu = cfg.gpu.id if cfg.gpu else "the device"
        capacity = cfg.gpu_memory_bytes or (cfg.gpu.memory_usable_bytes if cfg.gpu else 0)
        room = format_bytes(abs(capacity - m.total_bytes))
        if r.fits is False and r.engine.get("kv_shortfall_bytes"):  # vLLM: the KV pool, not the total, is short
            room = format_bytes(r.engine["kv_shortfall_bytes"])
        lines.append((t("fit.fits" if r.fits else "fit.does_not_fit", lang, gpu=gpu, capacity=format_bytes(capacity),
                        headroom=room, over=room))
                     + (t("infer.max_batch", lang, context=cfg.context, n=r.max_batch) if r.max_batch is not None
                        else "")
                     + (t("infer.max_context", lang, batch=cfg.batch, n=f"{r.max_context:,}")
                        if r.max_context is not None else ""))
    if r.speed:
        s = r.speed
        cb = s["compute_bound_batch"]
        bound = (t("infer.compute_bound_from", lang, n=cb) if cb is not None
                 else t("infer.compute_bound_never", lang))
        lines.append(t("infer.speed", lang, dtype=s["compute_dtype"], ttft=format_seconds(s["ttft_s"]),
                       per_seq=f"{s['decode_tokens_per_s_per_seq']:.1f}", total=f"{s['decode_tokens_per_s']:.0f}",
                       bound=s["decode_bound"], batch1=f"{s['decode_tokens_per_s_batch1']:.1f}", compute_bound=bound))
    lines.extend(note_lines(m.assumptions, m.warnings, lang))
    if explain:
        lines.append("")
        lines.extend(term_lines(m.terms))
    return "\n".join(lines)
