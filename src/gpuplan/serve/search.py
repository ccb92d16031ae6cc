"""The serving-plan search: GPU type x TP x PP x EP x data-parallel replicas, each replica's batch from the traffic,
kept when the latency targets hold, ranked by cost per million output tokens.

For each GPU type and each replica layout (TP within a node: 1, 2, 4, 8 dividing the heads; PP 1, 2, 4, 8; for
mixture-of-experts models also EP = TP, experts spread over the TP group, and, without PP, EP = TP x D over D = 2-32
data-parallel attention ranks, DeepSeek-V3's deployment, whose MoE layers pay a dispatch and a combine all-to-all:
``gpuplan.infer.speed.ep_all_to_all_s``; such a layout grows in whole EP groups), vLLM's start-up arithmetic
(``gpuplan.infer.engine``, ``--engine vllm``) gives the KV pool and how many sequences of prompt + output tokens it
holds. Then the replica count grows from 1: the load splits evenly over the replicas, each replica's concurrency
follows from the traffic (``gpuplan.serve.batching``), and the first replica count whose TTFT, TPOT and E2E meet the
targets at the percentile is that layout's plan (more replicas only add GPUs: for a fixed load, cost per token grows
with the GPU count). Cost per million output tokens = GPUs x USD per GPU-hour / (3600 x output tokens/s) x 10^6.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from gpuplan.errors import InputError
from gpuplan.hardware.catalog import GpuSpec
from gpuplan.infer.config import InferConfig
from gpuplan.infer.engines import VllmProfile, vllm_v1_serving_defaults
from gpuplan.infer.parallel import ServingLayout, validate_layout
from gpuplan.infer.quant import WeightFormat
from gpuplan.infer.speed import SpeedAssumptions
from gpuplan.model.spec import ModelSpec
from gpuplan.serve.disagg import PrefillLoad, decode_for_rate, kv_transfer_s, prefill_load
from gpuplan.serve.batching import (
    CHUNK_BUDGET_TOKENS,
    PERCENTILE_Z,
    ReplicaLoad,
    Traffic,
    concurrency_for_rate,
    replica_load,
)

TP_CHOICES = (1, 2, 4, 8)
PP_CHOICES = (1, 2, 4, 8)
ATTENTION_DP_CHOICES = (2, 4, 8, 16, 32)  # data-parallel attention ranks one expert-parallel group spans
DEFAULT_MAX_GPUS = 256


@dataclass(frozen=True)
class ServeTargets:
    """Latency targets in seconds (None: no target) at a percentile (p50, p90 or p99)."""

    ttft_s: float | None = None
    tpot_s: float | None = None
    e2e_s: float | None = None
    percentile: str = "p50"

    def validate(self) -> None:
        for name in ("ttft_s", "tpot_s", "e2e_s"):
            v = getattr(self, name)
            if v is not None and not v > 0:
                raise InputError("--" + name[:-2], v, "must be > 0 seconds")
        if self.percentile not in PERCENTILE_Z:
            raise InputError("--percentile", self.percentile, f"must be one of {', '.join(PERCENTILE_Z)}")

    def misses(self, load: ReplicaLoad) -> list[str]:
        out = []
        for name, value in (("ttft", load.ttft_s), ("tpot", load.tpot_s), ("e2e", load.e2e_s)):
            goal = getattr(self, name + "_s")
            if goal is not None and value > goal:
                out.append(f"{name.upper()} {value:.3g} s > {goal:g} s")
        return out


@dataclass(frozen=True)
class ServeQuestion:
    traffic: Traffic
    targets: ServeTargets
    gpus: tuple[GpuSpec, ...]
    prices_usd_per_gpu_hour: dict[str, float | None]
    weights: WeightFormat = field(default_factory=lambda: WeightFormat("bf16", "float"))
    kv_dtype: str | None = None
    engine: str = "vllm"  # whose KV-pool arithmetic: vllm, sglang or trtllm
    max_gpus: int = DEFAULT_MAX_GPUS
    gpus_per_node: int = 8
    budget_tokens: int | None = None  # None: the engine's default for each GPU type (for_gpu)
    max_num_seqs: int | None = None  # None: the engine's default (vLLM V1: by GPU type; others: no cap)
    vllm: VllmProfile = field(default_factory=VllmProfile)
    speed: SpeedAssumptions = field(default_factory=SpeedAssumptions)
    top: int = 5
    tp_choices: tuple[int, ...] = TP_CHOICES  # --tp / --pp restrict the search
    pp_choices: tuple[int, ...] = PP_CHOICES
    disaggregate: bool = False  # prefill and decode on separate replica pools (gpuplan.serve.disagg)

    def for_gpu(self, gpu: GpuSpec) -> tuple[ServeQuestion, str]:
        """The question with the step budget and sequence cap the engine takes on ``gpu`` (what is given wins),
        and the assumption line saying where they come from. vLLM V1 picks both by GPU type
        (``vllm_v1_serving_defaults``); SGLang and TensorRT-LLM get the vLLM V1 budget of large GPUs and no cap."""
        budget, seqs = self.budget_tokens, self.max_num_seqs
        if self.engine == "vllm":
            d_budget, d_seqs, why = vllm_v1_serving_defaults(gpu)
            given = [f"{name} {v} given" for name, v in (("max_num_batched_tokens", budget), ("max_num_seqs", seqs))
                     if v is not None]
            budget, seqs = budget or d_budget, seqs or d_seqs
            if given:
                why += "; " + ", ".join(given)
        else:
            budget = budget or CHUNK_BUDGET_TOKENS
            why = f"{gpu.id}: step budget {budget} tokens" + (f", at most {seqs} sequences" if seqs else "")
        vllm = replace(self.vllm, max_num_batched_tokens=budget, max_num_seqs=seqs or self.vllm.max_num_seqs)
        return replace(self, budget_tokens=budget, max_num_seqs=seqs, vllm=vllm), why


@dataclass(frozen=True)
class PrefillPool:
    """The prefill replicas of a disaggregated deployment: their layout (``dp`` = replica count) and one replica's
    load."""

    layout: ServingLayout
    load: PrefillLoad

    def as_dict(self) -> dict[str, Any]:
        lay, ld = self.layout, self.load
        return {"gpus": lay.gpus, "tp": lay.tp, "pp": lay.pp, "ep": lay.ep, "replicas": lay.dp,
                "rps_per_replica": ld.rps, "util": ld.util, "ttft_s": ld.ttft_s, "service_s": ld.service_s,
                "wait_s": ld.wait_s, "kv_transfer_s": ld.transfer_s, "bound": ld.bound}


@dataclass(frozen=True)
class ServePlan:
    gpu: str
    layout: ServingLayout  # with prefill: the decode pool's
    load: ReplicaLoad
    kv_capacity_seqs: int
    weights_bytes_per_gpu: int
    memory_total_bytes: int
    usd_per_gpu_hour: float | None
    fewer_replicas: str  # why one replica fewer misses (empty for one replica)
    prefill: PrefillPool | None = None  # disaggregated: the prefill pool (layout and load are the decode pool's)
    budget_tokens: int = CHUNK_BUDGET_TOKENS  # the step budget (max_num_batched_tokens) the replica runs with
    max_num_seqs: int | None = None  # the engine's cap on running sequences (None: none)

    @property
    def gpus(self) -> int:
        return self.layout.gpus + (self.prefill.layout.gpus if self.prefill else 0)

    @property
    def output_tokens_per_s(self) -> float:
        return self.load.output_tokens_per_s * self.layout.dp

    @property
    def cost_usd_per_million_output_tokens(self) -> float | None:
        if self.usd_per_gpu_hour is None:
            return None
        return self.gpus * self.usd_per_gpu_hour / 3600 / self.output_tokens_per_s * 1e6

    def limiting(self) -> str:
        """What limits the layout: the bound of its dominant step, or the KV pool when the batch nearly fills it."""
        if self.load.concurrency > 0.9 * self.kv_capacity_seqs:
            return "KV capacity"
        return {"memory": "HBM bandwidth"}.get(self.load.bound, self.load.bound)

    def as_dict(self, traffic: Traffic) -> dict[str, Any]:
        lay = self.layout
        cost = self.cost_usd_per_million_output_tokens
        total_tokens = traffic.prompt_tokens + traffic.output_tokens
        return {"gpu": self.gpu, "gpus": self.gpus, "tp": lay.tp, "pp": lay.pp, "ep": lay.ep, "dp": lay.dp,
                "batch": math.ceil(self.load.concurrency), "concurrency_per_replica": self.load.concurrency,
                "kv_capacity_seqs": self.kv_capacity_seqs,
                "output_tokens_per_s": self.output_tokens_per_s,
                "output_tokens_per_s_per_gpu": self.output_tokens_per_s / self.gpus,
                "ttft_s": self.load.ttft_s, "tpot_s": self.load.tpot_s, "e2e_s": self.load.e2e_s,
                "prefill_busy": self.load.prefill_busy, "decode_step_s": self.load.decode_step_s,
                "full_step_s": self.load.full_step_s, "bound": self.load.bound, "limited_by": self.limiting(),
                "step_parts_s": dict(self.load.step_parts_s),
                "weights_bytes_per_gpu": self.weights_bytes_per_gpu, "memory_total_bytes": self.memory_total_bytes,
                "usd_per_gpu_hour": self.usd_per_gpu_hour, "cost_usd_per_million_output_tokens": cost,
                "cost_usd_per_million_tokens": (None if cost is None else
                                                cost * traffic.output_tokens / total_tokens),
                "max_num_batched_tokens": self.budget_tokens, "max_num_seqs": self.max_num_seqs,
                "fewer_replicas": self.fewer_replicas, "disaggregated": self.prefill is not None,
                "prefill_pool": self.prefill.as_dict() if self.prefill else None}


@dataclass
class ServeResult:
    plans: list[ServePlan]
    rejected: list[dict[str, Any]]  # {"gpu", "tp", "pp", "ep", "reason"}
    evaluated: int = 0


def _layouts(spec: ModelSpec, gpu_count_cap: int, node: int, tps=TP_CHOICES, pps=PP_CHOICES) -> list[ServingLayout]:
    out = []
    for tp in tps:
        if tp > node or tp > gpu_count_cap:
            continue
        for pp in pps:
            if tp * pp > gpu_count_cap or pp > spec.num_layers:
                continue
            eps = (1, tp) if spec.moe is not None and tp > 1 and spec.moe.num_experts % tp == 0 else (1,)
            for ep in eps:
                lay = ServingLayout(tp=tp, pp=pp, ep=ep, dp=1)
                try:
                    validate_layout(spec, lay)
                    from gpuplan.infer import kv

                    kv.kv_elements_per_token_layer(spec, tp)
                except InputError:
                    continue
                out.append(lay)
    if spec.moe is not None and 1 in pps:  # EP over data-parallel attention ranks (ep > tp)
        for tp in tps:
            for d in ATTENTION_DP_CHOICES:
                ep = tp * d
                if tp > node or ep > gpu_count_cap or spec.moe.num_experts % ep:
                    continue
                lay = ServingLayout(tp=tp, pp=1, ep=ep, dp=d)
                try:
                    validate_layout(spec, lay)
                except InputError:
                    continue
                out.append(lay)
    return out


def _replica(spec: ModelSpec, q: ServeQuestion, gpu: GpuSpec, lay: ServingLayout):
    """(report, speed inputs) of one replica, or the reason it cannot hold the model."""
    from gpuplan.infer.engine import estimate_inference, prepare, speed_inputs

    t = q.traffic
    cfg = InferConfig(batch=1, context=t.prompt_tokens + t.output_tokens, prompt=t.prompt_tokens, weights=q.weights,
                      kv_dtype=q.kv_dtype, engine=q.engine, layout=lay, gpu=gpu, vllm=q.vllm, speed=q.speed,
                      search=False)
    prepared = prepare(spec, cfg)
    rep = estimate_inference(spec, cfg, prepared=prepared)
    if not rep.engine.get("available_kv_bytes"):
        return "KV capacity: the weights, activations and non-torch memory leave no KV pool"
    if rep.memory.total_bytes > gpu.memory_usable_bytes:
        return "memory: the CUDA graphs do not fit beside the KV pool"
    got = speed_inputs(prepared)
    if got is None:
        return f"{gpu.id} has no peak FLOP/s for {q.weights.compute_dtype}"
    return rep, got[0]


def _replicas(spec: ModelSpec, q: ServeQuestion, gpu: GpuSpec, rejected: list[dict[str, Any]], *,
              attention_dp: bool = True):
    """(layout, where, report, speed inputs) of each replica layout of ``gpu`` that holds the model; the others go to
    ``rejected`` with their reason. ``attention_dp=False`` leaves out EP groups spanning data-parallel ranks."""
    for lay in _layouts(spec, q.max_gpus, q.gpus_per_node, q.tp_choices, q.pp_choices):
        if lay.dp > 1 and not attention_dp:
            continue
        where = {"gpu": gpu.id, "tp": lay.tp, "pp": lay.pp, "ep": lay.ep}
        got = _replica(spec, q, gpu, lay)
        if isinstance(got, str):
            rejected.append({**where, "reason": got})
            continue
        yield (lay, where, *got)


def _seq_cap(q: ServeQuestion, kv_seqs: int) -> tuple[int, str]:
    """The most sequences a replica runs: its KV pool's, or the engine's max_num_seqs when lower, with its name."""
    if q.max_num_seqs is not None and q.max_num_seqs < kv_seqs:
        return q.max_num_seqs, f"max_num_seqs ({q.max_num_seqs})"
    return kv_seqs, "KV capacity"


def _evaluate(spec: ModelSpec, q: ServeQuestion, inp, lay: ServingLayout, kv_seqs: int, dp: int):
    """One replica's load with ``dp`` replicas sharing the traffic, and the targets it misses (or the reason)."""
    t, hop = q.traffic, inp.allreduce_latency_s
    cap_seqs, cap_name = _seq_cap(q, kv_seqs)
    if t.rps is not None:
        load = concurrency_for_rate(spec, inp, q.speed, t, rps=t.rps / dp, cap=cap_seqs, pp=lay.pp,
                                    budget=q.budget_tokens, percentile=q.targets.percentile, hop_s=hop,
                                    cap_name=cap_name)
    else:
        per = math.ceil(t.concurrency / dp)
        if per > cap_seqs:
            load = (f"KV capacity: {per} sequences per replica, the pool holds {cap_seqs}" if cap_name == "KV capacity"
                    else f"{cap_name}: {per} sequences per replica, the engine runs at most {cap_seqs}")
        else:
            load = replica_load(spec, inp, q.speed, t, concurrency=per, pp=lay.pp, budget=q.budget_tokens,
                                percentile=q.targets.percentile, hop_s=hop)
    return load, ([load] if isinstance(load, str) else q.targets.misses(load))


def plan_serving(spec: ModelSpec, q: ServeQuestion) -> ServeResult:
    """Every GPU type's replica layouts, the fewest replicas meeting the targets for each, ranked by cost per
    million output tokens (then GPUs)."""
    q.traffic.validate()
    q.targets.validate()
    if q.disaggregate:
        return plan_disaggregated(spec, q)
    t, plans, rejected, evaluated = q.traffic, [], [], 0
    question = q
    for gpu in question.gpus:
        q, _ = question.for_gpu(gpu)
        for lay, where, rep, inp in _replicas(spec, q, gpu, rejected):
            cap_seqs = rep.memory.kv_cache_bytes // max(1, rep.engine["request_kv_bytes"])
            if cap_seqs < 1:
                rejected.append({**where, "reason": "KV capacity: the pool holds no sequence of prompt + output"})
                continue

            base = lay.dp  # data-parallel ranks of one EP group (1 without one): replicas come in multiples

            def evaluate(n: int, inp=inp, lay=lay, cap_seqs=cap_seqs, base=base):
                return _evaluate(spec, q, inp, lay, cap_seqs, n * base)

            # more replicas never raise a replica's load: binary search for the fewest that meet the targets
            hi = q.max_gpus // lay.gpus
            if t.concurrency is not None:
                hi = min(hi, max(1, -(-t.concurrency // base)))
            evaluated += 1
            load, miss = evaluate(hi)
            if miss:
                n = f"{hi * base} replica{'s' if hi * base > 1 else ''}"
                rejected.append({**where, "reason": f"even {n} (the most the load and --gpus allow): "
                                                    f"{'; '.join(miss)}"})
                continue
            lo, best, previous = 0, (hi, load), ""
            while hi - lo > 1:
                mid = (lo + hi) // 2
                evaluated += 1
                m_load, m_miss = evaluate(mid)
                if m_miss:
                    lo, previous = mid, f"{mid * base} replica{'s' if mid * base > 1 else ''}: {'; '.join(m_miss)}"
                else:
                    hi, best = mid, (mid, m_load)
            if lo and not previous:
                previous = f"{lo * base} replica{'s' if lo * base > 1 else ''}: {'; '.join(evaluate(lo)[1])}"
            groups, load = best
            dp = groups * base
            if previous and not previous.startswith(f"{dp - base} "):
                previous = f"{dp - base} replica{'s' if dp - base > 1 else ''}: {'; '.join(evaluate(groups - 1)[1])}"
            plans.append(ServePlan(gpu.id, replace(lay, dp=dp), load, int(cap_seqs), rep.memory.weights_bytes,
                                   rep.memory.total_bytes, q.prices_usd_per_gpu_hour.get(gpu.id), previous,
                                   budget_tokens=q.budget_tokens, max_num_seqs=q.max_num_seqs))
    _rank(plans)
    return ServeResult(plans=plans, rejected=rejected, evaluated=evaluated)


def _rank(plans: list[ServePlan]) -> None:
    plans.sort(key=lambda p: (p.cost_usd_per_million_output_tokens is None,
                              p.cost_usd_per_million_output_tokens or 0.0, p.gpus, p.layout.pp, p.load.tpot_s))


def _fewest(hi: int, misses) -> tuple[int, Any] | str:
    """The fewest replicas in 1..hi whose load meets the targets (``misses(n)`` -> (load, reasons)); more replicas
    never raise one replica's load. The reasons at ``hi`` when even that misses."""
    load, miss = misses(hi)
    if miss:
        return f"even {hi} replica{'s' if hi > 1 else ''} (the most --gpus allows): {'; '.join(miss)}"
    lo, best = 0, (hi, load)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        m_load, m_miss = misses(mid)
        if m_miss:
            lo = mid
        else:
            hi, best = mid, (mid, m_load)
    return best


def plan_disaggregated(spec: ModelSpec, q: ServeQuestion) -> ServeResult:
    """Prefill and decode pools sized apart (:mod:`gpuplan.serve.disagg`): for each GPU type and replica layout,
    the fewest prefill replicas meeting TTFT and the fewest decode replicas meeting TPOT; every pairing of a
    prefill option with a decode option within ``max_gpus`` that meets E2E is a plan."""
    t, tg, plans, rejected, evaluated = q.traffic, q.targets, [], [], 0
    if t.rps is None:
        raise InputError("--concurrency", t.concurrency, "a disaggregated plan sizes its pools by the request rate: "
                         "give --rps")
    share = t.prompt_tokens / (t.prompt_tokens + t.output_tokens)
    question = q
    for gpu in question.gpus:
        q, _ = question.for_gpu(gpu)
        prefills, decodes = [], []
        # expert parallelism over data-parallel attention ranks (dp > 1) is not paired with a prefill pool
        for lay, where, rep, inp in _replicas(spec, q, gpu, rejected, attention_dp=False):
            if not inp.inter_node_bytes_per_s:
                rejected.append({**where, "reason": f"{gpu.id} has no inter-node bandwidth in the catalog to send "
                                                    "the prompt's KV between pools"})
                continue
            hi = q.max_gpus // lay.gpus
            transfer = kv_transfer_s(inp.kv_read_bytes_per_seq * share, inp.inter_node_bytes_per_s,
                                     inp.network_latency_s)

            def pre(n: int, inp=inp, transfer=transfer):
                ld = prefill_load(spec, inp, q.speed, t, rps=t.rps / n, budget=q.budget_tokens,
                                  percentile=tg.percentile, transfer_s=transfer)
                if isinstance(ld, str):
                    return ld, [ld]
                miss = [] if tg.ttft_s is None or ld.ttft_s <= tg.ttft_s else [f"TTFT {ld.ttft_s:.3g} s > {tg.ttft_s:g} s"]
                return ld, miss

            cap_seqs = rep.memory.kv_cache_bytes // max(1, rep.engine["request_kv_bytes"])
            run_cap = _seq_cap(q, cap_seqs)[0]

            def dec(n: int, inp=inp, lay=lay, run_cap=run_cap):
                ld = decode_for_rate(spec, inp, q.speed, t, rps=t.rps / n, cap=run_cap, pp=lay.pp,
                                     hop_s=inp.allreduce_latency_s)
                if isinstance(ld, str):
                    return ld, [ld]
                miss = [] if tg.tpot_s is None or ld.tpot_s <= tg.tpot_s else [f"TPOT {ld.tpot_s:.3g} s > {tg.tpot_s:g} s"]
                return ld, miss

            evaluated += 2
            p_best = _fewest(hi, pre)
            if isinstance(p_best, str):
                rejected.append({**where, "reason": "as a prefill pool, " + p_best})
            else:
                prefills.append((lay, p_best))
            d_best = _fewest(hi, dec) if cap_seqs >= 1 else "KV capacity: the pool holds no sequence"
            if isinstance(d_best, str):
                rejected.append({**where, "reason": "as a decode pool, " + d_best})
            else:
                decodes.append((lay, d_best, rep, cap_seqs))
        for p_lay, (p_n, p_load) in prefills:
            for d_lay, (d_n, d_load), rep, cap_seqs in decodes:
                if p_lay.gpus * p_n + d_lay.gpus * d_n > q.max_gpus:
                    continue
                load = replace(d_load, ttft_s=p_load.ttft_s, e2e_s=p_load.ttft_s + (t.output_tokens - 1) * d_load.tpot_s,
                               prefill_busy=p_load.util)
                if tg.e2e_s is not None and load.e2e_s > tg.e2e_s:
                    continue
                plans.append(ServePlan(gpu.id, replace(d_lay, dp=d_n), load, int(cap_seqs), rep.memory.weights_bytes,
                                       rep.memory.total_bytes, q.prices_usd_per_gpu_hour.get(gpu.id), "",
                                       prefill=PrefillPool(replace(p_lay, dp=p_n), p_load),
                                       budget_tokens=q.budget_tokens, max_num_seqs=q.max_num_seqs))
    _rank(plans)
    return ServeResult(plans=plans, rejected=rejected, evaluated=evaluated)
