"""``gpuplan time MODEL``: FLOPs, days, GPU count, GPU-hours, cost and energy of a training run."""

from __future__ import annotations

import argparse

from dataclasses import dataclass, field
from typing import Any

from gpuplan.cli.common import (finish_estimate, model_from_args, render_table)
from gpuplan.errors import InputError
from gpuplan.i18n import headers, lang_of, localize, message, t
from gpuplan.units import format_bytes, format_count
from gpuplan.cli.parsers import command_parser
from gpuplan.options.time import DEFAULT_SEQ, PRECISION_DTYPE



def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    return command_parser(sub, "time")


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
    notes = list(spec.notes) if spec is not None else []
    seq = args.seq
    if spec is not None and seq is None:
        seq = DEFAULT_SEQ
        notes.append(message("time.assume.seq", seq=DEFAULT_SEQ))
    targets = tuple(t.strip() for t in args.lora_targets.split(",") if t.strip()) if getattr(
        args, "lora_targets", None) else None
    flops = training_flops(spec, seq=seq, params=args.params, attention=args.attention_flops,
                           method=getattr(args, "method", "full"),
                           trainable_params=getattr(args, "trainable_params", None),
                           lora_rank=getattr(args, "lora_rank", None), lora_targets=targets,
                           recompute=getattr(args, "recompute", "none"))
    return flops, spec, notes + list(flops.notes)


def _list_prices(lang: str) -> int:
    from gpuplan.compute.prices import load_prices

    rows = [(p.id, p.gpu, f"{p.usd_per_gpu_hour:.2f}" + (f" ({p.low:.2f}-{p.high:.2f})" if p.low else ""), p.date,
             p.kind) for p in load_prices()]
    print(render_table(headers("prices.header", ("id", "gpu", "usd", "date", "kind"), lang), rows, "llrll"))
    for p in load_prices():
        print(f"- {p.id}: {p.source}")
    return 0


@dataclass
class TimeRun:
    """Everything ``gpuplan time`` prints: the FLOP count, the solved run and what it rests on."""

    flops: Any
    spec: Any
    est: Any
    peak: float
    gpu: Any
    price: Any
    pue: float
    floor: Any = None  # StatesFloor with --gpu and full training, else None
    assumptions: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def memory_short(self) -> bool:
        """The GPU count is below the fewest GPUs that hold the training states fully sharded."""
        return self.floor is not None and self.est.gpus is not None and self.est.gpus < self.floor.min_gpus

    @property
    def cannot_work(self) -> bool:
        return self.est.mfu_impossible or self.memory_short


def _states_floor(args: argparse.Namespace, run: TimeRun) -> None:
    """The memory floor: with --gpu and full training, the fewest GPUs holding the training states (ZeRO-3); a
    warning (which states the floor and what it leaves out) when the run has fewer GPUs. Fine-tuning methods keep
    fewer states and are not checked."""
    from gpuplan.compute.timecost import states_floor, states_per_gpu_bytes

    gpu = run.gpu
    if gpu is None or getattr(args, "method", "full") != "full":
        return
    if run.spec is not None:
        from gpuplan.model.params import count_params

        params = count_params(run.spec).total
    else:
        params = args.params
    run.floor = floor = states_floor(params, args.precision, gpu.memory_usable_bytes)
    if run.memory_short:
        per_gpu = states_per_gpu_bytes(params, args.precision, run.est.gpus)
        run.warnings.append(message("time.warn.memory", gpus=f"{run.est.gpus:,}", gpu=gpu.id,
                                    precision=args.precision, states=format_bytes(floor.states_bytes),
                                    per_gpu=format_bytes(per_gpu), usable=format_bytes(floor.usable_bytes),
                                    min_gpus=f"{floor.min_gpus:,}"))


def evaluate(args: argparse.Namespace) -> TimeRun:
    """Solve the run for the parsed options (no printing)."""
    from gpuplan.compute.prices import resolve_price
    from gpuplan.compute.timecost import DEFAULT_PUE, PUE_SOURCE, estimate_run

    if args.tokens is None:
        raise InputError("--tokens", None, "is required: the training tokens, e.g. --tokens 2T")
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
                       power_w=power, pue=pue, co2_kg_per_kwh=args.co2_kg_per_kwh,
                       step_tokens=args.seq or (DEFAULT_SEQ if spec is not None else 1))
    dtype = PRECISION_DTYPE[args.precision]
    energy = (message("time.assume.energy", power=f"{est.power_w_per_gpu:g}", pue=f"{pue:g}", source=PUE_SOURCE)
              if args.pue is None else
              message("time.assume.energy_given", power=f"{est.power_w_per_gpu:g}", pue=f"{pue:g}"))
    assumptions = notes + est.assumptions + [
        message("time.assume.mfu", mfu=f"{est.mfu:.4g}", source=est.mfu_source),
        message("time.assume.peak_gpu", peak=f"{peak / 1e12:g}", dtype=dtype, gpu=gpu.name) if gpu else
        message("time.assume.peak", peak=f"{peak / 1e12:g}", dtype=dtype),
        message("time.assume.attention", convention=flops.attention_convention),
        energy,
    ]
    if price is not None:
        fields = {"price": f"{price.usd_per_gpu_hour:g}", "source": price.source}
        assumptions.append(message("time.assume.price_dated", **fields, date=price.date) if price.date else
                           message("time.assume.price", **fields))
    run = TimeRun(flops, spec, est, peak, gpu, price, pue, assumptions=assumptions, warnings=list(est.warnings))
    _states_floor(args, run)
    return run


def _json(args: argparse.Namespace, r: TimeRun) -> dict[str, Any]:
    est, flops, price = r.est, r.flops, r.price
    out = {
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
        "co2_kg": est.co2_kg, "min_gpus_for_states": r.floor.min_gpus if r.floor else None,
        "assumptions": [str(a) for a in r.assumptions], "warnings": [str(w) for w in r.warnings],
    }
    if args.explain:
        out["terms"] = [term.as_dict() for term in (*flops.terms, *est.terms)]
    return out


def payload(args: argparse.Namespace) -> dict[str, Any]:
    """The JSON of ``gpuplan time --json`` (the web API and the Python API call it in-process)."""
    return _json(args, evaluate(args))


def run(args: argparse.Namespace) -> int:
    if args.list_prices:
        return _list_prices(lang_of(args))
    r = evaluate(args)
    return finish_estimate(args, "time", _json(args, r) if args.json else {}, lambda: render(r, args),
                           not r.cannot_work)


def render(r: TimeRun, args: argparse.Namespace) -> str:
    """The human-readable answer in ``--lang``."""
    lang = lang_of(args)
    est, flops, gpu, peak = r.est, r.flops, r.gpu, r.peak

    def tr(key: str, **fields: Any) -> str:
        return t(key, lang, **fields)

    name = r.spec.name if r.spec is not None else tr("time.params_name", params=format_count(flops.weight_params))
    lines = [tr("time.summary", name=name, tokens=format_count(args.tokens),
                gpu=gpu.name if gpu else tr("time.custom_gpu"))]
    rows = [
        (tr("time.row.flop_per_token"), f"{flops.model_flop_per_token:.4g}",
         tr("time.note.flop_split", dense=f"{flops.dense_flop_per_token:.4g}",
            attention=f"{flops.attention_flop_per_token:.4g}")),
        (tr("time.row.total_flop"), f"{est.total_flop:.4g}", tr("time.note.total_flop")),
    ]
    if est.recompute_flop:
        rows.append((tr("time.row.recompute_flop"), f"{est.recompute_flop:.4g}",
                     tr("time.note.recompute", mode=args.recompute)))
    rows.append((tr("time.row.mfu"), f"{est.mfu:.1%}",
                 tr("time.note.solved") if est.solved_for == "mfu" else tr("time.note.used")))
    if est.gpus is not None:
        extra = (tr("time.note.gpus_needed", gpus=f"{est.gpus_exact:,.1f}") if est.gpus_exact is not None
                 else tr("time.note.given"))
        rows.append((tr("time.row.gpus"), f"{est.gpus:,}", extra))
    if est.days is not None:
        rows.append((tr("time.row.days"), f"{est.days:,.2f}",
                     tr("time.note.solved") if est.solved_for == "days" else tr("time.note.at_gpus")))
    if args.days:
        rows.append((tr("time.row.required"), f"{est.total_flop / (args.days * 86400) / 1e12:,.0f}",
                     tr("time.note.required")))
    rows += [
        (tr("time.row.gpu_hours"), f"{est.gpu_hours:,.0f}", ""),
        (tr("time.row.tokens_per_s"), f"{est.tokens_per_s_per_gpu:,.0f}", ""),
        (tr("time.row.achieved"), f"{est.achieved_flop_per_s_per_gpu / 1e12:,.1f}",
         tr("time.note.of_peak", peak=f"{peak / 1e12:g}")),
    ]
    if est.cost_usd is not None:
        rng = (tr("time.note.cost_range", low=f"{est.cost_usd_range[0]:,.0f}", high=f"{est.cost_usd_range[1]:,.0f}")
               if est.cost_usd_range else "")
        rows.append((tr("time.row.cost"), f"{est.cost_usd:,.0f}", rng))
    rows.append((tr("time.row.energy"), f"{est.energy_kwh / 1000:,.1f}", f"{est.power_w_per_gpu:g} W x PUE {r.pue:g}"))
    if est.co2_kg is not None:
        rows.append((tr("time.row.co2"), f"{est.co2_kg / 1000:,.2f}", f"{args.co2_kg_per_kwh:g} kg/kWh"))
    lines.append(render_table(headers("time.header", ("quantity", "value", "note"), lang), rows, "lrl"))
    if args.explain:
        for term in (*flops.terms, *est.terms):
            lines.append(f"- {term.key} = {term.value:.6g}: {term.formula}"
                         + (f"  [{term.source}]" if term.source else ""))
    lines.append(tr("section.assumptions") + ":")
    lines.extend(f"- {localize(a, lang)}" for a in r.assumptions)
    lines.extend(f"{tr('word.warning')}: {localize(w, lang)}" for w in r.warnings)
    return "\n".join(lines)
