"""``gpuplan params MODEL``: the exact parameter count by component, or the tensor table (``--tensors``)."""

from __future__ import annotations

from typing import Any

from gpuplan.errors import UnknownFamily
from gpuplan.model.params import ParamCounts, count_params
from gpuplan.model.resolve import model_from_options
from gpuplan.model.spec import ModelSpec


def counts_json(counts: ParamCounts) -> dict[str, Any]:
    out = counts.as_dict()
    if not out["mtp"]:
        out.pop("mtp")
    return out


def tensors_json(spec: ModelSpec) -> list[dict[str, Any]]:
    """The JSON of ``gpuplan params --tensors --json``: every weight tensor with its shape and component."""
    from gpuplan.model.tensors import tensor_table
    from gpuplan.model.vision import vision_table

    return [{"name": x.name, "shape": list(x.shape), "component": x.component, "tp": x.tp}
            for x in (*tensor_table(spec), *vision_table(spec))]


def payload(values: Any) -> dict[str, Any]:
    """The JSON of ``gpuplan params --json`` (without --tensors); a family gpuplan has no rules for is built by
    transformers on the meta device (:mod:`gpuplan.commands.generic`)."""
    try:
        spec = model_from_options(values, encoders=True, count_only=True)
    except UnknownFamily as exc:
        from gpuplan.commands.generic import params_payload

        return params_payload(exc)
    out = counts_json(count_params(spec))
    if spec.notes:  # what the count leaves out (a multimodal model's vision tower)
        out["warnings"] = list(spec.notes)
    return out
