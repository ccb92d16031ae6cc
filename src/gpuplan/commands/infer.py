"""``gpuplan infer MODEL``: memory per GPU for serving, KV cache, how many sequences fit, how fast."""

from __future__ import annotations

from typing import Any

from gpuplan.errors import InputError, UnknownFamily
from gpuplan.infer.engine import InferConfig, InferReport, estimate_inference
from gpuplan.infer.engines import HfProfile, VllmProfile
from gpuplan.infer.parallel import ServingLayout
from gpuplan.infer.quant import format_from_quantization_config, normalize_dtype, parse_weights
from gpuplan.infer.source import config_dtype, max_context, quantization_config, raw_config
from gpuplan.infer.speed import SpeedAssumptions
from gpuplan.model.resolve import model_from_options
from gpuplan.model.spec import ModelSpec, target_seq_refusal
from gpuplan.options.infer import DEFAULT_CONTEXT
from gpuplan.train.overheads import cuda_context_default
from gpuplan.units import GiB


def config_from_options(values: Any) -> tuple[ModelSpec, InferConfig]:
    """(spec, InferConfig) for the option values."""
    from gpuplan.hardware.catalog import get_gpu

    spec = model_from_options(values, encoders=True)
    if getattr(values, "target_seq", None) is not None:  # an encoder-decoder took the traced path above
        raise target_seq_refusal(values.target_seq, spec.name, serving=True)
    raw = raw_config(values.model)
    dtype = normalize_dtype(values.dtype, "--dtype") if values.dtype else config_dtype(raw)
    if values.weights.strip().lower() == "auto":
        qc = quantization_config(raw)
        fmt = format_from_quantization_config(qc, dtype) if qc else parse_weights(dtype, dtype=dtype)
    else:
        fmt = parse_weights(values.weights, dtype=dtype, group_size=values.group_size)
    limit, why = max_context(spec, raw, values.rope_scaling)
    context = values.context or min(DEFAULT_CONTEXT, limit)
    kv_dtype = None if values.kv_dtype.strip().lower() == "auto" else values.kv_dtype
    vllm = VllmProfile(gpu_memory_utilization=values.gpu_memory_utilization, block_size=values.block_size,
                       max_num_seqs=values.max_num_seqs, max_num_batched_tokens=values.max_num_batched_tokens,
                       enforce_eager=values.enforce_eager, legacy_allreduce_hold=values.vllm_legacy_allreduce,
                       non_torch_bytes=None if values.non_torch_gib is None else int(values.non_torch_gib * GiB),
                       cuda_graph_bytes=int(values.cuda_graph_gib * GiB), memory_fraction=values.memory_fraction)
    if values.gpu_memory_utilization > 1:
        raise InputError("--gpu-memory-utilization", values.gpu_memory_utilization, "must be in (0, 1]")
    cfg = InferConfig(
        batch=values.batch, context=context, prompt=values.prompt, weights=fmt, kv_dtype=kv_dtype,
        engine=values.engine, layout=ServingLayout(tp=values.tp, pp=values.pp, ep=values.ep, dp=values.dp),
        gpu=get_gpu(values.gpu) if values.gpu else None,
        gpu_memory_bytes=int(values.gpu_memory_gib * GiB) if values.gpu_memory_gib else None,
        max_context=limit, max_context_source=why, vllm=vllm,
        hf=HfProfile(cuda_context_bytes=(cuda_context_default(values.cuda_module_loading)
                                         if values.cuda_context_gib is None else int(values.cuda_context_gib * GiB)),
                     cuda_module_loading=values.cuda_module_loading),
        llamacpp=_llamacpp(values),
        speed=SpeedAssumptions(compute_efficiency=values.compute_efficiency,
                               bandwidth_efficiency=values.bandwidth_efficiency,
                               allreduce_latency_s=(None if values.allreduce_latency_us is None
                                                    else values.allreduce_latency_us * 1e-6)))
    return spec, cfg


def _llamacpp(values: Any):
    from gpuplan.infer.llamacpp import LlamaCppProfile

    if values.n_gpu_layers is not None and values.n_gpu_layers < 0:
        raise InputError("--n-gpu-layers", values.n_gpu_layers, "must be >= 0")
    base = LlamaCppProfile(n_gpu_layers=values.n_gpu_layers)
    if values.host_bandwidth_gbps is None:
        return base
    from dataclasses import replace

    return replace(base, host_bandwidth_bytes_per_s=values.host_bandwidth_gbps * 1e9)


def evaluate(values: Any) -> tuple[ModelSpec, InferConfig, InferReport, dict[str, Any]]:
    """(spec, config, report, payload) for the option values; for a family gpuplan has no rules for, (traced
    model, None, None, payload) from reduced-depth traces (:mod:`gpuplan.commands.generic`)."""
    try:
        spec, cfg = config_from_options(values)
    except UnknownFamily as exc:
        from gpuplan.commands.generic import infer_payload

        for option in ("advise", "explain"):
            if getattr(values, option, False):
                raise InputError(f"--{option}", True, f"is not available for family "
                                 f"{exc.config.get('model_type')}, which gpuplan traces instead of modelling")
        model, out = infer_payload(exc, values)
        return model, None, None, out  # type: ignore[return-value]
    from gpuplan.commands.train import _vision_load

    load = _vision_load(values, spec)
    if load is not None:
        from dataclasses import replace

        if cfg.engine != "hf":
            raise InputError("--images", values.images, f"is estimated for --engine hf only so far (the "
                             f"{cfg.engine} profile's KV pool does not yet subtract the vision tower)")
        # the images' positions join the prompt and the context; max_batch is not searched with images
        cfg = replace(cfg, context=cfg.context + load.tokens,
                      prompt=None if cfg.prompt is None else cfg.prompt + load.tokens, search=False)
    report = estimate_inference(spec, cfg)
    vision = None
    if load is not None:
        from gpuplan.model.images import add_serving_vision
        from gpuplan.report import fits

        vision = add_serving_vision(report.memory, spec, load, batch=cfg.batch, tp=cfg.layout.tp,
                                    dtype_bytes=4 if cfg.weights.name == "fp32" else 2)
        report.fits = fits(report.memory.total_bytes, cfg.gpu_memory_bytes or (
            cfg.gpu.memory_usable_bytes if cfg.gpu else None))
    out = report.as_dict()
    if vision is not None:
        out["vision"] = vision
    if getattr(values, "explain", False):
        out["terms"] = [t.as_dict() for t in report.memory.terms]
    if getattr(values, "config_file", None) is not None:
        out["config_file"] = values.config_file.as_dict()
    return spec, cfg, report, out


def payload(values: Any) -> dict[str, Any]:
    """The JSON of ``gpuplan infer --json`` (without the advice; used in-process by the advisor, sweep and
    compare)."""
    return evaluate(values)[3]
