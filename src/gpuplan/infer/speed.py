"""Serving speed from a roofline: prefill is compute-bound, decode is memory-bandwidth-bound until the batch is big.

Per token, a forward pass costs 2 FLOP per matmul parameter it uses (embedding lookups excluded; for MoE only the
routed top-k and shared experts) plus attention, 2 x heads x (qk_head_dim + v_head_dim) FLOP per attended token per
layer (QK^T and AV; Kaplan et al. 2020, arXiv:2001.08361, table 1). A decode step reads every weight a GPU holds
(for MoE, the experts some token of the batch routes to) and each sequence's KV cache once. With efficiencies as
named inputs:

    step_s = max(bytes / (bandwidth x bandwidth_efficiency), flop / (peak x compute_efficiency x wave)) + comm
    comm   = 2 x layers x (latency + 2 (tp - 1) / tp x tokens x hidden x bytes / (link x efficiency))

With expert parallelism across data-parallel attention ranks (``ep > tp``: DeepSeek-V3's deployment, vLLM's
``--data-parallel-size`` with ``--enable-expert-parallel``), every MoE layer also dispatches each token to the ranks
of its top-k experts and combines the results back, two all-to-alls (``ep_all_to_all_s``). With ``ep <= tp`` the
experts split the TP group's replicated tokens and the TP all-reduce already sums their outputs (vLLM uses its
all-to-all kernels only with data parallelism), so nothing is added.

Megatron-style tensor parallelism all-reduces the activations twice per layer (after the attention output and the
MLP down projection; Shoeybi et al. 2019, arXiv:1909.08053, section 3). A decode step's message is tiny (batch x
hidden x 2 bytes), so its all-reduces cost their fixed latency: 2 x 80 layers x 8 us = 1.3 ms per token for a 70B
model at any TP > 1, which is why decode speed grows less than linearly with TP. Prefill moves prompt x hidden
bytes per all-reduce, which the bandwidth term prices. ``wave`` is the tile/wave quantization of the GEMMs
(``gpuplan.compute.kernels.wave_efficiency``; 1 where the GPU's SM count is not in the table): a prefill chunk of
few tokens leaves SMs idle, a large one reaches the compute efficiency.

Ignored: kernel launch gaps (CUDA graphs remove most), the sampler, prefill/decode interference under continuous
batching, speculative decoding, and pipeline bubbles (PP stages are timed back to back, the latency view).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

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
    allreduce_latency_s: float | None = None
    """Fixed time of one small all-reduce inside the TP group. None: by the GPU's interconnect
    (``allreduce_latency_default``)."""


# Small-message all-reduce time inside one node, by link kind: (seconds, source).
ALLREDUCE_LATENCY_S = {
    "nvlink": (8e-6, ("nccl-tests all_reduce_perf on HGX 8x H100 (NCCL 2.20.5, CUDA graphs): about 6 us at 2 GPUs, "
                     "rising with the GPU count (NVIDIA/nccl issue #1259); vLLM's custom all-reduce targets the same "
                     "range for decode-sized messages")),
    "pcie": (25e-6, ("NCCL's own tuning model prices a 128-byte all-reduce at about 25 us over PCIe/network paths "
                    "(NCCL_DEBUG=INFO 'Algo 0 proto 0 time 25.2', NVIDIA/nccl issue #1453); order of magnitude")),
}


def allreduce_latency_default(interconnect: str) -> tuple[float, str]:
    """The small-message all-reduce time for a catalog interconnect name ("NVLink 4", "PCIe 5.0", "HCCS"...):
    NVLink-class switched links use the NVLink figure, everything else the PCIe one."""
    kind = "pcie" if interconnect.lower().startswith("pcie") else "nvlink"
    return ALLREDUCE_LATENCY_S[kind]


@lru_cache(maxsize=64)
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


_CONSTANTS: dict[int, tuple[ModelSpec, tuple[float, float, int, int]]] = {}


def _constants(spec: ModelSpec) -> tuple[float, float, int, int]:
    """(FLOP per attended token summed over full-attention layers, the same over sliding layers, the window, matmul
    parameters per token), kept per spec object (the searches call the step model thousands of times)."""
    hit = _CONSTANTS.get(id(spec))
    if hit is not None and hit[0] is spec:
        return hit[1]
    full = sum(attention_flop_per_token(spec, 1, i) for i in range(spec.num_layers) if not spec.is_sliding_layer(i))
    slide = sum(attention_flop_per_token(spec, 1, i) for i in range(spec.num_layers) if spec.is_sliding_layer(i))
    value = (full, slide, spec.sliding_window or 0, matmul_params_per_token(spec))
    if len(_CONSTANTS) > 64:
        _CONSTANTS.clear()
    _CONSTANTS[id(spec)] = (spec, value)
    return value


def attention_flop_all_layers(spec: ModelSpec, attended: float) -> float:
    """One query token attending ``attended`` tokens in every layer (sliding layers capped at the window)."""
    full, slide, window, _ = _constants(spec)
    return full * attended + slide * (min(attended, window) if window else attended)


def decode_flop_per_token(spec: ModelSpec, context: int) -> float:
    """FLOP of one decode token at ``context``: 2 x matmul params + attention over the context in every layer."""
    return 2.0 * _constants(spec)[3] + attention_flop_all_layers(spec, context)


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


def allreduce_s(message_bytes: float, tp: int, link_bytes_per_s: float, efficiency: float,
                latency_s: float = 0.0) -> float:
    """Ring all-reduce: each rank sends and receives 2 (tp - 1) / tp of the message, plus a fixed latency
    (nccl-tests doc/PERFORMANCE.md bus-bandwidth model); 0 for one rank."""
    if tp <= 1:
        return 0.0
    return latency_s + 2 * (tp - 1) / tp * message_bytes / (link_bytes_per_s * efficiency)


def ep_all_to_all_s(*, tokens: float, top_k: int, ep: int, hidden: int, dtype_bytes: float, gpus_per_node: int,
                    nvlink_bytes_per_s: float, inter_node_bytes_per_s: float | None, efficiency: float,
                    nvlink_latency_s: float, network_latency_s: float) -> float:
    """One MoE layer's dispatch + combine all-to-all for ``tokens`` tokens sent by one rank of an ``ep``-rank
    expert-parallel group: each all-to-all sends tokens x top_k x (ep - 1) / ep copies of the hidden state (uniform
    routing; one copy per routed expert as DeepEP's low-latency kernels send them, an upper bound on its
    rank-deduplicating normal kernels), so per all-to-all

        latency + max(nvlink_bytes / nvlink_bw, network_bytes / nic_bw) / efficiency

    with the copies for the other ranks of the node on NVLink and the (ep - node) / (ep - 1) share bound for other
    nodes on the NIC, in parallel. DeepSeek-V3 technical report (arXiv:2412.19437) section 3.4: MoE dispatch and
    combine run as all-to-all among the EP ranks, across nodes over InfiniBand; DeepEP (docs/legacy.md, H800 + CX7
    400 Gb/s): 128 tokens x top-8 x 7168 hidden dispatched in FP8 at EP 8 takes 77 us (7.3 MB at 98 GB/s) and
    combined in BF16 114 us, i.e. bytes over bandwidth. 0 for ep = 1."""
    if ep <= 1 or tokens <= 0:
        return 0.0
    copies = tokens * top_k * (ep - 1) / ep
    node = max(1, min(gpus_per_node, ep))
    off_share = (ep - node) / (ep - 1)
    msg = copies * hidden * dtype_bytes
    nvl_s = msg * (1 - off_share) / (nvlink_bytes_per_s * efficiency)
    if off_share > 0:
        nic = inter_node_bytes_per_s or nvlink_bytes_per_s
        net_s = msg * off_share / (nic * efficiency)
        return 2 * (network_latency_s + max(nvl_s, net_s))
    return 2 * (nvlink_latency_s + nvl_s)


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
    allreduce_latency_s: float = 0.0
    sms: int | None = None  # streaming multiprocessors, for the wave quantization of GEMMs (None: ignored)
    ep: int = 1  # expert-parallel ranks; > tp: the EP group spans data-parallel attention ranks (all-to-all)
    gpus_per_node: int = 8
    inter_node_bytes_per_s: float | None = None  # per GPU, one direction, to other nodes (the EP all-to-all)
    network_latency_s: float = 25e-6  # one small inter-node collective (``ALLREDUCE_LATENCY_S["pcie"]``)

    @property
    def attention_dp(self) -> int:
        """Data-parallel attention ranks whose tokens share one GPU's experts (ep / tp when the EP group spans them)."""
        return self.ep // self.tp if self.ep > self.tp else 1


def tp_comm_s(spec: ModelSpec, inp: SpeedInputs, a: SpeedAssumptions, tokens: float) -> float:
    """Two all-reduces per layer of ``tokens`` x hidden activations in the TP group (latency + bandwidth)."""
    return 2 * spec.num_layers * allreduce_s(tokens * spec.hidden_size * inp.dtype_bytes, inp.tp,
                                             inp.link_bytes_per_s, a.interconnect_efficiency, inp.allreduce_latency_s)


def ep_comm_s(spec: ModelSpec, inp: SpeedInputs, a: SpeedAssumptions, tokens: float) -> float:
    """Dispatch + combine all-to-alls of every MoE layer when the EP group spans data-parallel attention ranks
    (``ep > tp``); each TP rank sends its 1 / tp share of its group's ``tokens``. 0 otherwise."""
    if spec.moe is None or inp.ep <= inp.tp:
        return 0.0
    one = ep_all_to_all_s(tokens=tokens / inp.tp, top_k=spec.moe.top_k, ep=inp.ep, hidden=spec.hidden_size,
                          dtype_bytes=inp.dtype_bytes, gpus_per_node=inp.gpus_per_node,
                          nvlink_bytes_per_s=inp.link_bytes_per_s, inter_node_bytes_per_s=inp.inter_node_bytes_per_s,
                          efficiency=a.interconnect_efficiency, nvlink_latency_s=inp.allreduce_latency_s,
                          network_latency_s=inp.network_latency_s)
    return spec.moe.num_moe_layers * one


def gemm_wave_efficiency(spec: ModelSpec, inp: SpeedInputs, tokens: float) -> float:
    """Wave quantization of the MLP up projection [tokens, hidden] x [hidden, ffn / tp], the step's largest GEMM
    (``gpuplan.compute.kernels.wave_efficiency``); 1 without an SM count, and 1 below one tile row of tokens
    (cuBLAS picks small-M kernels there, and the step is memory-bound anyway)."""
    from gpuplan.compute.kernels import GEMM_TILE, wave_efficiency

    if tokens < GEMM_TILE[0]:
        return 1.0
    n = (spec.moe.expert_ffn_size if spec.moe and not spec.ffn_size else spec.ffn_size) or 4 * spec.hidden_size
    return wave_efficiency(max(1.0, tokens), n / inp.tp, inp.sms)


def _bound(comp_s: float, mem_s: float, comm_s: float) -> str:
    if comm_s > max(comp_s, mem_s):
        return "interconnect"
    return "compute" if comp_s > mem_s else "memory"


def decode_step_s(spec: ModelSpec, inp: SpeedInputs, a: SpeedAssumptions, *, batch: int, context: int) -> dict:
    """Time of one decode step for ``batch`` sequences at ``context`` tokens, and what bounds it."""
    frac = expected_experts_touched_fraction(spec, batch * inp.attention_dp)  # every DP rank's tokens reach them
    weights = inp.weights_read_bytes + inp.expert_bytes * frac
    mem_bytes = weights + batch * inp.kv_read_bytes_per_seq
    flop = batch * decode_flop_per_token(spec, context) / inp.tp
    mem_s = mem_bytes / (inp.bandwidth_bytes_per_s * a.bandwidth_efficiency)
    comp_s = flop / (inp.peak_flop_per_s * a.compute_efficiency)
    ep_s = ep_comm_s(spec, inp, a, batch)
    comm_s = tp_comm_s(spec, inp, a, batch) + ep_s
    return {"step_s": max(mem_s, comp_s) + comm_s, "memory_s": mem_s, "compute_s": comp_s, "comm_s": comm_s,
            "bound": _bound(comp_s, mem_s, comm_s), "bytes_read": mem_bytes, "flop": flop,
            "allreduces": 2 * spec.num_layers if inp.tp > 1 else 0, "ep_comm_s": ep_s}


def mixed_step_s(spec: ModelSpec, inp: SpeedInputs, a: SpeedAssumptions, *, decode_seqs: float, context: float,
                 prefill_tokens: float, prefill_context: float) -> dict:
    """One continuous-batching step: ``decode_seqs`` decode tokens at ``context`` tokens each plus a chunk of
    ``prefill_tokens`` prompt tokens (attending about ``prefill_context`` tokens each, causal: half the prompt on
    average). One pass reads the weights once for all the step's tokens; the decode tokens read their KV; the GEMMs
    run at compute_efficiency x wave quantization of the step's token count; the TP all-reduces carry all tokens."""
    tokens = decode_seqs + prefill_tokens
    frac = expected_experts_touched_fraction(spec, max(1, round(tokens * inp.attention_dp)))
    mem_bytes = inp.weights_read_bytes + inp.expert_bytes * frac + decode_seqs * inp.kv_read_bytes_per_seq
    attn_prefill = attention_flop_all_layers(spec, max(1.0, prefill_context / 2))
    flop = (decode_seqs * decode_flop_per_token(spec, context)
            + prefill_tokens * (2.0 * _constants(spec)[3] + attn_prefill)) / inp.tp
    wave = gemm_wave_efficiency(spec, inp, tokens)
    mem_s = mem_bytes / (inp.bandwidth_bytes_per_s * a.bandwidth_efficiency)
    comp_s = flop / (inp.peak_flop_per_s * a.compute_efficiency * wave)
    comm_s = tp_comm_s(spec, inp, a, tokens) + ep_comm_s(spec, inp, a, tokens)
    return {"step_s": max(mem_s, comp_s) + comm_s, "memory_s": mem_s, "compute_s": comp_s, "comm_s": comm_s,
            "bound": _bound(comp_s, mem_s, comm_s), "tokens": tokens}


def prefill_s(spec: ModelSpec, inp: SpeedInputs, a: SpeedAssumptions, *, batch: int, prompt: int) -> float:
    """Prefill of ``batch`` prompts on the TP group: the larger of FLOP / (tp x peak x efficiency x wave) and the
    weight read, + 2 all-reduces per layer (latency + prompt-sized messages) and, with ``ep > tp``, the MoE layers'
    all-to-alls."""
    flop = batch * prefill_flop(spec, prompt) / inp.tp
    wave = gemm_wave_efficiency(spec, inp, batch * prompt)
    comp_s = flop / (inp.peak_flop_per_s * a.compute_efficiency * wave)
    mem_s = (inp.weights_read_bytes + inp.expert_bytes) / (inp.bandwidth_bytes_per_s * a.bandwidth_efficiency)
    return max(comp_s, mem_s) + tp_comm_s(spec, inp, a, batch * prompt) + ep_comm_s(spec, inp, a, batch * prompt)


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
