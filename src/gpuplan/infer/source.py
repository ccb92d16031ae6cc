"""What a serving estimate reads from a model's config.json beyond its dimensions: the stored dtype, a
pre-quantized checkpoint's ``quantization_config`` and RoPE scaling (which raises the longest servable context).
"""

from __future__ import annotations

import math
from typing import Any

from gpuplan.errors import InputError
from gpuplan.limits import MAX_POSITION, MAX_ROPE_FACTOR
from gpuplan.model.spec import ModelSpec

RAW_DIMS_CONTEXT_LIMIT = 1 << 24
_DTYPES = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32", "half": "fp16", "float": "fp32"}


def raw_config(name: str | None) -> dict[str, Any] | None:
    """The config dict behind MODEL (preset, path or hub id, as ``resolve_model`` finds it); None for raw dims."""
    if not name:
        return None
    from gpuplan.model.hf_config import load_config_file
    from gpuplan.model.presets import find_preset
    from gpuplan.model.resolve import fetch_hub_config, model_source

    kind, path = model_source(name)  # the same reading of MODEL as resolve_model
    if kind == "preset":
        return dict(find_preset(name).config)  # type: ignore[union-attr]
    if kind == "path":
        return load_config_file(path)  # type: ignore[arg-type]
    if kind == "hub":
        return fetch_hub_config(name)
    return None


def _text_config(cfg: dict[str, Any]) -> dict[str, Any]:
    inner = cfg.get("text_config")
    return {**cfg, **inner} if isinstance(inner, dict) else cfg


def config_dtype(cfg: dict[str, Any] | None) -> str:
    """The checkpoint's dtype (``torch_dtype`` / ``dtype``) as bf16/fp16/fp32; bf16 when absent."""
    if not cfg:
        return "bf16"
    c = _text_config(cfg)
    raw = str(c.get("torch_dtype") or c.get("dtype") or "bfloat16").lower().replace("torch.", "")
    return _DTYPES.get(raw, "bf16")


def quantization_config(cfg: dict[str, Any] | None) -> dict[str, Any] | None:
    if not cfg:
        return None
    qc = _text_config(cfg).get("quantization_config") or cfg.get("quantization_config")
    return qc if isinstance(qc, dict) else None


def max_context(spec: ModelSpec, cfg: dict[str, Any] | None, rope_factor: float | None = None) -> tuple[int, str]:
    """Longest context the model serves, and why.

    Without RoPE scaling: ``max_position_embeddings``. With ``rope_scaling`` / ``rope_parameters`` (transformers 5,
    for Gemma 3 one entry per attention type, of which the full-attention one bounds the context) of a scaling type
    (yarn, dynamic, linear, longrope, llama3): max(max_position, original_max_position x factor) -- Llama 3.1's
    config already states the extended length; Qwen2.5's YaRN recipe (factor 4 over 32768) gives 131072.
    ``rope_factor`` is the user saying they enable such scaling at serve time (``--rope-scaling``).
    """
    if rope_factor is not None:
        if rope_factor < 1:
            raise InputError("--rope-scaling", rope_factor, "must be >= 1")
        _check_rope_factor("--rope-scaling", rope_factor)
        return int(spec.max_position * rope_factor), f"max_position_embeddings={spec.max_position} x --rope-scaling {rope_factor:g}"
    if not cfg:
        if spec.family == "custom":  # raw dimensions: no config, so no position limit is known
            return RAW_DIMS_CONTEXT_LIMIT, "raw dimensions (no position limit known)"
        return spec.max_position, f"max_position_embeddings={spec.max_position}"
    c = _text_config(cfg)
    rope = c.get("rope_scaling") or c.get("rope_parameters")
    if rope is not None and not isinstance(rope, dict):
        raise InputError("rope_scaling", rope, "must be an object such as {\"rope_type\": \"yarn\", \"factor\": 4.0} "
                         "or null")
    if isinstance(rope, dict) and isinstance(rope.get("full_attention"), dict):
        rope = rope["full_attention"]  # transformers 5, per attention type (Gemma 3): the global layers' RoPE
    if isinstance(rope, dict):
        kind = str(rope.get("rope_type") or rope.get("type") or "default").lower()
        factor = rope.get("factor")
        if kind != "default" and isinstance(factor, (int, float)) and not isinstance(factor, bool) and factor > 1:
            _check_rope_factor("rope_scaling.factor", factor)
            original = rope.get("original_max_position_embeddings") or spec.max_position
            if isinstance(original, bool) or not isinstance(original, int) or not 1 <= original <= MAX_POSITION:
                raise InputError("rope_scaling.original_max_position_embeddings", original,
                                 f"must be an integer from 1 to {MAX_POSITION:,}")
            limit = max(spec.max_position, int(original * factor))
            return limit, f"rope_scaling {kind} x{factor:g} over {original}"
    return spec.max_position, f"max_position_embeddings={spec.max_position}, no rope_scaling"


def _check_rope_factor(field: str, factor: float) -> None:
    """A RoPE scaling factor multiplies the context: real ones are 2 to 64 (YaRN, Llama 3.1's 8, LongRoPE's 32)."""
    if not math.isfinite(factor) or factor > MAX_ROPE_FACTOR:
        raise InputError(field, factor, f"must be a finite factor of at most {MAX_ROPE_FACTOR:g}")
