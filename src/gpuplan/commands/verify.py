"""``gpuplan verify MODEL``: build the real model in PyTorch, measure its memory and compare it with the estimate.

PyTorch and transformers (extra ``[verify]``) are imported only when a measurement runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gpuplan.errors import InputError
from gpuplan.i18n import message
from gpuplan.model.resolve import model_from_options
from gpuplan.model.spec import ModelSpec
from gpuplan.verify.setup import PrefillSetup, TrainSetup


def model_config(values: Any, spec) -> dict[str, Any]:
    """The config.json dict the model is built from: the preset's, the file's, the hub's, or one made from the
    raw dimensions."""
    from gpuplan.model.hf_config import load_config_file
    from gpuplan.model.presets import find_preset
    from gpuplan.verify.build import config_from_spec

    if not values.model:
        return config_from_spec(spec)
    preset = find_preset(values.model)
    if preset is not None:
        return dict(preset.config)
    from pathlib import Path

    path = Path(values.model).expanduser()
    if path.exists() or values.model.endswith(".json"):
        return load_config_file(path)
    from gpuplan.model.resolve import fetch_hub_config

    return fetch_hub_config(values.model)


def setup_from_options(values: Any) -> TrainSetup | PrefillSetup:
    if values.workload == "infer":
        return PrefillSetup(batch=values.batch, context=values.context, dtype=values.weights,
                            attention=values.attention)
    return TrainSetup(batch=values.batch, seq=values.seq, precision=values.precision, optimizer=values.optimizer,
                      optimizer_impl=values.optimizer_impl, recompute=values.recompute, attention=values.attention,
                      method=values.method, trainable=values.trainable, lora_rank=values.lora_rank,
                      lora_targets=values.lora_targets, keep_logits=values.keep_logits)


def _measure(config: dict, setup, device: str):
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        raise InputError("verify", "PyTorch", "is not installed", hint="pip install 'gpuplan[verify]'") from None
    if device == "cuda":
        from gpuplan.verify import cuda

        fn = cuda.measure_prefill_cuda if isinstance(setup, PrefillSetup) else cuda.measure_training_cuda
    else:
        from gpuplan.verify import trace

        fn = trace.measure_prefill if isinstance(setup, PrefillSetup) else trace.measure_training
    return fn(config, setup)


def _estimate(spec, setup, attention: str) -> tuple[dict[str, int] | None, str | None]:
    from gpuplan.verify.estimate import EstimateUnavailable, prefill_estimate, training_estimate

    try:
        if isinstance(setup, PrefillSetup):
            return prefill_estimate(spec, _with_attention(setup, attention)), None
        return training_estimate(spec, _with_attention(setup, attention)), None
    except EstimateUnavailable as exc:
        return None, str(exc)


def _with_replay(measured, config: dict, setup: TrainSetup):
    """The measurement with the reserved memory of the traced run replayed through the caching-allocator model
    (gpuplan.verify.reserved), plus the cuBLAS workspace the estimate assumes (the CPU has none to show)."""
    from dataclasses import replace

    from gpuplan.train.overheads import DEFAULT_WORKSPACE_BYTES
    from gpuplan.verify.reserved import trace_reserved

    rt = trace_reserved(config, setup)
    replay = {"allocated_peak_bytes": rt.allocated_peak_bytes, "reserved_peak_bytes": rt.reserved_peak_bytes,
              "workspace_bytes": DEFAULT_WORKSPACE_BYTES, "events": rt.events, "wall_s": rt.wall_s,
              "steps": [{"name": s.name, "allocated_peak_bytes": s.allocated_peak_bytes,
                         "reserved_peak_bytes": s.reserved_peak_bytes} for s in rt.steps]}
    note = (f"reserved: {rt.events:,} allocation events of the model's creation and {len(rt.steps) - 1} steps "
            "replayed through the "
            f"caching-allocator model (gpuplan.verify.allocator), plus the {DEFAULT_WORKSPACE_BYTES // 2**20} MiB "
            "cuBLAS workspace the estimate assumes")
    return replace(measured, components={**measured.components,
                                         "reserved_bytes": rt.reserved_peak_bytes + DEFAULT_WORKSPACE_BYTES},
                   extra={**measured.extra, "reserved_replay": replay}, notes=(*measured.notes, note),
                   wall_s=measured.wall_s + rt.wall_s)


def _with_attention(setup, attention: str):
    from dataclasses import replace

    return setup if setup.attention == attention else replace(setup, attention=attention)


@dataclass
class VerifyRun:
    """One measurement and the estimate it is compared with (None when the engine cannot estimate the case)."""

    spec: ModelSpec
    setup: TrainSetup | PrefillSetup
    measured: Any
    estimate: dict[str, int] | None
    detail: dict[str, Any]


def evaluate(values: Any) -> VerifyRun:
    spec = model_from_options(values)
    setup = setup_from_options(values)
    config = model_config(values, spec)
    if getattr(values, "reserved", False) and (values.device != "cpu" or isinstance(setup, PrefillSetup)):
        raise InputError("--reserved", True, "replays a CPU trace of a training step: needs --device cpu and "
                         "--workload train", hint="on --device cuda the measurement reads max_memory_reserved() "
                         "itself")
    measured = _measure(config, setup, values.device)
    estimate, missing = _estimate(spec, setup, measured.extra.get("attention", setup.attention))
    if getattr(values, "reserved", False):
        measured = _with_replay(measured, config, setup)
    detail = measured.as_dict()
    if missing:
        detail["notes"].append(message("verify.no_estimate", reason=missing))
    return VerifyRun(spec, setup, measured, estimate, detail)


def to_json(r: VerifyRun) -> dict[str, Any]:
    from gpuplan.verify.compare import verify_payload

    if r.estimate is None:
        return {"estimate": None, "measured": r.measured.memory_dict(), "error_pct": None,
                "backend": r.measured.backend, "detail": r.detail}
    return verify_payload(r.estimate, r.measured.memory_dict(), r.measured.backend, r.detail)


def payload(values: Any) -> dict[str, Any]:
    """The JSON of ``gpuplan verify --json``."""
    return to_json(evaluate(values))
