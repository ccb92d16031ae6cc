"""Per-rank memory of a parallel layout: every pipeline stage's rank (tensor- and expert-parallel rank 0, the most
loaded), the phase-aware peak on each, and the most loaded of them.

Activations under tensor parallelism follow Korthikanti et al. 2022 section 4.2 applied to the saved tensors of
``gpuplan.train.activations``: tensors inside the column/row-parallel pair (q, k, v, attention output and
statistics, MLP intermediates, the half weight copies of split weights) are divided by tp; the norm inputs and
outputs, the residual stream and the router stay replicated unless sequence parallelism splits them too. Context
parallelism gives each rank seq/cp tokens. Pipeline stages hold the activations of their in-flight micro-batches:
1F1B warm-up depth ``pp - stage`` and, interleaved, ``2·(pp - stage - 1) + (vpp - 1)·pp + 1`` chunks of
``layers/(pp·vpp)`` layers (Megatron-LM ``schedules.py``; stage 0 gives Korthikanti's factor 1 + (p-1)/(p·v)).
From the second micro-batch of a step on, the gradients of the earlier ones are alive during forward and backward.
FSDP2 buffers follow the rules traced with a fake process group (root group unsharded through forward and
backward, one all-gathered layer kept through the loss, prefetch and reduce-scatter inputs in backward).
"""

from __future__ import annotations

from gpuplan.model.spec import ModelSpec
from gpuplan.model.tensors import tensor_table
from gpuplan.parallel.dataparallel import RankStates, _fsdp_dtypes, rank_states, round_block
from gpuplan.parallel.layout import Layout
from gpuplan.parallel.shard import StageShard, stage_shards
from gpuplan.report import MemoryReport, fits
from gpuplan.train.activations import Act
from gpuplan.train.config import TrainConfig
from gpuplan.train.korthikanti import korthikanti_layer
from gpuplan.train.logits import loss_memory
from gpuplan.train.model_acts import model_acts
from gpuplan.train.overheads import overhead_bytes
from gpuplan.train.peak import Phase, PhaseInputs, peak, phases
from gpuplan.train.peft import trainability
from gpuplan.train.precision import Recipe, recipe_for

_REPLICATED_PREFIXES = ("x", "h1", "input_layernorm", "post_attention_layernorm", "ln_1", "ln_2", "router",
                        "moe.index", "moe.gathered", "moe.weights", "moe.down_out", "q_proj.in_half", "k_proj.in_half",
                        "v_proj.in_half", "mlp.gate_proj.in_half", "mlp.up_proj.in_half", "shared_gate", "rotary",
                        "q_a", "kv_a", "attn.resid_mask", "mlp.resid_mask")
_ROW_LORA = ("o_proj", "down_proj", "c_proj", "dense", "dense_4h_to_h", "w2")


def _sharded(key: str) -> bool:
    if key.endswith(".lora_in"):
        return key.rsplit(".", 1)[0].rsplit(".", 1)[-1] in _ROW_LORA
    return not key.startswith(_REPLICATED_PREFIXES)


def _split(items: tuple[tuple[str, Act], ...], tp: int, sp: bool) -> Act:
    out = Act()
    for key, a in items:
        out = out + (a.scale(1.0 / tp) if sp or _sharded(key) else a)
    return out


def _bytes(a: Act, b: int, s_local: int, s: int) -> int:
    return int(a.tok * b * s_local + a.sq * b * s_local * s + a.fixed)


def inflight(layout: Layout, stage: int) -> float:
    """Micro-batches whose activations a stage holds at its peak, in units of the stage's layers."""
    if layout.pp == 1:
        return 1.0
    m = layout.microbatches
    if layout.vpp == 1:
        return float(min(layout.pp - stage, m))
    chunks = min(2 * (layout.pp - stage - 1) + (layout.vpp - 1) * layout.pp + 1, m * layout.vpp)
    return chunks / layout.vpp


def estimate_rank(spec: ModelSpec, cfg: TrainConfig, layout: Layout, recipe: Recipe, shard: StageShard
                  ) -> tuple[RankStates, list[Phase], dict[str, int]]:
    table, tr = tensor_table(spec), trainability(spec, cfg)
    fsdp = cfg.framework == "torch" and layout.zero >= 2
    ds3 = cfg.framework == "deepspeed" and layout.zero == 3
    act_recipe = recipe_for("bf16") if fsdp and _fsdp_dtypes(recipe)[1] == 2 and recipe.param_bytes == 4 else recipe
    if fsdp and recipe.master_bytes:
        act_recipe = recipe_for("bf16")
    from gpuplan.train.engine import _norm_bwd_per_token, activation_context
    c = activation_context(cfg, act_recipe)
    acts = model_acts(spec, tr, c, cfg.recompute)
    from gpuplan.train.states import effective_impl
    st = rank_states(shard, table, tr, recipe, layout, cfg.framework, cfg.optimizer, effective_impl(cfg),
                     cfg.offload, cfg.lora_rank)
    b, s = cfg.batch, cfg.seq
    sl = s // layout.cp
    tp, sp = layout.tp, layout.sp
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
            f = _bytes(_split(la.items, tp, sp), b, sl, s)
            full.append(f)
            if cfg.recompute == "full":
                kept.append(_bytes(Act(tok=c.r * spec.hidden_size).scale(1 / tp if sp else 1.0), b, sl, s))
            else:
                kept.append(_bytes(_split_kept(acts.kept[i], la, tp, sp), b, sl, s) if cfg.recompute == "selective"
                            else f)
            extra_pts.append(la.points)
    # gradients of each layer: persistent (as the scheme keeps them) and at their creation (unsharded)
    g_layer, g_groups, g_head, g_embed = _grads(spec, shard, table, tr, recipe, layout, cfg, layers)
    bwd = [max([0] + [groups[p.grads] + _bytes(p.extra.scale(1.0 / tp), b, sl, s) for p in pts])
           if pts else groups["mlp_first"] for pts, groups in zip(extra_pts, g_groups)]
    tied_extra = g_head if spec.tie_embeddings and shard.first and shard.last else 0
    n_in = inflight(layout, shard.stage)
    acc = layout.microbatches > 1 or cfg.grad_accum > 1
    head_b = _bytes(acts.head.scale(1.0 / tp if sp else 1.0), b, sl, s) if shard.last else 0
    head_norm_b = _bytes(acts.head_norm.scale(1.0 / tp if sp else 1.0), b, sl, s) if shard.last else 0
    vocab = spec.vocab_size // tp if cfg.framework != "torch" else spec.vocab_size
    loss = loss_memory(b * sl, vocab, c.e, impl=cfg.loss_impl, chunk_tokens=cfg.loss_chunk_tokens,
                       keep_logits=cfg.keep_logits, hidden=spec.hidden_size)
    held = int((n_in - 1) * sum(kept))
    bufs = _buffers(spec, shard, table, layout, cfg, recipe, c.e, b, sl, fsdp, ds3)
    static = st.weights_bytes + st.master_weights_bytes + st.optimizer_bytes + st.persistent_buffers_bytes
    all_persistent = sum(g_layer) + g_head + g_embed
    pin = PhaseInputs(
        static_bytes=static, kept_bytes=tuple(kept), full_bytes=tuple(full),
        bwd_extra_bytes=tuple(bwd),
        rebuilt_extra_bytes=tuple(k if cfg.recompute == "full" and c.r < 4 else 0 for k in kept),
        layer_grad_bytes=tuple(g_layer), shared_bytes=_bytes(acts.shared, b, sl, s), head_bytes=head_b,
        head_norm_bytes=head_norm_b, head_grad_bytes=g_head if shard.last else 0,
        embed_grad_bytes=g_embed if shard.first and not (shard.last and spec.tie_embeddings) else 0,
        tied_extra_bytes=tied_extra, loss_forward_bytes=loss.forward_peak_bytes if shard.last else 0,
        loss_backward_bytes=loss.backward_peak_bytes if shard.last else 0,
        residual_grad_bytes=c.r * spec.hidden_size * b * sl // (tp if sp else 1),
        norm_bwd_bytes=_norm_bwd_per_token(spec, c) * b * sl // (tp if sp else 1),
        step_temp_bytes=st.step_temp_bytes, recompute_full=cfg.recompute == "full",
        held_bytes=held + (all_persistent if acc else 0), act_extra_bytes=bufs["act"],
        layer_extra_bytes=bufs["layer"], end_extra_bytes=bufs["end"],
        opt_grads_bytes=st.gradients_bytes, has_head=shard.last, first_layer=layers[0] if layers else 0)
    info = {"activations": sum(kept) * n_in + head_b + _bytes(acts.shared, b, sl, s),
            "logits": max(loss.forward_peak_bytes, loss.backward_peak_bytes) if shard.last else 0,
            "buffers": st.persistent_buffers_bytes + bufs["act"] + bufs["layer"] + st.step_temp_bytes,
            "inflight": n_in}
    return st, phases(pin), info


def _split_kept(kept: Act, la, tp: int, sp: bool) -> Act:
    """Selective recompute keeps the layer without its attention core: scale like the full set."""
    full_raw = la.saved
    ratio = 1.0 if full_raw.tok == 0 else kept.tok / full_raw.tok
    return _split(la.items, tp, sp).scale(ratio)


def _grads(spec, shard, table, tr, recipe, layout, cfg, layers):
    """Per layer of the stage: gradient bytes kept after backward, the bytes existing at each backward point of the
    layer (as created, before any reduce-scatter), the head's and the embedding's."""
    from gpuplan.train.engine import _AFTER_ATTN_CORE, _MLP_FIRST

    idx = {layer: n for n, layer in enumerate(layers)}
    kept = [0] * len(layers)
    new = [{"none": 0, "mlp_first": 0, "mlp_all": 0, "after_attn": 0, "layer": 0} for _ in layers]
    head = embed = 0
    fsdp = cfg.framework == "torch" and layout.zero >= 2
    sb, cb, _ = _fsdp_dtypes(recipe)
    for lt in shard.tensors:
        t = table[lt.index]
        if not tr.base_trainable[lt.index]:
            continue
        D = layout.expert_shard_degree if lt.expert else layout.shard_degree
        if fsdp:
            created, keep = lt.numel * cb, lt.numel // D * sb
        else:
            created = lt.numel * recipe.grad_bytes
            keep = created // D if layout.zero >= 2 else created
        if t.layer is not None:
            n = idx[t.layer]
            kept[n] += keep
            new[n]["layer"] += created
            if t.component in ("mlp", "experts"):
                new[n]["mlp_all"] += created
            if t.component in ("mlp", "experts", "router") or t.module in _AFTER_ATTN_CORE:
                new[n]["after_attn"] += created
            if t.module in _MLP_FIRST or (t.module == "c_proj" and t.component == "mlp"):
                new[n]["mlp_first"] += created
        elif t.component in ("lm_head", "norm") or (spec.tie_embeddings and t.component == "embedding"
                                                   and t.tp == "vocab" and shard.last):
            head += created if fsdp else keep
        else:
            embed += created if fsdp else keep
    return kept, new, head, embed


def _buffers(spec, shard, table, layout, cfg, recipe, e, b, sl, fsdp, ds3) -> dict[str, int]:
    """Communication and gather buffers live during forward/backward ('act'), in a layer's backward ('layer') and
    at the end of backward ('end')."""
    act = layer = end = 0
    h = spec.hidden_size
    if layout.pp > 1:
        act += 2 * b * sl * h * e  # p2p send and receive buffers of one micro-batch's hidden states
    if layout.ep > 1 and spec.moe:
        act += 2 * spec.moe.top_k * b * sl * h * e  # all-to-all dispatch and combine of the routed rows
    if layout.cp > 1:
        act += 4 * b * sl * spec.kv_dim * e  # ring attention: K and V blocks in flight, double-buffered
    if fsdp or ds3:
        sb, cb, rb = _fsdp_dtypes(recipe)
        D = layout.shard_degree
        per_layer: dict[int, int] = {}
        root = 0
        for lt in shard.tensors:
            t = table[lt.index]
            padded = -(-lt.dim0 // D) * D * (lt.numel // max(lt.dim0, 1))
            if t.layer is None:
                root += padded
            else:
                per_layer[t.layer] = per_layer.get(t.layer, 0) + padded
        L = round_block(max(per_layer.values(), default=0) * cb)
        root_b = root * cb if fsdp else 0
        raf = layout.zero == 3 and cfg.reshard_after_forward
        if raf or ds3:
            act += root_b + L
            layer += L + L * rb // cb  # the layer's own unsharded params and the previous reduce-scatter input
        else:
            act += root_b + sum(round_block(v * cb) for v in per_layer.values())
            layer += L * rb // cb
        end += round_block(root * rb) if fsdp else 0
    return {"act": act, "layer": layer, "end": end}


def estimate_distributed(spec: ModelSpec, cfg: TrainConfig, layout: Layout, capacity_bytes: int | None):
    """All stages; the report is the most loaded rank's, with one per-rank row per stage."""
    from gpuplan.train.engine import TrainReport, _explain_parallel

    recipe = recipe_for(cfg.precision, cfg.framework)
    rows, best = [], None
    for shard in stage_shards(spec, layout, cfg.framework):
        st, ps, info = estimate_rank(spec, cfg, layout, recipe, shard)
        top = peak(ps)
        ov = overhead_bytes(cfg.overheads, top.bytes)
        nccl = 0 if layout.world == 1 else _nccl_bytes()
        total = top.bytes + ov.total + nccl
        row = {"stage": shard.stage, "layers": f"{shard.layers[0]}-{shard.layers[-1]}" if shard.layers else "-",
               "embedding": shard.first, "head": shard.last, "params": shard.numel,
               "weights_bytes": st.weights_bytes, "gradients_bytes": st.gradients_bytes,
               "master_weights_bytes": st.master_weights_bytes, "optimizer_bytes": st.optimizer_bytes,
               "activations_bytes": info["activations"], "logits_bytes": info["logits"],
               "buffers_bytes": info["buffers"] + nccl, "allocated_peak_bytes": top.bytes, "total_bytes": total,
               "peak_phase": top.name, "inflight_microbatches": info["inflight"], "host_bytes": st.host_bytes}
        row.update({k: int(round(v)) for k, v in row.items() if k.endswith("_bytes")})  # JSON bytes are integers
        rows.append(row)
        if best is None or total > best[0]["total_bytes"]:
            best = (row, st, ps, top)
    row, st, ps, top = best
    m = MemoryReport(weights_bytes=st.weights_bytes, gradients_bytes=st.gradients_bytes,
                     optimizer_bytes=st.optimizer_bytes, master_weights_bytes=st.master_weights_bytes,
                     activations_bytes=row["activations_bytes"], logits_bytes=row["logits_bytes"],
                     buffers_bytes=row["buffers_bytes"], allocated_peak_bytes=top.bytes,
                     total_bytes=row["total_bytes"], peak_phase=f"stage {row['stage']}: {top.name}")
    _explain_parallel(m, spec, cfg, layout, recipe, st, row)
    params_total = sum(t.numel for t in tensor_table(spec))
    from gpuplan.train.peft import trainable_params
    return TrainReport(m, params_total, trainable_params(spec, cfg), fits(m.total_bytes, capacity_bytes),
                       capacity_bytes, ps, host_bytes=row["host_bytes"], per_rank=rows)


NCCL_BUFFER_BYTES = 2 * 4 * (1 << 20) * 8  # NCCL_BUFFSIZE 4 MiB x 2 (send/recv) x 8 channels, per communicator


def _nccl_bytes() -> int:
    """NCCL's per-communicator staging buffers outside PyTorch's allocator: NCCL_BUFFSIZE (4 MiB default) per
    channel and direction; 8 channels assumed (NCCL docs, Environment Variables: NCCL_BUFFSIZE)."""
    return NCCL_BUFFER_BYTES
