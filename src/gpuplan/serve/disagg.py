"""Prefill/decode disaggregation: prompts are computed on a pool of prefill replicas, tokens are generated on a
separate pool of decode replicas, and each request's prompt KV cache is sent from one to the other.

Source of the scheme: DistServe (Zhong et al., OSDI 2024, arXiv:2401.09670 §2-§4: prefill and decode on separate
GPUs, each pool sized for its own latency target, KV sent between them) and Splitwise (Patel et al., ISCA 2024,
arXiv:2311.18677). vLLM (``--kv-transfer-config``, disaggregated prefill) and SGLang (PD disaggregation) implement it.

The model, with a prompt of ``P`` tokens of which ``P'`` are computed (prefix-cache misses), ``O`` output tokens
and ``B`` the step budget (``max_num_batched_tokens``):

    prefill replica:  n = ceil(P' / B) steps of P' / n tokens for one prompt alone: service S = n x step(P' / n)
                      capacity = B / step(B) prompt tokens/s (full steps);  util = rps_replica x P' / capacity
                      wait_p = S / (1 - util) x ln(util / (1 - p))  when util > 1 - p  (M/M/1 tail, as the
                      colocated model in gpuplan.serve.batching)
    KV transfer:      each GPU of the prefill TP group sends its share of the prompt's KV,
                      kv_bytes_per_gpu(P) / inter-node bandwidth per GPU + one network latency
    TTFT            = wait_p + S + transfer   (the first token reaches the client from the decode replica)
    decode replica:   C sequences decode every step with no prompt chunk: TPOT = step(C decode) + (pp - 1) hops,
                      output tokens/s = C / TPOT; C is the concurrency at which it emits rps_replica x O tokens/s
    E2E             = TTFT + (O - 1) x TPOT

Each pool gets the fewest replicas that meet its own targets (prefill: TTFT; decode: TPOT and its KV pool), then
every pairing of a prefill layout with a decode layout of the same GPU type is checked against E2E. Not modelled:
the transfer's bandwidth taken from other traffic, decode replicas receiving KV while they compute (DistServe
overlaps it), and pools on different GPU types.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from gpuplan.infer.speed import SpeedAssumptions, SpeedInputs, mixed_step_s
from gpuplan.model.spec import ModelSpec
from gpuplan.serve.batching import ReplicaLoad, Traffic

DISAGG_SOURCE = ("prefill/decode disaggregation as in DistServe (Zhong et al., OSDI 2024, arXiv:2401.09670) and "
                 "Splitwise (Patel et al., ISCA 2024, arXiv:2311.18677)")
_TAIL = {"p50": 0.5, "p90": 0.9, "p99": 0.99}


@dataclass(frozen=True)
class PrefillLoad:
    """One prefill replica offered ``rps`` requests per second."""

    rps: float
    util: float  # share of the replica's prompt-token capacity in use
    service_s: float  # one prompt alone
    wait_s: float  # queueing at the percentile
    transfer_s: float  # the prompt's KV to the decode replica
    step_s: float  # one full step of the budget's tokens
    bound: str

    @property
    def ttft_s(self) -> float:
        return self.wait_s + self.service_s + self.transfer_s


def kv_transfer_s(kv_bytes_per_gpu: float, inter_node_bytes_per_s: float, latency_s: float) -> float:
    """Time to send one prompt's KV share of a GPU to the decode replica: bytes / the GPU's inter-node bandwidth (its
    NIC: one per GPU on the catalog's servers) + one network latency. The prefill TP group's GPUs send in parallel."""
    return kv_bytes_per_gpu / inter_node_bytes_per_s + latency_s


def _prefill_step(spec: ModelSpec, inp: SpeedInputs, a: SpeedAssumptions, tokens: float, prompt: int) -> dict:
    return mixed_step_s(spec, inp, a, decode_seqs=0, context=0, prefill_tokens=tokens, prefill_context=prompt)


def prefill_load(spec: ModelSpec, inp: SpeedInputs, a: SpeedAssumptions, traffic: Traffic, *, rps: float,
                 budget: int, percentile: str, transfer_s: float) -> PrefillLoad | str:
    """One prefill replica's TTFT at ``rps`` (see the module docstring), or why it cannot keep up."""
    p = traffic.computed_prompt_tokens
    steps = math.ceil(p / budget)
    alone = _prefill_step(spec, inp, a, p / steps, traffic.prompt_tokens)
    service = steps * alone["step_s"]
    full = _prefill_step(spec, inp, a, budget, traffic.prompt_tokens)
    capacity = budget / full["step_s"]  # prompt tokens per second with every step full
    util = rps * p / capacity
    if util >= 1:
        return (f"prefill cannot keep up: {rps * p:,.0f} prompt tokens/s per prefill replica, it computes "
                f"{capacity:,.0f}")
    q = 1 - _TAIL[percentile]
    wait = service / (1 - util) * math.log(util / q) if util > q else 0.0
    return PrefillLoad(rps=rps, util=util, service_s=service, wait_s=wait, transfer_s=transfer_s,
                       step_s=full["step_s"], bound=full["bound"])


def decode_load(spec: ModelSpec, inp: SpeedInputs, a: SpeedAssumptions, traffic: Traffic, *, concurrency: float,
                pp: int = 1, hop_s: float = 0.0, ttft_s: float = 0.0) -> ReplicaLoad:
    """One decode replica at ``concurrency`` sequences: every step decodes them all, no prompt chunk. ``ttft_s`` is
    the prefill pool's, carried into E2E. ``inp.kv_read_bytes_per_seq`` is one sequence at prompt + output tokens;
    decode reads it at the mean context."""
    c = max(concurrency, 1e-9)
    full_ctx = traffic.prompt_tokens + traffic.output_tokens
    inp = replace(inp, kv_read_bytes_per_seq=inp.kv_read_bytes_per_seq * traffic.mean_context_tokens / full_ctx)
    dec = mixed_step_s(spec, inp, a, decode_seqs=c / pp, context=traffic.mean_context_tokens, prefill_tokens=0,
                       prefill_context=traffic.prompt_tokens)
    tpot = dec["step_s"] + (pp - 1) * hop_s
    parts = {k: dec[k] for k in ("compute_s", "memory_s", "comm_s")}
    return ReplicaLoad(concurrency=c, ttft_s=ttft_s, tpot_s=tpot, e2e_s=ttft_s + (traffic.output_tokens - 1) * tpot,
                       output_tokens_per_s=c / tpot, prefill_busy=0.0, decode_step_s=tpot, full_step_s=tpot,
                       bound=dec["bound"], step_parts_s=parts)


def decode_for_rate(spec: ModelSpec, inp: SpeedInputs, a: SpeedAssumptions, traffic: Traffic, *, rps: float,
                    cap: float, pp: int = 1, hop_s: float = 0.0) -> ReplicaLoad | str:
    """The decode replica's steady state at ``rps`` requests per second: the concurrency at which it emits
    rps x O tokens/s (C / TPOT(C) grows with C; bisection), at most ``cap`` (its KV pool's sequences)."""
    need = rps * traffic.output_tokens

    def rate(c: float) -> float:
        return decode_load(spec, inp, a, traffic, concurrency=c, pp=pp, hop_s=hop_s).output_tokens_per_s

    top = rate(cap)
    if top < need:
        return (f"KV capacity: {cap:,.0f} sequences in the KV pool emit {top:,.0f} output tokens/s per decode "
                f"replica, {need:,.0f} needed")
    lo, hi = 0.0, cap
    while hi - lo > max(1e-3, 2e-3 * hi):
        mid = (lo + hi) / 2
        if rate(mid) >= need:
            hi = mid
        else:
            lo = mid
    return decode_load(spec, inp, a, traffic, concurrency=hi, pp=pp, hop_s=hop_s)
