"""Per-rank memory of one FSDP2 or tensor-parallel training step, traced on CPU under a fake process group.

The real Hugging Face ``transformers`` model is built from a config.json dict (random weights, no download) inside
``torch._subclasses.fake_tensor.FakeTensorMode`` on the cpu device (``gpuplan.verify.build``), so no tensor holds
data. A fake process group (``torch.testing._internal.distributed.fake_pg.FakeStore``, backend ``"fake"``) makes
one process act as rank ``rank`` of ``world_size``: collectives return at once without moving data, while every
buffer FSDP2 and DTensor allocate around them is allocated as on a GPU. Two steps run (forward, backward,
``optimizer.step()``, ``zero_grad(set_to_none=True)``); the second one, with optimizer states present, is the
steady state that is reported, as the peak of each phase with its breakdown.

- FSDP2: ``fully_shard`` on every decoder layer and on the root (on a 1-D mesh, or for hybrid sharding on a
  2-D replicate × shard mesh: gathers and reduce-scatters inside the shard group, an all-reduce of each reduced
  gradient shard across the replicas, torch/distributed/fsdp/_fully_shard/_fsdp_collectives.py
  ``foreach_reduce``), counted by
  ``torch.distributed._tools.fsdp2_mem_tracker.FSDPMemTracker``, which files every live storage as sharded or
  unsharded parameter, all-gather or reduce-scatter buffer, sharded or unsharded gradient, optimizer state,
  activation (made in forward) or temporary (made in backward: activation gradients, recomputed activations).
- Tensor parallel: ``parallelize_module`` with Megatron's column/row split of the attention and MLP projections
  (Shoeybi et al. 2019, arXiv:1909.08053, section 3), counted by ``torch.distributed._tools.mem_tracker.MemTracker``.

What the trace needs beyond ``gpuplan.verify.patches.trace_patches`` (packed-mask and 512-byte rounding patches):
- DTensor's sharding propagation gets a private fake mode (``gpuplan.verify.dist_setup``).
- FSDP2's lazy init re-pads uneven shards unless ``data_ptr()`` proves they already are; fake storages have no
  data pointer, so it is run before tracking starts (otherwise the last ranks' shards are filed as activations).
- Adam's host-side ``step`` counters and the unsharded gradients awaiting their reduce-scatter are handled by the
  tracker (``gpuplan.verify.dist_tracker``). Phases follow program order: forward is the model call with the loss,
  backward ``loss.backward()``, optimizer ``optimizer.step()`` and ``zero_grad()``.

What this cannot see: the CUDA context, cuBLAS and attention workspaces, NCCL's own buffers, allocator
fragmentation and caching (the reserved-minus-allocated gap), and buffers another CUDA stream keeps alive longer
than program order says.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gpuplan.errors import InputError
from gpuplan.verify.dist_setup import (_common_inputs, _decoder_layers, _distributed_patches, _dtype_name,
                                       _fake_process_group, _replicate_degree, _torch_dtype, _training_model)
from gpuplan.verify.dist_tracker import (_FSDP_KEYS, _TP_KEYS, _all_gather_bytes, _all_reduce_held_bytes,
                                         _group_is_gathered, _innermost_module, _peaks, _pending_grad_bytes,
                                         _snapshot_bytes, _two_steps, _watched)

# Megatron split of a Llama-style decoder layer (module names as in transformers' Llama/Qwen2/Mistral).
TP_COLUMN_MODULES = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "mlp.gate_proj", "mlp.up_proj")
TP_ROW_MODULES = ("self_attn.o_proj", "mlp.down_proj")


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
    replicate: int = 1,
    lr: float = 1e-4,
    alive: bool = False,
    lora_rank: int = 0,
    lora_targets: tuple[str, ...] = (),
    reshard_last: bool = True,
    embedding_groups: bool = False,
) -> dict:
    """Per-rank memory (bytes) of a steady-state FSDP2 training step with AdamW (foreach, the CUDA default).

    ``reshard_last`` False keeps the top decoder layer unsharded from its forward to its backward (torchtitan's
    ``apply_fsdp`` of Dec 2024: ``reshard_after_forward = int(layer_id) < len(model.layers) - 1``).
    ``embedding_groups`` makes the input embedding and the output head FSDP groups of their own (torchtune's
    ``custom_sharded_layers: ['tok_embeddings', 'output']``), leaving the root group the final norm only.

    ``lora_rank`` > 0 trains LoRA adapters of that rank on ``lora_targets`` over the frozen model, adapters in the
    model's dtype and sharded with their layer like every parameter (``gpuplan.verify.dist_setup._training_model``);
    AdamW then holds the trainable parameters only.

    ``replicate`` > 1 traces hybrid sharding (HSDP): ``world_size`` ranks as a (replicate, world_size /
    replicate) mesh named ("dp_replicate", "dp_shard") like torchtitan's, parameters sharded over the second
    dimension and replicated over the first.

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
    categories); ``group_all_gather_bytes`` (per FSDP group); with ``alive``, each phase's ``alive``: every
    storage live at its peak, summed by category and the module and op that made it
    (``gpuplan.verify.dist_tracker._alive_at``; slower);
    ``param_numel`` and ``sharded_param_numel`` (this rank's shards, without padding).
    """
    _common_inputs(config, world_size, rank, batch, seq)
    replicate = _replicate_degree(replicate, world_size)
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
                                             "pending_grads": _pending_grad_bytes(tracker),
                                             "all_reduce_held": _all_reduce_held_bytes(tracker)}

    with _distributed_patches(), _fake_process_group(world_size, rank, replicate) as mesh, FakeTensorMode():
        model, ids, labels = _training_model(config, shard_dtype, recompute, batch, seq, lora_rank,
                                             tuple(lora_targets))
        param_numel = sum(p.numel() for p in model.parameters())
        layers = _decoder_layers(model)
        if embedding_groups:
            fully_shard(model.get_input_embeddings(), mesh=mesh, mp_policy=policy,
                        reshard_after_forward=reshard_after_forward)
        for i, layer in enumerate(layers):
            keep = not reshard_last and i == len(layers) - 1
            fully_shard(layer, mesh=mesh, mp_policy=policy, reshard_after_forward=reshard_after_forward and not keep)
        if embedding_groups:
            fully_shard(model.get_output_embeddings(), mesh=mesh, mp_policy=policy,
                        reshard_after_forward=reshard_after_forward)
        fully_shard(model, mesh=mesh, mp_policy=policy)
        # FSDP2's lazy init (normally at the first forward) re-pads uneven shards when it cannot prove by
        # data_ptr() that they are already padded, which fake storages never can: run it before tracking, or the
        # re-padded shards of the last ranks are filed as activations.
        model._get_fsdp_state()._lazy_init()
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, foreach=True)
        tracker = _watched(FSDPMemTracker, describe, alive)(model, optimizer)
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
        "replicate": replicate, "shard": world_size // replicate,
        "shard_dtype": shard_dtype, "param_dtype": param_dtype, "reduce_dtype": reduce_dtype,
        "recompute": recompute, "reshard_after_forward": reshard_after_forward, "lora_rank": lora_rank,
        "reshard_last": reshard_last, "embedding_groups": embedding_groups,
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
    alive: bool = False,
) -> dict:
    """Per-rank memory (bytes) of a steady-state tensor-parallel training step with AdamW (foreach).

    The attention and MLP projections of every decoder layer are split over ``world_size`` ranks (q/k/v and
    gate/up by output column, o/down by input row; Megatron-LM, arXiv:1909.08053 section 3); the embedding,
    norms and lm_head stay replicated and there is no sequence parallelism. The split (DTensor) and replicated
    (plain) parameters sit in separate AdamW groups, since one foreach kernel cannot mix them. Heads and KV
    heads must divide by ``world_size``.

    Returns ``peak_bytes``, ``peak_phase``, ``at_peak`` (see ``_TP_KEYS``), ``phases`` (with ``alive`` as for
    ``measure_fsdp2_step``), ``start``, ``forward_end``, ``backward_end``, ``end``,
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
        tracker = _watched(MemTracker, _innermost_module, alive)()
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


def sp_model_plan() -> dict:
    """torchtitan's plan outside the layers: the embedding's output sequence-sharded, the final norm sequence
    parallel, the head's logits left as vocabulary shards for ``loss_parallel``."""
    from torch.distributed.tensor import Replicate, Shard
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, SequenceParallel

    return {"model.embed_tokens": RowwiseParallel(input_layouts=Replicate(), output_layouts=Shard(1)),
            "model.norm": SequenceParallel(),
            "lm_head": ColwiseParallel(input_layouts=Shard(1), output_layouts=Shard(-1), use_local_output=False)}


def sp_layer_plan() -> dict:
    """torchtitan's plan of one decoder layer, on the transformers module names."""
    from torch.distributed.tensor import Replicate, Shard
    from torch.distributed.tensor.parallel import (ColwiseParallel, PrepareModuleInput, RowwiseParallel,
                                                   SequenceParallel)

    return {"input_layernorm": SequenceParallel(),
            "self_attn": PrepareModuleInput(input_kwarg_layouts={"hidden_states": Shard(1)},
                                            desired_input_kwarg_layouts={"hidden_states": Replicate()}),
            "self_attn.q_proj": ColwiseParallel(), "self_attn.k_proj": ColwiseParallel(),
            "self_attn.v_proj": ColwiseParallel(), "self_attn.o_proj": RowwiseParallel(output_layouts=Shard(1)),
            "post_attention_layernorm": SequenceParallel(),
            "mlp": PrepareModuleInput(input_layouts=(Shard(1),), desired_input_layouts=(Replicate(),)),
            "mlp.gate_proj": ColwiseParallel(), "mlp.up_proj": ColwiseParallel(),
            "mlp.down_proj": RowwiseParallel(output_layouts=Shard(1))}

def measure_sp_saved(config: Mapping[str, Any], *, world_size: int, rank: int = 0, batch: int, seq: int,
                     dtype: str = "bf16") -> dict:
    """Bytes one rank's forward saves for backward under tensor + sequence parallelism as torchtitan applies it
    (``sp_layer_plan`` and ``sp_model_plan`` on the transformers module names, a fake process group): every
    tensor autograd saves, counted once per storage, parameters left out; the head's logits are computed but no
    loss. Returns ``saved_bytes`` and ``gathered`` (saved tensors whose local shape is the whole global shape while
    their tokens were sequence-sharded before: the all-gathered projection inputs)."""
    _common_inputs(config, world_size, rank, batch, seq)
    dtype = _dtype_name("dtype", dtype)
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.distributed.tensor import DTensor
    from torch.distributed.tensor.parallel import parallelize_module

    with _distributed_patches(), _fake_process_group(world_size, rank) as mesh, FakeTensorMode():
        model, ids, _ = _training_model(config, dtype, False, batch, seq)
        for layer in _decoder_layers(model):
            parallelize_module(layer, mesh, sp_layer_plan())
        parallelize_module(model, mesh, sp_model_plan())

        def local(t):
            return t._local_tensor if isinstance(t, DTensor) else t

        params = {id(local(p).untyped_storage()) for p in model.parameters()}
        saved: dict[int, int] = {}
        held = []  # the storages stay referenced, so their ids are not reused during the forward
        gathered = 0

        def pack(t):
            nonlocal gathered
            st = local(t).untyped_storage()
            held.append(st)
            if id(st) not in params and id(st) not in saved:
                saved[id(st)] = st.nbytes()
                if isinstance(t, DTensor) and t.dim() >= 2 and t.shape[-1] == config["hidden_size"] and \
                        local(t).numel() == t.numel() and t.numel() % seq == 0 and t.numel() // seq >= batch:
                    gathered += st.nbytes()
            return t

        # the embedding's output is sequence-sharded, so the model would derive positions from the local length
        positions = torch.arange(seq)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = model.model(input_ids=ids, position_ids=positions.unsqueeze(0).expand(batch, seq),
                              cache_position=positions)
            model.lm_head(out.last_hidden_state)
    return {"saved_bytes": sum(saved.values()), "gathered_bytes": gathered, "world_size": world_size,
            "batch": batch, "seq": seq, "dtype": dtype}


def measure_op_sac_saved(config: Mapping[str, Any], *, batch: int, seq: int) -> dict:
    """What torchtitan's op-level selective checkpointing policy saves for one decoder layer of the transformers
    model (fp32, SDPA, under fake tensors): the layer runs inside ``torch.utils.checkpoint`` with
    ``create_selective_checkpoint_contexts`` and a policy of the same rule as torchtitan's (``_save_list`` = mm,
    SDPA flash / efficient, reduce-scatter; every second mm recomputed; torchtitan
    parallelisms/parallelize_llama.py, commit 004b3148). Returns the bytes of the outputs the policy marks
    MUST_SAVE in the forward plus the layer input (``saved_bytes``), and the number of mm calls (``mm_calls``).
    On the CPU SDPA runs the math kernel, so the attention output and its logsumexp are not among the saved
    outputs here; ``gpuplan.train.checkpointing`` adds them for the flash / efficient kernels."""
    _common_inputs(config, 1, 0, batch, seq)
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.utils.checkpoint import CheckpointPolicy, checkpoint, create_selective_checkpoint_contexts

    save_ops = {torch.ops.aten.mm.default, torch.ops.aten._scaled_dot_product_efficient_attention.default,
                torch.ops.aten._scaled_dot_product_flash_attention.default}
    seen = {"mm": 0, "bytes": 0}

    def policy(ctx, func, *args, **kwargs):
        if ctx.is_recompute:
            return CheckpointPolicy.PREFER_RECOMPUTE
        if func == torch.ops.aten.mm.default:
            seen["mm"] += 1
        save = func in save_ops and not (func == torch.ops.aten.mm.default and seen["mm"] % 2 == 0)
        return CheckpointPolicy.MUST_SAVE if save else CheckpointPolicy.PREFER_RECOMPUTE

    def record(func, out):
        outs = out if isinstance(out, (tuple, list)) else (out,)
        return sum(t.untyped_storage().nbytes() for t in outs if isinstance(t, torch.Tensor))

    def ctx_fn():
        fwd, rec = create_selective_checkpoint_contexts(policy)
        return _RecordingContext(fwd, policy, record, seen, torch), rec

    with FakeTensorMode():
        model, ids, _ = _training_model(config, "fp32", False, batch, seq)
        layer = _decoder_layers(model)[0]
        hidden = model.model.embed_tokens(ids).detach().requires_grad_(True)
        pos = torch.arange(seq).unsqueeze(0).expand(batch, -1)
        emb = model.model.rotary_emb(hidden, pos)
        def run(x):
            y = layer(x, attention_mask=None, position_ids=pos, position_embeddings=emb)
            return y[0] if isinstance(y, tuple) else y

        out = checkpoint(run, hidden, use_reentrant=False, context_fn=ctx_fn)
        del out
        seen["bytes"] += hidden.untyped_storage().nbytes()
    return {"saved_bytes": seen["bytes"], "mm_calls": seen["mm"]}


class _RecordingContext:
    """Wraps the forward context of ``create_selective_checkpoint_contexts`` to add up the bytes of the outputs
    the policy saves (the dispatch mode it returns decides; this only observes)."""

    def __init__(self, inner, policy, record, seen, torch) -> None:
        from torch.utils._python_dispatch import TorchDispatchMode

        class _Observe(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                kwargs = kwargs or {}
                out = func(*args, **kwargs)
                if func in (torch.ops.aten.mm.default,) and seen["mm"] % 2 == 1:
                    seen["bytes"] += record(func, out)
                return out

        self._inner, self._observe = inner, _Observe()

    def __enter__(self):
        self._inner.__enter__()
        self._observe.__enter__()
        return self

    def __exit__(self, *exc):
        self._observe.__exit__(*exc)
        return self._inner.__exit__(*exc)
