"""``gpuplan train MODEL``: memory per GPU for one training or fine-tuning step, and whether it fits."""

from __future__ import annotations

import argparse
from typing import Any

from gpuplan.cli.common import (finish_estimate, model_from_args,
                                render_table)
from gpuplan.cli.render import note_lines, term_lines
from gpuplan.errors import InputError
from gpuplan.report import MEMORY_KEYS
from gpuplan.train import config as C
from gpuplan.units import format_bytes, format_count
from gpuplan.cli.parsers import command_parser


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    return command_parser(sub, "train")


def config_from_args(args: argparse.Namespace) -> C.TrainConfig:
    ov = C.Overheads(cuda_context_bytes=args.cuda_context, workspace_bytes=args.workspace,
                     allocator_reserve_fraction=args.allocator_reserve)
    return C.TrainConfig(
        batch=args.batch, seq=args.seq, grad_accum=args.grad_accum, precision=args.precision, stack=args.stack,
        framework=args.framework, optimizer=args.optimizer, optimizer_impl=args.optimizer_impl,
        optimizer_in_backward=_on_off(args.optimizer_in_backward), recompute=args.recompute,
        selective_policy=args.selective_policy, loss_parallel=_on_off(args.loss_parallel),
        cuda_module_loading=args.cuda_module_loading, attention=args.attention, activation_model=args.activation_model,
        method=args.method, trainable=tuple(args.trainable), lora_rank=args.lora_rank,
        lora_targets=tuple(args.lora_targets), lora_dropout=args.lora_dropout, loss_impl=args.loss,
        loss_chunk_tokens=args.loss_chunk, keep_logits=args.keep_logits, dropout=args.dropout, overheads=ov,
        gpus=args.gpus, dp=args.dp, tp=args.tp, pp=args.pp, ep=args.ep, cp=args.cp, vpp=args.vpp, sp=args.sp,
        zero=args.zero, microbatches=args.microbatches, offload=args.offload,
        reshard_after_forward=not args.no_reshard, dp_shard=args.dp_shard,
        transformers_version=args.transformers_version, qlora_base=args.qlora_base,
        qlora_group_size=args.qlora_group_size, recompute_offload=_on_off(args.recompute_offload),
        ds_reduce_bucket=args.ds_reduce_bucket, ds_overlap_comm=args.ds_overlap_comm,
        ds_contiguous_gradients=_on_off(args.ds_contiguous_gradients), ds_prefetch_bucket=args.ds_prefetch_bucket,
        ds_max_live_params=args.ds_max_live_params)


def _on_off(value: str | None) -> bool | None:
    return None if value is None else value == "on"


def _capacity(args: argparse.Namespace) -> int | None:
    if not args.gpu:
        return None
    from gpuplan.hardware.catalog import get_gpu
    return get_gpu(args.gpu).memory_usable_bytes


def evaluate(args: argparse.Namespace) -> tuple[Any, Any, dict[str, Any]]:
    """(spec, report, payload) for the parsed options."""
    from gpuplan.train.engine import estimate_training

    spec = model_from_args(args, allow_params_only=True)
    cfg = config_from_args(args)
    cap = _capacity(args)
    report = estimate_training(spec, cfg, params_total=args.params, capacity_bytes=cap)
    _add_notes(args, cfg, spec, report.memory)
    args.resolved = cfg  # the stack-resolved settings, for the text summary
    payload: dict[str, Any] = {"model": spec.name if spec else None, "gpu": args.gpu, **report.as_dict()}
    if args.max_batch or args.max_seq:
        if cap is None or spec is None:
            raise InputError("--max-batch" if args.max_batch else "--max-seq", True,
                             "needs --gpu and a model with dimensions")
        from gpuplan.train.search import max_batch, max_seq
        if args.max_batch:
            payload["max_batch"] = max_batch(spec, cfg, cap)
        if args.max_seq:
            payload["max_seq"] = max_seq(spec, cfg, cap)
    if getattr(args, "explain", False):
        payload["terms"] = [t.as_dict() for t in report.memory.terms]
    return spec, report, payload


def _add_notes(args: argparse.Namespace, cfg: C.TrainConfig, spec: Any, memory: Any) -> None:
    """Notes about the inputs themselves: a precision the framework maps to another, a sequence beyond the
    model's context length (inference refuses one; training still runs, with position embeddings it never learnt)."""
    from gpuplan.train.precision import framework_precision_note

    note = framework_precision_note(args.precision, cfg.framework)
    if note:
        memory.assumptions = [*memory.assumptions, note]
    if spec is None or spec.family == "custom" or not args.model:
        return
    from gpuplan.infer.source import max_context, raw_config

    limit, why = max_context(spec, raw_config(args.model))
    if args.seq > limit:
        memory.warnings = [*memory.warnings, f"--seq {args.seq:,} is beyond the model's context length {limit:,} "
                           f"({why}): the memory is estimated, but positions past it were never trained; extend "
                           "the context (RoPE scaling) before training at this length"]


def payload(args: argparse.Namespace) -> dict[str, Any]:
    """The JSON of ``gpuplan train --json`` (used in-process by the advisor, sweep and compare)."""
    return evaluate(args)[2]


def run(args: argparse.Namespace) -> int:
    spec, report, out = evaluate(args)
    return finish_estimate(args, "train", out, lambda: render(spec, report, out, args), report.fits)


def render(spec: Any, report: Any, out: dict[str, Any], args: argparse.Namespace) -> str:
    from gpuplan.i18n import headers, lang_of, memory_label, t, tr_headers

    lang = lang_of(args)
    m = report.memory
    cfg = args.resolved if hasattr(args, "resolved") else config_from_args(args)
    lines = []
    name = spec.name if spec else t("train.params_name", lang, params=format_count(report.params_total))
    lines.append(t("train.summary", lang, name=name, params=format_count(report.params_total),
                   trainable=format_count(report.params_trainable), batch=args.batch, seq=args.seq,
                   precision=args.precision, optimizer=cfg.optimizer, impl=cfg.optimizer_impl,
                   recompute=cfg.recompute, method=args.method))
    rows = [(memory_label(k, lang), format_bytes(getattr(m, k))) for k in MEMORY_KEYS[:-2] if getattr(m, k)]
    rows.append((memory_label("allocated_peak_bytes", lang), format_bytes(m.allocated_peak_bytes)
                 + f"  ({m.peak_phase})"))
    rows.append((memory_label("total_bytes", lang), format_bytes(m.total_bytes)))
    lines.append(render_table(tr_headers(["component", "GiB"], lang), rows, "lr"))
    lines.append(t("train.components_note", lang))
    if report.capacity_bytes is not None:
        room = format_bytes(abs(report.headroom_bytes))
        lines.append(t("fit.fits" if report.fits else "fit.does_not_fit", lang, gpu=args.gpu,
                       capacity=format_bytes(report.capacity_bytes), headroom=room, over=room))
    else:
        lines.append(t("fit.no_gpu", lang))
    if getattr(args, "per_rank", False) and report.per_rank:
        lines.append("")
        lines.append(t("train.per_rank_title", lang))
        rows = [(r["stage"], r["layers"], ("E" if r["embedding"] else "") + ("H" if r["head"] else ""),
                 format_count(r["params"]), format_bytes(r["weights_bytes"]), format_bytes(r["gradients_bytes"]),
                 format_bytes(r["optimizer_bytes"] + r["master_weights_bytes"]),
                 format_bytes(r["activations_bytes"]), f"{r['inflight_microbatches']:g}",
                 format_bytes(r["allocated_peak_bytes"]), format_bytes(r["total_bytes"]), r["peak_phase"])
                for r in report.per_rank]
        lines.append(render_table(headers("train.rank", ["stage", "layers", "eh", "params", "weights", "grads", "optim",
                                                         "activations", "in_flight", "peak", "total", "peak_phase"],
                                          lang), rows, "rllrrrrrrrrl"))
    for key in ("max_batch", "max_seq"):
        if key in out:
            lines.append(t(f"train.{key}", lang, n=f"{out[key]:,}"))
    if getattr(args, "explain", False):
        lines.append("")
        lines.append(t("section.phases", lang) + ":")
        lines.append(render_table([t("train.phase_column", lang), t("header.allocated", lang)],
                                  [(p.name, format_bytes(p.bytes)) for p in report.phases], "lr"))
        lines.append("")
        lines.extend(term_lines(m.terms))
    lines.extend(note_lines(m.assumptions, m.warnings, lang))
    return "\n".join(lines)

