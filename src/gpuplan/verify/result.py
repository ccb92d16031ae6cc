"""What a verification run measured, in bytes. Torch-free: the CLI and the accuracy suite read it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from gpuplan.report import MEMORY_KEYS

# MemTracker's categories (torch.distributed._tools.mem_tracker._MemRefType) under gpuplan's names.
CATEGORIES = ("parameters", "buffers", "gradients", "optimizer", "activations", "temporaries", "other")


@dataclass(frozen=True)
class Breakdown:
    """Live tensor memory by category at one instant. ``temporaries`` are tensors created during backward that are
    not gradients of parameters (gradients of activations, recomputation buffers); ``optimizer`` includes the
    optimizer step's own temporaries while it runs; ``other`` holds the input ids and labels."""

    parameters_bytes: int = 0
    buffers_bytes: int = 0
    gradients_bytes: int = 0
    optimizer_bytes: int = 0
    activations_bytes: int = 0
    temporaries_bytes: int = 0
    other_bytes: int = 0

    @property
    def total_bytes(self) -> int:
        return sum(getattr(self, f"{c}_bytes") for c in CATEGORIES)

    def as_dict(self) -> dict[str, int]:
        out = asdict(self)
        out["total_bytes"] = self.total_bytes
        return out


@dataclass(frozen=True)
class Measurement:
    """Measured memory of one training step (the second, steady-state one) or one prefill.

    ``components`` uses the INTERFACE memory keys (``weights_bytes`` ... ``allocated_peak_bytes``) where the
    backend can measure them; ``phases`` holds the breakdown at named instants of the step (``forward_end``,
    ``backward_peak``, ...); ``at_peak`` the breakdown at the step's peak.
    """

    backend: str  # "cpu-trace" | "cuda"
    kind: str  # "train" | "prefill"
    allocated_peak_bytes: int
    peak_phase: str
    at_peak: Breakdown
    phases: dict[str, Breakdown]
    components: dict[str, int]
    params_total: int
    params_trainable: int
    wall_s: float
    notes: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)  # CUDA: reserved peak, NVML used memory, step time

    def memory_dict(self) -> dict[str, int]:
        """The INTERFACE memory keys this backend measures (others are left out, not zero); ``reserved_bytes`` when
        the allocator was replayed (``gpuplan verify --reserved``)."""
        return {k: int(self.components[k]) for k in (*MEMORY_KEYS, "reserved_bytes") if k in self.components}

    def as_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend, "kind": self.kind, "allocated_peak_bytes": self.allocated_peak_bytes,
            "peak_phase": self.peak_phase, "at_peak": self.at_peak.as_dict(),
            "phases": {k: v.as_dict() for k, v in self.phases.items()}, "memory": self.memory_dict(),
            "params": {"total": self.params_total, "trainable": self.params_trainable},
            "wall_s": self.wall_s, "notes": list(self.notes), **self.extra,
        }
