"""Memory the device uses beyond PyTorch's allocated tensors, as named inputs with their sources.

``total_bytes = allocated_peak_bytes + cuda_context_bytes + workspace_bytes + allocator reserve`` where the reserve
is ``allocator_reserve_fraction × allocated_peak_bytes`` (blocks the caching allocator holds but no tensor uses).

Defaults and where they come from (override each with its command-line option):
- CUDA context 512 MiB: the driver's context plus PyTorch's CUDA kernels with lazy module loading (CUDA >= 11.7,
  ``CUDA_MODULE_LOADING=LAZY``, PyTorch's default since 2.0). Hugging Face's "Model training anatomy" measured
  about 1.3 GB for the kernels before lazy loading; the CUDA back end of ``gpuplan verify`` measures it per GPU.
- Workspaces 40 MiB: cuBLAS workspace on Hopper ``:4096:8`` = 32 MiB (PyTorch ``CublasHandlePool.cpp``
  ``getChosenWorkspaceSize``) plus cuBLASLt's 1 MiB and flash-attention's small split-KV scratch.
- Allocator reserve 5 % of the allocated peak: the caching allocator rounds large blocks to 2 MiB and splits 20 MiB
  segments (``c10/cuda/CUDACachingAllocator.cpp``); reserved exceeds allocated by a few percent in steady-state
  training, less with ``PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True``.
"""

from __future__ import annotations

from dataclasses import dataclass

from gpuplan.train.config import Overheads
from gpuplan.units import MiB

DEFAULT_CUDA_CONTEXT_BYTES = 512 * MiB
DEFAULT_WORKSPACE_BYTES = 40 * MiB
DEFAULT_ALLOCATOR_RESERVE_FRACTION = 0.05


@dataclass(frozen=True)
class OverheadBytes:
    cuda_context_bytes: int
    workspace_bytes: int
    allocator_reserve_bytes: int
    allocator_reserve_fraction: float

    @property
    def total(self) -> int:
        return self.cuda_context_bytes + self.workspace_bytes + self.allocator_reserve_bytes


def overhead_bytes(ov: Overheads, allocated_peak_bytes: int) -> OverheadBytes:
    """Resolve the defaults and size the allocator reserve from the allocated peak."""
    ctx = DEFAULT_CUDA_CONTEXT_BYTES if ov.cuda_context_bytes is None else ov.cuda_context_bytes
    ws = DEFAULT_WORKSPACE_BYTES if ov.workspace_bytes is None else ov.workspace_bytes
    frac = DEFAULT_ALLOCATOR_RESERVE_FRACTION if ov.allocator_reserve_fraction is None else ov.allocator_reserve_fraction
    return OverheadBytes(ctx, ws, int(allocated_peak_bytes * frac), frac)
