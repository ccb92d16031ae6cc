"""Per-rank memory of a parallel layout: every pipeline stage's rank (tensor- and expert-parallel rank 0, the most
loaded), the phase-aware peak on each, and the most loaded of them.

Activations under tensor parallelism follow Korthikanti et al. 2022 section 4.2 applied to the saved tensors of
``gpuplan.train.activations``: tensors inside the column/row-parallel pair (q, k, v, attention output and
statistics, MLP intermediates, the half weight copies of split weights) are divided by tp; the norm inputs and
outputs, the residual stream and the router stay replicated unless sequence parallelism splits them too. Context
parallelism gives each rank seq/cp tokens. Pipeline stages hold the activations of their in-flight micro-batches:
1F1B warm-up depth ``pp - stage`` and, interleaved, ``2·(pp - stage - 1) + (vpp - 1)·pp + 1`` chunks of
``layers/(pp·vpp)`` layers (Megatron-LM ``schedules.py``; stage 0 gives Korthikanti's factor 1 + (p-1)/(p·v)).
Gradients: from the second micro-batch of a step on (gradient accumulation; pipeline micro-batches after a stage's
first backward) every gradient already exists and backward adds into it in place (AccumulateGrad, Megatron's
main_grad), so they are counted once, plus the unsharded gradients of the layer being reduced under ZeRO-2/3 and
FSDP; Megatron's main_grad buffer is resident from the first micro-batch on. The stage's peak is the higher of its
first backward (min(pp - stage, m) in flight, no gradients) and its later ones (min(pp - stage, m - 1), gradients).
FSDP2 buffers follow the rules traced with a fake process group (root group unsharded through forward and
backward, one all-gathered layer kept through the loss, position-dependent prefetch and reduce-scatter inputs in
backward, see ``_buffers``). Under tensor parallelism without SP the norms' backward temporaries are replicated.
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache

from gpuplan.model.spec import ModelSpec
from gpuplan.model.tensors import tensor_table
from gpuplan.parallel.buffers import buffers as _buffers, forward_boundary as _forward_boundary
from gpuplan.parallel.dataparallel import RankStates, _fsdp_dtypes, rank_states
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


@lru_cache(maxsize=1024)
def _layer_split(la, tp: int, sp: bool) -> Act:
    """A layer's saved set on one tensor-parallel rank (cached: a model has a few layer kinds)."""
    return _split(la.items, tp, sp)


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


def inflight_accumulating(layout: Layout, stage: int, grad_accum: int) -> float:
    """Micro-batches in flight at the stage's busiest moment once gradients exist (0: never). 1F1B: the j-th
    backward of a stage runs with min(pp - stage, m - j) micro-batches in flight and gradients exist from j = 1 on,
    so min(pp - stage, m - 1); interleaved, the same in model chunks (warm-up 2·(pp - stage - 1) + (vpp - 1)·pp,
    Megatron-LM ``schedules.py``). Several optimizer-step flushes (``grad_accum`` > 1 beside a pipeline) bring
    gradients to the first backward too. Without a pipeline: one micro-batch when accumulating."""
    m = layout.microbatches
    if layout.pp == 1:
        return 1.0 if m > 1 or grad_accum > 1 else 0.0
    if grad_accum > 1:
        return inflight(layout, stage)
    if layout.vpp == 1:
        return float(min(layout.pp - stage, m - 1))
    chunks = min(2 * (layout.pp - stage - 1) + (layout.vpp - 1) * layout.pp + 1, m * layout.vpp - 1)
    return chunks / layout.vpp


def estimate_rank(spec: ModelSpec, cfg: TrainConfig, layout: Layout, recipe: Recipe, shard: StageShard,
                  memo: dict | None = None) -> tuple[RankStates, list[Phase], dict[str, int]]:
    """One pipeline stage's rank: its model states, phases and report figures. Stages that hold the same tensors
    and layer kinds (the middle stages of a uniform model) differ only in their in-flight micro-batches, so with
    ``memo`` (one dict per estimate) their stage-invariant part is computed once."""
    tr = trainability(spec, cfg)
    c = _context(spec, cfg, layout, recipe)
    acts = model_acts(spec, tr, c, cfg.recompute)
    key = None
    if memo is not None:
        key = (shard.first, shard.last, tuple(id(acts.layers[i]) for i in shard.layers),
               tuple((lt.numel, lt.dim0, lt.expert, tr.base_trainable[lt.index], tr.lora[lt.index])
                     for lt in shard.tensors))
        parts = memo.get(key)
        if parts is not None:
            return _stage_result(parts, cfg, layout, shard)
    parts = _stage_parts(spec, cfg, layout, recipe, shard, tr, c, acts)
    if memo is not None:
        memo[key] = parts
    return _stage_result(parts, cfg, layout, shard)


def _context(spec: ModelSpec, cfg: TrainConfig, layout: Layout, recipe: Recipe):
    """The activation model's element sizes: FSDP2 computes in its MixedPrecisionPolicy's param dtype."""
    from gpuplan.train.engine import activation_context

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
    from gpuplan.train.engine import _norm_bwd_per_token
    from gpuplan.train.states import effective_impl

    table = tensor_table(spec)
    fsdp = cfg.framework == "torch" and layout.zero >= 2
    ds3 = cfg.framework == "deepspeed" and layout.zero == 3
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
            f = _bytes(_layer_split(la, tp, sp), b, sl, s)
            full.append(f)
            if cfg.recompute == "full":
                kept.append(_bytes(Act(tok=c.r * spec.hidden_size).scale(1 / tp if sp else 1.0), b, sl, s))
            else:
                kept.append(_bytes(_split_kept(acts.kept[i], la, tp, sp), b, sl, s) if cfg.recompute == "selective"
                            else f)
            extra_pts.append(_rank_points(spec, c, la, tp, sp))
    # gradients of each layer: persistent (as the scheme keeps them) and at their creation (unsharded)
    g_layer, g_groups, g_head, g_embed, g_root_keep = _grads(spec, shard, table, tr, recipe, layout, cfg, layers)
    # schemes whose gradients are reduced out of the buffer backward creates (ZeRO-2/3, FSDP) hold that layer's
    # unsharded gradients until its reduce-scatter even when accumulating; the others accumulate in place
    sharded_grads = fsdp or layout.zero >= 2
    no_groups = dict.fromkeys(g_groups[0], 0) if g_groups else {}
    bufs = _buffers(spec, shard, table, layout, cfg, recipe, c.e, b, sl, fsdp, ds3)
    bwd = [_bwd_high(pts, groups, tp, b, sl, s) + o for pts, groups, o in zip(extra_pts, g_groups, bufs["bwd"])]
    bwd_acc = bwd if sharded_grads else [_bwd_high(pts, no_groups, tp, b, sl, s) + o
                                         for pts, o in zip(extra_pts, bufs["bwd"])]
    tied_extra = g_head if spec.tie_embeddings and shard.first and shard.last else 0
    head_b = _bytes(acts.head.scale(1.0 / tp if sp else 1.0), b, sl, s) if shard.last else 0
    head_norm_b = _bytes(acts.head_norm.scale(1.0 / tp if sp else 1.0), b, sl, s) if shard.last else 0
    vocab = spec.vocab_size // tp if cfg.framework != "torch" else spec.vocab_size
    loss = loss_memory(b * sl, vocab, c.e, impl=cfg.loss_impl, chunk_tokens=cfg.loss_chunk_tokens,
                       keep_logits=cfg.keep_logits, hidden=spec.hidden_size, softcap=spec.final_softcap is not None)
    static = st.weights_bytes + st.master_weights_bytes + st.optimizer_bytes + st.persistent_buffers_bytes
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
        rebuilt_extra_bytes=tuple(k if cfg.recompute == "full" and c.r < 4 else 0 for k in kept),
        layer_grad_bytes=tuple(g_layer), shared_bytes=_bytes(acts.shared, b, sl, s), head_bytes=head_b,
        head_norm_bytes=head_norm_b, head_grad_bytes=head_grad, embed_grad_bytes=embed_grad,
        tied_extra_bytes=tied_extra, loss_forward_bytes=loss.forward_peak_bytes if shard.last else 0,
        loss_backward_bytes=loss.backward_peak_bytes if shard.last else 0,
        residual_grad_bytes=c.r * spec.hidden_size * b * sl // (tp if sp else 1),
        norm_bwd_bytes=_norm_bwd_per_token(spec, c) * b * sl // (tp if sp else 1),
        step_temp_bytes=st.step_temp_bytes, recompute_full=cfg.recompute == "full",
        held_bytes=0, act_extra_bytes=bufs["act"],
        layer_extra_bytes=bufs["layer"], end_extra_bytes=bufs["end"],
        opt_grads_bytes=st.gradients_bytes, has_head=shard.last, first_layer=layers[0] if layers else 0)
    # later micro-batches of the step (gradient accumulation, pipeline micro-batches after the first backward):
    # every gradient already exists in its persistent form from the start; backward adds into it in place
    # (AccumulateGrad, Megatron's main_grad), so only the unsharded gradients of the layer being reduced come on top
    # (sharded schemes), and FSDP's root keeps its unsharded gradients until the end of backward
    grads_held = sum(g_layer) + g_root_keep
    later = replace(first, layer_grad_bytes=(0,) * len(g_layer), bwd_extra_bytes=tuple(bwd_acc),
                    head_grad_bytes=head_grad if fsdp else 0, embed_grad_bytes=embed_grad if fsdp else 0,
                    opt_grads_bytes=0)
    return {"st": st, "first": first, "later": later, "per_mb": per_mb, "grads_held": grads_held,
            "fwd": bufs["fwd"], "kept": sum(kept), "head": head_b, "shared": _bytes(acts.shared, b, sl, s),
            "logits": max(loss.forward_peak_bytes, loss.backward_peak_bytes) if shard.last else 0,
            "buffers": st.persistent_buffers_bytes + bufs["act"] + bufs["layer"] + st.step_temp_bytes}


def _stage_result(parts: dict, cfg: TrainConfig, layout: Layout, shard: StageShard
                  ) -> tuple[RankStates, list[Phase], dict[str, int]]:
    """A stage's phases from its invariant part and its place in the schedule (micro-batches in flight)."""
    n_in, n_acc = inflight(layout, shard.stage), inflight_accumulating(layout, shard.stage, cfg.grad_accum)
    per_mb, grads_held = parts["per_mb"], parts["grads_held"]
    first_layer = shard.layers[0] if shard.layers else 0
    first = replace(parts["first"], held_bytes=int((n_in - 1) * per_mb), first_layer=first_layer)
    # later micro-batches of the step (gradient accumulation, pipeline micro-batches after the first backward):
    # every gradient already exists in its persistent form from the start; backward adds into it in place
    # (AccumulateGrad, Megatron's main_grad), so only the unsharded gradients of the layer being reduced come on top
    # (sharded schemes), and FSDP's root keeps its unsharded gradients until the end of backward
    later = replace(parts["later"], held_bytes=int((n_acc - 1) * per_mb) + grads_held, first_layer=first_layer)

    def run(pin: PhaseInputs) -> list[Phase]:
        return _forward_boundary(phases(pin), pin, parts["fwd"])

    if cfg.framework == "megatron":
        # the fp32 main_grad buffer is allocated once at wrap time (param_and_grad_buffer.py): gradients are
        # resident through forward and backward of every micro-batch, the first one included
        resident = replace(later, held_bytes=int((n_in - 1) * per_mb) + grads_held)
        ps = _merge(run(resident), run(first)[-2:])
    elif n_acc > 0:
        ps = _merge(run(first), run(later))
    else:
        ps = run(first)
    info = {"activations": parts["kept"] * n_in + parts["head"] + parts["shared"], "logits": parts["logits"],
            "buffers": parts["buffers"], "inflight": n_in}
    return parts["st"], ps, info


def _bwd_high(pts, groups: dict[str, int], tp: int, b: int, sl: int, s: int) -> int:
    """A layer's backward high-water mark above its saved set: the layer gradients existing at each traced point
    (``groups``) plus the point's temporaries."""
    if not pts:
        return groups.get("mlp_first", 0)
    return max([0] + [groups[g] + _bytes(extra, b, sl, s) for g, extra in pts])


@lru_cache(maxsize=1024)
def _rank_points(spec: ModelSpec, c, la, tp: int, sp: bool) -> tuple[tuple[str, Act], ...]:
    """A layer's backward points on one tensor-parallel rank: (gradient group, bytes beyond the rank's saved set).

    A point's extra is (saved tensors released by then) + (temporaries). Released tensors are the items saved after
    the point's module (a suffix of the layer's items), each split or replicated as in ``_split``. Temporaries:
    the norms' fp32 backward temporaries act on the full hidden size of every local token, so they are replicated
    unless sequence parallelism splits the tokens (traced with DTensor TP: four fp32 h-sized tensors at
    post_attention_layernorm backward on every rank, beside a second h-sized input gradient); the attention core's (q, k, v, output gradients) and the
    MLP's (ffn-sized) are split by the column/row pair. Without SP a suffix that does not match the traced
    formula falls back to splitting the released part."""
    if tp == 1:
        return tuple((p.grads, p.extra) for p in la.points)
    if sp:
        return tuple((p.grads, p.extra.scale(1.0 / tp)) for p in la.points)
    from gpuplan.train.engine import _norm_bwd_per_token

    # + the input gradient of the column-parallel layers after the norm, all-reduced out of place (DTensor
    # Partial -> Replicate): the partial sum and the reduced copy are both alive (traced, W 2 and 4: + e·h)
    norm_tmp = Act(tok=float(_norm_bwd_per_token(spec, c)))
    partial = Act(tok=float(c.e * spec.hidden_size))
    out = []
    for p in la.points:
        if p.name not in ("second norm", "first norm"):
            out.append((p.grads, p.extra.scale(1.0 / tp)))
            continue
        released = _minus(norm_tmp, p.extra)
        suffix = _suffix_matching(la.items, released)
        rank_released = released.scale(1.0 / tp) if suffix is None else _split(suffix, tp, sp)
        out.append((p.grads, _minus(norm_tmp + partial, rank_released)))
    return tuple(out)


def _minus(a: Act, b: Act) -> Act:
    return Act(a.tok - b.tok, a.sq - b.sq, a.fixed - b.fixed)


def _suffix_matching(items: tuple[tuple[str, Act], ...], target: Act) -> tuple[tuple[str, Act], ...] | None:
    """The trailing items of a layer (saved last, released first in backward) that add up to ``target``."""
    acc = Act()
    for k in range(len(items) - 1, -1, -1):
        acc = acc + items[k][1]
        if abs(acc.tok - target.tok) < 0.5 and abs(acc.sq - target.sq) < 0.5 and abs(acc.fixed - target.fixed) < 0.5:
            return items[k:]
    return None


def _merge(a: list[Phase], b: list[Phase]) -> list[Phase]:
    """Phase by phase, the higher of two variants of the same step (first and later micro-batches); a shorter
    ``b`` replaces the tail of ``a``."""
    b = [Phase("", 0)] * (len(a) - len(b)) + b
    return [x if x.bytes >= y.bytes else y for x, y in zip(a, b)]


def _split_kept(kept: Act, la, tp: int, sp: bool) -> Act:
    """Selective recompute keeps the layer without its attention core: scale like the full set."""
    full_raw = la.saved
    ratio = 1.0 if full_raw.tok == 0 else kept.tok / full_raw.tok
    return _layer_split(la, tp, sp).scale(ratio)


def _grads(spec, shard, table, tr, recipe, layout, cfg, layers):
    """Per layer of the stage: gradient bytes kept after backward, the bytes existing at each backward point of the
    layer (as created, before any reduce-scatter), the head's and the embedding's (FSDP: unsharded, as the root
    holds them through backward), and the head's + embedding's as kept after backward."""
    from gpuplan.train.engine import _AFTER_ATTN_CORE, _MLP_FIRST

    idx = {layer: n for n, layer in enumerate(layers)}
    root_keep = 0  # the head's and embedding's gradients as kept after backward (FSDP: the sharded ones)
    kept = [0] * len(layers)
    new = [{"none": 0, "mlp_first": 0, "mlp_all": 0, "after_attn": 0, "layer": 0} for _ in layers]
    head = embed = 0
    fsdp = cfg.framework == "torch" and layout.zero >= 2
    sb, cb, _ = _fsdp_dtypes(recipe)
    offloaded = cfg.offload != "none" and (fsdp or layout.zero >= 2)  # reduced gradients go to host memory
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
        if offloaded:
            keep = 0
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
            continue
        root_keep += keep
        if t.component in ("lm_head", "norm") or (spec.tie_embeddings and t.component == "embedding"
                                                 and t.tp == "vocab" and shard.last):
            head += created if fsdp else keep
        else:
            embed += created if fsdp else keep
    return kept, new, head, embed, root_keep


def estimate_distributed(spec: ModelSpec, cfg: TrainConfig, layout: Layout, capacity_bytes: int | None):
    """All stages; the report is the most loaded rank's, with one per-rank row per stage."""
    from gpuplan.train.engine import TrainReport, _explain_parallel

    recipe = recipe_for(cfg.precision, cfg.framework)
    rows, best = [], None
    memo: dict = {}  # stage-invariant parts of identical stages, computed once
    for shard in stage_shards(spec, layout, cfg.framework):
        st, ps, info = estimate_rank(spec, cfg, layout, recipe, shard, memo)
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
    params_total = _params_total(spec)
    from gpuplan.train.peft import trainable_params
    return TrainReport(m, params_total, trainable_params(spec, cfg), fits(m.total_bytes, capacity_bytes),
                       capacity_bytes, ps, host_bytes=row["host_bytes"], per_rank=rows)


@lru_cache(maxsize=64)
def _params_total(spec: ModelSpec) -> int:
    return sum(t.numel for t in tensor_table(spec))


NCCL_BUFFER_BYTES = 2 * 4 * (1 << 20) * 8  # NCCL_BUFFSIZE 4 MiB x 2 (send/recv) x 8 channels, per communicator


def _nccl_bytes() -> int:
    """NCCL's per-communicator staging buffers outside PyTorch's allocator: NCCL_BUFFSIZE (4 MiB default) per
    channel and direction; 8 channels assumed (NCCL docs, Environment Variables: NCCL_BUFFSIZE)."""
    return NCCL_BUFFER_BYTES
