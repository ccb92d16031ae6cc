"""``gpuplan time MODEL``: FLOPs, days, GPU count, GPU-hours, cost and energy of a training run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gpuplan.errors import InputError
from gpuplan.i18n import message
from gpuplan.model.resolve import model_from_options
from gpuplan.options.time import DEFAULT_SEQ, PRECISION_DTYPE
from gpuplan.units import format_bytes


def peak_from_options(values: Any) -> tuple[float, str | None, object | None]:
    """(peak FLOP/s, gpu id, GpuSpec) from --gpu / --precision / --peak-tflops."""
    gpu = None
    if values.gpu:
        from gpuplan.hardware.catalog import get_gpu

        gpu = get_gpu(values.gpu)
    dtype = PRECISION_DTYPE[values.precision]
    if values.peak_tflops:
        return values.peak_tflops * 1e12, gpu.id if gpu else None, gpu
    if gpu is None:
        raise InputError("--gpu", None, "is required (or give --peak-tflops)", hint="see `gpuplan gpus`")
    from gpuplan.hardware.catalog import catalog_field

    dtype = gpu.compute_dtype(dtype)  # bf16 on a part without bf16 units: its catalog bf16_fallback (fp16)
    peak = gpu.peak_flop_per_s_for(dtype)
    if peak is None:
        raise InputError("--precision", values.precision, f"{gpu.id} has no {dtype} peak: its catalog entry lacks "
                         f"the field {catalog_field(dtype)}", hint="give --peak-tflops or another --precision")
    return peak, gpu.id, gpu


def flops_from_options(values: Any):
    """TrainingFlops for MODEL (or --params) and the FLOP options; returns (flops, spec, notes)."""
    from gpuplan.compute.flops import training_flops

    spec = model_from_options(values, allow_params_only=True, encoders=True, seq2seq=True)
    notes = list(spec.notes) if spec is not None else []
    seq = values.seq
    if spec is not None and seq is None:
        seq = DEFAULT_SEQ
        notes.append(message("time.assume.seq", seq=DEFAULT_SEQ))
    targets = tuple(t.strip() for t in values.lora_targets.split(",") if t.strip()) if getattr(
        values, "lora_targets", None) else None
    flops = training_flops(spec, seq=seq, params=values.params, attention=values.attention_flops,
                           method=getattr(values, "method", "full"),
                           trainable_params=getattr(values, "trainable_params", None),
                           lora_rank=getattr(values, "lora_rank", None), lora_targets=targets,
                           recompute=getattr(values, "recompute", "none"),
                           target_seq=getattr(values, "target_seq", None))
    return flops, spec, notes + list(flops.notes)


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
    cluster: Any = None  # ClusterResult with --cluster, else None
    assumptions: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def memory_short(self) -> bool:
        """The GPU count is below the fewest GPUs that hold the training states fully sharded."""
        return self.floor is not None and self.est.gpus is not None and self.est.gpus < self.floor.min_gpus

    @property
    def cannot_work(self) -> bool:
        return self.est.mfu_impossible or self.memory_short


def _states_floor(values: Any, run: TimeRun) -> None:
    """The memory floor: with --gpu and full training, the fewest GPUs holding the training states (ZeRO-3); a
    warning (which states the floor and what it leaves out) when the run has fewer GPUs. Fine-tuning methods keep
    fewer states and are not checked."""
    from gpuplan.compute.timecost import states_floor, states_per_gpu_bytes

    gpu = run.gpu
    if gpu is None or getattr(values, "method", "full") != "full":
        return
    if run.spec is not None:
        from gpuplan.model.params import count_params

        params = count_params(run.spec).total
    else:
        params = values.params
    run.floor = floor = states_floor(params, values.precision, gpu.memory_usable_bytes)
    if run.memory_short:
        per_gpu = states_per_gpu_bytes(params, values.precision, run.est.gpus)
        run.warnings.append(message("time.warn.memory", gpus=f"{run.est.gpus:,}", gpu=gpu.id,
                                    precision=values.precision, states=format_bytes(floor.states_bytes),
                                    per_gpu=format_bytes(per_gpu), usable=format_bytes(floor.usable_bytes),
                                    min_gpus=f"{floor.min_gpus:,}"))


def evaluate(values: Any) -> TimeRun:
    """Solve the run for the parsed options (no printing)."""
    from gpuplan.compute.prices import resolve_price
    from gpuplan.compute.timecost import DEFAULT_PUE, PUE_SOURCE, estimate_run

    if values.tokens is None:
        raise InputError("--tokens", None, "is required: the training tokens, e.g. --tokens 2T")
    flops, spec, notes = flops_from_options(values)
    peak, gpu_id, gpu = peak_from_options(values)
    power = values.gpu_power_w or (gpu.tdp_w if gpu else None)
    if power is None:
        raise InputError("--gpu-power-w", None, "is required with --peak-tflops and no --gpu")
    price = resolve_price(values.price, gpu_id)
    pue = values.pue if values.pue is not None else DEFAULT_PUE
    est = estimate_run(total_flop=flops.model_flop_per_token * values.tokens,
                       recompute_flop=flops.recompute_flop_per_token * values.tokens,
                       flop_per_token=flops.model_flop_per_token, tokens=values.tokens, peak_flop_per_s=peak,
                       gpu_id=gpu_id, gpus=values.gpus, days=values.days, mfu=values.mfu,
                       tokens_per_s_per_gpu=values.tokens_per_gpu_s, gpu_multiple=values.gpu_multiple, price=price,
                       power_w=power, pue=pue, co2_kg_per_kwh=values.co2_kg_per_kwh,
                       step_tokens=values.seq or (DEFAULT_SEQ if spec is not None else 1))
    dtype = gpu.compute_dtype(PRECISION_DTYPE[values.precision]) if gpu else PRECISION_DTYPE[values.precision]
    energy = (message("time.assume.energy", power=f"{est.power_w_per_gpu:g}", pue=f"{pue:g}", source=PUE_SOURCE)
              if values.pue is None else
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
    _states_floor(values, run)
    if values.cluster:
        run.cluster = _cluster(values, run)
    return run


CHECKPOINT_PRECISION = {"bf16": "mixed-bf16", "fp16": "mixed-fp16"}


def _cluster(values: Any, run: TimeRun):
    """The cluster bill of the solved run (--cluster): it needs a GPU from the catalog and a GPU count."""
    from gpuplan.commands.cluster import cluster_bill

    if run.gpu is None:
        raise InputError("--cluster", True, "needs --gpu (a catalog GPU with a server entry)")
    if run.est.gpus is None:
        raise InputError("--cluster", True, "needs a GPU count: give --gpus, or --days to solve for it")
    if run.spec is not None:
        from gpuplan.model.params import count_params

        params = count_params(run.spec).total
    else:
        params = values.params
    precision = CHECKPOINT_PRECISION.get(values.precision, values.precision)
    result = cluster_bill(values, gpu=run.gpu, gpus=run.est.gpus, model_parallel=values.gpu_multiple, gpus_per_node=None,
                          seconds=run.est.seconds, tokens=values.tokens, params_total=params, precision=precision,
                          framework="torch", staged_per_gpu_bytes=None, price=run.price,
                          gpu_power_w=values.gpu_power_w, pue=values.pue)
    if precision != values.precision:
        result.assumptions.append(message("cluster.assume.checkpoint_mixed", precision=values.precision))
    return result


def to_json(values: Any, r: TimeRun) -> dict[str, Any]:
    est, flops, price = r.est, r.flops, r.price
    out = {
        "total_flop": est.total_flop, "days": est.days, "gpus": est.gpus, "gpu_hours": est.gpu_hours,
        "cost_usd": est.cost_usd, "solved_for": est.solved_for, "gpus_exact": est.gpus_exact,
        "seconds": est.seconds, "mfu": est.mfu, "tokens": est.tokens,
        "required_flop_per_s": est.total_flop / (values.days * 86400) if values.days else None,
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
    if values.explain:
        out["terms"] = [term.as_dict() for term in (*flops.terms, *est.terms)]
    if r.cluster is not None:
        from gpuplan.commands.cluster import cluster_json

        out["cluster"] = cluster_json(r.cluster, values.explain)
    return out


def payload(values: Any) -> dict[str, Any]:
    """The JSON of ``gpuplan time --json`` (the web API and the Python API call it in-process)."""
    return to_json(values, evaluate(values))
