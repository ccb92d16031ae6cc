"""``gpuplan plan MODEL``: the parallel layouts that fit, ranked, with why the winner wins."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from gpuplan.errors import InputError
from gpuplan.i18n import message, t
from gpuplan.model.resolve import model_from_options
from gpuplan.options.time import DEFAULT_SEQ, PRECISION_DTYPE
from gpuplan.units import GiB

DEFAULT_BATCH_TOKENS = 4 * 1024 * 1024
LAYOUT_FIELDS = ("tp", "pp", "dp", "cp", "ep", "vpp", "zero", "micro_batch", "recompute", "dp_shard")


def model_argument(values: Any) -> str:
    """MODEL, or the raw-dimension options, as typed (for the reproducing `gpuplan train` command)."""
    if values.model:
        return values.model
    flags = [("layers", "--layers"), ("hidden", "--hidden"), ("heads", "--heads"), ("kv_heads", "--kv-heads"),
             ("head_dim", "--head-dim"), ("ffn", "--ffn"), ("vocab", "--vocab"), ("experts", "--experts"),
             ("top_k", "--top-k")]
    return " ".join(f"{flag} {getattr(values, name)}" for name, flag in flags if getattr(values, name, None))


def _pins(values: Any):
    from gpuplan.plan.space import Pins

    rc = None
    if values.recompute:
        rc = tuple(r.strip() for r in values.recompute.split(",") if r.strip())
        bad = [r for r in rc if r not in ("none", "selective", "full")]
        if bad:
            raise InputError("--recompute", values.recompute, "must be a subset of none,selective,full")
    return Pins(tp=values.tp, pp=values.pp, cp=values.cp, ep=values.ep, vpp=values.vpp, zero=values.zero,
                micro_batch=values.micro_batch, recompute=rc, hsdp=not values.no_hsdp,
                schedule=stack_settings(values)[0]["schedule"])


def _parse_compare(text: str) -> dict:
    out: dict = {}
    for item in text.split(","):
        if not item.strip():
            continue
        key, _, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if key == "mb":
            key = "micro_batch"
        if key not in LAYOUT_FIELDS or not value.strip():
            raise InputError("--compare", text, f"fields are {', '.join(LAYOUT_FIELDS)} as name=value")
        if key == "recompute":
            if value.strip() not in ("none", "selective", "full"):
                raise InputError("--compare", text, "recompute must be none, selective or full")
            out[key] = value.strip()
        else:
            try:
                out[key] = int(value)
            except ValueError:
                raise InputError("--compare", text, f"{key} must be an integer") from None
            if out[key] < (0 if key == "zero" else 1):  # dp_shard=N: hybrid sharding over N data-parallel ranks
                raise InputError("--compare", text, f"{key} must be >= {0 if key == 'zero' else 1}")
    return out


def stack_settings(values: Any) -> tuple[dict[str, Any], list[str]]:
    """framework, schedule and attention_impl: each as given, else the --stack's default (with its source), else
    Megatron-LM's behaviour (megatron memory semantics, 1F1B or interleaved by vpp, flash attention)."""
    from gpuplan.train.stacks import load_stack

    stack = load_stack(values.stack) if values.stack else None
    out, notes = {}, []
    for name, key, fallback in (("framework", "framework", "megatron"), ("schedule", "pipeline_schedule", None),
                                ("attention_impl", "attention_impl", "flash")):
        value = getattr(values, name, None)
        if value is None and stack is not None:
            d = stack.default(key, "full", False)
            if d is not None:
                value = d.value
                notes.append(f"--{name.replace('_', '-')} {value}: --stack {stack.name} ({d.source})")
        out[name] = fallback if value is None else value
    return out, notes


def _context(values, spec, gpu, seq, global_batch, flop_per_token, pins):
    from gpuplan.compute.comm import default_network
    from gpuplan.compute.steptime import Tuning, Workload, make_device
    from gpuplan.plan.memory import TrainOptions
    from gpuplan.plan.candidates import SearchContext, Target

    dtype = PRECISION_DTYPE[values.precision]
    dev, dev_sources = make_device(gpu, dtype, gemm_eff=values.gemm_efficiency,
                                   attention_eff=values.attention_efficiency)
    net = default_network(gpu, gpus_per_node=values.gpus_per_node,
                          inter_node_bytes_per_s=values.inter_node_gbps * 1e9 if values.inter_node_gbps else None,
                          intra_node_bytes_per_s=values.intra_node_gbps * 1e9 if values.intra_node_gbps else None,
                          single_node=bool(values.gpus and values.gpus <= values.gpus_per_node))
    for name in ("tp_overlap", "dp_overlap"):
        if not 0 <= getattr(values, name) <= 1:
            raise InputError(f"--{name.replace('_', '-')}", getattr(values, name), "must be a fraction in [0, 1]")
    st, _ = stack_settings(values)
    tune = Tuning(tp_overlap=values.tp_overlap, dp_overlap=values.dp_overlap, schedule=st["schedule"])
    target = Target(gpus=values.gpus, days=values.days, tokens=values.tokens,
                    gpu_multiple=values.gpu_multiple or values.gpus_per_node)
    rank = values.rank or ("time" if values.gpus else "gpus")
    work = Workload(seq, global_batch, attention_impl=st["attention_impl"],
                    dropout=st["attention_impl"] == "unfused" and spec.hidden_dropout > 0)
    ctx = SearchContext(spec=spec, gpu=gpu, dev=dev, net=net, work=work, flop_per_token=flop_per_token, target=target,
                        pins=pins, opts=TrainOptions(precision=values.precision, framework=st["framework"],
                                                     schedule=st["schedule"]), tune=tune, rank=rank)
    sources = dev_sources + [f"intra-node {net.intra_node_bytes_per_s / 1e9:g} GB/s per GPU: {net.intra_source}",
                             f"inter-node {net.inter_node_bytes_per_s / 1e9:g} GB/s per GPU: {net.inter_source}",
                             f"collective bus efficiency {net.bus_efficiency:g}"] + list(tune.sources)
    return ctx, sources


def why_nothing_fits(values: Any, results, spec, lang: str) -> tuple[list[str], dict[str, int]]:
    """The lines saying why no layout fits on each GPU, and the smallest GPU count that would fit."""
    from gpuplan.plan.search import least_memory
    from gpuplan.plan.explain import describe

    lines, smallest = [], {}
    for gpu, res in results:
        if res is None:
            continue
        low = least_memory(res)
        if values.gpus:
            msg = t("plan.no_layout_gpus", lang, gpus=f"{values.gpus:,}", gpu=gpu.id, model=spec.name)
        else:
            msg = t("plan.no_layout_days", lang, gpu=gpu.id, days=f"{values.days:g}", model=spec.name)
        if low is not None:
            msg += t("plan.least_memory", lang, memory=f"{low[0] / GiB:,.1f}", layout=describe(low[1]),
                     usable=f"{gpu.memory_usable_bytes / GiB:,.1f}",
                     over=f"{(low[0] - gpu.memory_usable_bytes) / GiB:,.1f}")
        elif values.gpus and res.pool.evaluated == 0:
            from gpuplan.plan.space import empty_reason

            ctx = res.ctx
            msg += t("plan.no_candidates", lang, reason=empty_reason(spec, values.gpus, ctx.work.seq,
                                                                       ctx.work.global_batch,
                                                                       ctx.net.gpus_per_node, ctx.pins))
        lines.append(msg)
        n = _smallest_fitting(res)
        if n is not None:
            lines.append(t("plan.smallest_count", lang, gpus=f"{n[0]:,}", layout=describe(n[1])))
            smallest[gpu.id] = n[0]
    return lines or [t("plan.none", lang)], smallest


def _smallest_fitting(res):
    """Double the GPU count (from one node) until the most memory-frugal layouts fit."""
    from gpuplan.compute.steptime import Layout
    from gpuplan.plan.space import tp_options

    ctx = res.ctx
    spec, node = ctx.spec, ctx.net.gpus_per_node
    tp = max(tp_options(spec, node))
    n = node
    while n <= (1 << 17):
        for pp in (p for p in range(1, spec.num_layers + 1) if (n // tp) % p == 0):
            dp = n // (tp * pp)
            if ctx.work.global_batch % dp:
                continue
            lay = Layout(tp=tp, pp=pp, dp=dp, zero=3 if dp > 1 else 0, micro_batch=1, recompute="full")
            r = res.checker(lay)
            if r.total_bytes is not None and r.total_bytes <= ctx.gpu.memory_usable_bytes:
                return n, lay
        n *= 2
    return None


def search_layouts(values: Any) -> SimpleNamespace:
    """The layout search for the parsed options: the ranked plans (none when nothing fits) and what they rest on."""
    from gpuplan.compute.flops import training_flops
    from gpuplan.hardware.catalog import get_gpu
    from gpuplan.plan.explain import alternatives, layout_dict
    from gpuplan.plan.memory import engine_shards_layouts, train_command
    from gpuplan.plan.candidates import rank_key
    from gpuplan.plan.search import search

    spec = model_from_options(values, encoders=True)
    if (values.gpus is None) == (values.days is None):
        raise InputError("--gpus", values.gpus, "give --gpus N, or --days with --tokens")
    seq = values.seq or DEFAULT_SEQ
    global_batch = values.global_batch or max(1, DEFAULT_BATCH_TOKENS // seq)
    flops = training_flops(spec, seq=seq, attention=values.attention_flops)
    pins = _pins(values)
    from gpuplan.plan.space import check_pins

    check_pins(spec, pins, seq, values.gpus_per_node)
    if not values.gpu:
        raise InputError("--gpu", None, "plan needs the GPU type: --gpu ID (repeat or comma-separate to compare); "
                         "only plan --serve compares the priced GPU types without it", hint="see `gpuplan gpus`")
    gpu_ids = [g.strip() for item in values.gpu for g in item.split(",") if g.strip()]
    if not gpu_ids:
        raise InputError("--gpu", ",".join(values.gpu), "must name a catalog GPU", hint="see `gpuplan gpus`")
    compare = [_parse_compare(c) for c in values.compare]
    price_arg = values.price
    results, all_plans, assumptions, warnings = [], [], [], list(spec.notes)
    if not engine_shards_layouts(spec):
        warnings.append(message("plan.warn.no_layouts"))
    for gid in gpu_ids:
        gpu = get_gpu(gid)
        ctx, sources = _context(values, spec, gpu, seq, global_batch, flops.model_flop_per_token, pins)
        res = search(ctx, top=values.top)
        results.append((gpu, res))
        assumptions += [f"{gpu.id}: {s}" for s in sources]
        all_plans += res.plans
    if not all_plans:
        return SimpleNamespace(spec=spec, results=results, warnings=warnings, plans=[])
    rank = results[0][1].ctx.rank
    all_plans.sort(key=lambda c: rank_key(c, rank))
    plans = all_plans[: values.top]
    win = plans[0]
    win_res = next(r for g, r in results if g.id == win.gpu_id)
    from gpuplan.compute.prices import resolve_price

    prices = {g.id: resolve_price(price_arg, g.id) for g, _ in results} if price_arg else {}
    alts = alternatives(win, win_res, tuple(compare))
    assumptions += [message("plan.assume.batch", seq=seq, global_batch=global_batch,
                            tokens=f"{global_batch * seq:,}"),
                    message("plan.assume.mfu", convention=values.attention_flops,
                            flop=f"{flops.model_flop_per_token:.4g}"),
                    message("plan.assume.steptime")]
    from gpuplan.train.precision import framework_precision_note

    settings, stack_notes = stack_settings(values)
    assumptions += stack_notes
    if settings["schedule"] == "dualpipe":
        assumptions.append(message("plan.assume.dualpipe"))
    note = framework_precision_note(values.precision, settings["framework"])
    if note:
        assumptions.append(note)

    def plan_dict(c):
        price = prices.get(c.gpu_id)
        d = {**layout_dict(c.layout), "gpus": c.gpus, "gpu": c.gpu_id, "memory_total_bytes": c.memory_total_bytes,
             "days": c.days, "step_s": c.seconds_per_step, "mfu": c.mfu,
             "tokens_per_s_per_gpu": c.tokens_per_s_per_gpu, "gpu_hours": c.gpu_hours,
             "cost_usd": (c.gpu_hours * price.usd_per_gpu_hour) if price and c.gpu_hours else None,
             "bubble_fraction": c.step.bubble_fraction,
             "step_breakdown_s": {k: v for k, v in c.step.parts.items() if v},
             "train_command": train_command(model_argument(values), c.layout, seq, global_batch,
                                            win_res.ctx.opts, c.gpu_id)}
        return d

    files = getattr(values, "config_file", None)
    cluster = _cluster(values, spec, win, win_res, seq, global_batch, prices.get(win.gpu_id)) if values.cluster else None
    return SimpleNamespace(spec=spec, results=results, warnings=warnings, plans=plans, win=win, win_res=win_res,
                           files=files,
                           alts=alts, assumptions=assumptions, flops=flops, seq=seq, global_batch=global_batch,
                           rank=rank, plan_dict=plan_dict, cluster=cluster, explain=values.explain)


def _cluster(values: Any, spec, win, win_res, seq: int, global_batch: int, price):
    """The cluster bill of the winning layout (--cluster): its GPUs, TP·PP·CP as the parallel unit, its days, and
    its own rank's model states as the host staging per GPU (one more memory-engine call, after the search)."""
    from gpuplan.commands.cluster import cluster_bill
    from gpuplan.hardware.catalog import get_gpu
    from gpuplan.model.params import count_params
    from gpuplan.plan.memory import train_config
    from gpuplan.train.engine import estimate_training

    lay = win.layout
    opts = win_res.ctx.opts
    m = estimate_training(spec, train_config(lay, seq, global_batch, opts)).memory
    return cluster_bill(values, gpu=get_gpu(win.gpu_id), gpus=win.gpus, model_parallel=lay.tp * lay.pp * lay.cp,
                        gpus_per_node=values.gpus_per_node,
                        seconds=None if win.days is None else win.days * 86400.0, tokens=values.tokens,
                        params_total=count_params(spec).total, precision=opts.precision, framework=opts.framework,
                        staged_per_gpu_bytes=m.weights_bytes + m.optimizer_bytes + m.master_weights_bytes,
                        price=price, pue=values.pue)


def to_json(r: SimpleNamespace, emitted: dict | None = None) -> dict:
    from gpuplan.plan.explain import why_winner

    extra: dict = {}
    if r.files is not None:
        extra["config_file"] = r.files.as_dict()
    if emitted is not None:
        extra["emit"] = emitted
    return {**extra, "plans": [r.plan_dict(c) for c in r.plans],
            "evaluated": sum(res.pool.evaluated for _, res in r.results),
            "memory_checks": sum(res.checker.calls for _, res in r.results),
            "why": why_winner(r.win, r.win_res), "alternatives": [a.as_dict() for a in r.alts],
            "assumptions": [str(a) for a in r.assumptions], "warnings": [str(w) for w in r.warnings],
            **({"cluster": _cluster_json(r)} if r.cluster is not None else {})}


def _cluster_json(r: SimpleNamespace) -> dict:
    from gpuplan.commands.cluster import cluster_json

    return cluster_json(r.cluster, r.explain)


def payload(values: Any) -> dict[str, Any]:
    """The JSON of ``gpuplan plan --json`` when a layout fits; when none does, InputError with the reasons."""
    if getattr(values, "serve", False):
        from gpuplan.commands.serve_plan import payload as serve_payload

        return serve_payload(values)
    r = search_layouts(values)
    if not r.plans:
        lines, _ = why_nothing_fits(values, r.results, r.spec, "en")
        raise InputError("plan", None, "; ".join(x.strip() for line in lines for x in line.splitlines() if x.strip()))
    return to_json(r, emitted(values, r))


def emitted(values: Any, r: SimpleNamespace) -> dict | None:
    """The --emit launch config of the winning layout, or None without --emit."""
    if not getattr(values, "emit", None):
        return None
    from gpuplan.commands.plan_emit import emit_launch

    return emit_launch(values, r)
