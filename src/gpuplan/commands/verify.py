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
    measured = _measure(model_config(values, spec), setup, values.device)
    estimate, missing = _estimate(spec, setup, measured.extra.get("attention", setup.attention))
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
