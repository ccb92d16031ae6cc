"""A transparent step-time model for one training step of a parallel layout (Megatron-style TP/SP, PP, DP/ZeRO,
EP, CP, recomputation).

Per micro-batch on the most loaded pipeline stage:

    t_micro = forward + backward (2× the GEMMs, 2.5× attention, 2× elementwise) + recomputation
              + TP all-gather/reduce-scatter (4 per layer each way; not overlapped unless --tp-overlap)
              + EP all-to-all (dispatch + combine each way) + exposed CP ring passes + pipeline send/recv

    step = (m + bubble slots) · t_micro  +  exposed DP gradient sync  +  optimizer update

with m micro-batches per pipeline; the bubble slots are the schedule's (gpuplan.compute.schedules): (p−1)/v for
1F1B with p stages and v virtual stages (Narayanan et al. 2021, arXiv:2104.04473, sections 2.2.1-2.2.2),
(p−1)/3 for zero-bubble ZB-H1, (p/2−1)/3 for DualPipe, which also hides the EP all-to-all and pipeline transfers
behind the paired chunk's computation. DP gradient reduce-scatter/all-reduce overlaps
with the backward of the last micro-batch (Megatron ``--overlap-grad-reduce``); ZeRO-2 reduces every micro-batch
and ZeRO-3 also gathers parameters every micro-batch (DeepSpeed semantics). Every efficiency and bandwidth is a
named input (``Efficiencies``, ``Network``) with its source. Ignores: stragglers, data loading, checkpointing,
the embedding lookup, and uneven expert load.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

from gpuplan.compute import comm, schedules
from gpuplan.compute.flops import encoder_convention, keys_per_query, linear_attention_flop_per_token
from gpuplan.compute.kernels import (ATTENTION_BACKWARD_FACTOR, Device, attention_fwd_s, dropout_bytes_per_elem,
                                     elementwise_s, fp8_cast_bytes, gemm_s, layer_elementwise_elems_per_token,
                                     loss_elems_per_token, moe_permute_elems_per_token, unfused_attention_s)
from gpuplan.errors import InputError
from gpuplan.model.spec import ModelSpec


@dataclass(frozen=True)
class Layout:
    """Parallel degrees and per-GPU batch. GPUs = tp·pp·dp·cp; EP is carved out of dp·cp (it divides dp·cp)."""

    tp: int = 1
    pp: int = 1
    dp: int = 1
    cp: int = 1
    ep: int = 1
    vpp: int = 1
    zero: int = 1
    micro_batch: int = 1
    recompute: str = "none"
    sp: bool | None = None  # sequence parallelism; default on whenever tp > 1 (Megatron practice)
    dp_shard: int | None = None  # hybrid sharding: ZeRO shard group of dp_shard·cp ranks (None: all of dp)

    @property
    def gpus(self) -> int:
        return self.tp * self.pp * self.dp * self.cp

    @property
    def seq_parallel(self) -> bool:
        return self.tp > 1 if self.sp is None else self.sp


@dataclass(frozen=True)
class Tuning:
    """Overlap fractions and wire formats: named inputs with sources."""

    tp_overlap: float = 0.0  # Megatron-Core --tp-comm-overlap (Transformer Engine userbuffers) is opt-in
    dp_overlap: float = 1.0  # --overlap-grad-reduce / --overlap-param-gather (Megatron-Core distributed optimizer)
    pp_overlap: float = 0.0
    ep_overlap: float = 0.0
    grad_reduce_bytes: int = 4  # fp32 gradient reduction
    param_gather_bytes: int = 2  # bf16 parameter all-gather (ZeRO-1/2 after the step, ZeRO-3 every micro-batch)
    optimizer_bytes_per_param: int = 30  # Adam update traffic per local (sharded) parameter, read + write
    schedule: str | None = None  # pipeline schedule (gpuplan.compute.schedules); None: 1F1B, interleaved with vpp > 1
    sources: tuple[str, ...] = (
        "tp_overlap 0: Megatron-Core --tp-comm-overlap is off by default",
        "dp_overlap 1: Megatron-Core --overlap-grad-reduce/--overlap-param-gather hide DP traffic behind backward / "
        "forward compute",
        "grad_reduce_bytes 4: fp32 gradient reduction, Megatron-LM --accumulate-allreduce-grads-in-fp32 (the "
        "usual setting with bf16, and the 18 bytes/param recipe the memory engine uses)",
        "optimizer 30 B/param over HBM: Adam reads and writes fp32 m and v (16), reads the fp32 gradient and master "
        "weight and writes the master and the bf16 weight (4 + 4 + 4 + 2)",
    )


@dataclass(frozen=True)
class Workload:
    seq: int
    global_batch: int  # sequences per optimizer step
    attention_impl: str = "flash"  # flash | unfused (materialized scores, Megatron-LM before FlashAttention)
    dropout: bool = False  # hidden and attention dropout (GPT-3 / Megatron 2022 training); Llama-style: none


@dataclass
class StepTime:
    """Seconds of one optimizer step and where they go (on the slowest pipeline stage)."""

    step_s: float
    microbatches: int
    parts: dict[str, float] = field(default_factory=dict)  # seconds per component over the whole step
    bubble_fraction: float = 0.0
    bubble_slots: float = 0.0  # idle micro-batch slots of the schedule (gpuplan.compute.schedules)

    def fraction(self, key: str) -> float:
        return self.parts.get(key, 0.0) / self.step_s if self.step_s else 0.0


@dataclass(frozen=True)
class _LayerShape:
    """One decoder layer as the kernel model sees it (all per layer, unsharded)."""

    gemms: tuple[tuple[int, int, str], ...]  # (out, in, tp kind) of the non-expert linears
    expert: tuple[int, int, int, int] | None  # (experts, top_k, hidden, expert ffn); gated experts
    attn_fwd_flop_per_token: float  # causal: what FlashAttention executes
    params: int
    expert_params: int


@lru_cache(maxsize=32)
def _profile(spec: ModelSpec, seq: int) -> tuple[tuple[_LayerShape, ...], int, int]:
    """Per-layer shapes, plus (head parameters, non-layer parameters)."""
    from gpuplan.model.tensors import tensor_table

    by_layer: dict[int, list] = {}
    head_params = other = 0
    for t in tensor_table(spec):
        if t.layer is None:
            if t.component == "lm_head" or (spec.tie_embeddings and t.component == "embedding"):
                head_params = spec.vocab_size * spec.hidden_size
            other += t.numel
            continue
        by_layer.setdefault(t.layer, []).append(t)
    d_qk = spec.mla.qk_head_dim if spec.mla else spec.head_dim
    d_v = spec.mla.v_head_dim if spec.mla else spec.head_dim
    layers = []
    for i in range(spec.num_layers):
        ts = by_layer.get(i, [])
        gemms = tuple((t.shape[0], t.shape[1], t.tp) for t in ts if t.linear and t.component != "experts")
        ex = sum(t.numel for t in ts if t.component == "experts")
        expert = None
        if spec.is_moe_layer(i) and spec.moe is not None:
            expert = (spec.moe.num_experts, spec.moe.top_k, spec.hidden_size, spec.moe.expert_ffn_size)
        window = spec.sliding_window if spec.is_sliding_layer(i) else None
        attn = linear_attention_flop_per_token(spec) if spec.is_linear_layer(i) else \
            2 * spec.num_heads * (d_qk + d_v) * keys_per_query(seq, window, encoder_convention(spec, "causal"),
                                                                     spec.is_chunked_layer(i))
        layers.append(_LayerShape(gemms, expert, attn, sum(t.numel for t in ts), ex))
    return tuple(layers), head_params, other


@lru_cache(maxsize=32)
def _distinct_shapes(spec: ModelSpec, seq: int) -> tuple[_LayerShape, ...]:
    """The distinct layer shapes (a model has one or a few: dense-first and MoE layers, sliding windows)."""
    return tuple(dict.fromkeys(_profile(spec, seq)[0]))


def _layer_linears(shape: _LayerShape, tokens: float, lay: Layout) -> tuple[tuple[float, float, float, int], ...]:
    """One layer's GEMMs on one TP rank as (rows, out, in, how many) for ``tokens`` tokens: each non-expert linear
    once, and the gated experts of the rank (gate, up, down per local expert) over their routed tokens, balanced
    routing."""
    out: list[tuple[float, float, float, int]] = []
    for out_f, in_f, kind in shape.gemms:
        if kind == "column":
            out.append((tokens, out_f / lay.tp, in_f, 1))
        elif kind == "row":
            out.append((tokens, out_f, in_f / lay.tp, 1))
        else:
            out.append((tokens, out_f, in_f, 1))
    if shape.expert is not None:
        n_exp, top_k, h, f = shape.expert
        local = max(1, n_exp // lay.ep)
        m = tokens * top_k * lay.ep / n_exp  # tokens per expert, balanced routing
        out += [(m, f / lay.tp, h, 2 * local), (m, h, f / lay.tp, local)]
    return tuple(out)


def _gemms_s(linears: tuple[tuple[float, float, float, int], ...], dev: Device) -> float:
    """Seconds of one pass over ``linears`` (``_layer_linears``) on ``dev``."""
    return sum(count * gemm_s(rows, n, k, dev) for rows, n, k, count in linears)


def _gemm_pass_s(shape: _LayerShape, tokens: float, lay: Layout, dev: Device) -> float:
    """Forward GEMM seconds of one layer on one TP rank for ``tokens`` tokens (the whole sequence chunk)."""
    return _gemms_s(_layer_linears(shape, tokens, lay), dev)



def _layer_times(spec: ModelSpec, shape: _LayerShape, tokens: float, lay: Layout, dev: Device, work: Workload
                 ) -> tuple[float, float, float]:
    """(forward, backward, attention-core forward) seconds of one layer for one micro-batch on one GPU."""
    linears = _layer_linears(shape, tokens, lay)
    gemm = _gemms_s(linears, dev)
    wgrad = _gemms_s(linears, dev.wgrad_device) if dev.wgrad_eff is not None else gemm
    if work.attention_impl == "unfused":
        d_qk = spec.mla.qk_head_dim if spec.mla else spec.head_dim
        d_v = spec.mla.v_head_dim if spec.mla else spec.head_dim
        seq_q = tokens / lay.micro_batch
        attn, attn_b = unfused_attention_s(lay.micro_batch, spec.num_heads / lay.tp, seq_q, work.seq, d_qk, d_v, dev)
    else:
        attn = attention_fwd_s(shape.attn_fwd_flop_per_token * tokens / lay.tp, dev)
        attn_b = ATTENTION_BACKWARD_FACTOR * attn
    ffn = spec.ffn_size if shape.expert is None else shape.expert[1] * shape.expert[3]
    elems = layer_elementwise_elems_per_token(spec.hidden_size, spec.q_dim, spec.kv_dim, ffn, lay.tp,
                                              lay.seq_parallel, spec.gated_mlp)
    if shape.expert is not None:
        elems += moe_permute_elems_per_token(spec.hidden_size, shape.expert[1], lay.tp)
    elem = elementwise_s(elems * tokens * dev.elem_bytes, dev)
    if work.dropout:
        elem_d = elementwise_s(2 * spec.hidden_size * tokens / (lay.tp if lay.seq_parallel else 1)
                               * dropout_bytes_per_elem() / 2, dev)
    else:
        elem_d = 0.0
    if dev.gemm_elem_bytes == 1:  # FP8 GEMMs: the quantization kernels of their operands
        cast_f, cast_b = fp8_cast_bytes(linears)
        elem_f, elem_b = elem + elementwise_s(cast_f, dev), 2 * elem + elementwise_s(cast_b, dev)
    else:
        elem_f, elem_b = elem, 2 * elem
    fwd = gemm + attn + elem_f + elem_d
    bwd = gemm + wgrad + attn_b + elem_b + elem_d
    return fwd, bwd, attn


def mtp_s(spec: ModelSpec, tokens: float, tp: int, fwd_layer: float, bwd_layer: float, head_fwd: float,
          dev: Device) -> tuple[float, float]:
    """(forward, backward) seconds of the multi-token-prediction modules (DeepSeek-V3 report, arXiv:2412.19437,
    section 2.2; config ``num_nextn_predict_layers``): each is a projection of [h, 2h] to h, one Transformer block
    and another pass through the shared output head and loss, on the stage that holds the output head (section
    3.2.1). Trained with the model, so they take step time, though model FLOPs (MFU) leave them out."""
    if not spec.mtp_layers:
        return 0.0, 0.0
    proj = gemm_s(tokens, spec.hidden_size / tp, 2 * spec.hidden_size, dev)
    return spec.mtp_layers * (fwd_layer + proj + head_fwd), spec.mtp_layers * (bwd_layer + 2 * proj + 2 * head_fwd)


@lru_cache(maxsize=4096)
def _stage_layers(n_layers: int, pp: int, head_layers: float) -> tuple[int, bool]:
    """The most loaded pipeline stage as (its layers, whether it runs the output head and loss). The last stage
    also runs the head (``head_layers`` in layer-time units), so it is given as many layers as balances the
    pipeline best — what Llama 3 did by removing one layer from its first and last stages."""
    if pp == 1:
        return n_layers, head_layers > 0
    best = (math.inf, n_layers, True)
    for last in range(0, n_layers + 1):
        rest = n_layers - last
        others = math.ceil(rest / (pp - 1)) if rest else 0
        if last + head_layers >= others:
            candidate = (last + head_layers, last, head_layers > 0)
        else:
            candidate = (float(others), others, False)
        if candidate[0] < best[0]:
            best = candidate
    return best[1], best[2]


@dataclass(frozen=True)
class _Stage:
    """Compute of one micro-batch on the most loaded stage: everything that does not depend on dp, ZeRO, vpp."""

    fwd: float
    bwd: float
    fwd_layer: float
    attn_layer: float
    n_layers: int
    n_moe: int
    local_params: float  # parameters one GPU holds before ZeRO sharding
    tokens: float
    act_bytes: float  # one [tokens, h] activation in the compute dtype


@lru_cache(maxsize=1024)
def _micro_compute(spec: ModelSpec, work: Workload, dev: Device, tp: int, ep: int, cp: int, mb: int, sp: bool
                   ) -> tuple[float, float, float, float, float, float]:
    """One micro-batch's (forward, backward, attention-core forward) seconds of the slowest layer, and the output
    head's and multi-token-prediction modules' seconds: what ``_stage`` needs that does not depend on pp or
    recomputation (cached apart, so a search's pipeline and recomputation variants time the GEMMs once)."""
    lay = Layout(tp=tp, ep=ep, cp=cp, micro_batch=mb, sp=sp)
    tokens = mb * work.seq / cp
    times = [_layer_times(spec, sh, tokens, lay, dev, work) for sh in _distinct_shapes(spec, work.seq)]
    fwd_l, bwd_l, attn_l = max(times, key=lambda x: x[0] + x[1])
    head_fwd = gemm_s(tokens, spec.vocab_size / tp, spec.hidden_size, dev.bf16_device) + elementwise_s(
        loss_elems_per_token(spec.vocab_size, tp) * tokens * dev.elem_bytes, dev)
    mtp_fwd, mtp_bwd = mtp_s(spec, tokens, tp, fwd_l, bwd_l, head_fwd, dev)
    return fwd_l, bwd_l, attn_l, head_fwd, mtp_fwd, mtp_bwd


@lru_cache(maxsize=32)
def _layer_extremes(spec: ModelSpec, seq: int) -> tuple[int, int, int]:
    """(the most parameters of a layer, the most routed-expert parameters of a layer, the MoE layers), once per
    model."""
    shapes = _profile(spec, seq)[0]
    return (max(sh.params for sh in shapes), max(sh.expert_params for sh in shapes),
            sum(1 for sh in shapes if sh.expert is not None))


@lru_cache(maxsize=4096)
def _stage(spec: ModelSpec, work: Workload, dev: Device, tp: int, ep: int, cp: int, mb: int, sp: bool,
           pp: int, recompute: str = "none") -> _Stage:
    head_params = _profile(spec, work.seq)[1]
    tokens = mb * work.seq / cp  # tokens of one micro-batch on one GPU (before TP)
    fwd_l, bwd_l, attn_l, head_fwd, mtp_fwd, mtp_bwd = _micro_compute(spec, work, dev, tp, ep, cp, mb, sp)
    # stages are balanced in layer time, recomputation included (the output head is not recomputed)
    rec_l = {"full": fwd_l, "selective": attn_l, "none": 0.0}[recompute]
    head_layers = (3 * head_fwd + mtp_fwd + mtp_bwd) / (fwd_l + bwd_l + rec_l) if head_params else 0.0
    n_stage, head_share = _stage_layers(spec.num_layers, pp, head_layers)
    n_stage = max(n_stage, 1)
    fwd = n_stage * fwd_l + (head_fwd + mtp_fwd if head_share else 0.0)
    bwd = n_stage * bwd_l + (2 * head_fwd + mtp_bwd if head_share else 0.0)
    layer_params, layer_experts, n_moe = _layer_extremes(spec, work.seq)
    dense = n_stage * (layer_params - layer_experts) + (head_params if head_share else 0)
    local = dense / tp + n_stage * layer_experts / (tp * ep)
    return _Stage(fwd, bwd, fwd_l, attn_l, n_stage, math.ceil(n_moe / pp) if n_moe else 0, local, tokens,
                  tokens * spec.hidden_size * dev.elem_bytes)


@lru_cache(maxsize=65536)
def _micro_parts(spec: ModelSpec, work: Workload, dev: Device, net: comm.Network, tune: Tuning, tp: int, ep: int,
                 cp: int, mb: int, sp: bool, pp: int, vpp: int, dp: int, recompute_mode: str) -> tuple:
    """One micro-batch's compute and its tensor-, expert-, context- and pipeline-parallel traffic on the slowest
    stage: (stage, forward, backward, recomputation, tp, ep, cp, pp seconds). Everything of ``step_time`` but the
    data-parallel part, so cached apart: a search times each of these once for all its ZeRO stages and shard
    groups."""
    schedule = tune.schedule or ("interleaved" if vpp > 1 else "1f1b")
    lay = Layout(tp=tp, pp=pp, dp=dp, cp=cp, ep=ep, vpp=vpp, micro_batch=mb, recompute=recompute_mode, sp=sp)
    hide = schedules.hides_ep_and_pp(schedule) and lay.pp > 1
    sp = lay.seq_parallel
    st = _stage(spec, work, dev, lay.tp, lay.ep, lay.cp, lay.micro_batch, sp, lay.pp, lay.recompute)
    fwd, bwd, n_stage, lat = st.fwd, st.bwd, st.n_layers, net.latency_s
    recompute = {"full": n_stage * st.fwd_layer, "selective": n_stage * st.attn_layer, "none": 0.0}[lay.recompute]
    if hide and st.n_moe and lay.ep > 1:
        slow = schedules.comm_sm_slowdown(dev.sms)
        fwd, bwd, recompute = fwd * slow, bwd * slow, recompute * slow
    passes = 3 if lay.recompute == "full" else 2  # forward, backward (+ the recomputed forward)

    # tensor parallel: 2 all-gathers + 2 reduce-scatters of [tokens, h] per layer each way (all-reduces without SP)
    tp_bw = net.bandwidth(comm.group_spans_nodes(1, lay.tp, net.gpus_per_node))
    tp_one = 2 * comm.all_gather_s(st.act_bytes, lay.tp, tp_bw, lat) + 2 * comm.reduce_scatter_s(
        st.act_bytes, lay.tp, tp_bw, lat)
    tp_s = (1 - tune.tp_overlap) * tp_one * passes * n_stage

    # expert parallel: dispatch + combine all-to-all per MoE layer each way
    ep_s = 0.0
    if st.n_moe and lay.ep > 1 and spec.moe is not None:
        ep_s = (1 - tune.ep_overlap) * st.n_moe * ep_layer_s(spec, lay, dev, net, st.act_bytes, passes)
        if hide:  # DualPipe: each chunk's all-to-all runs under the paired chunk's computation
            ep_s = schedules.exposed_after_overlap_s(ep_s, fwd + bwd + recompute)

    # context parallel: ring passes of K and V, hidden behind the attention core when it is long enough
    cp_s = 0.0
    if lay.cp > 1:
        cp_bw = net.bandwidth(comm.group_spans_nodes(lay.tp, lay.cp, net.gpus_per_node))
        kv_bytes = 2 * st.tokens * spec.kv_dim / lay.tp * dev.elem_bytes
        ring = (lay.cp - 1) * comm.p2p_s(kv_bytes, cp_bw, lat)
        cp_s = n_stage * (max(0.0, ring - st.attn_layer)
                          + max(0.0, 2 * ring - ATTENTION_BACKWARD_FACTOR * st.attn_layer))

    # pipeline send/recv of activations (forward) and their gradients (backward), per virtual stage
    pp_s = 0.0
    if lay.pp > 1:
        pp_bw = net.bandwidth(comm.group_spans_nodes(lay.tp * lay.cp * lay.dp, lay.pp, net.gpus_per_node))
        pp_s = (1 - tune.pp_overlap) * 2 * lay.vpp * comm.p2p_s(st.act_bytes / (lay.tp if sp else 1), pp_bw, lat)
        if hide:
            pp_s = schedules.exposed_after_overlap_s(pp_s, max(0.0, fwd + bwd + recompute - ep_s))
    return st, fwd, bwd, recompute, tp_s, ep_s, cp_s, pp_s


def step_time(spec: ModelSpec, lay: Layout, work: Workload, dev: Device, net: comm.Network,
              tune: Tuning | None = None) -> StepTime:
    """Seconds of one optimizer step of ``lay`` (see the module docstring for the formula)."""
    tune = tune or Tuning()
    if work.global_batch % (lay.dp * lay.micro_batch):
        raise InputError("--global-batch", work.global_batch,
                         f"must be a multiple of dp x micro-batch = {lay.dp * lay.micro_batch}")
    if work.seq % lay.cp:
        raise InputError("--cp", lay.cp, f"must divide the sequence length {work.seq}")
    if lay.dp_shard is not None and (lay.dp_shard < 1 or lay.dp % lay.dp_shard or lay.zero < 1):
        raise InputError("--dp-shard", lay.dp_shard, f"must divide dp = {lay.dp}, with ZeRO stage >= 1")
    if work.attention_impl not in ("flash", "unfused"):
        raise InputError("--attention-impl", work.attention_impl, "must be flash or unfused")
    m = work.global_batch // (lay.dp * lay.micro_batch)
    schedule = tune.schedule or ("interleaved" if lay.vpp > 1 else "1f1b")
    if tune.schedule is not None and lay.pp > 1:
        schedules.check_schedule(tune.schedule, lay.pp, lay.vpp, m)
    st, fwd, bwd, recompute, tp_s, ep_s, cp_s, pp_s = _micro_parts(
        spec, work, dev, net, tune, lay.tp, lay.ep, lay.cp, lay.micro_batch, lay.seq_parallel, lay.pp, lay.vpp,
        lay.dp, lay.recompute)
    lat = net.latency_s

    # data parallel over dp·cp ranks with ZeRO stage semantics; hybrid sharding: shard groups of dp_shard·cp ranks
    # (contiguous in the tp-cp-dp order) replicated dp/dp_shard times
    shard_ranks = (lay.dp_shard or lay.dp) * lay.cp
    replicas = lay.dp // (lay.dp_shard or lay.dp)
    shard_bw = net.bandwidth(comm.group_spans_nodes(lay.tp, shard_ranks, net.gpus_per_node))
    rep_bw = net.bandwidth(comm.group_spans_nodes(lay.tp * shard_ranks, replicas, net.gpus_per_node))
    micro_dp, dp_s = comm.data_parallel_s(lay.zero, st.local_params * tune.grad_reduce_bytes,
                                          st.local_params * tune.param_gather_bytes, shard_ranks, replicas, shard_bw,
                                          rep_bw, lat, tune.dp_overlap * (bwd + recompute), tune.dp_overlap * fwd)

    # optimizer update over the local (ZeRO-sharded) parameters, memory-bound
    opt_s = elementwise_s(st.local_params / (shard_ranks if lay.zero >= 1 else 1) * tune.optimizer_bytes_per_param,
                          dev)

    t_micro = fwd + bwd + recompute + tp_s + ep_s + cp_s + pp_s + micro_dp
    bubble_slots = schedules.bubble_slots(schedule, lay.pp, lay.vpp)
    step = (m + bubble_slots) * t_micro + dp_s + opt_s
    parts = {
        "compute": m * (fwd + bwd), "recompute": m * recompute, "bubble": bubble_slots * t_micro,
        "tp_comm": m * tp_s, "ep_comm": m * ep_s, "cp_comm": m * cp_s, "pp_comm": m * pp_s,
        "dp_comm": m * micro_dp + dp_s, "optimizer": opt_s,
    }
    return StepTime(step_s=step, microbatches=m, parts=parts, bubble_fraction=bubble_slots / (m + bubble_slots),
                    bubble_slots=bubble_slots)


def step_time_floor(spec: ModelSpec, lay: Layout, work: Workload, dev: Device, net: comm.Network,
                    tune: Tuning | None = None) -> float:
    """A lower bound of ``step_time`` shared by every ZeRO stage and shard group of ``lay``: the step without its
    data-parallel traffic and optimizer update, (m + bubble slots) × (compute + tp + ep + cp + pp seconds of one
    micro-batch). ``step_time`` only adds non-negative seconds to it (its ``micro_dp``, ``dp_s`` and ``opt_s``)."""
    tune = tune or Tuning()
    m = work.global_batch // (lay.dp * lay.micro_batch)
    schedule = tune.schedule or ("interleaved" if lay.vpp > 1 else "1f1b")
    _, fwd, bwd, recompute, tp_s, ep_s, cp_s, pp_s = _micro_parts(
        spec, work, dev, net, tune, lay.tp, lay.ep, lay.cp, lay.micro_batch, lay.seq_parallel, lay.pp, lay.vpp,
        lay.dp, lay.recompute)
    return (m + schedules.bubble_slots(schedule, lay.pp, lay.vpp)) * (fwd + bwd + recompute + tp_s + ep_s + cp_s
                                                                        + pp_s)


def ep_layer_s(spec: ModelSpec, lay: Layout, dev: Device, net: comm.Network, act_bytes: float, passes: int) -> float:
    """Expert-parallel all-to-all seconds of one MoE layer for one micro-batch (``act_bytes``: one [tokens, h]
    activation): the forward's dispatch and combine (again when recomputed, ``passes`` 3) and the backward's, in
    reverse with BF16 gradients."""
    assert spec.moe is not None
    spans = comm.group_spans_nodes(lay.tp * lay.cp, lay.ep, net.gpus_per_node)
    ep_bw = net.bandwidth(spans)
    nodes = max(1, lay.tp * lay.cp * lay.ep // net.gpus_per_node) if spans else 1
    copies = moe_copies_per_token(spec.moe.top_k, spec.moe.route_groups, spec.moe.route_topk_groups, nodes)
    token_bytes = act_bytes / (lay.tp if lay.seq_parallel else 1) * copies
    dispatch = comm.all_to_all_s(token_bytes * moe_dispatch_bytes(dev) / dev.elem_bytes, lay.ep, ep_bw, net.latency_s)
    combine = comm.all_to_all_s(token_bytes, lay.ep, ep_bw, net.latency_s)
    return (passes - 1) * (dispatch + combine) + 2 * combine


def moe_copies_per_token(top_k: int, groups: int, topk_groups: int, nodes: int) -> int:
    """Copies of a token the expert-parallel all-to-all sends over the slowest link. Plain all-to-all: one per
    selected expert (top_k). Group-limited routing whose groups are the nodes of the EP group (DeepSeek-V3: n_group
    8 = 8 nodes of EP 64, topk_group 4) sends each token once per target node over InfiniBand and forwards it to
    the experts of that node over NVLink (DeepSeek-V3 report, arXiv:2412.19437, section 3.2.2): min(top_k,
    topk_group) copies."""
    if topk_groups and groups > 1 and nodes == groups:
        return min(top_k, topk_groups)
    return top_k


def moe_dispatch_bytes(dev: Device) -> int:
    """Bytes per element of the MoE dispatch: FP8 where the expert GEMMs take FP8 input (DeepSeek-V3 section 3.3.3:
    activations are quantized to FP8 before dispatch; the combine stays BF16), else the activation dtype."""
    return dev.gemm_elem_bytes or dev.elem_bytes


def make_device(gpu, dtype: str = "bf16", *, gemm_eff: float | None = None, attention_eff: float | None = None,
                hbm_eff: float | None = None) -> tuple[Device, list[str]]:
    """A kernel-model Device for a catalog GpuSpec, and the sources of its efficiencies. ``fp8``: FP8 GEMMs
    with DeepSeek-V3's fine-grained scaling against the FP8 peak at the FP8 GEMM efficiencies (forward and data
    gradient, weight gradient) with their quantization kernels, the output head in BF16; attention, elementwise
    work and communication in BF16, and MFU against the BF16 peak (the convention of the runs that report it)."""
    from gpuplan.compute.kernels import (ATTENTION_EFFICIENCY, FP8_GEMM_EFFICIENCY, FP8_GEMM_EFFICIENCY_FALLBACK,
                                         FP8_WGRAD_EFFICIENCY, GEMM_EFFICIENCY, GEMM_EFFICIENCY_FALLBACK,
                                         HBM_EFFICIENCY, SM_COUNT)
    from gpuplan.compute.mfu import mfu_family

    from gpuplan.hardware.catalog import catalog_field

    asked, dtype = dtype, (gpu.compute_dtype(dtype) if hasattr(gpu, "compute_dtype") else dtype)
    fp8 = dtype == "fp8"
    gemm_peak = gpu.peak_flop_per_s_for(dtype)
    peak = gpu.peak_flop_per_s_for(gpu.compute_dtype("bf16") if hasattr(gpu, "compute_dtype") else "bf16") \
        if fp8 else gemm_peak
    if gemm_peak is None or peak is None:
        missing = dtype if gemm_peak is None else "bf16"
        raise InputError("--precision", asked, f"{gpu.id} has no {missing} peak: its catalog entry lacks the field "
                         f"{catalog_field(missing)}")
    table, fallback = (FP8_GEMM_EFFICIENCY, FP8_GEMM_EFFICIENCY_FALLBACK) if fp8 else (GEMM_EFFICIENCY,
                                                                                      GEMM_EFFICIENCY_FALLBACK)
    family = mfu_family(gpu.id) or ""
    g_eff, g_src = table.get(family, fallback)
    w_eff, w_src = FP8_WGRAD_EFFICIENCY.get(family, (g_eff, g_src)) if fp8 and not gemm_eff else (None, "")
    sources = ([f"{gpu.id} has no bf16 units: timed in {dtype} (catalog bf16_fallback)"] if dtype != asked else [])
    sources += [f"{'FP8 ' if fp8 else ''}GEMM efficiency {gemm_eff or g_eff:g}: {'given' if gemm_eff else g_src}",
               f"attention efficiency {attention_eff or ATTENTION_EFFICIENCY[0]:g}: "
               f"{'given' if attention_eff else ATTENTION_EFFICIENCY[1]}",
               f"HBM efficiency {hbm_eff or HBM_EFFICIENCY[0]:g}: {'given' if hbm_eff else HBM_EFFICIENCY[1]}"]
    if w_eff is not None and w_eff != g_eff:
        sources.append(f"FP8 weight-gradient GEMM efficiency {w_eff:g}: {w_src}")
    if fp8:
        sources.append(f"FP8: GEMMs at the FP8 peak {gemm_peak / 1e12:g} TFLOP/s with fine-grained scaling, each "
                       "BF16 operand quantized by a memory-bound kernel (forward: inputs; backward: output gradients, "
                       "and both transposed for the weight gradient); attention, the output head, elementwise work "
                       f"and MFU at the BF16 peak {peak / 1e12:g} TFLOP/s (DeepSeek-V3 keeps attention, the output "
                       "head and normalization in BF16, arXiv:2412.19437 section 3.3)")
    dev = Device(peak_flop_per_s=peak, hbm_bytes_per_s=gpu.hbm_bandwidth_bytes_per_s, gemm_eff=gemm_eff or g_eff,
                 attention_eff=attention_eff or ATTENTION_EFFICIENCY[0], hbm_eff=hbm_eff or HBM_EFFICIENCY[0],
                 elem_bytes=2 if dtype in ("bf16", "fp16", "fp8") else 4, sms=SM_COUNT.get(gpu.id),
                 gemm_peak_flop_per_s=gemm_peak if fp8 else None, gemm_elem_bytes=1 if fp8 else None,
                 wgrad_eff=w_eff if w_eff != g_eff else None,
                 bf16_gemm_eff=(gemm_eff or GEMM_EFFICIENCY.get(family, GEMM_EFFICIENCY_FALLBACK)[0]) if fp8 else None)
    return dev, sources


def model_flops_utilization(model_flop_per_token: float, work: Workload, step_s: float, gpus: int,
                            peak_flop_per_s: float) -> float:
    """MFU of a step: model FLOPs of the global batch / (step seconds × GPUs × peak)."""
    return model_flop_per_token * work.global_batch * work.seq / (step_s * gpus * peak_flop_per_s)
