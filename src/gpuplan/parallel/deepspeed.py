"""DeepSpeed ZeRO's communication buffers (``--framework deepspeed``), sized from the ``zero_optimization`` config.

Options (elements, as DeepSpeed counts them; defaults are DeepSpeed's, deepspeed/runtime/zero/config.py
``DeepSpeedZeroConfig`` at v0.12.0 and 0.19.6): ``--ds-reduce-bucket`` = ``reduce_bucket_size`` (5e8),
``--ds-overlap-comm`` = ``overlap_comm`` (auto: DeepSpeed's validator ``overlap_comm_valid`` turns it on for
stage 3 only), ``--ds-contiguous-gradients`` = ``contiguous_gradients`` (true), ``--ds-prefetch-bucket`` =
``stage3_prefetch_bucket_size`` (5e7), ``--ds-max-live-params`` = ``stage3_max_live_parameters`` (1e9).

ZeRO-1/2 (deepspeed/runtime/zero/stage_1_and_2.py): with contiguous gradients the optimizer allocates the
independent-partition-gradient (ipg) buffer, ``torch.empty(reduce_bucket_size, dtype=self.dtype)`` in the
optimizer's 16-bit dtype, and a second one with ``overlap_comm`` ("double buffers to avoid data access
conflict"), at the start of each backward (v0.12.0 ``backward()``; 0.19.6 ``setup_buckets()`` at the first
gradient hook), and frees them in the backward epilogue (``_release_ipg_buffers``). So

    ipg_bytes = reduce_bucket_size × grad_bytes × (2 if overlap_comm else 1)    [contiguous_gradients only]

live through backward, whatever the model size (the buffer is not cut to the trainable parameters). Without
contiguous gradients each gradient is reduced from its own tensor: no buffer.
ZeRO-2 also reduces every micro-batch: the first bucket it reduces allocates ``grads_in_partition``, a flat 16-bit
buffer of the rank's whole gradient partition (``copy_grads_in_partition``), and the backward epilogue adds it into
``averaged_gradients`` (views of the previous micro-batch's buffer, which they keep alive). So from the second
micro-batch of an accumulation the partition exists twice during backward. ``step()`` builds the fp32 partition as
``flatten(averaged_gradients).to(fp32)``: the flat 16-bit copy exists beside it while it converts (stage 1 too).
These are placed with the model states (``gpuplan.parallel.dataparallel``, ``gpuplan.train.stage``).
``allgather_bucket_size`` allocates nothing: the step's all-gather writes the updated partitions into the flat
16-bit groups in place (deepspeed/runtime/utils.py ``all_gather_dp_groups``: ``all_gather_into_tensor`` when
NCCL has it, else narrow views of the same flat tensors), so gpuplan has no option for it.

ZeRO-3 (deepspeed/runtime/zero/stage3.py): one reduce bucket per gradient dtype, ``torch.empty(
reduce_bucket_size)``, allocated once after the optimizer states when contiguous gradients are on (persistent;
no second buffer). Parameters are gathered by the ``PartitionedParameterCoordinator``
(partitioned_param_coordinator.py ``fetch_sub_module``): beyond the module being computed it prefetches up to
``min(max_live_parameters - available, prefetch_bucket_size)`` elements of the modules next in the trace, so the
prefetched bytes in a layer's backward are

    prefetch_bytes = min(next layer's gathered bytes, prefetch_bucket_size × e, max(0, max_live × e - current))

with e the gathered dtype's size. The CPU cannot run DeepSpeed's optimizer or NCCL: these buffers follow the
source, not a trace.
"""

from __future__ import annotations

from dataclasses import dataclass

from gpuplan.units import GiB


@dataclass(frozen=True)
class ZeroBuckets:
    """DeepSpeed's ZeRO buffers of one rank: allocated once (``persistent_bytes``) and live through backward only
    (``backward_bytes``)."""

    stage: int
    reduce_bucket: int  # elements
    overlap_comm: bool
    contiguous_gradients: bool
    prefetch_bucket: int  # elements (stage 3)
    max_live_params: int  # elements (stage 3)
    persistent_bytes: int
    backward_bytes: int

    def note(self) -> str:
        """The assumption line saying what was set."""
        if self.stage == 0:
            return ""
        if not self.contiguous_gradients:
            where = "no reduce (ipg) buffer (contiguous_gradients off)"
        elif self.stage == 3:
            where = (f"reduce bucket {self.reduce_bucket:.3g} elements = {self.persistent_bytes / GiB:.2f} GiB, "
                     f"allocated once")
        else:
            where = (f"reduce (ipg) buffer {self.reduce_bucket:.3g} elements"
                     f"{' x 2 (overlap_comm)' if self.overlap_comm else ''} = {self.backward_bytes / GiB:.2f} GiB "
                     f"through backward")
        out = f"DeepSpeed ZeRO-{self.stage} buffers: {where}"
        if self.stage == 3:
            out += (f"; prefetch up to {self.prefetch_bucket:.3g} elements of the next layer, at most "
                    f"{self.max_live_params:.3g} live")
        return out + " (deepspeed/runtime/zero/config.py defaults unless set: --ds-reduce-bucket, --ds-overlap-comm, " \
                     "--ds-contiguous-gradients, --ds-prefetch-bucket, --ds-max-live-params)"


def overlap_comm(setting: str, stage: int) -> bool:
    """``overlap_comm``: on/off as given; auto = DeepSpeed's default, on for ZeRO-3 only (config.py
    ``overlap_comm_valid``)."""
    if setting == "auto":
        return stage == 3
    return setting == "on"


def zero_buckets(stage: int, grad_bytes: int, reduce_bucket: int, overlap: str, contiguous_gradients: bool,
                 prefetch_bucket: int, max_live_params: int) -> ZeroBuckets:
    """The ZeRO buffers of ``stage`` for gradients of ``grad_bytes`` per element (formulas in the module doc)."""
    on = overlap_comm(overlap, stage)
    persistent = backward = 0
    if stage in (1, 2) and contiguous_gradients:
        backward = reduce_bucket * grad_bytes * (2 if on else 1)
    elif stage == 3 and contiguous_gradients:
        persistent = reduce_bucket * grad_bytes
    return ZeroBuckets(stage, reduce_bucket, on, contiguous_gradients, prefetch_bucket, max_live_params,
                       persistent, backward)


def zero3_prefetch_bytes(next_bytes: int, current_bytes: int, prefetch_bucket: int, max_live_params: int,
                         elem_bytes: int) -> int:
    """Bytes ZeRO-3 holds prefetched for the next layer while one layer computes: capped by the prefetch bucket
    and by what ``max_live_parameters`` leaves beside the current layer (module doc)."""
    room = max(0, max_live_params * elem_bytes - current_bytes)
    return max(0, min(next_bytes, prefetch_bucket * elem_bytes, room))
