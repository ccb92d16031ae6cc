"""``TrainReport``: the answer of ``gpuplan train`` (memory per GPU of the most loaded rank, parameters, fit),
shared by the single-GPU engine and the per-rank parallel estimate."""

from __future__ import annotations

from dataclasses import dataclass, field

from gpuplan.report import MemoryReport
from gpuplan.train.peak import Phase


@dataclass
class TrainReport:
    """The answer of ``gpuplan train``: memory per GPU (most loaded rank), parameters, fit."""

    memory: MemoryReport
    params_total: int
    params_trainable: int
    fits: bool | None = None
    capacity_bytes: int | None = None
    phases: list[Phase] = field(default_factory=list)
    host_bytes: int = 0
    per_rank: list[dict[str, object]] = field(default_factory=list)
    config: object | None = None  # the TrainConfig as resolved (stack defaults filled in), for the summary

    @property
    def headroom_bytes(self) -> int | None:
        return None if self.capacity_bytes is None else self.capacity_bytes - self.memory.total_bytes

    def as_dict(self) -> dict[str, object]:
        m = self.memory
        out: dict[str, object] = {
            "memory": {**m.memory_dict(), "reserved_bytes": int(m.reserved_bytes), "managed_bytes": int(m.managed_bytes),
                       "peak_phase": m.peak_phase},
            "params": {"total": self.params_total, "trainable": self.params_trainable},
            "fits": self.fits,
            "capacity_bytes": self.capacity_bytes,
            "headroom_bytes": self.headroom_bytes,
            "host_bytes": self.host_bytes,
            "phases": [{"phase": p.name, "bytes": p.bytes} for p in self.phases],
            "assumptions": list(m.assumptions),
            "warnings": list(m.warnings),
        }
        if self.per_rank:
            out["per_rank"] = self.per_rank
        return out
