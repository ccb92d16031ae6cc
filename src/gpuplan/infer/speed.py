"""Serving speed from a roofline: prefill is compute-bound, decode is memory-bandwidth-bound until the batch is big.

Per token, a forward pass costs 2 FLOP per matmul parameter it uses (embedding lookups excluded; for MoE only the
routed top-k and shared experts) plus attention, 2 x heads x (qk_head_dim + v_head_dim) FLOP per attended token per
layer (QK^T and AV; Kaplan et al. 2020, arXiv:2001.08361, table 1). A decode step reads every weight a GPU holds
(for MoE, the experts some token of the batch routes to) and each sequence's KV cache once. With efficiencies as
named inputs:

    step_s = max(bytes / (bandwidth x bandwidth_efficiency), flop / (peak x compute_efficiency)) + TP all-reduces

Ignored: kernel launch gaps (CUDA graphs remove most), the sampler, prefill/decode interference under continuous
batching, speculative decoding, and pipeline bubbles (PP stages are timed back to back, the latency view).
"""

from __future__ import annotations

from dataclasses import dataclass

from gpuplan.compute.flops import linear_attention_flop_per_token
from gpuplan.model.params import count_params
from gpuplan.model.spec import ModelSpec


@dataclass(frozen=True)
class SpeedAssumptions:
    compute_efficiency: float = 0.5
    """Achieved / peak dense FLOP/s in prefill GEMMs (MFU). 0.4-0.6 is typical of vLLM/SGLang prefill on H100."""
    bandwidth_efficiency: float = 0.8
    """Achieved / peak HBM bandwidth of decode GEMVs and paged attention (70-90 % in STREAM-like kernels)."""
    interconnect_efficiency: float = 0.7
    """Achieved / peak per-direction link bandwidth of NCCL ring all-reduce at message sizes of one layer."""


def matmul_params_per_token(spec: ModelSpec) -> int:
    """Parameters a token multiplies by: active parameters minus the embedding table (a lookup), plus the tied
    output head (it is a matmul even when it shares the embedding's storage)."""
    c = count_params(spec)
    head = spec.vocab_size * spec.hidden_size if spec.tie_embeddings else 0
    return c.active - c.embedding + head


def attention_flop_per_token(spec: ModelSpec, attended: int, layer: int) -> float:
    """QK^T and AV for one query token attending ``attended`` tokens in one layer (window-capped for sliding
    layers; chunked layers at most the chunk, the most a token late in its chunk sees): 2 x heads x (qk_dim +
    v_dim) x attended."""
    if spec.is_linear_layer(layer):  # a constant-size state, whatever the context
        return linear_attention_flop_per_token(spec)
    if spec.is_sliding_layer(layer) and spec.sliding_window:
        attended = min(attended, spec.sliding_window)
    qk, v = (spec.mla.qk_head_dim, spec.mla.v_head_dim) if spec.mla else (spec.head_dim, spec.head_dim)
    return 2.0 * spec.num_heads * (qk + v) * attended


def decode_flop_per_token(spec: ModelSpec, context: int) -> float:
    """FLOP of one decode token at ``context``: 2 x matmul params + attention over the context in every layer."""
    attn = sum(attention_flop_per_token(spec, context, i) for i in range(spec.num_layers))
    return 2.0 * matmul_params_per_token(spec) + attn


def prefill_flop(spec: ModelSpec, prompt: int) -> float:
    """FLOP of prefilling one sequence of ``prompt`` tokens: 2 x params x prompt + causal attention (token t attends
    t tokens, sum = prompt (prompt + 1) / 2; sliding layers at most the window; a chunked layer's chunks are
    causal blocks of their own)."""
    attn = 0.0
    for i in range(spec.num_layers):
        if spec.is_linear_layer(i):
            attn += attention_flop_per_token(spec, 1, i) * prompt
            continue
        if spec.is_chunked_layer(i) and spec.sliding_window and prompt > spec.sliding_window:
            q, r = divmod(prompt, spec.sliding_window)  # each chunk is a causal block of its own
            attended = q * spec.sliding_window * (spec.sliding_window + 1) / 2 + r * (r + 1) / 2
        elif spec.is_sliding_layer(i) and spec.sliding_window and prompt > spec.sliding_window:
            w = spec.sliding_window
            attended = w * (w + 1) / 2 + (prompt - w) * w
        else:
            attended = prompt * (prompt + 1) / 2
        attn += attention_flop_per_token(spec, 1, i) * attended
    return 2.0 * matmul_params_per_token(spec) * prompt + attn


def expected_experts_touched_fraction(spec: ModelSpec, tokens: int) -> float:
    """Share of a MoE layer's experts that ``tokens`` tokens route to, if routing were uniform and independent:
    1 - (1 - k/E)^tokens (real routers are skewed, so this is an upper bound on the bytes read)."""
    if spec.moe is None:
        return 1.0
    k, e = spec.moe.top_k, spec.moe.num_experts
    return 1.0 - (1.0 - k / e) ** tokens


def allreduce_s(message_bytes: float, tp: int, link_bytes_per_s: float, efficiency: float) -> float:
    """Ring all-reduce: each rank sends and receives 2 (tp - 1) / tp of the message."""
    if tp <= 1:
        return 0.0
    return 2 * (tp - 1) / tp * message_bytes / (link_bytes_per_s * efficiency)


@dataclass(frozen=True)
class SpeedInputs:
    weights_read_bytes: float  # per GPU per decode step at batch 1 (dense part + experts of one token)
    expert_bytes: float  # per GPU, all experts (0 for dense)
    kv_read_bytes_per_seq: float  # per GPU, one sequence at the context
    peak_flop_per_s: float
    bandwidth_bytes_per_s: float
    link_bytes_per_s: float
    tp: int
    dtype_bytes: float


def decode_step_s(spec: ModelSpec, inp: SpeedInputs, a: SpeedAssumptions, *, batch: int, context: int) -> dict:
    """Time of one decode step for ``batch`` sequences at ``context`` tokens, and what bounds it."""
    frac = expected_experts_touched_fraction(spec, batch)
    weights = inp.weights_read_bytes + inp.expert_bytes * frac
    mem_bytes = weights + batch * inp.kv_read_bytes_per_seq
    flop = batch * decode_flop_per_token(spec, context) / inp.tp
    mem_s = mem_bytes / (inp.bandwidth_bytes_per_s * a.bandwidth_efficiency)
    comp_s = flop / (inp.peak_flop_per_s * a.compute_efficiency)
    comm_s = 2 * spec.num_layers * allreduce_s(batch * spec.hidden_size * inp.dtype_bytes, inp.tp,
                                               inp.link_bytes_per_s, a.interconnect_efficiency)
    return {"step_s": max(mem_s, comp_s) + comm_s, "memory_s": mem_s, "compute_s": comp_s, "comm_s": comm_s,
            "bound": "compute" if comp_s > mem_s else "memory", "bytes_read": mem_bytes, "flop": flop}


def prefill_s(spec: ModelSpec, inp: SpeedInputs, a: SpeedAssumptions, *, batch: int, prompt: int) -> float:
    """Prefill of ``batch`` prompts on the TP group: FLOP / (tp x peak x efficiency) + 2 all-reduces per layer."""
    flop = batch * prefill_flop(spec, prompt) / inp.tp
    comm = 2 * spec.num_layers * allreduce_s(batch * prompt * spec.hidden_size * inp.dtype_bytes, inp.tp,
                                             inp.link_bytes_per_s, a.interconnect_efficiency)
    return flop / (inp.peak_flop_per_s * a.compute_efficiency) + comm


def compute_bound_batch(spec: ModelSpec, inp: SpeedInputs, a: SpeedAssumptions, *, context: int) -> int | None:
    """Smallest batch whose decode step is compute-bound: B x F / P' >= (W + B x K) / BW'; None when the
    per-sequence KV traffic alone outweighs the per-sequence compute (long contexts: attention is memory-bound
    at any batch). Dense weights only (MoE expert traffic grows with the batch)."""
    f = decode_flop_per_token(spec, context) / inp.tp / (inp.peak_flop_per_s * a.compute_efficiency)
    bw = inp.bandwidth_bytes_per_s * a.bandwidth_efficiency
    k = inp.kv_read_bytes_per_seq / bw
    w = (inp.weights_read_bytes + inp.expert_bytes) / bw
    if f <= k:
        return None
    return max(1, int(-(-w // (f - k))))
