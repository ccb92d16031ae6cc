"""``gpuplan infer MODEL``: memory per GPU for serving, KV cache, how many sequences fit, how fast, printed."""

from __future__ import annotations

import argparse

from gpuplan.cli.common import finish_estimate
from gpuplan.cli.parsers import command_parser
from gpuplan.cli.render import note_lines, render_table, term_lines, vision_lines, vision_rows
from gpuplan.commands.infer import evaluate
from gpuplan.i18n import lang_of, memory_label, phase_label, t, tr_headers, value_label
from gpuplan.infer.config import InferConfig, InferReport
from gpuplan.units import format_bytes, format_seconds


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    return command_parser(sub, "infer")


def run(args: argparse.Namespace) -> int:
    spec, cfg, report, out = evaluate(args)
    if report is None:  # a family gpuplan traces instead of modelling
        return finish_estimate(args, "infer", out, lambda: _render_traced(out, args.gpu, lang_of(args)), out["fits"])
    return finish_estimate(args, "infer", out,
                           lambda: _render(spec, cfg, report, explain=args.explain, lang=lang_of(args),
                                           files=getattr(args, "config_file", None),
                                           vision=out.get("vision")), report.fits)


def _render_traced(out: dict, gpu: str | None, lang: str) -> str:
    """The text of a traced family's answer (gpuplan.commands.generic.infer_payload)."""
    m = out["memory"]
    lines = [t("infer.traced_summary", lang, name=out["model"], family=out["family"], batch=out["batch"],
               context=out["context"], weights=out["weights"])]
    keys = ("weights_bytes", "kv_cache_bytes", "activations_bytes", "logits_bytes", "buffers_bytes",
            "allocated_peak_bytes", "total_bytes")
    rows = [(memory_label(k, lang), format_bytes(m[k])) for k in keys]
    lines.append(render_table(tr_headers(["component", "GiB"], lang), rows))
    if out["fits"] is not None:
        room = format_bytes(abs(out["capacity_bytes"] - m["total_bytes"]))
        lines.append(t("fit.fits" if out["fits"] else "fit.does_not_fit", lang, gpu=gpu or "the device",
                       capacity=format_bytes(out["capacity_bytes"]), headroom=room, over=room))
    lines.extend(note_lines(out["assumptions"], out["warnings"], lang))
    return "\n".join(lines)


def _render(spec, cfg: InferConfig, r: InferReport, *, explain: bool, lang: str = "en", files=None,
            vision: dict | None = None) -> str:
    m = r.memory
    lay = cfg.layout
    lines = [t("infer.summary", lang, name=spec.name, engine=cfg.engine, batch=cfg.batch, context=cfg.context,
               weights=cfg.weights.name, kv=cfg.kv_dtype or ("fp16" if cfg.engine == "llamacpp" else cfg.weights.dtype), tp=lay.tp, pp=lay.pp, ep=lay.ep,
               dp=lay.dp, gpus=lay.gpus)]
    keys = ("weights_bytes", "kv_cache_bytes", "activations_bytes", "logits_bytes", "buffers_bytes",
            "allocated_peak_bytes", "total_bytes")
    rows = [(memory_label(k, lang), format_bytes(getattr(m, k))) for k in keys]
    rows[-2:-2] = vision_rows(vision, lang)
    lines.append(render_table(tr_headers(["component", "GiB"], lang), rows))
    lines += vision_lines(vision, lang)
    lines.append(t("infer.kv_line", lang, per_token=f"{r.kv_cache_bytes_per_token:,}", context=cfg.context,
                   per_seq=format_bytes(r.kv_cache_bytes_per_sequence), phase=phase_label(m.peak_phase, lang)))
    if r.engine.get("name") in ("vllm", "sglang", "trtllm"):
        e = r.engine
        title = {"vllm": "vLLM", "sglang": "SGLang", "trtllm": "TensorRT-LLM"}[e["name"]]
        lines.append(t("infer.vllm_line", lang, engine=title, blocks=f"{e['num_gpu_blocks']:,}", block_size=e["block_size"],
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
                       bound=value_label("bound", s["decode_bound"], lang), batch1=f"{s['decode_tokens_per_s_batch1']:.1f}", compute_bound=bound))
        cb = s.get("continuous_batching")
        if cb and "tpot_s" in cb:
            lines.append(t("infer.continuous", lang, batch=cfg.batch, prompt=cfg.prompt, output=cfg.context - cfg.prompt,
                           ttft=format_seconds(cb["ttft_s"]), tpot=format_seconds(cb["tpot_s"]),
                           tokens=f"{cb['output_tokens_per_s']:,.0f}"))
        if s.get("tp_allreduces_per_step"):
            lines.append(t("infer.tp_comm", lang, n=s["tp_allreduces_per_step"], tp=cfg.layout.tp,
                           latency=f"{s['allreduce_latency_s'] * 1e6:g}", comm=format_seconds(s["decode_tp_comm_s"]),
                           step=format_seconds(s["decode_step_s"]),
                           share=f"{s['decode_tp_comm_s'] / s['decode_step_s']:.0%}"))
        if s.get("decode_ep_comm_s"):
            lines.append(t("infer.ep_comm", lang, ep=cfg.layout.ep, dp=cfg.layout.ep // cfg.layout.tp,
                           n=spec.moe.num_moe_layers if spec.moe else 0, comm=format_seconds(s["decode_ep_comm_s"]),
                           step=format_seconds(s["decode_step_s"]),
                           share=f"{s['decode_ep_comm_s'] / s['decode_step_s']:.0%}"))
    lines.extend(note_lines(m.assumptions, m.warnings, lang))
    if explain:
        lines.append("")
        lines.extend(term_lines(m.terms, lang))
    if files is not None:
        lines.append("")
        lines.extend(files.text_lines("infer", lang))
    return "\n".join(lines)
