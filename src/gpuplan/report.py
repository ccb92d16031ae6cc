"""Result types shared by the training and inference engines: memory components, explained terms.

Every number an engine reports is a ``Term``: its value in base units, the formula, the inputs and the source,
so ``--explain`` and the web page can show where it comes from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

MEMORY_KEYS = (
    "weights_bytes", "gradients_bytes", "optimizer_bytes", "master_weights_bytes", "activations_bytes",
    "logits_bytes", "kv_cache_bytes", "buffers_bytes", "allocated_peak_bytes", "total_bytes",
)


@dataclass(frozen=True)
class Term:
    """One explained quantity. ``value`` is in the unit its ``key`` names (``*_bytes``, ``*_flop``, ``*_s``)."""

    key: str
    value: float
    formula: str
    source: str = ""
    inputs: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "value": self.value, "formula": self.formula, "source": self.source,
                "inputs": self.inputs}


@dataclass
class MemoryReport:
    """Per-GPU memory of one workload. Components are sizes; ``allocated_peak_bytes`` is the predicted peak of
    tensor memory (``torch.cuda.max_memory_allocated()``), not their sum; ``total_bytes`` adds CUDA context,
    library workspaces and allocator reserve (what the device shows) and decides ``fits``."""

    weights_bytes: int = 0
    gradients_bytes: int = 0
    optimizer_bytes: int = 0
    master_weights_bytes: int = 0
    activations_bytes: int = 0
    logits_bytes: int = 0
    kv_cache_bytes: int = 0
    buffers_bytes: int = 0
    allocated_peak_bytes: int = 0
    total_bytes: int = 0
    peak_phase: str = ""
    # training only (not in MEMORY_KEYS): the caching allocator's reserved peak (torch.cuda.max_memory_reserved())
    # and CUDA managed memory outside the allocator (bitsandbytes paged optimizer states)
    reserved_bytes: int = 0
    managed_bytes: int = 0
    # the explained terms, or a function that builds them on first use (most JSON answers never ask for them)
    _terms: list[Term] | Callable[[], list[Term]] = field(default_factory=list, repr=False, compare=False)
    assumptions: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def terms(self) -> list[Term]:
        if callable(self._terms):
            self._terms = self._terms()
        return self._terms

    @terms.setter
    def terms(self, value: list[Term] | Callable[[], list[Term]]) -> None:
        self._terms = value

    def memory_dict(self) -> dict[str, int]:
        return {k: int(getattr(self, k)) for k in MEMORY_KEYS}


def fits(total_bytes: int, capacity_bytes: int | None) -> bool | None:
    """Whether ``total_bytes`` fits in ``capacity_bytes``; None when no GPU was named."""
    return None if capacity_bytes is None else total_bytes <= capacity_bytes
