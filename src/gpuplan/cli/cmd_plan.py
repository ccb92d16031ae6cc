"""``gpuplan plan MODEL``: the parallel layouts that fit, ranked, with why the winner wins."""

from __future__ import annotations

import argparse
import sys
from types import SimpleNamespace

from gpuplan.cli.cmd_time import DEFAULT_SEQ, PRECISION_DTYPE
from gpuplan.cli.common import (model_from_args, print_json,
                                render_table)
from gpuplan.errors import InputError
from gpuplan.i18n import headers, lang_of, localize, message, t
from gpuplan.units import GiB, format_count
from gpuplan.cli.parsers import command_parser

DEFAULT_BATCH_TOKENS = 4 * 1024 * 1024
LAYOUT_FIELDS = ("tp", "pp", "dp", "cp", "ep", "vpp", "zero", "micro_batch", "recompute", "dp_shard")


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    return command_parser(sub, "plan")


def model_argument(args: argparse.Namespace) -> str:
    """MODEL, or the raw-dimension options, as typed (for the reproducing `gpuplan train` command)."""
    if args.model:
        return args.model
    flags = [("layers", "--layers"), ("hidden", "--hidden"), ("heads", "--heads"), ("kv_heads", "--kv-heads"),
             ("head_dim", "--head-dim"), ("ffn", "--ffn"), ("vocab", "--vocab"), ("experts", "--experts"),
             ("top_k", "--top-k")]
    return " ".join(f"{flag} {getattr(args, name)}" for name, flag in flags if getattr(args, name, None))


def _pins(args: argparse.Namespace):
    from gpuplan.plan.space import Pins

    rc = None
    if args.recompute:
        rc = tuple(r.strip() for r in args.recompute.split(",") if r.strip())
        bad = [r for r in rc if r not in ("none", "selective", "full")]
        if bad:
            raise InputError("--recompute", args.recompute, "must be a subset of none,selective,full")
    return Pins(tp=args.tp, pp=args.pp, cp=args.cp, ep=args.ep, vpp=args.vpp, zero=args.zero,
                micro_batch=args.micro_batch, recompute=rc, hsdp=not args.no_hsdp)


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


def _context(args, spec, gpu, seq, global_batch, flop_per_token, pins):
    from gpuplan.compute.comm import default_network
    from gpuplan.compute.steptime import Tuning, Workload, make_device
    from gpuplan.plan.memory import TrainOptions
    from gpuplan.plan.candidates import SearchContext, Target

    dtype = PRECISION_DTYPE[args.precision]
    dev, dev_sources = make_device(gpu, dtype, gemm_eff=args.gemm_efficiency,
                                   attention_eff=args.attention_efficiency)
    net = default_network(gpu, gpus_per_node=args.gpus_per_node,
                          inter_node_bytes_per_s=args.inter_node_gbps * 1e9 if args.inter_node_gbps else None,
                          intra_node_bytes_per_s=args.intra_node_gbps * 1e9 if args.intra_node_gbps else None,
                          single_node=bool(args.gpus and args.gpus <= args.gpus_per_node))
    for name in ("tp_overlap", "dp_overlap"):
        if not 0 <= getattr(args, name) <= 1:
            raise InputError(f"--{name.replace('_', '-')}", getattr(args, name), "must be a fraction in [0, 1]")
    tune = Tuning(tp_overlap=args.tp_overlap, dp_overlap=args.dp_overlap)
    target = Target(gpus=args.gpus, days=args.days, tokens=args.tokens,
                    gpu_multiple=args.gpu_multiple or args.gpus_per_node)
    rank = args.rank or ("time" if args.gpus else "gpus")
    ctx = SearchContext(spec=spec, gpu=gpu, dev=dev, net=net, work=Workload(seq, global_batch),
                        flop_per_token=flop_per_token, target=target, pins=pins,
                        opts=TrainOptions(precision=args.precision, framework=args.framework), tune=tune, rank=rank)
    sources = dev_sources + [f"intra-node {net.intra_node_bytes_per_s / 1e9:g} GB/s per GPU: {net.intra_source}",
                             f"inter-node {net.inter_node_bytes_per_s / 1e9:g} GB/s per GPU: {net.inter_source}",
                             f"collective bus efficiency {net.bus_efficiency:g}"] + list(tune.sources)
    return ctx, sources


def _nothing_fits(args, results, spec, warnings) -> int:
    lang = "en" if args.json else lang_of(args)  # with --json (and through the web API) messages stay English
    lines, smallest = _why_nothing_fits(args, results, spec, lang)
    if args.json:  # still one JSON document on stdout: no plans, and why
        print_json({"plans": [], "reason": "\n".join(line.strip() for line in lines),
                    "smallest_gpus": smallest, "warnings": [str(w) for w in warnings]})
    print("gpuplan plan: " + "\n".join(lines), file=sys.stderr)
    return 3 if args.check else 2


def _why_nothing_fits(args, results, spec, lang: str) -> tuple[list[str], dict[str, int]]:
    """The lines saying why no layout fits on each GPU, and the smallest GPU count that would fit."""
    from gpuplan.plan.search import least_memory
    from gpuplan.plan.explain import describe

    lines, smallest = [], {}
    for gpu, res in results:
        if res is None:
            continue
        low = least_memory(res)
        if args.gpus:
            msg = t("plan.no_layout_gpus", lang, gpus=f"{args.gpus:,}", gpu=gpu.id, model=spec.name)
        else:
            msg = t("plan.no_layout_days", lang, gpu=gpu.id, days=f"{args.days:g}", model=spec.name)
        if low is not None:
            msg += t("plan.least_memory", lang, memory=f"{low[0] / GiB:,.1f}", layout=describe(low[1]),
                     usable=f"{gpu.memory_usable_bytes / GiB:,.1f}")
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


def _search(args) -> SimpleNamespace:
    """The layout search for the parsed options: the ranked plans (none when nothing fits) and what they rest on."""
    from gpuplan.compute.flops import training_flops
    from gpuplan.hardware.catalog import get_gpu
    from gpuplan.plan.explain import alternatives, layout_dict
    from gpuplan.plan.memory import engine_shards_layouts, train_command
    from gpuplan.plan.candidates import rank_key
    from gpuplan.plan.search import search

    spec = model_from_args(args)
    if (args.gpus is None) == (args.days is None):
        raise InputError("--gpus", args.gpus, "give --gpus N, or --days with --tokens")
    seq = args.seq or DEFAULT_SEQ
    global_batch = args.global_batch or max(1, DEFAULT_BATCH_TOKENS // seq)
    flops = training_flops(spec, seq=seq, attention=args.attention_flops)
    pins = _pins(args)
    from gpuplan.plan.space import check_pins

    check_pins(spec, pins, seq, args.gpus_per_node)
    gpu_ids = [g.strip() for item in args.gpu for g in item.split(",") if g.strip()]
    if not gpu_ids:
        raise InputError("--gpu", ",".join(args.gpu), "must name a catalog GPU", hint="see `gpuplan gpus`")
    compare = [_parse_compare(c) for c in args.compare]
    price_arg = args.price
    results, all_plans, assumptions, warnings = [], [], [], list(spec.notes)
    if not engine_shards_layouts(spec):
        warnings.append(message("plan.warn.no_layouts"))
    for gid in gpu_ids:
        gpu = get_gpu(gid)
        ctx, sources = _context(args, spec, gpu, seq, global_batch, flops.model_flop_per_token, pins)
        res = search(ctx, top=args.top)
        results.append((gpu, res))
        assumptions += [f"{gpu.id}: {s}" for s in sources]
        all_plans += res.plans
    if not all_plans:
        return SimpleNamespace(spec=spec, results=results, warnings=warnings, plans=[])
    rank = results[0][1].ctx.rank
    all_plans.sort(key=lambda c: rank_key(c, rank))
    plans = all_plans[: args.top]
    win = plans[0]
    win_res = next(r for g, r in results if g.id == win.gpu_id)
    from gpuplan.compute.prices import resolve_price

    prices = {g.id: resolve_price(price_arg, g.id) for g, _ in results} if price_arg else {}
    alts = alternatives(win, win_res, tuple(compare))
    assumptions += [message("plan.assume.batch", seq=seq, global_batch=global_batch,
                            tokens=f"{global_batch * seq:,}"),
                    message("plan.assume.mfu", convention=args.attention_flops,
                            flop=f"{flops.model_flop_per_token:.4g}"),
                    message("plan.assume.steptime")]
    from gpuplan.train.precision import framework_precision_note

    note = framework_precision_note(args.precision, args.framework)
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
             "train_command": train_command(model_argument(args), c.layout, seq, global_batch,
                                            win_res.ctx.opts, c.gpu_id)}
        return d

    return SimpleNamespace(spec=spec, results=results, warnings=warnings, plans=plans, win=win, win_res=win_res,
                           alts=alts, assumptions=assumptions, flops=flops, seq=seq, global_batch=global_batch,
                           rank=rank, plan_dict=plan_dict)


def _json(r: SimpleNamespace) -> dict:
    from gpuplan.plan.explain import why_winner

    return {"plans": [r.plan_dict(c) for c in r.plans],
            "evaluated": sum(res.pool.evaluated for _, res in r.results),
            "memory_checks": sum(res.checker.calls for _, res in r.results),
            "why": why_winner(r.win, r.win_res), "alternatives": [a.as_dict() for a in r.alts],
            "assumptions": [str(a) for a in r.assumptions], "warnings": [str(w) for w in r.warnings]}


def payload(args) -> dict:
    """The JSON of ``gpuplan plan --json`` when a layout fits; when none does, InputError with the reasons."""
    r = _search(args)
    if not r.plans:
        lines, _ = _why_nothing_fits(args, r.results, r.spec, "en")
        raise InputError("plan", None, "; ".join(x.strip() for line in lines for x in line.splitlines() if x.strip()))
    return _json(r)


def run(args: argparse.Namespace) -> int:
    from gpuplan.plan.explain import describe, why_winner

    r = _search(args)
    if not r.plans:
        return _nothing_fits(args, r.results, r.spec, r.warnings)
    if args.json:
        print_json(_json(r))
        return 0
    spec, results, warnings, plans, win, win_res = r.spec, r.results, r.warnings, r.plans, r.win, r.win_res
    alts, assumptions, flops, seq, global_batch, rank, plan_dict = (r.alts, r.assumptions, r.flops, r.seq,
                                                                     r.global_batch, r.rank, r.plan_dict)
    lang = lang_of(args)
    target = (t("plan.target_gpus", lang, gpus=f"{args.gpus:,}") if args.gpus else
              t("plan.target_days", lang, days=f"{args.days:g}", tokens=format_count(args.tokens)))
    print(t("plan.summary", lang, model=spec.name, params=format_count(flops.weight_params), seq=seq,
            global_batch=global_batch, target=target, rank=t(f"plan.rank.{rank}", lang)))
    rows = []
    for c in plans:
        cost = plan_dict(c)["cost_usd"]
        rows.append((describe(c.layout), c.gpu_id, f"{c.gpus:,}", f"{c.memory_total_bytes / GiB:,.1f}",
                     f"{c.seconds_per_step:.2f}", f"{c.mfu:.1%}", "-" if c.days is None else f"{c.days:,.1f}",
                     "-" if cost is None else f"{cost:,.0f}"))
    names = ("layout", "gpu", "gpus", "memory", "step", "mfu", "days", "cost")
    print(render_table(headers("plan.header", names, lang), rows, "llrrrrrr"))
    print(f"\n{t('plan.why', lang)}:")
    for line in why_winner(win, win_res):
        print(f"- {line}")
    print(f"\n{t('plan.alternatives', lang)}:")
    for a in alts:
        print(f"- {a.label}: {a.verdict}")
    for gpu, res in results:
        if gpu.id == win.gpu_id:
            continue
        if res.plans:
            b = res.plans[0]
            days = "-" if b.days is None else t("plan.days", lang, days=f"{b.days:.1f}")
            print("- " + t("plan.best_on", lang, gpu=gpu.id, layout=describe(b.layout), gpus=f"{b.gpus:,}", days=days,
                           mfu=f"{b.mfu:.1%}", memory=f"{b.memory_total_bytes / GiB:,.1f}",
                           usable=f"{gpu.memory_usable_bytes / GiB:,.1f}"))
        else:
            print("- " + t("plan.none_on" if args.gpus else "plan.none_on_deadline", lang, gpu=gpu.id))
    if args.explain:
        print(f"\n{t('plan.winner_memory', lang)}:")
        print(f"  {plan_dict(win)['train_command']}")
        print(f"\n{t('section.assumptions', lang)}:")
        for a in assumptions:
            print(f"- {localize(a, lang)}")
    for w in warnings:
        print(f"{t('word.warning', lang)}: {localize(w, lang)}")
    return 0
