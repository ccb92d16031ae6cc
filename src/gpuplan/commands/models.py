"""``gpuplan models [QUERY]``: the presets matching a query, a family, the most recent releases."""

from __future__ import annotations

from typing import Any

from gpuplan.errors import InputError
from gpuplan.model.params import count_params
from gpuplan.model.presets import Preset, load_presets


def families() -> list[str]:
    """The families (``model_type``) the presets cover, sorted."""
    return sorted({p.family for p in load_presets().values()})


def matching(query: str | None, family: str | None = None, newest: int | None = None) -> list[Preset]:
    """The presets whose id, Hugging Face id, family or an alias holds ``query`` (case-insensitive), of ``family``
    when given (an unknown family is an InputError listing the known ones), in file order; with ``newest``, the
    ``newest`` most recent by release date, newest first (ties by id)."""
    q = (query or "").lower()
    presets = [p for p in load_presets().values()
               if q in p.id or q in (p.hf_id or "").lower() or q in p.family or any(q in a.lower() for a in p.aliases)]
    if family:
        known = families()
        if family.lower() not in known:
            raise InputError("--family", family, "must be one of " + ", ".join(known))
        presets = [p for p in presets if p.family == family.lower()]
    if newest is not None:
        dated = sorted((p for p in presets if p.released is not None), key=lambda p: p.id)
        presets = sorted(dated, key=lambda p: p.released, reverse=True)[:newest]
    return presets


def payload(values: Any) -> list[dict[str, Any]]:
    """The JSON of ``gpuplan models [QUERY] --json``."""
    rows = []
    for p in matching(values.query, getattr(values, "family", None), getattr(values, "newest", None)):
        c = count_params(p.spec())
        rows.append({"id": p.id, "hf_id": p.hf_id, "family": p.family, "params": c.total, "active": c.active,
                     "published_params": p.published_params,
                     "released": p.released.isoformat() if p.released else None, "modality": p.modality})
    return rows
