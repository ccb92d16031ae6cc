"""``gpuplan models [QUERY]``: the presets matching a query."""

from __future__ import annotations

from typing import Any

from gpuplan.model.params import count_params
from gpuplan.model.presets import load_presets


def payload(values: Any) -> list[dict[str, Any]]:
    """The JSON of ``gpuplan models [QUERY] --json``."""
    q = (values.query or "").lower()
    presets = [p for p in load_presets().values()
               if q in p.id or q in (p.hf_id or "").lower() or q in p.family or any(q in a.lower() for a in p.aliases)]
    rows = []
    for p in presets:
        c = count_params(p.spec())
        rows.append({"id": p.id, "hf_id": p.hf_id, "family": p.family, "params": c.total, "active": c.active,
                     "published_params": p.published_params})
    return rows
