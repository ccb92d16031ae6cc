"""TTFT, TPOT and throughput of one serving replica under continuous batching with chunked prefill.

The queueing model (vLLM V1's scheduler with chunked prefill, its default for online serving; the policy of
Sarathi-Serve, Agrawal et al. 2024, arXiv:2403.02310): every step runs the running batch's decode tokens first and
fills the rest of a token budget (``max_num_batched_tokens``, 8192 in vLLM V1) with prompt chunks, first come first
served. With ``C`` sequences decoding, a prompt of ``P`` tokens of which a share ``h`` hits the prefix cache
(``P' = P (1 - h)`` tokens to compute, at least 1) and ``O`` output tokens:

    demand = C P' / O   prompt tokens per step       (each request's prompt is computed once over its O steps)
    n      = ceil(P' / (budget - C))                 (steps one prompt's prefill takes)
    chunk  = min(budget - C, max(P' / n, demand))    (prompt tokens of a step that carries prompt chunks)
    rho    = demand / chunk                          (share of steps that carry prompt chunks)
    util   = demand / (budget - C)                   (utilization of the prompt budget; >= 1: overload)
    step_mean = rho x step(C decode + chunk) + (1 - rho) x step(C decode)
    TPOT = step_mean,  tokens/s = C / TPOT
    TTFT = step(C decode) / 2 + wait_p + n x step(C decode + chunk)

``wait_p`` treats the prompt chunks as one server of utilization util with Poisson arrivals and the M/M/1 tail,
P(wait > t) = util exp(-(1 - util) t / S) (S = n x step(C decode + chunk), the prefill service time) — conservative for the near-deterministic
service of equal prompts. The TPOT percentile spreads the share of full-chunk steps one request sees over its O - 1
steps (binomial: z_p x (step_full - step_decode) x sqrt(rho (1 - rho) / (O - 1))); E2E adds the TTFT and (O - 1)
TPOTs at the same percentile (an upper bound of the percentile of the sum). Decode tokens attend P + O / 2 tokens on
average. Pipeline parallelism splits the batch into ``pp`` micro-batches in flight; a token passes every stage, so
TPOT is one full-model step of C / pp sequences plus ``pp - 1`` point-to-point hops.

Ignored: preemption when the KV pool runs out (the search keeps C within the pool), speculative decoding, the
prefill of requests whose prompt is longer than the budget being interleaved with other prompts, output-length
spread, the sampler and the detokenizer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from gpuplan.errors import InputError
from gpuplan.infer.speed import SpeedAssumptions, SpeedInputs, mixed_step_s
from gpuplan.model.spec import ModelSpec

PERCENTILE_Z = {"p50": 0.0, "p90": 1.2816, "p99": 2.3263}
CHUNK_BUDGET_TOKENS = 8192


@dataclass(frozen=True)
class Traffic:
    """Mean prompt and output lengths in tokens, the prefix-cache hit rate, and the load: ``rps`` requests per
    second (open loop, Poisson) or ``concurrency`` requests in flight (closed loop)."""

    prompt_tokens: int
    output_tokens: int
    prefix_hit: float = 0.0
    rps: float | None = None
    concurrency: int | None = None

    def validate(self) -> None:
        if self.prompt_tokens < 1:
            raise InputError("--prompt", self.prompt_tokens, "must be >= 1 token")
        if self.output_tokens < 1:
            raise InputError("--output", self.output_tokens, "must be >= 1 token")
        if not 0 <= self.prefix_hit < 1:
            raise InputError("--prefix-hit", self.prefix_hit, "must be a fraction in [0, 1)")
        if (self.rps is None) == (self.concurrency is None):
            raise InputError("--rps", self.rps, "give the load as --rps or --concurrency (one of them)")
        if self.rps is not None and not self.rps > 0:
            raise InputError("--rps", self.rps, "must be > 0 requests per second")
        if self.concurrency is not None and self.concurrency < 1:
            raise InputError("--concurrency", self.concurrency, "must be >= 1")

    @property
    def computed_prompt_tokens(self) -> int:
        """Prompt tokens computed per request (the prefix-cache misses), at least the last one."""
        return max(1, math.ceil(self.prompt_tokens * (1 - self.prefix_hit)))

    @property
    def mean_context_tokens(self) -> float:
        return self.prompt_tokens + self.output_tokens / 2


@dataclass(frozen=True)
class ReplicaLoad:
    """One replica at ``concurrency`` sequences: latencies at the percentile, throughput and what bounds it."""

    concurrency: float
    ttft_s: float
    tpot_s: float
    e2e_s: float
    output_tokens_per_s: float
    prefill_busy: float  # rho
    decode_step_s: float
    full_step_s: float
    bound: str  # compute | memory | interconnect, of the step that dominates
    step_parts_s: dict


def _step(spec: ModelSpec, inp: SpeedInputs, a: SpeedAssumptions, seqs: float, ctx: float, chunk: float,
          prompt: int) -> dict:
    return mixed_step_s(spec, inp, a, decode_seqs=seqs, context=ctx, prefill_tokens=chunk, prefill_context=prompt)


def replica_load(spec: ModelSpec, inp: SpeedInputs, a: SpeedAssumptions, traffic: Traffic, *, concurrency: float,
                 pp: int = 1, budget: int = CHUNK_BUDGET_TOKENS, percentile: str = "p50",
                 hop_s: float = 0.0) -> ReplicaLoad | str:
    """The replica's latencies at ``concurrency`` (see the module docstring), or the reason it cannot serve it.
    ``inp.kv_read_bytes_per_seq`` is the KV of one sequence at ``prompt + output`` tokens; decode reads it at the
    mean context. ``hop_s``: one pipeline point-to-point hop."""
    c = max(concurrency, 1e-9)
    m = c / pp  # sequences per micro-batch
    full_ctx = traffic.prompt_tokens + traffic.output_tokens
    inp = replace(inp, kv_read_bytes_per_seq=inp.kv_read_bytes_per_seq * traffic.mean_context_tokens / full_ctx)
    p_eff, out = traffic.computed_prompt_tokens, traffic.output_tokens
    spare = budget - math.ceil(m)
    if spare <= 0:
        return f"the step budget of {budget} tokens is taken by {math.ceil(m)} decode tokens"
    demand = m * p_eff / out  # prompt tokens per step, on average
    if demand >= spare:
        return (f"prompt chunks need {demand:,.0f} tokens per step, {spare:,} are left beside the decode tokens: "
                "prefill cannot keep up")
    steps = math.ceil(p_eff / spare)  # steps one prompt's prefill takes
    chunk = min(spare, max(p_eff / steps, demand))  # prompt tokens of a step that carries prompt chunks
    rho = demand / chunk  # share of steps that carry prompt chunks
    util = demand / spare  # utilization of the prompt budget (a step may carry several prompts)
    dec = _step(spec, inp, a, m, traffic.mean_context_tokens, 0, traffic.prompt_tokens)
    full = _step(spec, inp, a, m, traffic.mean_context_tokens, chunk, traffic.prompt_tokens)
    hops = (pp - 1) * hop_s
    t_dec, t_full = dec["step_s"] + hops, full["step_s"] + hops
    mean = rho * t_full + (1 - rho) * t_dec
    z = PERCENTILE_Z[percentile]
    tpot = mean + z * (t_full - t_dec) * math.sqrt(rho * (1 - rho) / max(1, out - 1))
    service = steps * t_full
    q = 1 - {"p50": 0.5, "p90": 0.9, "p99": 0.99}[percentile]
    wait = service / (1 - util) * math.log(util / q) if util > q else 0.0
    ttft = t_dec / 2 + wait + service
    dominant = full if rho > 0.5 else dec
    parts = {k: dominant[k] for k in ("compute_s", "memory_s", "comm_s")}
    return ReplicaLoad(concurrency=c, ttft_s=ttft, tpot_s=tpot, e2e_s=ttft + (out - 1) * tpot,
                       output_tokens_per_s=c / mean, prefill_busy=util, decode_step_s=t_dec, full_step_s=t_full,
                       bound=dominant["bound"], step_parts_s=parts)


def concurrency_for_rate(spec: ModelSpec, inp: SpeedInputs, a: SpeedAssumptions, traffic: Traffic, *,
                         rps: float, cap: float, pp: int = 1, budget: int = CHUNK_BUDGET_TOKENS,
                         percentile: str = "p50", hop_s: float = 0.0,
                         cap_name: str = "KV capacity") -> ReplicaLoad | str:
    """The steady state of a replica offered ``rps`` requests per second: the concurrency C at which it emits
    rps x O tokens per second (C / TPOT(C) grows with C; bisection), at most ``cap`` (the KV pool's sequences, or
    the engine's max_num_seqs when lower: ``cap_name``). The reason when even ``cap`` sequences cannot keep up."""
    need = rps * traffic.output_tokens

    def rate(cc: float) -> float | str:
        r = replica_load(spec, inp, a, traffic, concurrency=cc, pp=pp, budget=budget, percentile="p50", hop_s=hop_s)
        return r if isinstance(r, str) else r.output_tokens_per_s

    top = rate(cap)
    if isinstance(top, str) or top < need:
        lo_ok = None
        if isinstance(top, str):  # the step budget binds before the KV pool: find the largest C it allows
            lo, hi = 0.0, cap
            while hi - lo > max(1e-3, 2e-3 * hi):
                mid = (lo + hi) / 2
                if isinstance(rate(mid), str):
                    hi = mid
                else:
                    lo = mid
            lo_ok = rate(lo) if lo > 0 else None
            if not isinstance(lo_ok, float) or lo_ok < need:
                return (f"prefill cannot keep up: at most {0 if lo_ok is None else lo_ok:,.0f} output tokens/s "
                        f"per replica, {need:,.0f} needed")
            cap = lo
        else:
            where = "in the KV pool" if cap_name == "KV capacity" else "running at once"
            return (f"{cap_name}: {cap:,.0f} sequences {where} emit {top:,.0f} output tokens/s per replica, "
                    f"{need:,.0f} needed")
    lo, hi = 0.0, cap
    while hi - lo > max(1e-3, 2e-3 * hi):  # 0.2 % of the concurrency
        mid = (lo + hi) / 2
        r = rate(mid)
        if isinstance(r, str) or r >= need:
            hi = mid
        else:
            lo = mid
    return replica_load(spec, inp, a, traffic, concurrency=hi, pp=pp, budget=budget, percentile=percentile,
                        hop_s=hop_s)
