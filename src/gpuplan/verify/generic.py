"""Any architecture transformers knows and gpuplan has no rules for: the exact, slower path.

- the tensors: ``AutoModelForCausalLM.from_config`` on the meta device (no memory, no weights, no download);
- the memory: the training step or the prefill traced on the CPU (``gpuplan.verify.trace``, fake tensors) for two
  reduced-depth copies of the model (the config with fewer ``num_hidden_layers``, per-layer lists such as
  ``layer_types`` cut to match), one repeat of the layer pattern apart (:func:`gpuplan.model.traced.depths_to_trace`:
  one layer for a uniform model, the sliding/full period of an alternating one), then extrapolated by whole repeats
  of that pattern to the full depth (:func:`gpuplan.model.traced.extrapolate`). Each copy is checked to hold the
  full model's first layers, kind for kind (parameter shapes and per-layer settings).

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


def _per_layer_settings(model, n_layers: int) -> list[tuple]:
    """Per decoder layer, the entries of every per-layer list of the resolved config (``layer_types`` and the
    like): layers with the same tensors can still differ in what they compute (sliding or full attention)."""
    conf = model.config.get_text_config().to_dict()
    lists = sorted((k, v) for k, v in conf.items() if isinstance(v, list) and len(v) == n_layers)
    return [tuple((k, repr(v[i])) for k, v in lists) for i in range(n_layers)]


def _kinds(model) -> tuple[tuple[str, ...], str, tuple[str, ...]]:
    """(kind per decoder layer, the layers' prefix, per-layer config settings): a kind is one set of module
    classes, parameter shapes and per-layer config settings."""
    found = _decoder_layers(model)
    if found is None:
        return (), "", ()
    prefix, layers = found
    settings = _per_layer_settings(model, len(layers))
    names: dict[tuple, str] = {}
    kinds = []
    for layer, extra in zip(layers, settings):
        sig = (_signature(layer), extra)
        kinds.append(names.setdefault(sig, str(len(names) + 1)))
    return tuple(kinds), prefix, tuple(", ".join(f"{k}={v}" for k, v in extra) for extra in settings)


def traced_model(config: dict[str, Any], name: str, source: str = "config.json") -> TracedModel:
    """The exact tensor table of ``config`` built by transformers on the meta device."""
    from gpuplan.verify.patches import quiet_transformers

    family = require_traceable(config, source)
    quiet_transformers()
    t0 = time.perf_counter()
    try:
        model = _meta_model(config)
    except InputError:
        raise
    except Exception as exc:  # not a causal language model, or a config its class refuses
        raise InputError(f"{source}: model_type", family, "transformers cannot build it as a causal language model "
                         f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    kinds, prefix, settings = _kinds(model)
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
                       layer_kinds=kinds, layer_settings=settings, layers_prefix=prefix,
                       hidden_size=int(getattr(text, "hidden_size", 0) or 0),
                       vocab_size=int(getattr(text, "vocab_size", 0) or 0), wall_s=time.perf_counter() - t0)


def _per_layer_lists(config: dict[str, Any], n_layers: int) -> dict[str, list]:
    """The per-layer lists of the resolved config (``layer_types`` written or derived from a pattern) and of the
    config.json itself, by key."""
    from gpuplan.verify.build import hf_config

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        resolved = hf_config(config, "eager").get_text_config().to_dict()
    written = config["text_config"] if _nested_text(config) else config
    lists = {k: v for k, v in written.items() if isinstance(v, list) and len(v) == n_layers}
    lists.update({k: v for k, v in resolved.items() if isinstance(v, list) and len(v) == n_layers})
    return lists


# Encoder-decoder configs (T5Config) name the decoder's depth apart; a copy cuts both stacks alike.
_DECODER_LAYER_KEYS = ("num_decoder_layers",)


def reduced_config(config: dict[str, Any], layers: tuple[int, ...], lists: dict[str, list]) -> dict[str, Any]:
    """``config`` with the full model's decoder ``layers`` (indices, in order): the layer count set (for an
    encoder-decoder both stacks', so that a copy holds encoder and decoder layers in pairs), and every per-layer
    list (``lists``, from :func:`_per_layer_lists`) given with those layers' entries."""
    out = dict(config)
    nested = _nested_text(config)
    holder = dict(config["text_config"]) if nested else out
    holder[_layer_key(holder)] = len(layers)
    for key in _DECODER_LAYER_KEYS:
        if key in holder:
            holder[key] = len(layers)
    for k, v in lists.items():
        holder[k] = [v[i] for i in layers]
    if nested:
        out["text_config"] = holder
    return out


def _nested_text(config: dict[str, Any]) -> bool:
    """A multimodal wrapper whose depth and per-layer lists live in its ``text_config`` (Qwen3.5, Gemma 3):
    reduced copies cut the text model there."""
    return isinstance(config.get("text_config"), dict) and not any(k in config for k in _LAYER_KEYS)


def _matches(config: dict[str, Any], full: TracedModel, layers: tuple[int, ...]) -> bool:
    """Whether the copy built from ``config`` holds exactly the full model's ``layers``: the same parameter names
    and shapes and the same per-layer settings, layer for layer. Extrapolating per kind from anything else would
    be a guess."""
    model = _meta_model(config)
    return (_layer_shapes(model) == [full.layer_shapes(i) for i in layers]
            and _kinds(model)[2] == tuple(full.layer_settings[i] for i in layers))


def _check_stacks(config: dict[str, Any], full: TracedModel) -> None:
    """An encoder-decoder is extrapolated by pairs of an encoder and a decoder layer: both stacks must be equally
    deep (T5 and Flan-T5 are; ``num_decoder_layers`` defaults to ``num_layers``)."""
    enc = config.get(_layer_key(config))
    for key in _DECODER_LAYER_KEYS:
        dec = config.get(key)
        if dec is not None and enc is not None and dec != enc:
            raise InputError(f"config.json: {key}", dec, f"differs from the encoder's {_layer_key(config)}={enc}: "
                             "the traced path extrapolates an encoder-decoder by pairs of layers, so both stacks "
                             "must be equally deep")


def _layer_shapes(model) -> list[tuple]:
    found = _decoder_layers(model)
    if found is None:
        return []
    return [tuple((n, tuple(int(d) for d in p.shape)) for n, p in layer.named_parameters()) for layer in found[1]]


def _plan(config: dict[str, Any], full: TracedModel) -> list[tuple[tuple[int, ...], dict[str, Any]]]:
    """The copies to trace, as (layers of the full model, config): the first layers at the two depths of
    :func:`gpuplan.model.traced.depths_to_trace`, or the whole model when it is no deeper than they would be."""
    n = full.num_layers
    _check_stacks(config, full)
    depths = depths_to_trace(full.layer_kinds)
    if depths is None:
        return [(tuple(range(n)), config)]
    lists = _per_layer_lists(config, n)
    plan = [(tuple(range(d)), reduced_config(config, tuple(range(d)), lists)) for d in depths]
    for layers, cfg in plan:
        if not _matches(cfg, full, layers):
            raise InputError("model_type", full.family, f"a copy with {len(layers)} layers does not hold the full "
                             f"model's first {len(layers)} layers, so its memory cannot be extrapolated per layer "
                             "kind")
    return plan


def _points(config: dict[str, Any], full: TracedModel, measure, values_of) -> list[TracedPoint]:
    points = []
    for layers, cfg in _plan(config, full):
        t0 = time.perf_counter()
        try:
            m = measure(cfg)
        except InputError:
            raise
        except Exception as exc:  # the family's modelling code refused the workload or the reduced copy
            raise InputError("model_type", full.family, f"tracing a {len(layers)}-layer copy failed: "
                             f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
        counts = {k: 0 for k in full.kind_counts()}
        for i in layers:
            counts[full.layer_kinds[i]] += 1
        points.append(TracedPoint(len(layers), counts, values_of(m), time.perf_counter() - t0))
    return points


def _values(m) -> dict[str, int]:
    """A Measurement's phase totals and components, by name."""
    out = {name: b.total_bytes for name, b in m.phases.items()}
    out.update({k: int(v) for k, v in m.components.items()})
    out["params_trainable"] = int(m.params_trainable)
    return out


def _extrapolated(points: list[TracedPoint], full: TracedModel) -> dict[str, int]:
    return dict(points[0].values) if len(points) == 1 else extrapolate(points[0], points[1], full.num_layers)


def trace_training(config: dict[str, Any], full: TracedModel, setup: TrainSetup) -> TracedMemory:
    """The training step's memory at full depth, from reduced-depth CPU traces (``gpuplan.verify.trace``)."""
    from gpuplan.verify.trace import measure_training

    t0 = time.perf_counter()
    points = _points(config, full, lambda c: measure_training(c, setup), _values)
    values = _extrapolated(points, full)
    return TracedMemory(full.family, "train", values, tuple(p.depth for p in points), time.perf_counter() - t0)


def trace_prefill(config: dict[str, Any], full: TracedModel, setup: PrefillSetup) -> TracedMemory:
    """The prefill's (and first decode step's) memory at full depth, from reduced-depth CPU traces; for an
    encoder-decoder the encoder pass and the decoder's first two steps (``measure_seq2seq_prefill``)."""
    from gpuplan.verify.build import is_encoder_decoder
    from gpuplan.verify.trace import measure_prefill, measure_seq2seq_prefill

    # an encoder-decoder: the encoder pass over the prompt, then decoder steps with self- and cross-attention caches
    measure = measure_seq2seq_prefill if is_encoder_decoder(config) else measure_prefill

    def values_of(m) -> dict[str, int]:
        out = _values(m)
        out["buffers_bytes"] = int(m.extra.get("buffers_bytes", 0))
        return out

    t0 = time.perf_counter()
    points = _points(config, full, lambda c: measure(c, setup), values_of)
    values = _extrapolated(points, full)
    return TracedMemory(full.family, "prefill", values, tuple(p.depth for p in points), time.perf_counter() - t0)
