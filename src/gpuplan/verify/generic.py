"""Any architecture transformers knows and gpuplan has no rules for: the exact, slower path.

- the tensors: ``AutoModelForCausalLM.from_config`` on the meta device (no memory, no weights, no download);
- the memory: the training step or the prefill traced on the CPU (``gpuplan.verify.trace``, fake tensors) for
  reduced-depth copies of the model (the config with fewer ``num_hidden_layers``, per-layer lists cut to match),
  at the depths :func:`gpuplan.model.traced.depths_to_trace` picks so that each layer kind's bytes are determined,
  then extrapolated per layer kind to the full depth (:func:`gpuplan.model.traced.extrapolate`).

No remote code runs: a config with ``auto_map`` or a model_type transformers does not know is refused.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

from gpuplan.errors import InputError
from gpuplan.model.traced import (VERIFY_EXTRA, TracedMemory, TracedModel, TracedPoint, TracedTensor,
                                  depths_to_trace, extrapolate)
from gpuplan.verify.setup import PrefillSetup, TrainSetup

# Config keys transformers writes for the layer count (``attribute_map`` of GPT-2, MPT, ... name it otherwise).
_LAYER_KEYS = ("num_hidden_layers", "n_layer", "n_layers", "num_layers")


def require_traceable(config: dict[str, Any], source: str = "config.json") -> str:
    """The model_type of ``config`` if transformers can build it here without remote code, else InputError: the
    extra missing (naming the family and the extra), ``auto_map`` (remote code), or a model_type transformers does
    not know."""
    family = config.get("model_type")
    if config.get("auto_map"):
        raise InputError(f"{source}: auto_map", family, "the architecture is defined by remote code "
                         "(trust_remote_code), which gpuplan never runs")
    try:
        import torch  # noqa: F401
        from transformers import CONFIG_MAPPING
    except ImportError:
        raise InputError(f"{source}: model_type", family, "gpuplan has no rules for this family; it can trace "
                         "it with PyTorch and transformers", hint=VERIFY_EXTRA) from None
    if not isinstance(family, str) or family not in CONFIG_MAPPING:
        raise InputError(f"{source}: model_type", family, "is unknown to gpuplan and to the installed transformers: "
                         "it needs remote code (trust_remote_code), which gpuplan never runs")
    return family


def _layer_key(config: dict[str, Any]) -> str:
    return next((k for k in _LAYER_KEYS if k in config), "num_hidden_layers")


def _decoder_layers(model) -> tuple[str, Any] | None:
    """(qualified name, ModuleList) of the decoder layers: the ModuleList of ``config.num_hidden_layers`` entries
    holding the most parameters."""
    import torch

    n = model.config.get_text_config().num_hidden_layers
    best = None
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.ModuleList) and len(mod) == n:
            size = sum(p.numel() for p in mod.parameters())
            if best is None or size > best[2]:
                best = (name, mod, size)
    return None if best is None else (best[0], best[1])


def _signature(layer) -> tuple:
    """What makes two decoder layers the same kind: their module classes and parameter names and shapes."""
    mods = tuple((n, type(m).__name__) for n, m in layer.named_modules())
    params = tuple((n, tuple(p.shape), str(p.dtype)) for n, p in layer.named_parameters())
    return mods, params


def _meta_model(config: dict[str, Any], dtype: str = "fp32"):
    import torch

    from gpuplan.verify.build import build_model

    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_model(config, dtype=dtype, attention="eager")


def _kinds(model) -> tuple[tuple[str, ...], str, dict[int, str]]:
    """(kind per decoder layer, the layers' prefix, kind by id of each parameter inside the layers)."""
    found = _decoder_layers(model)
    if found is None:
        return (), "", {}
    prefix, layers = found
    names: dict[tuple, str] = {}
    kinds = []
    for layer in layers:
        sig = _signature(layer)
        kinds.append(names.setdefault(sig, chr(ord("A") + len(names)) if len(names) < 26 else f"K{len(names)}"))
    return tuple(kinds), prefix, names


def traced_model(config: dict[str, Any], name: str, source: str = "config.json") -> TracedModel:
    """The exact tensor table of ``config`` built by transformers on the meta device."""
    from gpuplan.verify.patches import quiet_transformers

    family = require_traceable(config, source)
    quiet_transformers()
    t0 = time.perf_counter()
    model = _meta_model(config)
    kinds, prefix, _ = _kinds(model)
    embed = {id(p) for p in model.get_input_embeddings().parameters()}
    out_emb = model.get_output_embeddings()
    head = {id(p) for p in out_emb.parameters()} if out_emb is not None else set()
    tensors = []
    for pname, p in model.named_parameters(remove_duplicate=True):
        kind, component = "", "other"
        if prefix and pname.startswith(prefix + "."):
            idx = pname[len(prefix) + 1:].split(".", 1)[0]
            kind, component = (kinds[int(idx)] if idx.isdigit() else ""), "layers"
        elif id(p) in embed:
            component = "embedding"
        elif id(p) in head:
            component = "lm_head"
        tensors.append(TracedTensor(pname, tuple(int(d) for d in p.shape), component, kind))
    text = model.config.get_text_config()
    return TracedModel(family=family, name=name, architecture=type(model).__name__, tensors=tuple(tensors),
                       layer_kinds=kinds, layers_prefix=prefix, hidden_size=int(getattr(text, "hidden_size", 0) or 0),
                       vocab_size=int(getattr(text, "vocab_size", 0) or 0), wall_s=time.perf_counter() - t0)


def reduced_config(config: dict[str, Any], depth: int) -> dict[str, Any]:
    """``config`` with ``depth`` decoder layers: the layer count set, and every per-layer list (a list as long as the
    layer count, such as ``layer_types``) cut to its first ``depth`` entries."""
    key = _layer_key(config)
    n = config.get(key)
    out = dict(config)
    out[key] = depth
    if isinstance(n, int):
        for k, v in config.items():
            if isinstance(v, list) and len(v) == n:
                out[k] = v[:depth]
    return out


def _check_reduced(config: dict[str, Any], full: TracedModel, depth: int) -> None:
    """The reduced copy's layers must be the full model's first ``depth`` layers, kind for kind; otherwise
    extrapolating per kind would be a guess."""
    got = _layer_shapes(_meta_model(config))
    if got != [full.layer_shapes(i) for i in range(depth)]:
        raise InputError("model_type", full.family, f"a copy with {depth} layers does not hold the full model's first "
                         f"{depth} layers, so its memory cannot be extrapolated per layer kind")


def _layer_shapes(model) -> list[tuple]:
    found = _decoder_layers(model)
    if found is None:
        return []
    return [tuple((n, tuple(int(d) for d in p.shape)) for n, p in layer.named_parameters()) for layer in found[1]]


def _points(config: dict[str, Any], full: TracedModel, measure, values_of, min_depth: int) -> list[TracedPoint]:
    points = []
    for depth in depths_to_trace(full.layer_kinds, min_depth):
        cfg = reduced_config(config, depth)
        if depth != full.num_layers:
            _check_reduced(cfg, full, depth)
        t0 = time.perf_counter()
        try:
            m = measure(cfg)
        except InputError:
            raise
        except Exception as exc:  # the family's modelling code refused the workload or the reduced copy
            raise InputError("model_type", full.family, f"tracing a {depth}-layer copy failed: "
                             f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
        points.append(TracedPoint(depth, full.kind_counts(depth), values_of(m), time.perf_counter() - t0))
    return points


def _values(m) -> dict[str, int]:
    """A Measurement's phase totals and components, by name."""
    out = {name: b.total_bytes for name, b in m.phases.items()}
    out.update({k: int(v) for k, v in m.components.items()})
    out["params_trainable"] = int(m.params_trainable)
    return out


def trace_training(config: dict[str, Any], full: TracedModel, setup: TrainSetup, *,
                   min_depth: int = 2) -> TracedMemory:
    """The training step's memory at full depth, from reduced-depth CPU traces (``gpuplan.verify.trace``)."""
    from gpuplan.verify.trace import measure_training

    t0 = time.perf_counter()
    points = _points(config, full, lambda c: measure_training(c, setup), _values, min_depth)
    values = extrapolate(points, full.kind_counts())
    return TracedMemory(full.family, "train", values, tuple(p.depth for p in points), time.perf_counter() - t0)


def trace_prefill(config: dict[str, Any], full: TracedModel, setup: PrefillSetup, *,
                  min_depth: int = 2) -> TracedMemory:
    """The prefill's (and first decode step's) memory at full depth, from reduced-depth CPU traces."""
    from gpuplan.verify.trace import measure_prefill

    def values_of(m) -> dict[str, int]:
        out = _values(m)
        out["buffers_bytes"] = int(m.extra.get("buffers_bytes", 0))
        return out

    t0 = time.perf_counter()
    points = _points(config, full, lambda c: measure_prefill(c, setup), values_of, min_depth)
    values = extrapolate(points, full.kind_counts())
    return TracedMemory(full.family, "prefill", values, tuple(p.depth for p in points), time.perf_counter() - t0)
