"""``gpuplan train MODEL``: memory per GPU for one training or fine-tuning step, and whether it fits."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gpuplan.errors import InputError, UnknownFamily
from gpuplan.model.resolve import model_from_options
from gpuplan.model.spec import ModelSpec
from gpuplan.train import config as C

if TYPE_CHECKING:
    from gpuplan.train.report import TrainReport


def config_from_options(values: Any) -> C.TrainConfig:
    ov = C.Overheads(cuda_context_bytes=values.cuda_context, workspace_bytes=values.workspace,
                     allocator_reserve_fraction=values.allocator_reserve)
    return C.TrainConfig(
        batch=values.batch, seq=values.seq, target_seq=values.target_seq, grad_accum=values.grad_accum,
        precision=values.precision,
        stack=values.stack, framework=values.framework, optimizer=values.optimizer,
        optimizer_impl=values.optimizer_impl, optimizer_in_backward=_on_off(values.optimizer_in_backward),
        compile=_on_off(values.compile),
        recompute=values.recompute, selective_policy=values.selective_policy,
        loss_parallel=_on_off(values.loss_parallel), cuda_module_loading=values.cuda_module_loading,
        attention=values.attention, model_impl=values.model_impl, activation_model=values.activation_model,
        method=values.method, trainable=tuple(values.trainable), lora_rank=values.lora_rank,
        lora_targets=tuple(values.lora_targets), lora_dropout=values.lora_dropout, lora_dtype=values.lora_dtype,
        lora_modules_to_save=tuple(values.lora_modules_to_save), loss_impl=values.loss,
        loss_chunk_tokens=values.loss_chunk, keep_logits=values.keep_logits,
        zero_grad=values.zero_grad, dropout=values.dropout, overheads=ov,
        gpus=values.gpus, dp=values.dp, tp=values.tp, pp=values.pp, ep=values.ep, cp=values.cp, vpp=values.vpp,
        sp=values.sp, zero=values.zero, microbatches=values.microbatches, offload=values.offload,
        reshard_after_forward=not values.no_reshard, dp_shard=values.dp_shard,
        fsdp_embedding_groups=_on_off(values.fsdp_embedding_groups),
        transformers_version=values.transformers_version, bitsandbytes_version=values.bitsandbytes_version,
        torch_version=values.torch_version,
        kbit_prepare=_on_off(values.kbit_prepare),
        qlora_head=_on_off(values.qlora_head), stable_embedding=_on_off(values.stable_embedding),
        qlora_base=values.qlora_base, qlora_double_quant=values.qlora_double_quant != "off",
        qlora_group_size=values.qlora_group_size, recompute_offload=_on_off(values.recompute_offload),
        ds_reduce_bucket=values.ds_reduce_bucket, ds_overlap_comm=values.ds_overlap_comm,
        ds_contiguous_gradients=_on_off(values.ds_contiguous_gradients), ds_prefetch_bucket=values.ds_prefetch_bucket,
        ds_max_live_params=values.ds_max_live_params)


# TrainConfig fields under the names of their options
_FIELD_OPTION = {"loss_impl": "loss", "loss_chunk_tokens": "loss_chunk"}


def _on_off(value: str | None) -> bool | None:
    return None if value is None else value == "on"


def _capacity(values: Any) -> int | None:
    if not values.gpu:
        return None
    from gpuplan.hardware.catalog import get_gpu

    return get_gpu(values.gpu).memory_usable_bytes


def evaluate(values: Any) -> tuple[ModelSpec | None, "TrainReport", dict[str, Any]]:
    """(spec, report, payload) for the option values; spec is None when only ``--params`` was given."""
    from gpuplan.train.engine import estimate_training

    files = getattr(values, "config_file", None)
    if files is not None:
        from gpuplan.configs import resolve

        resolve(files, values)
    try:
        spec = model_from_options(values, allow_params_only=True, encoders=True)
    except UnknownFamily as exc:
        return _traced(values, exc)
    cfg = config_from_options(values)
    if files is not None:
        files.stack_defaults = [(_FIELD_OPTION.get(f, f), v, s) for f, v, s in cfg.stack_settings]
    cap = _capacity(values)
    load = _vision_load(values, spec)
    if load is not None:  # the images' positions join the text sequence
        from dataclasses import replace

        cfg = replace(cfg, seq=cfg.seq + load.tokens)
    report = estimate_training(spec, cfg, params_total=values.params, capacity_bytes=cap)
    _add_notes(values, cfg, spec, report.memory)
    report.config = cfg  # the stack-resolved settings, for the text summary
    vision = None
    if load is not None and spec is not None:
        from gpuplan.model.images import add_training_vision
        from gpuplan.report import fits

        vision = add_training_vision(report.memory, spec, load, text_params=report.params_total, batch=cfg.batch,
                                     precision=cfg.precision, recompute=cfg.recompute,
                                     tower_trained=cfg.method == "full",
                                     phases=[(p.name, p.bytes) for p in report.phases],
                                     reserve_fraction=_reserve_fraction(report.config or cfg))
        report.fits = fits(report.memory.total_bytes, cap)
    payload: dict[str, Any] = {"model": spec.name if spec else None, "gpu": values.gpu, **report.as_dict()}
    if vision is not None:
        payload["vision"] = vision
    if values.max_batch or values.max_seq:
        if load is not None:
            raise InputError("--max-batch" if values.max_batch else "--max-seq", True,
                             "is not searched with --images yet: give --batch and --seq")
        if cap is None or spec is None:
            raise InputError("--max-batch" if values.max_batch else "--max-seq", True,
                             "needs --gpu and a model with dimensions")
        from gpuplan.train.search import max_batch, max_seq

        if values.max_batch:
            payload["max_batch"] = max_batch(spec, cfg, cap)
        if values.max_seq:
            payload["max_seq"] = max_seq(spec, cfg, cap)
    if files is not None:
        payload["config_file"] = files.as_dict()
    if getattr(values, "explain", False):
        payload["terms"] = [t.as_dict() for t in report.memory.terms]
    return spec, report, payload


def _reserve_fraction(cfg: Any) -> float:
    from gpuplan.train.overheads import DEFAULT_ALLOCATOR_RESERVE_FRACTION

    frac = cfg.overheads.allocator_reserve_fraction
    return DEFAULT_ALLOCATOR_RESERVE_FRACTION if frac is None else frac


def _vision_load(values: Any, spec: ModelSpec | None):
    """The images of one sequence (--images, --image-size), or None when none are given."""
    images = getattr(values, "images", None)
    if not images:
        if getattr(values, "image_size", None):
            raise InputError("--image-size", values.image_size, "needs --images N")
        return None
    if spec is None:
        raise InputError("--images", images, "needs a model (a vision-language preset or config.json)")
    from gpuplan.model.images import vision_load

    return vision_load(spec, images, values.image_size)


def _traced(values: Any, exc: UnknownFamily) -> tuple[Any, "TrainReport", dict[str, Any]]:
    """A family gpuplan has no rules for: reduced-depth traces (:mod:`gpuplan.commands.generic`); the model in the
    result is the traced tensor table, not a ModelSpec."""
    from gpuplan.commands.generic import train_report

    for option in ("max_batch", "max_seq", "advise", "explain", "per_rank"):
        if getattr(values, option, False):
            raise InputError(f"--{option.replace('_', '-')}", True, f"is not available for family "
                             f"{exc.config.get('model_type')}, which gpuplan traces instead of modelling")
    cfg = config_from_options(values)
    model, report = train_report(exc, cfg, _capacity(values))
    payload: dict[str, Any] = {"model": model.name, "gpu": values.gpu, **report.as_dict()}
    return model, report, payload


def _add_notes(values: Any, cfg: C.TrainConfig, spec: ModelSpec | None, memory: Any) -> None:
    """Notes about the inputs themselves: a precision the framework maps to another, a sequence beyond the
    model's context length (inference refuses one; training still runs, with position embeddings it never learnt)."""
    from gpuplan.train.precision import framework_precision_note

    note = framework_precision_note(values.precision, cfg.framework)
    if note:
        memory.assumptions = [*memory.assumptions, note]
    if spec is None or spec.family == "custom" or not values.model:
        return
    from gpuplan.infer.source import max_context, raw_config

    limit, why = max_context(spec, raw_config(values.model))
    if values.seq > limit:
        memory.warnings = [*memory.warnings, f"--seq {values.seq:,} is beyond the model's context length {limit:,} "
                           f"({why}): the memory is estimated, but positions past it were never trained; extend "
                           "the context (RoPE scaling) before training at this length"]


def payload(values: Any) -> dict[str, Any]:
    """The JSON of ``gpuplan train --json`` (without the advice; used in-process by the advisor, sweep and
    compare)."""
    return evaluate(values)[2]
