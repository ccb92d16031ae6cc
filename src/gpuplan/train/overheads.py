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
- Allocator reserve: the larger of two rules (``allocator_reserve``). The flat one: 5 % of the allocated peak (the
  caching allocator rounds large blocks to 2 MiB and splits 20 MiB segments, ``c10/cuda/CUDACachingAllocator.cpp``).
  The segment rule, for the step's largest tensors: in steady state the loss region's tensors (logits, their fp32
  copies and gradients, each a multi-GiB request) find no cached block large enough, since the rest of the step
  has split the segments they opened before, so each opens a segment of its own on top of the pool the rest of
  the step needs: reserved = 1.05 × the highest phase without the loss region + the loss region's high-water
  mark. FSDP2's all-gather and reduce-scatter buffers are allocated on side streams, whose cached blocks only
  their own stream reuses (``get_free_block`` keys the pool by stream), so their pools add: the root group's
  all-gather beside one layer's, and the root's reduce-scatter input. Checked against CPU traces replayed
  through the allocator model (``gpuplan.verify.allocator``; ``benchmarks/allocator_replay.py`` prints both).
  A given ``--allocator-reserve`` fraction replaces both rules (e.g. 0 with
  ``PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True``, which maps pages into one segment instead).
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
class SegmentInputs:
    """What the segment rule of ``allocator_reserve`` reads from a step."""

    nonloss_peak_bytes: int  # the highest phase with the loss region left out
    loss_bytes: int  # the loss region's high-water mark (0 on a rank without the head)
    side_pool_bytes: int = 0  # FSDP2's all-gather and reduce-scatter streams' pools


@dataclass(frozen=True)
class OverheadBytes:
    cuda_context_bytes: int
    workspace_bytes: int
    allocator_reserve_bytes: int
    allocator_reserve_fraction: float
    segments: SegmentInputs | None = None  # set when the segment rule sized the reserve (above the flat fraction)

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


def allocator_reserve(allocated_peak_bytes: int, fraction: float, segments: SegmentInputs | None = None) -> int:
    """Bytes the caching allocator holds beyond the allocated peak (module docstring): ``fraction`` × the peak, or,
    when larger, what the segment rule reserves, (1 + fraction) × the highest phase without the loss region +
    the loss region's high-water mark + the side streams' pools, less the peak."""
    flat = int(allocated_peak_bytes * fraction)
    if segments is None:
        return flat
    steady = int(segments.nonloss_peak_bytes * (1 + fraction)) + segments.loss_bytes + segments.side_pool_bytes
    return max(flat, steady - allocated_peak_bytes)


def overhead_bytes(ov: Overheads, allocated_peak_bytes: int, module_loading: str = "lazy",
                   segments: SegmentInputs | None = None) -> OverheadBytes:
    """Resolve the defaults and size the allocator reserve from the allocated peak (and, with the default
    fraction, the segment rule's inputs)."""
    ctx = cuda_context_default(module_loading) if ov.cuda_context_bytes is None else ov.cuda_context_bytes
    ws = DEFAULT_WORKSPACE_BYTES if ov.workspace_bytes is None else ov.workspace_bytes
    if ov.allocator_reserve_fraction is not None:
        frac = ov.allocator_reserve_fraction
        return OverheadBytes(ctx, ws, allocator_reserve(allocated_peak_bytes, frac), frac)
    frac = DEFAULT_ALLOCATOR_RESERVE_FRACTION
    flat, reserve = allocator_reserve(allocated_peak_bytes, frac), allocator_reserve(allocated_peak_bytes, frac, segments)
    return OverheadBytes(ctx, ws, reserve, frac, segments if reserve > flat else None)


def segment_rule_note(ov: OverheadBytes) -> list[str]:
    """The assumption line of the segment rule, when it sized the reserve."""
    sg = ov.segments
    if sg is None:
        return []
    gib = 1 << 30
    side = (f" + {sg.side_pool_bytes / gib:.2f} GiB of FSDP2 all-gather and reduce-scatter stream pools"
            if sg.side_pool_bytes else "")
    return [f"allocator reserve {ov.allocator_reserve_bytes / gib:.2f} GiB: the loss region's tensors open segments "
            f"of their own beside the pool the rest of the step needs ({1 + ov.allocator_reserve_fraction:.2f} x "
            f"{sg.nonloss_peak_bytes / gib:.2f} GiB without the loss region + {sg.loss_bytes / gib:.2f} GiB of loss "
            f"region{side}), above the flat {ov.allocator_reserve_fraction:.0%} (gpuplan.train.overheads)"]
