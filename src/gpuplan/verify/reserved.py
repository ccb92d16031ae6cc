"""Reserved memory from a CPU trace: record every storage the training run allocates and frees, from the model's
creation through a few steps, on fake tensors, and replay the sequence through the caching-allocator model
(``gpuplan.verify.allocator``). The allocated peak is what the trace measures; the reserved peak is what
``torch.cuda.max_memory_reserved()`` would add to it through fragmentation (no CUDA context, no cuBLAS workspace).

The parameters are created in model order, as loading a checkpoint onto the GPU does; the step is the one
``gpuplan.verify.trace`` runs (forward with the loss, backward, ``optimizer.step()``, ``zero_grad``).
``trace_reserved_fsdp2`` does the same for one rank of an FSDP2 run under the fake process group of
``gpuplan.verify.distributed`` (the sharded parameters as loaded, then the steps). Allocations made inside a
``device_handle.stream(...)`` context (FSDP2's all-gather and reduce-scatter buffers) are tagged with that stream,
and the replay gives each stream its own pool, as the CUDA allocator does; a block freed while another stream still
reads it is returned at once (``record_stream``'s wait is not modelled).

Reserved memory only grows, so the peak of the last step is the run's; three steps reach the steady state in the
traces of ``benchmarks/allocator_replay.py`` (the third step's reserved peak equals the second's).
"""

from __future__ import annotations

import contextlib
import time
import warnings
from dataclasses import dataclass
from typing import Any

from gpuplan.verify.allocator import SegmentOpened, StepPeaks, replay, segments_opened
from gpuplan.verify.setup import TrainSetup


@dataclass(frozen=True)
class ReservedTrace:
    steps: list[StepPeaks]  # "start" (model and optimizer creation), then "step 1", "step 2", ...
    events: int
    wall_s: float
    streams: int = 1  # the CUDA streams the run allocated on (the default one and FSDP2's side streams)
    steady_segments: tuple[SegmentOpened, ...] = ()  # the new segments the second step opened

    @property
    def allocated_peak_bytes(self) -> int:
        return max(s.allocated_peak_bytes for s in self.steps)

    @property
    def reserved_peak_bytes(self) -> int:
        return max(s.reserved_peak_bytes for s in self.steps)


def _recorder():
    """A dispatch mode that logs ("alloc", key, bytes[, stream]) for each new storage an operator returns (the
    stream when it is not the default one) and ("free", key, 0) when the storage dies (a weak reference's callback, as torch.distributed._tools.mem_tracker does) or is
    resized to nothing; a storage resized back up is a new allocation. ``UntypedStorage.resize_`` is not seen by
    dispatch modes, so it is wrapped while the mode is active (FSDP2 frees its unsharded parameters and all-gather
    outputs that way, ``torch/distributed/fsdp/_fully_shard/_fsdp_common.py``)."""
    import weakref

    import torch
    from torch.utils._python_dispatch import TorchDispatchMode, is_traceable_wrapper_subclass
    from torch.utils._pytree import tree_flatten
    from torch.utils.weak import WeakIdKeyDictionary

    class AllocationLog(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.events: list[tuple] = []
            self._held = WeakIdKeyDictionary()  # storage -> [key of its live allocation, or None]
            self._next = 0
            self._resize = self._stream = None
            self._streams: dict[int, int] = {}  # id of a stream object -> its number (0: the default stream)
            self._on = [0]  # the stream of the innermost ``device_handle.stream(...)`` context

        def _alloc(self, holder: list, nbytes: int) -> None:
            self._next += 1
            holder[0] = self._next
            self.events.append(("alloc", self._next, nbytes) if self._on[-1] == 0 else
                               ("alloc", self._next, nbytes, self._on[-1]))

        def _free(self, holder: list) -> None:
            if holder[0] is not None:
                self.events.append(("free", holder[0], 0))
                holder[0] = None

        def track(self, tensor: Any) -> None:
            if is_traceable_wrapper_subclass(tensor):  # a DTensor's memory is its local tensor's
                for name in tensor.__tensor_flatten__()[0]:
                    inner = getattr(tensor, name)
                    if isinstance(inner, torch.Tensor):
                        self.track(inner)
                return
            storage = tensor.untyped_storage()
            if storage in self._held:
                return
            holder: list = [None]
            self._held[storage] = holder
            if storage.nbytes():
                self._alloc(holder, storage.nbytes())
            weakref.finalize(storage, self._free, holder)

        def mark(self, name: str) -> None:
            self.events.append(("mark", name, 0))

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in tree_flatten(out)[0]:
                if isinstance(t, torch.Tensor):
                    self.track(t)
            return out

        def __enter__(self):
            original = self._resize = torch.UntypedStorage.resize_

            def resize_(storage, size):
                before = storage.nbytes()
                result = original(storage, size)
                holder = self._held.get(storage)
                if holder is not None and storage.nbytes() != before:
                    self._free(holder)
                    if storage.nbytes():
                        self._alloc(holder, storage.nbytes())
                return result

            torch.UntypedStorage.resize_ = resize_
            # FSDP2 allocates its all-gather and reduce-scatter buffers inside ``device_handle.stream(side)``
            # (torch/distributed/fsdp/_fully_shard/_fsdp_collectives.py); on the fake cpu device that handle is
            # torch.cpu, whose stream contexts are tagged here so the replay can give each stream its pool
            stream_context = self._stream = torch.cpu.stream
            self._streams = {id(torch.cpu.current_stream()): 0}

            @contextlib.contextmanager
            def stream(side):
                self._on.append(self._streams.setdefault(id(side), len(self._streams)))
                try:
                    with stream_context(side):
                        yield
                finally:
                    self._on.pop()

            torch.cpu.stream = stream
            return super().__enter__()

        def __exit__(self, *exc):
            torch.UntypedStorage.resize_ = self._resize
            torch.cpu.stream = self._stream
            return super().__exit__(*exc)

    return AllocationLog()


def trace_reserved(config: dict[str, Any], setup: TrainSetup, steps: int = 3,
                   capacity_bytes: int | None = None) -> ReservedTrace:
    """Record the model's creation and ``steps`` training steps of ``config`` under ``setup`` and replay them."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode

    from gpuplan.verify.build import build_model, encoder_is_mlm, prepare_for_training
    from gpuplan.verify.patches import quiet_transformers, trace_patches
    from gpuplan.verify.trace import _optimizer, _train_step

    quiet_transformers()
    t0 = time.perf_counter()
    log = _recorder()
    with warnings.catch_warnings(), trace_patches(), FakeTensorMode():
        warnings.simplefilter("ignore")
        with log:
            base = build_model(config, dtype=setup.param_dtype, attention=setup.attention)
            model = prepare_for_training(base, setup)
            for p in model.parameters():  # created outside an operator (e.g. nn.Parameter wrapping)
                log.track(p)
            vocab = base.config.get_text_config().vocab_size
            classify = config.get("model_type") in ("bert", "roberta") and not encoder_is_mlm(config)
            optimizer = _optimizer([p for p in model.parameters() if p.requires_grad], setup)
            ids = torch.randint(0, vocab, (setup.batch, setup.seq))
            labels = torch.randint(0, base.config.num_labels, (setup.batch,)) if classify else ids.clone()
            for i in range(steps):
                log.mark(f"step {i + 1}")
                _train_step(model, optimizer, ids, labels, setup, None)
    return _result(log.events, t0, capacity_bytes)


def trace_reserved_fsdp2(config: dict[str, Any], *, world_size: int, batch: int, seq: int, recompute: bool = False,
                         shard_dtype: str = "fp32", param_dtype: str | None = "bf16",
                         reduce_dtype: str | None = "fp32", steps: int = 3) -> ReservedTrace:
    """Rank 0 of an FSDP2 run (every decoder layer and the root one group each, AdamW foreach): the sharded
    parameters, then ``steps`` training steps, replayed. Storages FSDP2 frees by resizing (unsharded parameters,
    all-gather outputs) are frees and new allocations in the log."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    from gpuplan.verify.dist_setup import (_decoder_layers, _distributed_patches, _fake_process_group,
                                           _torch_dtype, _training_model)

    t0 = time.perf_counter()
    log = _recorder()
    policy = MixedPrecisionPolicy(param_dtype=_torch_dtype(param_dtype), reduce_dtype=_torch_dtype(reduce_dtype))
    with _distributed_patches(), _fake_process_group(world_size, 0) as mesh, FakeTensorMode():
        model, ids, labels = _training_model(config, shard_dtype, recompute, batch, seq)
        for layer in _decoder_layers(model):
            fully_shard(layer, mesh=mesh, mp_policy=policy)
        fully_shard(model, mesh=mesh, mp_policy=policy)
        model._get_fsdp_state()._lazy_init()  # as gpuplan.verify.distributed: fake storages cannot prove padding
        with log:
            for p in model.parameters():
                log.track(p)
            optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4,
                                          foreach=True)
            _logged_steps(log, optimizer, steps, lambda: _hf_loss_backward(model, ids, labels))
    return _result(log.events, t0)


def trace_reserved_tp(config: dict[str, Any], *, world_size: int, batch: int, seq: int, recompute: bool = False,
                      dtype: str = "bf16", steps: int = 3) -> ReservedTrace:
    """Rank 0 of a tensor-parallel run (``gpuplan.verify.distributed.measure_tp_step``'s model: Megatron's
    column/row split of every decoder layer, no sequence parallelism, the vocabulary replicated; AdamW foreach over
    the split and the replicated parameters in two groups), ``steps`` training steps, replayed. DTensor's
    collectives run on the fake process group, so their outputs are plain allocations of the default stream.

    The log is a dispatch mode, which is set aside while DTensor runs an operator on its local tensors: what one
    DTensor operator allocates and frees inside itself is not logged, only its outputs. Megatron's split has no
    such operator worth counting (a linear's local matmul allocates its output only); torch's ``loss_parallel``
    does (its log-softmax decomposition, torch/distributed/tensor/parallel/loss.py, holds 12·T·V bytes of fp32
    temporaries at once), so vocabulary-parallel losses are not traced here."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.distributed.tensor import DTensor
    from torch.distributed.tensor.parallel import parallelize_module

    from gpuplan.verify.dist_setup import _decoder_layers, _distributed_patches, _fake_process_group, _training_model
    from gpuplan.verify.distributed import tp_plan

    t0 = time.perf_counter()
    log = _recorder()
    with _distributed_patches(), _fake_process_group(world_size, 0) as mesh, FakeTensorMode():
        model, ids, labels = _training_model(config, dtype, recompute, batch, seq)
        for layer in _decoder_layers(model):
            parallelize_module(layer, mesh, tp_plan())
        with log:
            for p in model.parameters():
                log.track(p)
            split = [p for p in model.parameters() if isinstance(p, DTensor)]
            replicated = [p for p in model.parameters() if not isinstance(p, DTensor)]
            optimizer = torch.optim.AdamW([{"params": split}, {"params": replicated}], lr=1e-4, foreach=True)
            _logged_steps(log, optimizer, steps, lambda: _hf_loss_backward(model, ids, labels))
    return _result(log.events, t0)


def _hf_loss_backward(model, ids, labels) -> None:
    """One forward with the model's own loss, and its backward (the loss is freed on return)."""
    model(input_ids=ids, labels=labels, use_cache=False).loss.backward()


def _logged_steps(log, optimizer, steps: int, loss_backward) -> None:
    """``steps`` training steps, each marked in ``log``: forward and backward, the optimizer step, gradients freed."""
    for i in range(steps):
        log.mark(f"step {i + 1}")
        loss_backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


def _result(events: list[tuple], t0: float, capacity_bytes: int | None = None) -> ReservedTrace:
    """The replay of a log: the peaks per step, the streams it allocated on (the default one and every side stream
    an allocation was tagged with) and the segments the second step opened."""
    streams = 1 + len({e[3] for e in events if len(e) == 4})
    return ReservedTrace(replay(events, capacity_bytes), len(events), time.perf_counter() - t0, streams,
                         tuple(segments_opened(events, "step 2")))
