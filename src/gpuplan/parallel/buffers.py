"""Communication and gather buffers of one pipeline stage's rank (point-to-point, all-to-all, ring attention,
FSDP2 / ZeRO-3 all-gather and reduce-scatter), placed in the phases of a step (``gpuplan.train.peak``)."""

from __future__ import annotations

from gpuplan.parallel.dataparallel import _fsdp_dtypes, quantized_weight_bytes, round_block
from gpuplan.parallel.deepspeed import zero3_prefetch_bytes


def embedding_groups(spec, cfg, layout) -> bool:
    """FSDP2 with the input embedding and the output head as groups of their own, resharded after forward
    (torchtune ``custom_sharded_layers: ['tok_embeddings', 'output']``, ``training.shard_model``): not for tied
    embeddings (one tensor serves both ends; it stays in the root group) nor without resharding after forward."""
    return (bool(cfg.fsdp_embedding_groups) and cfg.framework == "torch" and layout.zero == 3
            and cfg.reshard_after_forward and not spec.tie_embeddings)


def buffers(spec, shard, table, layout, cfg, recipe, e, b, sl, fsdp, ds3, quantized: tuple[bool, ...] = (),
            trainable: tuple[bool, ...] = ()) -> dict:
    """Communication and gather buffers: live through forward and backward ('act'), in every layer's backward
    ('layer'), per layer of the stage in backward on top of 'act' ('bwd', position-dependent), in the top layer's
    forward on top of 'act' ('fwd': at its pre-forward, through its forward), from the top layer's end through
    the loss forward ('tail') and at the end of backward ('end'); ``gpuplan.train.peak`` places them.

    FSDP2 (rules traced with a fake process group, L(i) = layer i's all-gather in the compute dtype, L = the
    largest): the root group stays unsharded from its pre-forward to the final callback. In forward each
    all-gather result is kept after its copy-out until the next group's copy-out
    (torch/distributed/fsdp/_fully_shard/_fsdp_param_group.py ``wait_for_unshard``, ``comm_ctx.all_gather_state``)
    and the last one until the root's post-forward, after the loss (torch/distributed/fsdp/_fully_shard/
    _fsdp_state.py ``_post_forward``). With reshard_after_forward: root + L through the loss, the
    top layer's pre-forward holds its unsharded parameters and two all-gather buffers (root + L(top) + 2L), its
    forward its unsharded parameters beside the kept buffer (root + L(top) + L). Without resharding every layer
    stays unsharded through forward (root + ΣL(i)); the pre-forward adds two all-gather buffers, the top layer's
    forward and the tail (final norm, head, loss) the kept one, L(top). In backward layer i holds its own
    unsharded parameters, the prefetched all-gather of layer i-1 (none for the stage's first layer) and the
    reduce-scatter input of layer i+1 (none for the top layer, the first to reduce); without resharding layer i's
    parameters are freed at its post-backward: layer i's backward holds root + L(0..i) and no prefetch.
    DeepSpeed ZeRO-3 gathers like the resharding case, but prefetches in backward only what its coordinator
    allows: at most ``stage3_prefetch_bucket_size`` elements of the next layer and what
    ``stage3_max_live_parameters`` leaves beside the current one (``gpuplan.parallel.deepspeed``).

    The stage's first layer's pre-forward ('first', beyond 'act', when the root group holds parameters): the
    root group's all-gather result, R = root parameters padded to the shard degree in the compute dtype, is still
    held when the first layer's all-gather and copy-out run, since it is freed only at the next group's copy-out
    (``wait_for_unshard`` as above): root unsharded + R + L(0) unsharded + L(0)'s buffer, i.e. R + 2·L(0) − L
    with resharding and R + 2·L(0) − ΣL(i) without (traced: FSDP2 Qwen3-1.7B shape at world 2 in fp32, where
    R = 536,879,104 B outweighs a layer's buffer).

    Hybrid sharding (``--dp-shard``): every gather and reduce-scatter runs inside the shard group, so L(i) is
    layer i's parameters padded to a multiple of the shard degree N·cp (the same unsharded size); the replicas'
    all-reduce adds nothing on the GPU beyond ``hsdp_offload_bytes`` (traced: 2 × 4 and 4 × 2 meshes hold exactly
    what a 4- and 2-way FSDP2 run holds).

    QLoRA (``quantized`` flags per tensor of the table): a quantized base tensor is gathered as its packed NF4
    storage (FSDP-QLoRA shards and all-gathers ``bnb_4bit_quant_storage``; dequantization happens inside the
    layer's forward), so L(i) counts its NF4 bytes; being frozen it has no gradient to reduce-scatter (FSDP2 reduces
    only parameters with gradients, ``_fsdp_param_group.py`` ``post_backward``).

    Embedding and head groups (``embedding_groups``; traced with a fake process group, E and H their all-gathers):
    the root keeps the final norm only. The embedding's all-gather result takes the root's place at the first
    layer's pre-forward (E + 2·L(0) − L). The head's pre-forward frees the top layer's kept buffer and holds its
    own beside its unsharded weight (2H − L through the head's forward; H − L once it is resharded, through the
    loss forward). In backward the head is gathered again (H − L through the loss backward) and its gradient is
    reduce-scattered at once, so only its shard stays. The embedding's backward needs no weight and is not
    gathered again: at the end its unsharded gradient (counted with the gradients), the reduce-scatter input (its
    copy in the reduce dtype) and output (E / D) are alive."""
    act = layer = end = tail = first = side = 0
    unsharded = rs_max = 0  # FSDP2: every layer's and the root's all-gather, the largest reduce-scatter input
    loss_fwd = loss_bwd = None
    fwd = (0, 0)
    n = len(shard.layers)
    bwd = [0] * n
    h = spec.hidden_size
    if layout.pp > 1:
        act += 2 * b * sl * h * e  # p2p send and receive buffers of one micro-batch's hidden states
    if layout.ep > 1 and spec.moe:
        act += 2 * spec.moe.top_k * b * sl * h * e  # all-to-all dispatch and combine of the routed rows
    if layout.cp > 1:
        act += 4 * b * sl * spec.kv_dim * e  # ring attention: K and V blocks in flight, double-buffered
    act_base = act
    if (fsdp or ds3) and n:
        sb, cb, rb = _fsdp_dtypes(recipe)
        D = layout.shard_degree
        per_layer: dict[int, int] = {}  # padded elements that carry gradients (reduce-scatter)
        gather: dict[int, int] = {}  # all-gather bytes per layer beyond per_layer's (NF4 base tensors)
        root = emb = head = 0
        graded: dict[object, int] = {}  # padded elements with gradients, per layer (None: outside the layers)
        groups = fsdp and embedding_groups(spec, cfg, layout)
        for lt in shard.tensors:
            t = table[lt.index]
            padded = -(-lt.dim0 // D) * D * (lt.numel // max(lt.dim0, 1))
            if not trainable or trainable[lt.index]:
                graded[t.layer] = graded.get(t.layer, 0) + padded
            if quantized and quantized[lt.index] and t.layer is not None:
                nf4 = quantized_weight_bytes(padded, cfg.qlora_block_size, cfg.qlora_double_quant, cfg.qlora_base,
                                             t.shape, cfg.qlora_group_size)
                gather[t.layer] = gather.get(t.layer, 0) + nf4
            elif t.layer is None and groups and t.component == "embedding":
                emb += padded
            elif t.layer is None and groups and t.component == "lm_head" and len(t.shape) == 2:
                head += padded
            elif t.layer is None:
                root += padded
            else:
                per_layer[t.layer] = per_layer.get(t.layer, 0) + padded
        ag = [round_block(per_layer.get(i, 0) * cb + gather.get(i, 0)) for i in shard.layers]
        rs = [round_block(per_layer.get(i, 0) * rb) for i in shard.layers]
        L = max(ag)
        root_b = root * cb if fsdp else 0
        raf = layout.zero == 3 and cfg.reshard_after_forward
        root_ag = round_block(root * cb) if fsdp and root else 0
        if fsdp:
            unsharded = root_b + sum(ag) + (round_block(emb * cb) if emb else 0) + (round_block(head * cb)
                                                                                   if head else 0)
            rs_max = max(rs)
        if raf or ds3:
            act += root_b + L
            fwd = (ag[-1] + L, ag[-1])
            if root_ag:
                first = root_ag + 2 * ag[0] - L
            if emb:
                first = round_block(emb * cb) + 2 * ag[0] - L
            if head:
                H = round_block(head * cb)
                tail, loss_fwd, loss_bwd = 2 * H - L, H - L, H - L
            for k in range(n):
                ahead = ag[k - 1] if k > 0 else 0
                if ds3:
                    ahead = zero3_prefetch_bytes(ahead, ag[k], cfg.ds_prefetch_bucket, cfg.ds_max_live_params, cb)
                bwd[k] = ag[k] + ahead + (rs[k + 1] if k + 1 < n else 0) - L
        else:
            act += root_b + sum(ag)
            fwd = (2 * L, ag[-1])
            if root_ag:
                first = root_ag + 2 * ag[0] - sum(ag)
            tail = ag[-1] if fsdp else 0
            for k in range(n):
                bwd[k] = -sum(ag[k + 1:]) + (rs[k + 1] if k + 1 < n else 0)
        end += round_block(root * rb) if fsdp else 0
        if fsdp:  # only tensors with gradients are reduce-scattered (_fsdp_param_group.py post_backward)
            rs_graded = max((round_block(graded.get(i, 0) * rb) for i in shard.layers), default=0)
            side = side_stream_pools(L, rs_graded, max(rs), root_ag, round_block(graded.get(None, 0) * rb),
                                     max(round_block(emb * cb) if emb else 0, round_block(head * cb) if head else 0))
        if emb:
            end += round_block(emb * rb) + round_block(emb // D * rb)
        if fsdp and layout.replicas > 1 and cfg.offload != "none":
            held, root_held = hsdp_offload_bytes([per_layer.get(i, 0) for i in shard.layers], root, D, rb)
            for k in range(n):
                bwd[k] += sum(held[k + 1:])
            end += sum(held) + root_held
    return {"act": act, "layer": layer, "end": end, "bwd": bwd, "fwd": fwd, "tail": tail, "first": first,
            "loss_fwd": tail if loss_fwd is None else loss_fwd, "loss_bwd": 0 if loss_bwd is None else loss_bwd,
            "side_pools": side, "act_base": act_base, "unsharded": unsharded, "rs_max": rs_max}


def side_stream_pools(layer_ag: int, layer_rs: int, layer_rs_counted: int, root_ag: int, root_rs: int,
                      group_ag: int = 0) -> int:
    """Bytes FSDP2's side streams keep cached: all-gather outputs are allocated on the all-gather stream and
    reduce-scatter inputs and outputs on the reduce-scatter stream (torch/distributed/fsdp/_fully_shard/
    _fsdp_collectives.py ``foreach_all_gather``, ``foreach_reduce``), and the caching allocator reuses a cached
    block only for its own stream (``c10/cuda/CUDACachingAllocator.cpp`` ``get_free_block``), so each pool grows
    to its own high-water mark and stays reserved beside the default stream's. All-gather: the largest
    non-layer group's result (the root, or the embedding and head groups) held beside the next layer's, or two
    layers' in flight; reduce-scatter: the root's input (every root gradient at once, at the end of backward) or
    the largest layer's, of the tensors that have gradients. A layer's backward already counts one prefetched
    all-gather and one reduce-scatter input in the allocated peak, so what the pools add beyond the highest phase
    is the rest. Checked against an FSDP2 rank's trace replayed per stream (benchmarks/allocator_replay.py)."""
    gather = max(max(root_ag, group_ag) + layer_ag, 2 * layer_ag)
    reduce = max(root_rs, layer_rs)
    return max(0, gather + reduce - layer_ag - layer_rs_counted)


def hsdp_offload_bytes(layer_padded: list[int], root_padded: int, shard_degree: int, reduce_bytes: int
                       ) -> tuple[list[int], int]:
    """GPU bytes that FSDP2 hybrid sharding with ``CPUOffloadPolicy`` keeps per FSDP group until the end of
    backward: (per layer of the stage, root). Each group's reduce-scatter output, padded numel / (N·cp) elements in
    the reduce dtype, is all-reduced across the replicas in place and then copied to the host; FSDP2 keeps a
    reference to it (``AllReduceState``, torch/distributed/fsdp/_fully_shard/_fsdp_param_group.py
    ``post_backward``) until ``finalize_backward`` at the end of backward, so the GPU copy outlives the host copy.
    Without offload that output is the sharded gradient itself (reduce dtype = shard dtype in every recipe here:
    ``_fsdp_dtypes``), so nothing extra. Ignores a reduce dtype that differs from the shard dtype (then the
    reduce-dtype output is held beside the cast gradient the same way; no recipe here uses one)."""
    layers = [round_block(n // shard_degree * reduce_bytes) for n in layer_padded]
    return layers, round_block(root_padded // shard_degree * reduce_bytes)
