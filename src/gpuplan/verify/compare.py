"""Estimate next to measurement: per-component and peak errors. Torch-free."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from gpuplan.report import MEMORY_KEYS

# Components compared row by row when both sides have them; the peak decides ``error_pct`` (INTERFACE.md).
PEAK_KEY = "allocated_peak_bytes"


def error_pct(estimate: float, measured: float) -> float | None:
    """``100 * (estimate - measured) / measured``: negative = underestimate (an OOM risk). None when nothing was
    measured (0 bytes) — a relative error of a zero measurement means nothing."""
    if measured <= 0:
        return None
    return 100.0 * (estimate - measured) / measured


@dataclass(frozen=True)
class Row:
    key: str
    estimate_bytes: int
    measured_bytes: int
    error_pct: float | None


def compare_memory(estimate: Mapping[str, int], measured: Mapping[str, int]) -> list[Row]:
    """One row per INTERFACE memory key present in both, in INTERFACE order, the peak last. Keys that are zero on
    both sides are left out."""
    rows = []
    for key in MEMORY_KEYS:
        if key in (PEAK_KEY, "total_bytes") or key not in estimate or key not in measured:
            continue
        e, m = int(estimate[key]), int(measured[key])
        if e == 0 and m == 0:
            continue
        rows.append(Row(key, e, m, error_pct(e, m)))
    e, m = int(estimate.get(PEAK_KEY, 0)), int(measured.get(PEAK_KEY, 0))
    rows.append(Row(PEAK_KEY, e, m, error_pct(e, m)))
    if "reserved_bytes" in measured and "reserved_bytes" in estimate:  # --reserved: the replayed allocator
        e, m = int(estimate["reserved_bytes"]), int(measured["reserved_bytes"])
        rows.append(Row("reserved_bytes", e, m, error_pct(e, m)))
    if "total_bytes" in measured and "total_bytes" in estimate:  # CUDA back end: what the device shows
        e, m = int(estimate["total_bytes"]), int(measured["total_bytes"])
        rows.append(Row("total_bytes", e, m, error_pct(e, m)))
    return rows


def verify_payload(estimate: Mapping[str, int], measured: Mapping[str, int], backend: str,
                   detail: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``gpuplan verify --json`` object (INTERFACE.md): estimate, measured, error_pct (of the peak), backend;
    ``components`` holds the per-key errors and ``detail`` what the back end adds (phases, notes)."""
    rows = compare_memory(estimate, measured)
    peak = next(r for r in rows if r.key == PEAK_KEY)
    payload: dict[str, Any] = {
        "estimate": {k: int(v) for k, v in estimate.items()},
        "measured": {k: int(v) for k, v in measured.items()},
        "error_pct": peak.error_pct,
        "backend": backend,
        "components": {r.key: r.error_pct for r in rows},
    }
    if detail:
        payload["detail"] = dict(detail)
    return payload
