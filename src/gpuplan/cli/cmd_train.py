"""``gpuplan train MODEL``: memory per GPU for one training or fine-tuning step, and whether it fits."""

from __future__ import annotations

import argparse
from typing import Any

from gpuplan.cli.common import (add_model_arguments, add_output_arguments, count, finish_estimate, model_from_args,
                                real, render_table)
from gpuplan.cli.render import note_lines, term_lines
from gpuplan.errors import InputError
from gpuplan.report import MEMORY_KEYS
from gpuplan.train import config as C
from gpuplan.units import MiB, format_bytes, format_count
from gpuplan.versions import DEFAULT_TRANSFORMERS


def _names(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in str(text).split(",") if x.strip())


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("train", help="memory per GPU for training or fine-tuning, and whether it fits",
                       description="Per-GPU memory of one steady-state training step: weights, gradients, optimizer "
                                   "states, master weights, activations, logits, buffers, the phase-aware peak "
                                   "(what torch.cuda.max_memory_allocated() shows) and the device total.")
    add_model_arguments(p)
    add_output_arguments(p, explain=True)
    w = p.add_argument_group("workload")
    w.add_argument("--batch", type=count("--batch"), default=1, help="micro-batch per GPU (default 1)")
    w.add_argument("--seq", type=count("--seq"), default=2048, help="sequence length in tokens (default 2048)")
    w.add_argument("--grad-accum", type=count("--grad-accum"), default=1, help="gradient accumulation steps")
    w.add_argument("--precision", choices=C.PRECISIONS, default="bf16",
                   help="bf16: model cast to bf16, states in bf16; amp-*: fp32 params with autocast; mixed-*: half "
                        "params + fp32 master and states (16 B/param); fp32; fp8 (Transformer Engine style)")
    from gpuplan.train.stacks import stack_names
    w.add_argument("--stack", choices=stack_names(), default="torch",
                   help="the training stack whose defaults apply to every option below not given (default torch: "
                        "a plain PyTorch / Hugging Face loop); the assumptions list what it set, with sources")
    w.add_argument("--framework", choices=C.FRAMEWORKS,
                   help="sharding semantics: torch (PyTorch / Hugging Face, FSDP2 for --zero 3), deepspeed, megatron "
                        "(18 B/param) (default: the stack's)")
    w.add_argument("--optimizer", choices=C.OPTIMIZERS, help="default: the stack's (adamw)")
    w.add_argument("--optimizer-impl", choices=C.OPTIMIZER_IMPLS,
                   help="foreach (PyTorch's CUDA default: one extra state-sized buffer in step), fused, for-loop "
                        "(default: the stack's)")
    w.add_argument("--optimizer-in-backward", choices=("on", "off"),
                   help="on: each parameter is stepped as soon as its gradient exists (torchtune optimizer_in_bwd), "
                        "so the full gradient set never does (default: the stack's, off)")
    w.add_argument("--recompute", choices=C.RECOMPUTE,
                   help="full = Hugging Face gradient checkpointing; selective = see --selective-policy "
                        "(default: the stack's, none)")
    w.add_argument("--selective-policy", choices=C.SELECTIVE_POLICIES,
                   help="what --recompute selective recomputes: attention (the attention core, Megatron) or op "
                        "(torchtitan's op-level policy: matmul outputs saved, every second one recomputed) "
                        "(default: the stack's)")
    w.add_argument("--attention", choices=C.ATTENTIONS, default="sdpa")
    w.add_argument("--activation-model", choices=C.ACTIVATION_MODELS, default="framework",
                   help="framework (what transformers saves, default) or korthikanti (the paper's sbh(34+5as/h))")
    w.add_argument("--loss", choices=C.LOSS_IMPLS,
                   help="standard (fp32 logits), chunked or fused cross-entropy (one chunk of logits at a time) "
                        "(default: the stack's, standard)")
    w.add_argument("--loss-chunk", type=count("--loss-chunk"), help="tokens per loss chunk (default: the stack's, 1024)")
    w.add_argument("--loss-parallel", choices=("on", "off"),
                   help="on: under --tp each rank keeps 1/tp of the vocabulary's logits (torchtitan loss_parallel, "
                        "Megatron's vocab-parallel cross-entropy) (default: the stack's)")
    w.add_argument("--keep-logits", action="store_true", help="the training loop keeps outputs.logits alive")
    w.add_argument("--dropout", type=real("--dropout", at_least=0, below=1), default=0.0,
                   help="hidden/attention dropout (default 0)")
    w.add_argument("--transformers-version", metavar="X.Y",
                   help=f"the transformers release the run uses; rules that changed between releases follow it "
                        f"(default {DEFAULT_TRANSFORMERS}, the newest traced)")
    f = p.add_argument_group("fine-tuning")
    f.add_argument("--method", choices=C.METHODS, default="full")
    f.add_argument("--trainable", type=_names, default=(), metavar="GLOB[,GLOB]",
                   help="trainable parameters by Hugging Face name, e.g. 'model.layers.[0-5].*' (--method freeze)")
    f.add_argument("--lora-rank", type=count("--lora-rank"), default=16)
    f.add_argument("--lora-targets", type=_names, default=C.ALL_LINEAR, metavar="NAME[,NAME]",
                   help="module names as PEFT's target_modules (default all-linear)")
    f.add_argument("--lora-dropout", type=real("--lora-dropout", at_least=0, below=1), default=0.0)
    par = p.add_argument_group("parallel layout (per GPU, most loaded rank)")
    par.add_argument("--gpus", type=count("--gpus"), help="total GPUs (infers --dp)")
    for flag, text in (("--dp", "data parallel"), ("--tp", "tensor parallel"), ("--pp", "pipeline stages"),
                       ("--ep", "expert parallel"), ("--cp", "context parallel"),
                       ("--vpp", "virtual stages per pipeline rank (interleaved)")):
        par.add_argument(flag, type=count(flag), default=1, help=f"{text} degree (default 1)")
    par.add_argument("--sp", action="store_true", help="sequence parallelism (with --tp)")
    par.add_argument("--zero", type=int, choices=(0, 1, 2, 3), default=0,
                     help="ZeRO stage (DeepSpeed semantics; FSDP2 with --framework torch --zero 3)")
    par.add_argument("--dp-shard", type=count("--dp-shard"), metavar="N",
                     help="hybrid sharding (HSDP, DeepSpeed MiCS, Megatron optimizer instances): with --zero 1-3, "
                          "shard states (and FSDP2/ZeRO-3 parameters) over N·cp ranks, replicate over dp/N groups; "
                          "N divides dp (default: all data-parallel ranks)")
    par.add_argument("--microbatches", type=count("--microbatches"), help="micro-batches per step (pipeline)")
    par.add_argument("--offload", choices=C.OFFLOADS, default="none", help="optimizer (and params) to CPU")
    par.add_argument("--no-reshard", action="store_true",
                     help="FSDP2 (--zero 3): keep each layer's gathered parameters from forward to backward "
                          "(reshard_after_forward=False)")
    par.add_argument("--per-rank", action="store_true", help="show every distinct rank (pipeline stages)")
    o = p.add_argument_group("fit and overheads")
    o.add_argument("--gpu", help="catalog id (see `gpuplan gpus`): fit and headroom")
    o.add_argument("--check", action="store_true", help="exit 3 when it does not fit")
    o.add_argument("--max-batch", action="store_true", help="find the largest micro-batch that fits --gpu")
    o.add_argument("--max-seq", action="store_true", help="find the longest sequence that fits --gpu (a multiple of --cp)")
    o.add_argument("--cuda-context", type=real("--cuda-context", at_least=0, scale=MiB, as_int=True), metavar="MIB",
                   help="CUDA context (default 512)")
    o.add_argument("--workspace", type=real("--workspace", at_least=0, scale=MiB, as_int=True), metavar="MIB",
                   help="library workspaces (default 40)")
    o.add_argument("--cuda-module-loading", choices=C.CUDA_MODULE_LOADING,
                   help="lazy (PyTorch >= 2.0) or eager (older PyTorch: every kernel loaded with the context); sizes "
                        "the default CUDA context (default: the stack's, lazy)")
    o.add_argument("--allocator-reserve", type=real("--allocator-reserve", at_least=0, below=1), metavar="FRACTION",
                   help="caching-allocator reserve as a fraction of the allocated peak (default 0.05)")
    return p


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
        transformers_version=args.transformers_version)


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

