"""Per-rank memory of one FSDP2 or tensor-parallel training step, traced on CPU under a fake process group.

The real Hugging Face ``transformers`` model is built from a config.json dict (random weights, no download) inside
``torch._subclasses.fake_tensor.FakeTensorMode`` on the cpu device (``gpuplan.verify.build``), so no tensor holds
data. A fake process group (``torch.testing._internal.distributed.fake_pg.FakeStore``, backend ``"fake"``) makes
one process act as rank ``rank`` of ``world_size``: collectives return at once without moving data, while every
buffer FSDP2 and DTensor allocate around them is allocated as on a GPU. Two steps run (forward, backward,
``optimizer.step()``, ``zero_grad(set_to_none=True)``); the second one, with optimizer states present, is the
steady state that is reported, as the peak of each phase with its breakdown.

- FSDP2: ``fully_shard`` on every decoder layer and on the root, counted by
  ``torch.distributed._tools.fsdp2_mem_tracker.FSDPMemTracker``, which files every live storage as sharded or
  unsharded parameter, all-gather or reduce-scatter buffer, sharded or unsharded gradient, optimizer state,
  activation (made in forward) or temporary (made in backward: activation gradients, recomputed activations).
- Tensor parallel: ``parallelize_module`` with Megatron's column/row split of the attention and MLP projections
  (Shoeybi et al. 2019, arXiv:1909.08053, section 3), counted by ``torch.distributed._tools.mem_tracker.MemTracker``.

What the trace needs beyond ``gpuplan.verify.patches.trace_patches`` (packed-mask and 512-byte rounding patches):
- DTensor's sharding propagation computes output shapes by running each op on fake tensors in whatever fake mode
  is active (``torch.distributed.tensor._sharding_prop.detect_fake_mode``): inside our fake mode it finds ours,
  and the tracker, which skips only ops run under a *different* fake mode, counts those shape-only tensors. The
  propagation is given its own private fake mode for the duration of the trace.
- FSDP2's lazy init re-pads uneven shards unless ``data_ptr()`` proves they already are; fake storages have no
  data pointer, so it is run before tracking starts (otherwise the last ranks' shards are filed as activations).
- Adam's ``step`` counters live on the host unless the optimizer is capturable or fused
  (``torch/optim/adam.py``, ``_init_group``): they are left out of device memory.
- Unsharded gradients are filed as backward temporaries until their FSDP group's post-backward hook runs; at each
  phase peak they are moved to ``unsharded_grads_bytes``.

What this cannot see: the CUDA context, cuBLAS and attention workspaces, NCCL's own buffers, allocator
fragmentation and caching (the reserved-minus-allocated gap), and buffers another CUDA stream keeps alive longer
than program order says.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from gpuplan.errors import InputError, require_positive_int
from gpuplan.verify.build import TORCH_DTYPES

# FSDPMemTracker / MemTracker reference types -> our keys (bytes).
_FSDP_KEYS = {
    "Sharded Param": "sharded_params_bytes",
    "Unsharded Param": "unsharded_params_bytes",
    "All Gather": "all_gather_bytes",
    "Sharded Grad": "sharded_grads_bytes",
    "Unsharded Grad": "unsharded_grads_bytes",
    "Reduce Scatter": "reduce_scatter_bytes",
    "OptState": "optimizer_states_bytes",
    "Activation": "activations_bytes",
    "Temp": "temporaries_bytes",
    "Buffer": "buffers_bytes",
    "Inputs": "inputs_bytes",
}
_TP_KEYS = {
    "Parameter": "params_bytes",
    "Gradient": "grads_bytes",
    "Optstate": "optimizer_states_bytes",
    "Activation": "activations_bytes",
    "Temp": "temporaries_bytes",
    "Buffer": "buffers_bytes",
    "Other": "inputs_bytes",
}

# Megatron split of a Llama-style decoder layer (module names as in transformers' Llama/Qwen2/Mistral).
TP_COLUMN_MODULES = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "mlp.gate_proj", "mlp.up_proj")
TP_ROW_MODULES = ("self_attn.o_proj", "mlp.down_proj")


def _dtype_name(field: str, value: str | None, allow_none: bool = False) -> str | None:
    if value is None and allow_none:
        return None
    if value not in TORCH_DTYPES:
        raise InputError(field, value, f"must be one of {', '.join(TORCH_DTYPES)}")
    return value


def _torch_dtype(name: str | None):
    import torch

    return None if name is None else getattr(torch, TORCH_DTYPES[name])


@contextlib.contextmanager
def _distributed_patches() -> Iterator[None]:
    """``gpuplan.verify.patches.trace_patches`` plus the DTensor one: sharding propagation gets a private fake
    mode (module docstring); undone on exit."""
    import torch.distributed.tensor._sharding_prop as sharding_prop

    from gpuplan.verify.patches import quiet_transformers, trace_patches

    quiet_transformers()
    saved = sharding_prop.detect_fake_mode

    def detect_fake_mode(*args, **kwargs):  # noqa: ARG001 - same signature as torch._guards.detect_fake_mode
        return None

    sharding_prop.detect_fake_mode = detect_fake_mode
    try:
        with trace_patches():
            yield
    finally:
        sharding_prop.detect_fake_mode = saved


@contextlib.contextmanager
def _fake_process_group(world_size: int, rank: int) -> Iterator[Any]:
    """Initialise the default process group as rank ``rank`` of a fake group and yield a 1-D cpu mesh."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.testing._internal.distributed.fake_pg import FakeStore

    if dist.is_initialized():
        raise RuntimeError("a process group is already initialised in this process")
    dist.init_process_group("fake", rank=rank, world_size=world_size, store=FakeStore())
    try:
        yield init_device_mesh("cpu", (world_size,))
    finally:
        dist.destroy_process_group()


def _training_model(config: Mapping[str, Any], dtype: str, recompute: bool, batch: int, seq: int):
    """The transformers causal LM in training mode (call inside ``FakeTensorMode``), its input ids and labels."""
    import torch

    from gpuplan.verify.build import build_model, prepare_for_training
    from gpuplan.verify.setup import TrainSetup

    model = build_model(dict(config), dtype=dtype, attention="sdpa")
    model = prepare_for_training(model, TrainSetup(batch=batch, seq=seq, recompute="full" if recompute else "none"))
    ids = torch.randint(0, model.config.get_text_config().vocab_size, (batch, seq))
    return model, ids, ids.clone()


def _decoder_layers(model) -> list:
    layers = getattr(getattr(model, "model", None), "layers", None)
    if layers is None:
        raise InputError("config", type(model).__name__, "needs a decoder stack at model.model.layers")
    return list(layers)


def _snapshot_bytes(snapshot: dict, keys: Mapping[str, str], with_total: bool = True) -> dict[str, int]:
    """One device's tracker snapshot as ``{our_key: bytes}`` (plus ``total_bytes``)."""
    if not snapshot:
        return {key: 0 for key in keys.values()} | ({"total_bytes": 0} if with_total else {})
    if len(snapshot) != 1:
        raise RuntimeError(f"expected one device in the trace, got {list(snapshot)}")
    device_snapshot = next(iter(snapshot.values()))
    out = {key: 0 for key in keys.values()}
    for reftype, value in device_snapshot.items():
        name = getattr(reftype, "value", reftype)
        if name == "Total":
            if with_total:
                out["total_bytes"] = int(value)
        else:
            out[keys[name]] += int(value)
    return out


def _two_steps(model, optimizer, ids, labels, tracker) -> dict:
    """Run two training steps inside ``tracker``; watch phase peaks in the second (steady-state) step and return
    the snapshots at its start and at the end of its forward, backward and optimizer step."""
    marks = {}
    with tracker:
        for step in range(2):
            if step == 1:
                tracker.reset_mod_stats()
                marks["start"] = tracker.get_tracker_snapshot("current")
                tracker.phase_peaks.clear()
                tracker.watching = True
            loss = model(input_ids=ids, labels=labels, use_cache=False).loss
            marks["forward_end"] = tracker.get_tracker_snapshot("current")
            loss.backward()
            del loss
            marks["backward_end"] = tracker.get_tracker_snapshot("current")
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        tracker.watching = False
        marks["end"] = tracker.get_tracker_snapshot("current")
    return marks


def _watched(tracker_cls, describe):
    """A subclass of ``tracker_cls`` that keeps the peak of each phase (forward, backward, optimizer) with
    ``describe(tracker)`` at that moment, and leaves AdamW's ``step`` counters out of device memory (torch keeps
    them on the host unless ``capturable`` or ``fused``: ``torch/optim/adam.py``, ``_init_group``)."""
    from torch.distributed._tools.mem_tracker import _UpdateType

    class _Watched(tracker_cls):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.phase_peaks: dict[str, dict] = {}
            self.watching = False

        def _track_optimizer_states(self, reftype, optimizer) -> None:
            super()._track_optimizer_states(reftype, optimizer)
            for state in optimizer.state.values():
                step = state.get("step")
                if step is None or step.device.type != "cpu":
                    continue
                winfo, _ = self._WINFO.get(step.untyped_storage(), (None, None))
                if winfo is not None and winfo.mem_consumed > 0:
                    self._update_snap(_UpdateType.DEL, winfo)
                    winfo.mem_consumed = 0

        def _update_peak_stats(self, peak_state) -> None:
            super()._update_peak_stats(peak_state)
            if not self.watching:
                return
            total = sum(snap["Total"] for snap in self._curr_mem_snap.values())
            phase = _phase_name(self)
            best = self.phase_peaks.get(phase)
            if best is None or total > best["total"]:
                self.phase_peaks[phase] = {"total": total, "snapshot": self.get_tracker_snapshot("current"),
                                           **describe(self)}

    return _Watched


def _phase_name(tracker) -> str:
    if tracker._in_opt:
        return "optimizer"
    return "backward" if tracker._mod_tracker.is_bw else "forward"


def _innermost_module(tracker) -> dict:
    """The deepest module running now. The tracker's set of active modules can keep stale entries for
    submodules re-run by activation recompute; an entry whose ``...layers.N`` ancestor is not active is one."""
    active = set(tracker._mod_tracker.parents) - {"Global"}

    def live(name: str) -> bool:
        parts = name.split(".")
        return all(".".join(parts[: i + 1]) in active for i, part in enumerate(parts[:-1]) if part.isdigit())

    candidates = [name for name in active if live(name)]
    return {"module": max(candidates, key=len) if candidates else ""}


def _peaks(tracker, keys: Mapping[str, str], start: Mapping[str, int]) -> dict:
    """Overall and per-phase peaks of the watched step as plain dicts of bytes.

    The tracker files every allocation made inside ``optimizer.step()`` under optimizer states; the states
    themselves already exist when the steady-state step starts, so anything above ``start`` is the step's
    scratch (foreach intermediates) and is reported as ``optimizer_temporaries_bytes``.
    """
    phases = {}
    for phase, record in tracker.phase_peaks.items():
        extra = {k: v for k, v in record.items() if k not in ("total", "snapshot")}
        breakdown = _snapshot_bytes(record["snapshot"], keys, with_total=False)
        states = breakdown["optimizer_states_bytes"]
        breakdown["optimizer_states_bytes"] = min(states, start["optimizer_states_bytes"])
        breakdown["optimizer_temporaries_bytes"] = states - breakdown["optimizer_states_bytes"]
        pending = extra.pop("pending_grads", 0)
        if pending:
            breakdown["unsharded_grads_bytes"] += pending
            breakdown["temporaries_bytes"] -= pending
        phases[phase] = {"peak_bytes": record["total"], "breakdown": breakdown, **extra}
    top = max(phases, key=lambda name: phases[name]["peak_bytes"])
    return {"peak_bytes": phases[top]["peak_bytes"], "peak_phase": top,
            "at_peak": phases[top]["breakdown"], "phases": phases}


def _pending_grad_bytes(tracker) -> int:
    """Bytes of unsharded gradients that autograd has produced but whose FSDP group has not reduce-scattered
    yet. The tracker files them as backward temporaries until the group's post-backward hook; the root group's
    (lm_head, final norm, embedding) wait until the very end of backward."""
    total = 0
    for module in tracker._root_mod.modules():
        state = getattr(module, "_get_fsdp_state", None)
        group = state()._fsdp_param_group if state else None
        for param in group.fsdp_params if group else ():
            grad = getattr(getattr(param, "_unsharded_param", None), "grad", None)
            if grad is None:
                continue
            winfo, _ = tracker._WINFO.get(grad.untyped_storage(), (None, None))
            if winfo is not None and getattr(winfo.reftype, "value", "") == "Temp":
                total += winfo.mem_consumed
    return total


def _group_is_gathered(module) -> bool:
    """Whether the FSDP group of ``module`` holds allocated unsharded (all-gathered) parameter storage."""
    state = getattr(module, "_get_fsdp_state", None)
    group = state()._fsdp_param_group if state else None
    if group is None:
        return False
    return any(out.untyped_storage().size() > 0
               for param in group.fsdp_params for out in getattr(param, "all_gather_outputs", ()))


def _common_inputs(config: object, world_size: int, rank: int, batch: int, seq: int) -> None:
    if not isinstance(config, Mapping) or not config.get("model_type"):
        raise InputError("config", type(config).__name__, "must be a config.json dict with a model_type")
    require_positive_int("world_size", world_size)
    require_positive_int("batch", batch)
    require_positive_int("seq", seq)
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
        raise InputError("rank", rank, f"must be an integer in [0, {world_size})")


def _all_gather_bytes(module) -> int:
    """Bytes of the all-gather buffer of ``module``'s FSDP group, one flat allocation of ``world_size`` x the
    padded shards in the compute dtype (``MixedPrecisionPolicy.param_dtype``, else the parameter dtype)."""
    from gpuplan.verify.patches import cuda_block_bytes

    group = module._get_fsdp_state()._fsdp_param_group
    world = group.mesh_info.shard_mesh_size
    total = 0
    for param in group.fsdp_params:
        dtype = param.param_dtype or param.orig_dtype
        total += param.padded_sharded_param_size.numel() * world * dtype.itemsize
    return cuda_block_bytes(total)


def measure_fsdp2_step(
    config: Mapping[str, Any],
    *,
    world_size: int,
    rank: int = 0,
    batch: int,
    seq: int,
    shard_dtype: str = "bf16",
    param_dtype: str | None = None,
    reduce_dtype: str | None = None,
    recompute: bool = False,
    reshard_after_forward: bool = True,
    lr: float = 1e-4,
) -> dict:
    """Per-rank memory (bytes) of a steady-state FSDP2 training step with AdamW (foreach, the CUDA default).

    ``config`` is a config.json dict. ``shard_dtype`` is the dtype the model is built in (the sharded
    parameters, gradients and AdamW states); ``param_dtype``/``reduce_dtype`` form ``MixedPrecisionPolicy``
    (None: no cast), so fp32 shards with bf16 compute is ``shard_dtype="fp32", param_dtype="bf16",
    reduce_dtype="fp32"``. Every decoder layer is one FSDP group with ``reshard_after_forward``; the root group
    (embedding, final norm, lm_head) keeps FSDP2's default for the root (no reshard after forward).
    ``recompute`` checkpoints every decoder layer (transformers, non-reentrant).

    Returns a dict of plain numbers: ``peak_bytes``, ``peak_phase`` and ``at_peak`` (the tracker's categories
    at the peak, see ``_FSDP_KEYS``); ``phases`` (forward / backward / optimizer: the peak of each with its
    breakdown, the innermost module running and the FSDP groups whose parameters were unsharded then);
    ``start``, ``forward_end``, ``backward_end``, ``end`` (live memory at those instants, the tracker's own
    categories); ``group_all_gather_bytes`` (per FSDP group);
    ``param_numel`` and ``sharded_param_numel`` (this rank's shards, without padding).
    """
    _common_inputs(config, world_size, rank, batch, seq)
    shard_dtype = _dtype_name("shard_dtype", shard_dtype)
    param_dtype = _dtype_name("param_dtype", param_dtype, allow_none=True)
    reduce_dtype = _dtype_name("reduce_dtype", reduce_dtype, allow_none=True)
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.distributed._tools.fsdp2_mem_tracker import FSDPMemTracker
    from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard

    policy = MixedPrecisionPolicy(param_dtype=_torch_dtype(param_dtype), reduce_dtype=_torch_dtype(reduce_dtype))

    def describe(tracker) -> dict:
        gathered = [name or "root" for name, module in tracker._root_mod.named_modules()
                    if _group_is_gathered(module)]
        return _innermost_module(tracker) | {"unsharded_groups": gathered,
                                             "pending_grads": _pending_grad_bytes(tracker)}

    with _distributed_patches(), _fake_process_group(world_size, rank) as mesh, FakeTensorMode():
        model, ids, labels = _training_model(config, shard_dtype, recompute, batch, seq)
        param_numel = sum(p.numel() for p in model.parameters())
        for layer in _decoder_layers(model):
            fully_shard(layer, mesh=mesh, mp_policy=policy, reshard_after_forward=reshard_after_forward)
        fully_shard(model, mesh=mesh, mp_policy=policy)
        # FSDP2's lazy init (normally at the first forward) re-pads uneven shards when it cannot prove by
        # data_ptr() that they are already padded, which fake storages never can: run it before tracking, or the
        # re-padded shards of the last ranks are filed as activations.
        model._get_fsdp_state()._lazy_init()
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, foreach=True)
        tracker = _watched(FSDPMemTracker, describe)(model, optimizer)
        tracker.track_inputs((ids, labels))
        snaps = _two_steps(model, optimizer, ids, labels, tracker)
        sharded_numel = sum(p.to_local().numel() for p in model.parameters())
        groups = {name or "root": _all_gather_bytes(module) for name, module in model.named_modules()
                  if isinstance(module, FSDPModule)}
        marks = {name: _snapshot_bytes(snap, _FSDP_KEYS) for name, snap in snaps.items()}
        start = marks["start"]
        peaks = _peaks(tracker, _FSDP_KEYS, start)
    return {
        "layout": "fsdp2",
        "world_size": world_size, "rank": rank, "batch": batch, "seq": seq,
        "shard_dtype": shard_dtype, "param_dtype": param_dtype, "reduce_dtype": reduce_dtype,
        "recompute": recompute, "reshard_after_forward": reshard_after_forward,
        **peaks,
        **marks,
        "group_all_gather_bytes": groups,
        "param_numel": param_numel,
        "sharded_param_numel": sharded_numel,
    }


def tp_plan(layer_prefix: str = "") -> dict:
    """The Megatron plan for one decoder layer: column-split q/k/v/gate/up, row-split o/down."""
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel

    plan = {layer_prefix + name: ColwiseParallel() for name in TP_COLUMN_MODULES}
    plan.update({layer_prefix + name: RowwiseParallel() for name in TP_ROW_MODULES})
    return plan


def measure_tp_step(
    config: Mapping[str, Any],
    *,
    world_size: int,
    rank: int = 0,
    batch: int,
    seq: int,
    dtype: str = "bf16",
    recompute: bool = False,
    lr: float = 1e-4,
) -> dict:
    """Per-rank memory (bytes) of a steady-state tensor-parallel training step with AdamW (foreach).

    The attention and MLP projections of every decoder layer are split over ``world_size`` ranks (q/k/v and
    gate/up by output column, o/down by input row; Megatron-LM, arXiv:1909.08053 section 3); the embedding,
    norms and lm_head stay replicated and there is no sequence parallelism. The split (DTensor) and replicated
    (plain) parameters sit in separate AdamW groups, since one foreach kernel cannot mix them. Heads and KV
    heads must divide by ``world_size``.

    Returns ``peak_bytes``, ``peak_phase``, ``at_peak`` (see ``_TP_KEYS``), ``phases``, ``start``,
    ``forward_end``, ``backward_end``, ``end``,
    ``param_numel`` and ``local_param_numel`` (this rank).
    """
    _common_inputs(config, world_size, rank, batch, seq)
    dtype = _dtype_name("dtype", dtype)
    for field in ("num_attention_heads", "num_key_value_heads"):
        heads = config.get(field) or config.get("num_attention_heads")
        if not isinstance(heads, int) or heads % world_size:
            raise InputError(field, heads, f"must be divisible by the tensor-parallel degree {world_size}")
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.distributed._tools.mem_tracker import MemTracker
    from torch.distributed.tensor import DTensor
    from torch.distributed.tensor.parallel import parallelize_module

    with _distributed_patches(), _fake_process_group(world_size, rank) as mesh, FakeTensorMode():
        model, ids, labels = _training_model(config, dtype, recompute, batch, seq)
        param_numel = sum(p.numel() for p in model.parameters())
        for layer in _decoder_layers(model):
            parallelize_module(layer, mesh, tp_plan())
        split = [p for p in model.parameters() if isinstance(p, DTensor)]
        replicated = [p for p in model.parameters() if not isinstance(p, DTensor)]
        optimizer = torch.optim.AdamW([{"params": split}, {"params": replicated}], lr=lr, foreach=True)
        tracker = _watched(MemTracker, _innermost_module)()
        tracker.track_external(model, optimizer, ids, labels)
        snaps = _two_steps(model, optimizer, ids, labels, tracker)
        local_numel = sum(p.to_local().numel() if isinstance(p, DTensor) else p.numel()
                          for p in model.parameters())
        marks = {name: _snapshot_bytes(snap, _TP_KEYS) for name, snap in snaps.items()}
        start = marks["start"]
        peaks = _peaks(tracker, _TP_KEYS, start)
    return {
        "layout": "tp",
        "world_size": world_size, "rank": rank, "batch": batch, "seq": seq,
        "dtype": dtype, "recompute": recompute,
        **peaks,
        **marks,
        "param_numel": param_numel,
        "local_param_numel": local_numel,
    }
