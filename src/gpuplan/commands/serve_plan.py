"""``gpuplan plan MODEL --serve``: deployments for serving traffic under latency targets, ranked by cost per
million output tokens (the search: :mod:`gpuplan.serve.search`)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from gpuplan.errors import InputError
from gpuplan.model.resolve import model_from_options


def _prices(values: Any, gpus) -> tuple[dict[str, float | None], list[str], list[str]]:
    """USD per GPU-hour for each GPU (``--price``, else the newest price-table entry), their sources, warnings."""
    from gpuplan.compute.prices import load_prices, resolve_price

    out, sources, warnings = {}, [], []
    table = {p.gpu for p in load_prices()}
    for gpu in gpus:
        arg = values.price
        if arg is None or str(arg).strip().lower() == "table":
            if gpu.id not in table:
                out[gpu.id] = None
                warnings.append(f"{gpu.id}: no price in the price table: cost per token not shown (give --price)")
                continue
            arg = "table"
        price = resolve_price(arg, gpu.id)
        out[gpu.id] = price.usd_per_gpu_hour
        sources.append(f"{gpu.id}: {price.usd_per_gpu_hour:g} USD per GPU-hour ({price.id}"
                       f"{', ' + price.date if price.date else ''}: {price.source})")
    return out, sources, warnings


def _pins(values: Any) -> dict[str, tuple[int, ...]]:
    """--tp / --pp restrict the serving search (--cp, --ep, --zero and the training pins do not apply)."""
    out = {}
    for name in ("tp", "pp"):
        got = getattr(values, name, None)
        if got:
            out[f"{name}_choices"] = tuple(sorted(set(got)))
    for name in ("cp", "vpp", "zero", "micro_batch", "recompute"):
        if getattr(values, name, None):
            raise InputError(f"--{name.replace('_', '-')}", getattr(values, name),
                             "is a training option; plan --serve searches --tp and --pp")
    return out


def search_serving(values: Any) -> SimpleNamespace:
    """The serving-plan search for the parsed ``plan --serve`` options."""
    from gpuplan.hardware.catalog import get_gpu
    from gpuplan.infer.quant import parse_weights
    from gpuplan.serve.batching import Traffic
    from gpuplan.serve.search import (
        DEFAULT_MAX_GPUS,
        ServeQuestion,
        ServeTargets,
        plan_serving,
    )

    spec = model_from_options(values)
    if values.rps is None and values.concurrency is None:
        raise InputError("--rps", None, "plan --serve needs the load: --rps N or --concurrency N")
    if values.rps is not None and values.concurrency is not None:
        raise InputError("--concurrency", values.concurrency, "give --rps or --concurrency, not both")
    if getattr(values, "emit", None):
        raise InputError("--emit", values.emit, "writes a training launch config; plan --serve plans serving")
    if values.days is not None or values.tokens is not None:
        raise InputError("--days" if values.days is not None else "--tokens", values.days or values.tokens,
                         "is a training option; plan --serve takes --rps/--concurrency and latency targets")
    given = values.gpu or []
    gpu_ids = [g.strip() for item in given for g in item.split(",") if g.strip()]
    compared = []
    if not given:
        from gpuplan.compute.prices import MARKET_KINDS, market_priced_gpus

        gpu_ids = list(market_priced_gpus())
        compared.append(f"GPU types compared: {', '.join(gpu_ids)} (no --gpu: every GPU with a market price, "
                        f"{' or '.join(MARKET_KINDS)}, in the price table)")
    if not gpu_ids:
        raise InputError("--gpu", ",".join(given), "must name a catalog GPU", hint="see `gpuplan gpus`")
    gpus = tuple(get_gpu(g) for g in gpu_ids)
    prices, price_sources, warnings = _prices(values, gpus)
    dtype = values.weights.strip().lower()
    weights = parse_weights(values.weights, dtype="bf16" if dtype not in ("fp16", "float16") else "fp16")
    context = values.prompt + values.output
    if context > spec.max_position:
        raise InputError("--prompt", values.prompt, f"prompt + output ({context}) exceeds the longest context the "
                         f"model serves ({spec.max_position})")
    traffic = Traffic(prompt_tokens=values.prompt, output_tokens=values.output, prefix_hit=values.prefix_hit,
                      rps=values.rps, concurrency=values.concurrency)
    targets = ServeTargets(ttft_s=values.ttft, tpot_s=values.tpot, e2e_s=values.e2e, percentile=values.percentile)
    q = ServeQuestion(traffic=traffic, targets=targets, gpus=gpus, prices_usd_per_gpu_hour=prices, weights=weights,
                      engine=values.engine, max_gpus=values.gpus or DEFAULT_MAX_GPUS, gpus_per_node=values.gpus_per_node,
                      budget_tokens=values.max_num_batched_tokens, max_num_seqs=values.max_num_seqs, top=values.top,
                      disaggregate=bool(getattr(values, "disaggregate", False)), **_pins(values))
    result = plan_serving(spec, q)
    assumptions = [
        (f"engine: {values.engine} start-up arithmetic (as gpuplan infer --engine {values.engine}, defaults from "
         f"data/engines/{values.engine}.toml) for the KV pool of each replica layout"),
        ("continuous batching with chunked prefill, the step budget and sequence cap per GPU type below; queueing "
         "model in gpuplan.serve.batching (M/M/1 tail for the prompt queue)"),
        *(q.for_gpu(g)[1] for g in gpus),
        ("step time: roofline of gpuplan.infer.speed (prefill 0.5 of peak x wave quantization, decode 0.8 of HBM "
         "bandwidth, 2 TP all-reduces per layer at 8 us NVLink / 25 us PCIe + bandwidth)"),
        (f"replicas: the fewest that meet the targets at {values.percentile}; at most {q.max_gpus} GPUs "
         f"({'--gpus' if values.gpus else 'default'}); TP within a node of {values.gpus_per_node} GPUs"),
        *compared,
        *price_sources,
    ]
    if q.disaggregate:
        from gpuplan.serve.disagg import DISAGG_SOURCE

        assumptions.append(f"{DISAGG_SOURCE}: each pool the fewest replicas for its own target (prefill: TTFT with "
                           "the M/M/1 tail, decode: TPOT with no prompt chunks); the prompt's KV sent over each "
                           "GPU's inter-node link, counted in TTFT")
    if values.prefix_hit:
        assumptions.append(f"prefix cache: {values.prefix_hit:.0%} of prompt tokens are not recomputed; the shared "
                           "prefix's KV blocks are still counted once per sequence (the pool is not credited)")
    return SimpleNamespace(spec=spec, q=q, result=result, assumptions=assumptions, warnings=warnings + list(spec.notes))


def why_winner(r: SimpleNamespace) -> list[str]:
    """Why the first plan wins, and what limits it and the others."""
    plans, t = r.result.plans, r.q.traffic
    if not plans:
        return []
    w = plans[0]
    lines = []
    cost = w.cost_usd_per_million_output_tokens
    lines.append(f"{w.gpus} x {w.gpu} as {_layout(w.layout, w.prefill)}: "
                 + (f"{cost:.2f} USD per million output tokens, " if cost is not None else "")
                 + f"{w.output_tokens_per_s / w.gpus:,.0f} output tokens/s per GPU at batch "
                 f"{w.load.concurrency:,.0f} per replica")
    parts = w.load.step_parts_s
    lines.append(f"limited by {w.limiting()}: a decode step of {w.load.decode_step_s * 1e3:.1f} ms reads weights and "
                 f"KV ({parts['memory_s'] * 1e3:.1f} ms at HBM bandwidth), computes {parts['compute_s'] * 1e3:.1f} ms, "
                 f"all-reduces {parts['comm_s'] * 1e3:.1f} ms; the KV pool holds {w.kv_capacity_seqs:,} sequences of "
                 f"{t.prompt_tokens + t.output_tokens:,} tokens")
    if w.prefill is not None:
        pl = w.prefill.load
        lines.append(f"prefill pool: {w.prefill.layout.gpus} GPUs, {pl.util:.0%} busy; TTFT {pl.ttft_s * 1e3:.0f} ms = "
                     f"queue {pl.wait_s * 1e3:.0f} ms + prefill {pl.service_s * 1e3:.0f} ms + KV transfer "
                     f"{pl.transfer_s * 1e3:.1f} ms")
    if w.fewer_replicas:
        lines.append(f"one replica fewer misses: {w.fewer_replicas}")
    seen = {w.gpu}
    for p in plans[1:]:
        if p.gpu in seen:
            continue
        seen.add(p.gpu)
        c = p.cost_usd_per_million_output_tokens
        lines.append(f"best on {p.gpu}: {p.gpus} GPUs as {_layout(p.layout, p.prefill)}"
                     + (f", {c:.2f} USD per million output tokens" if c is not None else "")
                     + f", limited by {p.limiting()}")
    return lines


def _layout(lay, prefill=None) -> str:
    if prefill is not None:
        return f"prefill {_layout(prefill.layout)} + decode {_layout(lay)}"
    parts = [f"tp={lay.tp}"] + ([f"pp={lay.pp}"] if lay.pp > 1 else []) + ([f"ep={lay.ep}"] if lay.ep > 1 else [])
    return " ".join(parts) + f" x {lay.dp} replica{'s' if lay.dp > 1 else ''}"


def to_json(r: SimpleNamespace) -> dict[str, Any]:
    t, tg = r.q.traffic, r.q.targets
    return {"serve_plans": [p.as_dict(t) for p in r.result.plans[: r.q.top]],
            "traffic": {"prompt_tokens": t.prompt_tokens, "output_tokens": t.output_tokens,
                        "prefix_hit": t.prefix_hit, "rps": t.rps, "concurrency": t.concurrency},
            "targets": {"ttft_s": tg.ttft_s, "tpot_s": tg.tpot_s, "e2e_s": tg.e2e_s, "percentile": tg.percentile},
            "why": why_winner(r), "rejected": r.result.rejected, "evaluated": r.result.evaluated,
            "assumptions": r.assumptions, "warnings": [str(w) for w in r.warnings]}


def payload(values: Any) -> dict[str, Any]:
    """The JSON of ``gpuplan plan --serve --json``; InputError with the reasons when no layout meets the targets."""
    r = search_serving(values)
    if not r.result.plans:
        reasons = "; ".join(f"{x['gpu']} tp={x['tp']} pp={x['pp']}: {x['reason']}" for x in r.result.rejected[:6])
        raise InputError("plan --serve", None, f"no deployment meets the targets ({reasons})")
    return to_json(r)
