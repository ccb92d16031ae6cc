"""The part of a pipeline stage's rank that does not depend on its place in the schedule: model states, every
layer's kept and rebuilt activations, backward high-water marks, gradients as created and as kept, communication
buffers and the forward moments, gathered into ``gpuplan.train.peak.PhaseInputs``.
"""

from __future__ import annotations

from dataclasses import replace

from gpuplan.model.spec import ModelSpec
from gpuplan.model.tensors import tensor_table
from gpuplan.parallel.buffers import buffers as _buffers
from gpuplan.parallel.buffers import embedding_groups
from gpuplan.parallel.dataparallel import _fsdp_dtypes, lora_local, rank_states, tensor_groups
from gpuplan.parallel.deepspeed import ZeroBuckets, zero_buckets
from gpuplan.parallel.layout import Layout
from gpuplan.parallel.shard import StageShard
from gpuplan.train.activations import Act
from gpuplan.train.checkpointing import offloaded_inputs, op_sac_kept
from gpuplan.train.config import TrainConfig
from gpuplan.train.context import AFTER_ATTN_CORE, MLP_FIRST, activation_context, norm_bwd_per_token
from gpuplan.train.korthikanti import korthikanti_layer
from gpuplan.train.logits import loss_memory, loss_shift_copy, loss_upcasts
from gpuplan.train.peak import PhaseInputs
from gpuplan.train.precision import Recipe, recipe_for
from gpuplan.train.rank_acts import (_bwd_high, _bytes, _layer_split, _rank_points, _split_kept,
                                     forward_moments)

def vocab_parallel_logits(vocab: int, tp: int, cfg: TrainConfig) -> int:
    """The vocabulary columns of the logits one tensor-parallel rank holds.

    With loss parallel each rank keeps its 1/tp slice of the logits through the cross-entropy: torchtitan
    ``apply_tp`` plans the output projection ``ColwiseParallel(output_layouts=Shard(-1), use_local_output=False)``
    and runs the loss under ``torch.distributed.tensor.parallel.loss_parallel()`` (torchtitan
    parallelisms/parallelize_llama.py, commit 004b3148; torch/distributed/tensor/parallel/loss.py computes the
    log-softmax on the local shard with all-reduced max and sum); Megatron splits them the same way
    (megatron/core/tensor_parallel/cross_entropy.py ``vocab_parallel_cross_entropy``). The loss region's factors
    (``gpuplan.train.logits``) then apply to V/tp columns. Without it (transformers' TP plans, DTensor plans that
    leave the head replicated) every rank holds the whole vocabulary's logits."""
    if cfg.framework != "torch" or cfg.loss_parallel:
        return -(-vocab // tp)
    return vocab


def pipeline_accumulation(cfg: TrainConfig, layout: Layout) -> bool:
    """FSDP2 under torch.distributed.pipelining (``--framework torch``, ``--zero`` 2 or 3, ``--pp`` > 1): each
    stage's backward runs with ``set_requires_gradient_sync(False)`` and ``set_reshard_after_backward(False)``
    until the step's last micro-batch, whose backward runs FSDP's post-backward for every group at once
    (torch/distributed/pipelining/stage.py ``backward_maybe_with_nosync``). So from a stage's first backward its
    parameters stay unsharded and its gradients accumulate unsharded, upcast to the reduce dtype
    (torch/distributed/fsdp/_fully_shard/_fsdp_param.py ``to_accumulated_grad_if_needed``); the optimizer step
    sees the sharded gradients the reduce-scatters leave. With ``--no-reshard`` (torchtitan's default under a
    pipeline: parallelize_llama.py ``apply_fsdp``, reshard_after_forward = not pp_enabled) the parameters are
    unsharded from the first forward as well, which is how gpuplan counts both cases."""
    return cfg.framework == "torch" and layout.zero >= 2 and layout.pp > 1


def ds_buckets(cfg: TrainConfig, layout: Layout, recipe: Recipe) -> ZeroBuckets | None:
    """DeepSpeed's ZeRO buffers for this layout (``gpuplan.parallel.deepspeed``); None outside DeepSpeed ZeRO.
    The ipg buffers take the optimizer's 16-bit dtype (the parameters' under the half recipes)."""
    if cfg.framework != "deepspeed" or layout.zero == 0:
        return None
    grad_bytes = 2 if recipe.param_bytes <= 2 or recipe.compute_bytes <= 2 else 4
    return zero_buckets(layout.zero, grad_bytes, cfg.ds_reduce_bucket, cfg.ds_overlap_comm,
                        bool(cfg.ds_contiguous_gradients), cfg.ds_prefetch_bucket, cfg.ds_max_live_params)


def _context(spec: ModelSpec, cfg: TrainConfig, layout: Layout, recipe: Recipe):
    """The activation model's element sizes: FSDP2 computes in its MixedPrecisionPolicy's param dtype."""
    fsdp = cfg.framework == "torch" and layout.zero >= 2
    act_recipe = recipe_for("bf16") if fsdp and _fsdp_dtypes(recipe)[1] == 2 and recipe.param_bytes == 4 else recipe
    if fsdp and recipe.master_bytes:
        act_recipe = recipe_for("bf16")
    c = activation_context(cfg, act_recipe, spec)
    if layout.cp > 1 and c.window_mask:
        # context parallelism runs causal SDPA per ring block without an explicit mask (torch
        # distributed/tensor/experimental/_attention.py supports is_causal only): no s x s sliding-window mask
        c = replace(c, window_mask=False)
    return c


def _stage_parts(spec: ModelSpec, cfg: TrainConfig, layout: Layout, recipe: Recipe, shard: StageShard, tr, c,
                 acts) -> dict:
    """Everything of a stage that does not depend on its position in the pipeline schedule."""
    from gpuplan.train.kbit import kbit_plain_bytes
    from gpuplan.train.states import effective_impl, lora_param_bytes

    table = tensor_table(spec)
    fsdp = cfg.framework == "torch" and layout.zero >= 2
    ds3 = cfg.framework == "deepspeed" and layout.zero == 3
    ds = ds_buckets(cfg, layout, recipe)
    st = rank_states(shard, table, tr, recipe, layout, cfg.framework, cfg.optimizer, effective_impl(cfg),
                     cfg.offload, cfg.lora_rank, cfg.qlora_block_size, cfg.qlora_double_quant, cfg.qlora_base,
                     cfg.qlora_group_size, ds, lora_param_bytes(cfg, recipe), spec.family if spec.moe else None,
                     kbit_plain_bytes(cfg))
    b, s = cfg.batch, cfg.seq
    sl = s // layout.cp
    tp, sp = layout.tp, layout.sp
    gathered = sp and cfg.framework == "torch"  # DTensor SP saves the all-gathered projection inputs (rank_acts)
    layers = shard.layers
    if cfg.activation_model == "korthikanti":
        per = korthikanti_layer(spec, recompute=cfg.recompute, tp=tp, sp=sp)
        kept = [_bytes(per, b, sl, s) for _ in layers]
        full = list(kept)
        extra_pts = [() for _ in layers]
    else:
        kept, full, extra_pts = [], [], []
        for i in layers:
            la = acts.layers[i]
            f = _bytes(_layer_split(la, tp, sp, gathered), b, sl, s)
            full.append(f)
            if cfg.act_mode == "full":
                kept.append(_bytes(Act(tok=c.r * spec.hidden_size).scale(1 / tp if sp else 1.0), b, sl, s))
            elif cfg.act_mode == "op":
                kept.append(_bytes(op_sac_kept(spec, c, i, tp, sp), b, sl, s))
            else:
                kept.append(_bytes(_split_kept(acts.kept[i], la, tp, sp, gathered), b, sl, s)
                            if cfg.recompute == "selective"
                            else f)
            extra_pts.append(_rank_points(spec, c, la, tp, sp))
    kept_in = tuple(kept)  # checkpointed inputs as the layers hold them while recomputed
    kept_t, host_acts = offloaded_inputs(kept_in, bool(cfg.recompute_offload) and cfg.act_mode == "full")
    kept = list(kept_t)
    # gradients of each layer: persistent (as the scheme keeps them) and at their creation (unsharded)
    g_layer, g_groups, g_head, g_embed, g_root_keep = _grads(spec, shard, table, tr, recipe, layout, cfg, layers)
    # schemes whose gradients are reduced out of the buffer backward creates (ZeRO-2/3, FSDP) hold that layer's
    # unsharded gradients until its reduce-scatter even when accumulating; the others accumulate in place
    sharded_grads = fsdp or layout.zero >= 2
    no_groups = dict.fromkeys(g_groups[0], 0) if g_groups else {}
    bufs = _buffers(spec, shard, table, layout, cfg, recipe, c.e, b, sl, fsdp, ds3, tr.quantized, tr.base_trainable)
    deq = 0
    if shard.last:  # a 4-bit output head dequantized for its forward and backward (gpuplan.train.kbit)
        from gpuplan.train.kbit import head_dequant_bytes

        deq = head_dequant_bytes(spec, cfg, c.e, tp)
        if deq:
            bufs = {**bufs, "loss_fwd": bufs["loss_fwd"] + deq, "loss_bwd": bufs["loss_bwd"] + deq}
    if ds is not None and ds.backward_bytes:
        # ZeRO-1/2's reduce (ipg) buffers exist from backward's first gradient to its epilogue
        bufs = {**bufs, "layer": bufs["layer"] + ds.backward_bytes, "end": bufs["end"] + ds.backward_bytes}
    bwd = [_bwd_high(pts, groups, tp, b, sl, s) + o for pts, groups, o in zip(extra_pts, g_groups, bufs["bwd"])]
    bwd_acc = bwd if sharded_grads else [_bwd_high(pts, no_groups, tp, b, sl, s) + o
                                         for pts, o in zip(extra_pts, bufs["bwd"])]
    tied_extra = g_head if spec.tie_embeddings and shard.first and shard.last else 0
    head_b = _bytes(acts.head.scale(1.0 / tp if sp else 1.0), b, sl, s) if shard.last else 0
    if shard.last and gathered:
        # the output head's ColwiseParallel(input_layouts=Shard(1)) saves its all-gathered input whole; the final
        # norm's own saved tensors stay sequence-sharded
        head_b = _bytes(acts.head_norm.scale(1.0 / tp) + (acts.head + acts.head_norm.scale(-1.0)), b, sl, s)
    head_norm_b = _bytes(acts.head_norm.scale(1.0 / tp if sp else 1.0), b, sl, s) if shard.last else 0
    vocab = vocab_parallel_logits(spec.vocab_size, tp, cfg)
    rows = b * sl
    if spec.encoder_head == "classify":  # one row per sequence over num_labels (gpuplan.train.engine.loss_shape)
        rows, vocab = b, spec.num_labels
    loss = loss_memory(rows, vocab, c.e, impl=cfg.loss_impl, chunk_tokens=cfg.loss_chunk_tokens,
                       keep_logits=cfg.keep_logits, hidden=spec.hidden_size, softcap=spec.final_softcap is not None,
                       vocab_parallel=cfg.framework == "torch" and bool(cfg.loss_parallel) and tp > 1,
                       upcast=loss_upcasts(spec, recipe), shift_copy=loss_shift_copy(spec, cfg))
    # paged optimizer states sit in CUDA managed memory, outside the allocator (gpuplan.train.optimizer)
    paged = st.optimizer_bytes if cfg.optimizer.startswith("paged") else 0
    static = st.weights_bytes + st.master_weights_bytes + st.optimizer_bytes - paged + st.persistent_buffers_bytes
    head_grad = g_head if shard.last else 0
    # each further micro-batch in flight: the stage's kept activations and, except under Megatron (which frees the
    # sent output's storage, deallocate_pipeline_outputs), the stage output kept for its backward
    # (torch.distributed.pipelining stage.py ``fwd_cache``; DeepSpeed's pipe buffers)
    out_b = c.e * spec.hidden_size * b * sl // (tp if sp else 1)
    per_mb = sum(kept) + (out_b if layout.pp > 1 and not shard.last and cfg.framework != "megatron" else 0)
    embed_grad = g_embed if shard.first and not (shard.last and spec.tie_embeddings) else 0
    first = PhaseInputs(
        static_bytes=static, kept_bytes=tuple(kept), full_bytes=tuple(full),
        bwd_extra_bytes=tuple(bwd),
        rebuilt_extra_bytes=tuple((k if cfg.act_mode == "full" else
                                   _bytes(Act(tok=c.r * spec.hidden_size).scale(1 / tp if sp else 1.0), b, sl, s))
                                  if cfg.checkpointed and c.r < 4 else 0 for k in kept_in),
        layer_grad_bytes=tuple(g_layer), shared_bytes=_bytes(acts.shared, b, sl, s), head_bytes=head_b,
        head_norm_bytes=head_norm_b, head_grad_bytes=head_grad, embed_grad_bytes=embed_grad,
        tied_extra_bytes=tied_extra, loss_forward_bytes=loss.forward_peak_bytes if shard.last else 0,
        loss_backward_bytes=loss.backward_peak_bytes if shard.last else 0,
        residual_grad_bytes=c.r * spec.hidden_size * b * sl // (tp if sp else 1),
        norm_bwd_bytes=norm_bwd_per_token(spec, c) * b * sl // (tp if sp else 1),
        step_temp_bytes=st.step_temp_bytes, recompute_full=cfg.checkpointed,
        held_bytes=0, act_extra_bytes=bufs["act"],
        layer_extra_bytes=bufs["layer"], end_extra_bytes=bufs["end"],
        opt_grads_bytes=st.gradients_bytes, has_head=shard.last, first_layer=layers[0] if layers else 0,
        fwd_pre_buf_bytes=bufs["fwd"][0], fwd_high_buf_bytes=bufs["fwd"][1], tail_buf_bytes=bufs["tail"],
        loss_fwd_buf_bytes=bufs["loss_fwd"], loss_bwd_buf_bytes=bufs["loss_bwd"], first_pre_buf_bytes=bufs["first"],
        **forward_moments(spec, cfg, c, acts, shard, tp, sp, b, sl, s))
    # later micro-batches of the step (gradient accumulation, pipeline micro-batches after the first backward):
    # every gradient already exists in its persistent form from the start; backward adds into it in place
    # (AccumulateGrad, Megatron's main_grad), so only the unsharded gradients of the layer being reduced come on top
    # (sharded schemes), and FSDP's root keeps its unsharded gradients until the end of backward
    grads_held = sum(g_layer) + g_root_keep
    later = replace(first, layer_grad_bytes=(0,) * len(g_layer), bwd_extra_bytes=tuple(bwd_acc),
                    head_grad_bytes=head_grad if fsdp else 0, embed_grad_bytes=embed_grad if fsdp else 0,
                    opt_grads_bytes=0)
    if pipeline_accumulation(cfg, layout):
        # every parameter of the stage stays unsharded and no layer reduce-scatters until the last micro-batch
        unsharded = bufs["act_base"] + bufs["unsharded"]
        # a layer's backward creates its gradients in the compute dtype before adding them to the accumulated ones
        bwd_piped = tuple(_bwd_high(pts, groups, tp, b, sl, s) for pts, groups in zip(extra_pts, g_groups))
        first = replace(first, act_extra_bytes=unsharded, bwd_extra_bytes=bwd_piped, layer_extra_bytes=0,
                        end_extra_bytes=bufs["unsharded"] + bufs["rs_max"], fwd_pre_buf_bytes=0,
                        fwd_high_buf_bytes=0, tail_buf_bytes=0, loss_fwd_buf_bytes=deq, loss_bwd_buf_bytes=deq,
                        first_pre_buf_bytes=0)
        later = replace(first, layer_grad_bytes=(0,) * len(g_layer), bwd_extra_bytes=bwd_piped,
                        head_grad_bytes=0, embed_grad_bytes=0, opt_grads_bytes=0)
    if ds is not None and ds.stage == 2 and ds.contiguous_gradients:
        # ZeRO-2 reduces every micro-batch into a fresh partition buffer (stage_1_and_2.py ``copy_grads_in_partition``
        # allocates ``grads_in_partition`` at the first bucket it reduces) and adds it to the accumulated
        # ``averaged_gradients`` in the backward epilogue, which keep the earlier buffer alive through their views
        extra = st.gradients_bytes
        later = replace(later, layer_extra_bytes=later.layer_extra_bytes + extra,
                        end_extra_bytes=later.end_extra_bytes + extra)
    if host_acts:
        st = replace(st, host_bytes=st.host_bytes + host_acts)
    return {"st": st, "first": first, "later": later, "per_mb": per_mb, "grads_held": grads_held,
            "kept": sum(kept), "head": head_b, "shared": _bytes(acts.shared, b, sl, s),
            "logits": max(loss.forward_peak_bytes, loss.backward_peak_bytes) if shard.last else 0,
            "buffers": st.persistent_buffers_bytes + bufs["act"] + bufs["layer"] + st.step_temp_bytes,
            "side_pools": bufs["side_pools"]}


_GRADS: dict[tuple, tuple] = {}


def _grads(spec, shard, table, tr, recipe, layout, cfg, layers):
    """Per layer of the stage: gradient bytes kept after backward, the bytes existing at each backward point of the
    layer (as created, before any reduce-scatter), the head's and the embedding's (FSDP: unsharded, as the root
    holds them through backward), and the head's + embedding's as kept after backward. Memoized per shard and
    trainability object and what the sums depend on (read-only results: callers do not change them)."""
    key = (id(shard), id(tr), spec.tie_embeddings, recipe, layout.zero, layout.shard_degree,
           layout.expert_shard_degree, cfg.framework, cfg.offload, layers, embedding_groups(spec, cfg, layout),
           cfg.lora_rank, cfg.lora_dtype, cfg.model_impl, pipeline_accumulation(cfg, layout))
    hit = _GRADS.get(key)
    if hit is not None and hit[0] is shard and hit[1] is tr and hit[2] is table:
        return hit[3]
    out = _grads_of(spec, shard, table, tr, recipe, layout, cfg, layers)
    if len(_GRADS) >= 4096:
        _GRADS.clear()
    _GRADS[key] = (shard, tr, table, out)
    return out


def _grads_of(spec, shard, table, tr, recipe, layout, cfg, layers):
    idx = {layer: n for n, layer in enumerate(layers)}
    root_keep = 0  # the head's and embedding's gradients as kept after backward (FSDP: the sharded ones)
    kept = [0] * len(layers)
    new = [{"none": 0, "mlp_first": 0, "mlp_all": 0, "after_attn": 0, "layer": 0} for _ in layers]
    head = embed = 0
    fsdp = cfg.framework == "torch" and layout.zero >= 2
    groups = embedding_groups(spec, cfg, layout)
    sb, cb, rb = _fsdp_dtypes(recipe)
    piped = pipeline_accumulation(cfg, layout)
    offloaded = cfg.offload != "none" and (fsdp or layout.zero >= 2)  # reduced gradients go to host memory
    from gpuplan.train.peft import wrapped_module
    from gpuplan.train.states import lora_param_bytes

    lora_b = lora_param_bytes(cfg, recipe)
    fused = spec.family if spec.moe else None
    for grp in tensor_groups(shard, table, tr):
        if not (grp.rg or grp.lo):
            continue
        lt, t = grp.lt, grp.t
        D = layout.expert_shard_degree if lt.expert else layout.shard_degree
        created = keep = 0
        if grp.rg and fsdp:
            # under a pipeline every micro-batch's gradient is kept unsharded in the reduce dtype until the last
            # micro-batch's backward reduce-scatters them (pipeline_accumulation)
            created, keep = lt.numel * cb * grp.count, (lt.numel * rb if piped else lt.numel // D * sb) * grp.count
        elif grp.rg:
            one = lt.numel * recipe.grad_bytes
            created = one * grp.count
            keep = (one // D if layout.zero >= 2 else one) * grp.count
        if grp.lo:
            # the adapters' gradients on this base, as created (whole, in the dtype backward computes them in)
            # and as the scheme keeps them (gpuplan.parallel.dataparallel.lora_local)
            for shape, held in lora_local(t, lt, cfg.lora_rank, wrapped_module(fused, t), D, cfg.framework,
                                          layout.zero):
                whole = shape[0] * shape[1]
                created += whole * (min(cb, lora_b) if fsdp else lora_b) * grp.count
                keep += (whole * max(rb, lora_b) if piped else held.gradients * lora_b) * grp.count
        if offloaded:
            keep = 0
        if t.layer is not None:
            n = idx[t.layer]
            kept[n] += keep
            new[n]["layer"] += created
            if t.component in ("mlp", "experts"):
                new[n]["mlp_all"] += created
            if t.component in ("mlp", "experts", "router") or t.module in AFTER_ATTN_CORE:
                new[n]["after_attn"] += created
            if t.module in MLP_FIRST or (t.module == "c_proj" and t.component == "mlp"):
                new[n]["mlp_first"] += created
            continue
        root_keep += keep
        if groups and t.component == "lm_head" and len(t.shape) == 2:
            head += keep  # its own group reduce-scatters right after the head's backward
        elif t.component in ("lm_head", "norm") or (spec.tie_embeddings and t.component == "embedding"
                                                 and t.tp == "vocab" and shard.last):
            head += created if fsdp else keep
        else:
            embed += created if fsdp else keep
    return kept, new, head, embed, root_keep
