"""gpuplan's own estimate for the workload a verification run executes (torch-free).

Translates the verify options into the engines' configs and returns their INTERFACE memory dict. The training
engine is ``gpuplan.train.engine.estimate_training``, the inference engine ``gpuplan.infer``; when a build lacks one,
``EstimateUnavailable`` says which.
"""

from __future__ import annotations

import importlib
from typing import Any

from gpuplan.model.spec import ModelSpec
from gpuplan.verify.setup import PrefillSetup, TrainSetup


class EstimateUnavailable(RuntimeError):
    """The engine that would produce the estimate is not importable in this build."""


def _engine(module: str, name: str):
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("gpuplan"):
            raise EstimateUnavailable(f"{module} is not available in this build ({exc.name} missing)") from None
        raise
    fn = getattr(mod, name, None)
    if fn is None:
        raise EstimateUnavailable(f"{module}.{name} is not available in this build")
    return fn


def train_config(setup: TrainSetup, **extra: Any):
    """The training engine's ``TrainConfig`` for ``setup`` (one GPU, no parallelism)."""
    from gpuplan.train.config import TrainConfig
    from gpuplan.versions import installed_version

    # the trace runs the installed transformers, so the estimate takes that release's rules
    extra.setdefault("transformers_version", installed_version("transformers"))
    return TrainConfig(batch=setup.batch, seq=setup.seq, precision=setup.precision, optimizer=setup.optimizer,
                       optimizer_impl=setup.optimizer_impl, recompute=setup.recompute, attention=setup.attention,
                       method=setup.method, trainable=setup.trainable, lora_rank=setup.lora_rank,
                       lora_targets=setup.lora_targets, lora_dropout=setup.lora_dropout,
                       lora_modules_to_save=setup.lora_modules_to_save,
                       keep_logits=setup.keep_logits, zero_grad=setup.zero_grad, **extra)


def training_estimate(spec: ModelSpec, setup: TrainSetup, **extra: Any) -> dict[str, int]:
    """INTERFACE memory keys of ``gpuplan train`` for the same step."""
    estimate_training = _engine("gpuplan.train.engine", "estimate_training")
    report = estimate_training(spec, train_config(setup, **extra))
    return _memory_dict(report)


def prefill_estimate(spec: ModelSpec, setup: PrefillSetup, **extra: Any) -> dict[str, int]:
    """INTERFACE memory keys of ``gpuplan infer --engine hf`` for what the trace runs: a prompt of
    ``setup.context`` tokens and one generated token (context + 1 in all)."""
    estimate_inference = _engine("gpuplan.infer.engine", "estimate_inference")
    from gpuplan.infer.engine import InferConfig
    from gpuplan.infer.quant import WeightFormat

    cfg = InferConfig(batch=setup.batch, context=setup.context + 1, prompt=setup.context,
                      weights=WeightFormat(setup.dtype, "float"), engine="hf", search=False, **extra)
    return _memory_dict(estimate_inference(spec, cfg))


def _memory_dict(report: Any) -> dict[str, int]:
    """A report's INTERFACE memory keys (a MemoryReport, or a result holding one as ``.memory``)."""
    memory = getattr(report, "memory", report)
    out = memory.memory_dict()
    if getattr(memory, "reserved_bytes", None):  # training: the caching allocator's segments (allocated + reserve)
        out["reserved_bytes"] = int(memory.reserved_bytes)
    return out
