"""Memory the device uses beyond PyTorch's allocated tensors, as named inputs with their sources.

``reserved_bytes = allocated_peak_bytes + workspace_bytes + allocator reserve`` (what
``torch.cuda.max_memory_reserved()`` shows: the caching allocator's segments, cuBLAS workspaces included, PyTorch
``CublasHandlePool.cpp`` takes them from the caching allocator) where the reserve is ``allocator_reserve_fraction ×
allocated_peak_bytes`` (blocks the allocator holds but no tensor uses), and ``total_bytes = reserved_bytes +
cuda_context_bytes + managed_bytes`` (what nvidia-smi shows; ``managed_bytes``: CUDA managed memory outside the
allocator, e.g. bitsandbytes' paged optimizer states).

Defaults and where they come from (override each with its command-line option):
- CUDA context 512 MiB: the driver's context plus PyTorch's CUDA kernels with lazy module loading (CUDA >= 11.7,
  ``CUDA_MODULE_LOADING=LAZY``, PyTorch's default since 2.0). With eager loading (``--cuda-module-loading eager``:
  PyTorch < 2.0, or the variable set to EAGER) every kernel of the library is loaded with the context: 1343 MiB,
  measured with nvidia-smi after a 1 × 1 CUDA tensor on a V100 (Hugging Face transformers
  docs/source/en/model_memory_anatomy.md, commit 249ef816). The CPU cannot show either; the CUDA back end of
  ``gpuplan verify`` measures it per GPU.
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
EAGER_CUDA_CONTEXT_BYTES = 1343 * MiB
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

    @property
    def in_allocator(self) -> int:
        """The part the caching allocator reserves beyond the allocated peak (workspaces and reserve)."""
        return self.workspace_bytes + self.allocator_reserve_bytes


def cuda_context_default(module_loading: str = "lazy") -> int:
    """The CUDA context (driver context + PyTorch's kernels) by module loading mode (sources in the docstring)."""
    return EAGER_CUDA_CONTEXT_BYTES if module_loading == "eager" else DEFAULT_CUDA_CONTEXT_BYTES


def overhead_bytes(ov: Overheads, allocated_peak_bytes: int, module_loading: str = "lazy") -> OverheadBytes:
    """Resolve the defaults and size the allocator reserve from the allocated peak."""
    ctx = cuda_context_default(module_loading) if ov.cuda_context_bytes is None else ov.cuda_context_bytes
    ws = DEFAULT_WORKSPACE_BYTES if ov.workspace_bytes is None else ov.workspace_bytes
    frac = DEFAULT_ALLOCATOR_RESERVE_FRACTION if ov.allocator_reserve_fraction is None else ov.allocator_reserve_fraction
    return OverheadBytes(ctx, ws, int(allocated_peak_bytes * frac), frac)
