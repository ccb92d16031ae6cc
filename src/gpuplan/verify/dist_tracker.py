"""Watching the steady-state step of a distributed trace (``gpuplan.verify.distributed``): the peak of each phase
with its breakdown and what was running then (the innermost module, the FSDP groups holding unsharded parameters,
gradients waiting for their reduce-scatter), and the tracker snapshots as plain dicts of bytes.

- Adam's ``step`` counters live on the host unless the optimizer is capturable or fused
  (``torch/optim/adam.py``, ``_init_group``): they are left out of device memory.
- Unsharded gradients are filed as backward temporaries until their FSDP group's post-backward hook runs; at each
  phase peak they are moved to ``unsharded_grads_bytes``.
- Hybrid sharding (a 2-D mesh): what FSDP2 holds for the replicas' all-reduce beyond the sharded gradients is
  reported at each phase peak as ``all_reduce_held`` (``_all_reduce_held_bytes``).
"""

from __future__ import annotations

from collections.abc import Mapping


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
    the snapshots at its start and at the end of its forward, backward and optimizer step. Phases follow program
    order, as ``gpuplan.verify.trace`` delimits them: forward is the model call (loss included), backward runs
    from ``loss.backward()`` to its return and the release of the loss, optimizer from ``optimizer.step()`` to
    ``zero_grad()``."""
    marks = {}
    with tracker:
        for step in range(2):
            if step == 1:
                tracker.reset_mod_stats()
                marks["start"] = tracker.get_tracker_snapshot("current")
                tracker.phase_peaks.clear()
                tracker.watching = True
            tracker.step_phase = "forward"
            loss = model(input_ids=ids, labels=labels, use_cache=False).loss
            marks["forward_end"] = tracker.get_tracker_snapshot("current")
            tracker.step_phase = "backward"
            loss.backward()
            del loss
            marks["backward_end"] = tracker.get_tracker_snapshot("current")
            tracker.step_phase = "optimizer"
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        tracker.watching = False
        marks["end"] = tracker.get_tracker_snapshot("current")
    return marks


def _watched(tracker_cls, describe, alive: bool = False):
    """A subclass of ``tracker_cls`` that keeps the peak of each phase (forward, backward, optimizer) with
    ``describe(tracker)`` at that moment, and leaves AdamW's ``step`` counters out of device memory (torch keeps
    them on the host unless ``capturable`` or ``fused``: ``torch/optim/adam.py``, ``_init_group``). With
    ``alive`` each phase peak also lists every live storage by where it was made (``_alive_at``)."""
    from torch.distributed._tools.mem_tracker import _UpdateType

    class _Watched(tracker_cls):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.phase_peaks: dict[str, dict] = {}
            self.watching = False
            self.step_phase: str | None = None
            self._op = ""
            self._origin: dict[int, tuple] = {}  # id(winfo) -> (winfo, op, module) while the storage lives

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if alive:
                self._op = str(func).removeprefix("aten.")
            return super().__torch_dispatch__(func, types, args, kwargs)

        def _update_snap(self, u_type, winfo, old_mem_consumed=None, old_reftype=None) -> None:
            super()._update_snap(u_type, winfo, old_mem_consumed, old_reftype)
            if not alive:
                return
            if u_type == _UpdateType.ADD:
                self._origin[id(winfo)] = (winfo, self._op, _innermost_module(self)["module"].partition(".")[2])
            elif u_type == _UpdateType.DEL:
                self._origin.pop(id(winfo), None)

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
                                           **describe(self), **({"alive": _alive_at(self)} if alive else {})}

    return _Watched


_BY_ORIGIN = ("Activation", "Temp", "All Gather", "Reduce Scatter", "Unsharded Grad")


def _alive_at(tracker) -> list[dict]:
    """The live storages now, summed by (tracker category, module that made it, op that made it) for activations,
    temporaries and communication buffers, by category alone for parameters, gradients and states: a list of
    ``{"category", "module", "op", "bytes", "count"}``, largest first. Module names drop the root's own name;
    storages made before tracking started (parameters, states, inputs) have none."""
    sums: dict[tuple[str, str, str], list[int]] = {}
    for winfo, op, module in tracker._origin.values():
        if winfo.mem_consumed <= 0:
            continue
        cat = getattr(winfo.reftype, "value", str(winfo.reftype))
        key = (cat, module, op) if cat in _BY_ORIGIN else (cat, "", "")
        acc = sums.setdefault(key, [0, 0])
        acc[0] += winfo.mem_consumed
        acc[1] += 1
    rows = [{"category": k[0], "module": k[1], "op": k[2], "bytes": v[0], "count": v[1]} for k, v in sums.items()]
    return sorted(rows, key=lambda r: (-r["bytes"], r["category"], r["module"], r["op"]))


def _phase_name(tracker) -> str:
    """The phase of the running step (``_two_steps`` sets ``step_phase`` in program order). Without it, the module
    tracker's view: it files the moments after ``loss.backward()`` returns (every gradient alive, before
    ``optimizer.step()``) under forward, as no module's backward is running then."""
    phase = getattr(tracker, "step_phase", None)
    if tracker._in_opt or phase == "optimizer":
        return "optimizer"
    return "backward" if tracker._mod_tracker.is_bw or phase == "backward" else "forward"


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


def _all_reduce_held_bytes(tracker) -> int:
    """Bytes FSDP2 keeps for the replicas' all-reduce of hybrid sharding that are not a sharded gradient: each
    group's ``AllReduceState.all_reduce_input`` (the reduce-scatter output, all-reduced in place and held until
    ``finalize_backward``, torch/distributed/fsdp/_fully_shard/_fsdp_param_group.py ``post_backward``) unless its
    storage is the group's sharded gradients (reduce dtype = shard dtype, no CPU offload). 0 on a 1-D mesh."""
    total = 0
    for module in tracker._root_mod.modules():
        state = getattr(module, "_get_fsdp_state", None)
        group = state()._fsdp_param_group if state else None
        held = getattr(group, "_all_reduce_state", None) if group is not None else None
        if held is None:
            continue
        winfo, _ = tracker._WINFO.get(held.all_reduce_input.untyped_storage(), (None, None))
        grads = {id(tracker._WINFO.get(g._local_tensor.untyped_storage(), (None, None))[0])
                 for g in (p.sharded_param.grad for p in group.fsdp_params) if g is not None}
        if winfo is not None and id(winfo) not in grads:
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


def _all_gather_bytes(module) -> int:
    """Bytes of the all-gather buffer of ``module``'s FSDP group, one flat allocation of the shard group's size
    (``world_size``, or its shard dimension on a 2-D mesh) x the padded shards in the compute dtype
    (``MixedPrecisionPolicy.param_dtype``, else the parameter dtype)."""
    from gpuplan.verify.patches import cuda_block_bytes

    group = module._get_fsdp_state()._fsdp_param_group
    world = group.mesh_info.shard_mesh_size
    total = 0
    for param in group.fsdp_params:
        dtype = param.param_dtype or param.orig_dtype
        total += param.padded_sharded_param_size.numel() * world * dtype.itemsize
    return cuda_block_bytes(total)
