"""``gpuplan time MODEL``: FLOPs, days, GPU count, GPU-hours, cost and energy of a training run."""

from __future__ import annotations

import argparse

from gpuplan.cli.common import (add_model_arguments, add_output_arguments, count, real, model_from_args, print_json,
                                render_table)
from gpuplan.errors import InputError
from gpuplan.units import format_count

DEFAULT_SEQ = 4096
PRECISION_DTYPE = {"fp32": "fp32", "bf16": "bf16", "fp16": "fp16", "amp-bf16": "bf16", "amp-fp16": "fp16",
                   "mixed-bf16": "bf16", "mixed-fp16": "fp16", "fp8": "fp8"}


def add_compute_arguments(p: argparse.ArgumentParser) -> None:
    """Options shared by ``time`` and ``plan``: what counts as a FLOP and which peak applies."""
    g = p.add_argument_group("FLOP counting")
    g.add_argument("--seq", type=count("--seq"), help=f"sequence length for the attention term (default {DEFAULT_SEQ})")
    g.add_argument("--attention-flops", choices=("full", "causal", "none"), default="full",
                   help="attention term: full = 12·L·h·s (torchtitan, MosaicML, Megatron papers, Llama 3), "
                        "causal = half (NeMo), none = plain 6·P (default full)")
    g.add_argument("--precision", choices=tuple(PRECISION_DTYPE), default="bf16",
                   help="training precision; picks the GPU's peak FLOP/s for that dtype (default bf16)")
    g.add_argument("--peak-tflops", type=real("--peak-tflops", above=0),
                   help="override the GPU's dense peak (TFLOP/s), or give it for a GPU not in the catalog")


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("time", help="FLOPs, days, GPU count, GPU-hours and cost of a training run",
                       description="Training FLOPs (6·P per token plus attention), then days = FLOPs / (peak × GPUs "
                                   "× MFU). Give two of --gpus, --days and --mfu and the third is solved for. Works "
                                   "with --params P alone (no MODEL).")
    add_model_arguments(p)
    add_output_arguments(p, explain=True)
    p.add_argument("--tokens", type=count("--tokens"), required=True, help="training tokens (2T, 15.6e12)")
    p.add_argument("--gpu", help="catalog id (h100-sxm, a800, ascend-910b; see `gpuplan gpus`)")
    p.add_argument("--gpus", type=count("--gpus"), help="number of GPUs (solve for days)")
    p.add_argument("--days", type=real("--days", above=0), help="deadline in days (solve for GPUs)")
    p.add_argument("--mfu", type=real("--mfu", above=0, at_most=1),
                   help="model FLOPs utilization as a fraction (0.40); default: published figure for the GPU family "
                        "and cluster size")
    p.add_argument("--tokens-per-gpu-s", type=real("--tokens-per-gpu-s", above=0),
                   help="a measured or published throughput per GPU, instead of --mfu")
    p.add_argument("--gpu-multiple", type=count("--gpu-multiple"), default=1,
                   help="round a solved GPU count up to a multiple of this (8 = whole nodes)")
    add_compute_arguments(p)
    f = p.add_argument_group("fine-tuning and recomputation")
    f.add_argument("--method", choices=("full", "freeze", "lora", "qlora"), default="full")
    f.add_argument("--trainable-params", type=count("--trainable-params"),
                   help="trainable parameters with --method freeze (frozen ones cost 4·P, trainable 6·P)")
    f.add_argument("--lora-rank", type=count("--lora-rank"), help="LoRA rank (default 16)")
    f.add_argument("--lora-targets", help="PEFT target_modules leaf names, comma-separated (default all linear)")
    f.add_argument("--recompute", choices=("none", "selective", "full"), default="none",
                   help="activation recomputation; its FLOPs are reported apart from model FLOPs")
    c = p.add_argument_group("cost and energy")
    c.add_argument("--price", help="USD per GPU-hour, a price-table id, or 'table' (newest entry for --gpu)")
    c.add_argument("--list-prices", action="store_true", help="print the dated price table and exit")
    c.add_argument("--gpu-power-w", type=real("--gpu-power-w", above=0), help="watts per GPU (default: its TDP)")
    c.add_argument("--pue", type=real("--pue", above=0), default=None, help="power usage effectiveness (default 1.1)")
    c.add_argument("--co2-kg-per-kwh", type=real("--co2-kg-per-kwh", above=0),
                   help="grid carbon intensity; adds CO2 (LLaMA papers used 0.385)")
    return p


def peak_from_args(args: argparse.Namespace) -> tuple[float, str | None, object | None]:
    """(peak FLOP/s, gpu id, GpuSpec) from --gpu / --precision / --peak-tflops."""
    gpu = None
    if args.gpu:
        from gpuplan.hardware.catalog import get_gpu

        gpu = get_gpu(args.gpu)
    dtype = PRECISION_DTYPE[args.precision]
    if args.peak_tflops:
        return args.peak_tflops * 1e12, gpu.id if gpu else None, gpu
    if gpu is None:
        raise InputError("--gpu", None, "is required (or give --peak-tflops)", hint="see `gpuplan gpus`")
    peak = gpu.peak_flop_per_s_for(dtype)
    if peak is None:
        raise InputError("--precision", args.precision, f"{gpu.id} has no {dtype} peak in the catalog",
                         hint="give --peak-tflops or another --precision")
    return peak, gpu.id, gpu


def flops_from_args(args: argparse.Namespace):
    """TrainingFlops for MODEL (or --params) and the FLOP options; returns (flops, spec, notes)."""
    from gpuplan.compute.flops import training_flops

    spec = model_from_args(args, allow_params_only=True)
    notes = []
    seq = args.seq
    if spec is not None and seq is None:
        seq = DEFAULT_SEQ
        notes.append(f"sequence length {DEFAULT_SEQ} assumed for the attention term (pass --seq)")
    targets = tuple(t.strip() for t in args.lora_targets.split(",") if t.strip()) if getattr(
        args, "lora_targets", None) else None
    flops = training_flops(spec, seq=seq, params=args.params, attention=args.attention_flops,
                           method=getattr(args, "method", "full"),
                           trainable_params=getattr(args, "trainable_params", None),
                           lora_rank=getattr(args, "lora_rank", None), lora_targets=targets,
                           recompute=getattr(args, "recompute", "none"))
    return flops, spec, notes + list(flops.notes)


def _list_prices() -> int:
    from gpuplan.compute.prices import load_prices

    rows = [(p.id, p.gpu, f"{p.usd_per_gpu_hour:.2f}" + (f" ({p.low:.2f}-{p.high:.2f})" if p.low else ""), p.date,
             p.kind) for p in load_prices()]
    print(render_table(["id", "gpu", "USD/GPU-hour", "date", "kind"], rows, "llrll"))
    for p in load_prices():
        print(f"- {p.id}: {p.source}")
    return 0


def run(args: argparse.Namespace) -> int:
    from gpuplan.compute.prices import resolve_price
    from gpuplan.compute.timecost import DEFAULT_PUE, PUE_SOURCE, estimate_run

    if args.list_prices:
        return _list_prices()
    flops, spec, notes = flops_from_args(args)
    peak, gpu_id, gpu = peak_from_args(args)
    power = args.gpu_power_w or (gpu.tdp_w if gpu else None)
    if power is None:
        raise InputError("--gpu-power-w", None, "is required with --peak-tflops and no --gpu")
    price = resolve_price(args.price, gpu_id)
    pue = args.pue if args.pue is not None else DEFAULT_PUE
    est = estimate_run(total_flop=flops.model_flop_per_token * args.tokens,
                       recompute_flop=flops.recompute_flop_per_token * args.tokens,
                       flop_per_token=flops.model_flop_per_token, tokens=args.tokens, peak_flop_per_s=peak,
                       gpu_id=gpu_id, gpus=args.gpus, days=args.days, mfu=args.mfu,
                       tokens_per_s_per_gpu=args.tokens_per_gpu_s, gpu_multiple=args.gpu_multiple, price=price,
                       power_w=power, pue=pue, co2_kg_per_kwh=args.co2_kg_per_kwh)
    assumptions = notes + est.assumptions + [
        f"MFU {est.mfu:.4g}: {est.mfu_source}",
        f"peak {peak / 1e12:g} TFLOP/s dense {PRECISION_DTYPE[args.precision]}" + (f" ({gpu.name})" if gpu else ""),
        f"attention FLOPs convention: {flops.attention_convention}",
        f"energy: {est.power_w_per_gpu:g} W per GPU x PUE {pue:g} ({PUE_SOURCE if args.pue is None else 'given'})",
    ]
    if price is not None:
        assumptions.append(f"price {price.usd_per_gpu_hour:g} USD/GPU-hour: {price.source}"
                           + (f" (published {price.date})" if price.date else ""))
    if args.json:
        payload = {
            "total_flop": est.total_flop, "days": est.days, "gpus": est.gpus, "gpu_hours": est.gpu_hours,
            "cost_usd": est.cost_usd, "solved_for": est.solved_for, "gpus_exact": est.gpus_exact,
            "seconds": est.seconds, "mfu": est.mfu, "tokens": est.tokens,
            "required_flop_per_s": est.total_flop / (args.days * 86400) if args.days else None,
            "flop_per_token": flops.model_flop_per_token, "dense_flop_per_token": flops.dense_flop_per_token,
            "attention_flop_per_token": flops.attention_flop_per_token,
            "recompute_flop": est.recompute_flop, "hardware_flop": est.total_flop + est.recompute_flop,
            "weight_params": flops.weight_params, "trainable_params": flops.trainable_params,
            "peak_flop_per_s": est.peak_flop_per_s, "achieved_flop_per_s_per_gpu": est.achieved_flop_per_s_per_gpu,
            "tokens_per_s_per_gpu": est.tokens_per_s_per_gpu,
            "price_usd_per_gpu_hour": price.usd_per_gpu_hour if price else None,
            "cost_usd_range": list(est.cost_usd_range) if est.cost_usd_range else None,
            "power_w_per_gpu": est.power_w_per_gpu, "pue": est.pue, "energy_kwh": est.energy_kwh,
            "co2_kg": est.co2_kg, "assumptions": assumptions, "warnings": est.warnings,
        }
        if args.explain:
            payload["terms"] = [t.as_dict() for t in (*flops.terms, *est.terms)]
        print_json(payload)
        return 0
    name = spec.name if spec is not None else f"{format_count(flops.weight_params)} parameters"
    print(f"{name}: {format_count(args.tokens)} tokens on {gpu.name if gpu else 'a custom GPU'}")
    rows = [
        ("FLOP per token", f"{flops.model_flop_per_token:.4g}",
         f"dense {flops.dense_flop_per_token:.4g} + attention {flops.attention_flop_per_token:.4g}"),
        ("total FLOPs (model)", f"{est.total_flop:.4g}", "FLOP/token x tokens; MFU counts these"),
    ]
    if est.recompute_flop:
        rows.append(("recompute FLOPs", f"{est.recompute_flop:.4g}", f"--recompute {args.recompute}, not in MFU"))
    rows.append(("MFU", f"{est.mfu:.1%}", "solved for" if est.solved_for == "mfu" else "used"))
    if est.gpus is not None:
        extra = f"{est.gpus_exact:,.1f} needed" if est.gpus_exact is not None else "given"
        rows.append(("GPUs", f"{est.gpus:,}", extra))
    if est.days is not None:
        rows.append(("days", f"{est.days:,.2f}", "solved for" if est.solved_for == "days" else "at that GPU count"))
    if args.days:
        rows.append(("required cluster TFLOP/s", f"{est.total_flop / (args.days * 86400) / 1e12:,.0f}",
                     "model FLOPs / deadline (effective, after MFU)"))
    rows += [
        ("GPU-hours", f"{est.gpu_hours:,.0f}", ""),
        ("tokens/s per GPU", f"{est.tokens_per_s_per_gpu:,.0f}", ""),
        ("achieved TFLOP/s per GPU", f"{est.achieved_flop_per_s_per_gpu / 1e12:,.1f}",
         f"of {peak / 1e12:g} peak"),
    ]
    if est.cost_usd is not None:
        rng = (f"range {est.cost_usd_range[0]:,.0f}-{est.cost_usd_range[1]:,.0f}" if est.cost_usd_range else "")
        rows.append(("cost (USD)", f"{est.cost_usd:,.0f}", rng))
    rows.append(("energy (MWh)", f"{est.energy_kwh / 1000:,.1f}", f"{est.power_w_per_gpu:g} W x PUE {pue:g}"))
    if est.co2_kg is not None:
        rows.append(("CO2 (t)", f"{est.co2_kg / 1000:,.2f}", f"{args.co2_kg_per_kwh:g} kg/kWh"))
    print(render_table(["quantity", "value", "note"], rows, "lrl"))
    if args.explain:
        for t in (*flops.terms, *est.terms):
            print(f"- {t.key} = {t.value:.6g}: {t.formula}" + (f"  [{t.source}]" if t.source else ""))
    print("assumptions:")
    for a in assumptions:
        print(f"- {a}")
    for w in est.warnings:
        print(f"warning: {w}")
    return 0
