"""What autograd saves for backward while a function runs, by storage (the CPU traces of single blocks and layers:
``benchmarks/trace_litgpt.py --layer``, ``benchmarks/trace_torchtitan.py``, the vision-tower tests)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any


def saved_storages(fn: Callable[[], Any]) -> dict[int, int]:
    """{storage data_ptr: nbytes} of every distinct storage ``torch.autograd.graph.saved_tensors_hooks``' pack hook
    receives while ``fn`` runs: views of one storage count once, at the storage's full size."""
    import torch

    seen: dict[int, int] = {}

    def pack(t):
        st = t.untyped_storage()
        seen[st.data_ptr()] = st.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return seen


def saved_bytes(fn: Callable[[], Any], exclude: Callable[[], Iterable[Any]] = tuple) -> int:
    """Bytes of the storages saved while ``fn`` runs, less those of the tensors ``exclude()`` names once it has run
    (parameters, buffers a module registers on its first forward, shared rotary tables, the block input)."""
    seen = saved_storages(fn)
    skip = {t.untyped_storage().data_ptr() for t in exclude()}
    return sum(n for ptr, n in seen.items() if ptr not in skip)
