"""Training time, GPU count, GPU-hours, cost and energy from total FLOPs, peak FLOP/s and MFU.

    seconds = total model FLOPs / (peak FLOP/s per GPU × GPUs × MFU)            (seed 004 §7.2.3)

Given any two of GPUs, days and MFU the third follows; a published per-GPU throughput (tokens/s/GPU) can stand in
for MFU. Energy is GPU board power × PUE × time (Touvron et al. 2023, LLaMA section 6: MWh = GPU-h × power × PUE,
PUE 1.1); it leaves out CPUs, network and storage.

Two checks say when a run as given cannot work: an MFU solved from a GPU count and a deadline above 1, and a GPU
count below ``states_floor`` (the fewest GPUs that hold the training states fully sharded).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from gpuplan.compute.mfu import check_mfu, default_mfu, family_tiers
from gpuplan.compute.prices import Price
from gpuplan.errors import InputError
from gpuplan.i18n import message
from gpuplan.limits import MAX_GPUS, require_finite
from gpuplan.report import Term
from gpuplan.units import SECONDS_PER_DAY, SECONDS_PER_HOUR

DEFAULT_PUE = 1.1
PUE_SOURCE = ("Touvron et al. 2023, LLaMA (arXiv:2302.13971) section 6.1: PUE 1.1; with 0.385 kg CO2eq/kWh it "
              "reproduces Llama 2's Table 2 (1,720,320 A100-hours x 400 W -> 291.42 tCO2eq)")


def run_seconds(total_flop: float, peak_flop_per_s: float, gpus: float, mfu: float) -> float:
    """Wall-clock seconds: FLOPs / (peak × GPUs × MFU). Seed 004 §7.2.3; ignores restarts and stalls (fold those
    into MFU, or read the answer as time with the cluster busy)."""
    return total_flop / (peak_flop_per_s * gpus * mfu)


def gpus_for_seconds(total_flop: float, peak_flop_per_s: float, seconds: float, mfu: float) -> float:
    """GPUs (fractional) needed to finish in ``seconds``: FLOPs / (peak × MFU × seconds). Seed 004 §7.3 step 2."""
    return total_flop / (peak_flop_per_s * mfu * seconds)


def mfu_for(total_flop: float, peak_flop_per_s: float, gpus: float, seconds: float) -> float:
    """The MFU a run of ``gpus`` must reach to finish in ``seconds``."""
    return total_flop / (peak_flop_per_s * gpus * seconds)


def gpu_hours(total_flop: float, peak_flop_per_s: float, mfu: float) -> float:
    """GPU-hours: FLOPs / (peak × MFU) / 3600 — independent of the GPU count at a fixed MFU."""
    return total_flop / (peak_flop_per_s * mfu) / SECONDS_PER_HOUR


def cost_usd(hours: float, usd_per_gpu_hour: float) -> float:
    """Rental cost: GPU-hours × price per GPU-hour."""
    return hours * usd_per_gpu_hour


def energy_kwh(hours: float, power_w: float, pue: float) -> float:
    """Facility energy: GPU-hours × board power (kW) × PUE. Board power is the TDP unless given; real average draw
    is lower, CPUs/NICs/switches are left out."""
    return hours * power_w / 1000.0 * pue


@dataclass
class RunEstimate:
    """The answer of ``gpuplan time``. Integers/floats in base units; ``days`` are 86,400 s."""

    total_flop: float
    recompute_flop: float
    tokens: int
    peak_flop_per_s: float
    mfu: float
    mfu_source: str
    gpus: int | None
    gpus_exact: float | None
    seconds: float | None
    gpu_hours: float
    tokens_per_s_per_gpu: float
    achieved_flop_per_s_per_gpu: float
    price: Price | None
    cost_usd: float | None
    cost_usd_range: tuple[float, float] | None
    power_w_per_gpu: float
    pue: float
    energy_kwh: float
    co2_kg: float | None
    solved_for: str
    terms: list[Term] = field(default_factory=list)
    assumptions: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def days(self) -> float | None:
        return None if self.seconds is None else self.seconds / SECONDS_PER_DAY

    @property
    def mfu_impossible(self) -> bool:
        """The MFU solved from a GPU count and a deadline is above 1: those GPUs cannot do it even at peak."""
        return self.solved_for == "mfu" and self.mfu > 1


GPU_COUNT_REL_TOL = 1e-9  # far above float rounding (~1e-16 per operation), far below one GPU in a billion


def round_up_gpus(exact: float, multiple: int = 1, rel_tol: float = GPU_COUNT_REL_TOL) -> int:
    """The smallest multiple of ``multiple`` (at least ``multiple``) that is >= ``exact``, where ``exact`` within a
    relative ``rel_tol`` of a multiple counts as that multiple. ``exact`` comes from a chain of float products and
    quotients (days -> seconds -> FLOPs / (peak × MFU × seconds)), so a deadline that N GPUs meet exactly can come
    back as N·(1 + 1e-16) and a plain ceil would ask for N + 1: the round trip GPUs -> days -> GPUs must reproduce
    its input (IEEE 754 rounding: each operation is within half an ulp, 2**-53 relative)."""
    units = exact / multiple
    nearest = round(units)
    if nearest >= 1 and abs(units - nearest) <= rel_tol * nearest:
        return nearest * multiple
    return max(1, math.ceil(units)) * multiple


def _solve_gpus_default_mfu(total_flop: float, peak: float, seconds: float, gpu_id: str,
                            multiple: int) -> tuple[int, float, float, str]:
    """Smallest GPU count (a multiple of ``multiple``) meeting the deadline with the MFU of its own size tier."""
    for tier in family_tiers(gpu_id):
        exact = gpus_for_seconds(total_flop, peak, seconds, tier.mfu)
        n = round_up_gpus(exact, multiple)
        if tier.min_gpus <= n and (tier.max_gpus is None or n <= tier.max_gpus):
            return n, exact, tier.mfu, tier.source
        if n < tier.min_gpus:  # this tier's MFU would already do with fewer GPUs than the tier starts at
            n = max(n, tier.min_gpus)
            return n, exact, tier.mfu, tier.source
    tier = family_tiers(gpu_id)[-1]
    exact = gpus_for_seconds(total_flop, peak, seconds, tier.mfu)
    return round_up_gpus(exact, multiple), exact, tier.mfu, tier.source


def estimate_run(*, total_flop: float, recompute_flop: float, flop_per_token: float, tokens: int,
                 peak_flop_per_s: float, gpu_id: str | None, gpus: int | None = None, days: float | None = None,
                 mfu: float | None = None, tokens_per_s_per_gpu: float | None = None, gpu_multiple: int = 1,
                 price: Price | None = None, power_w: float | None = None, pue: float = DEFAULT_PUE,
                 co2_kg_per_kwh: float | None = None, step_tokens: int = 1) -> RunEstimate:
    """Solve the time equation for whichever of GPUs, days or MFU is missing and add GPU-hours, cost, energy.

    * ``gpus`` given: days follow (MFU given, from ``tokens_per_s_per_gpu``, or the published default for the size);
    * ``days`` given: the smallest GPU count that meets the deadline, rounded up to ``gpu_multiple``;
    * both given and no MFU: the MFU the run needs;
    * neither: GPU-hours, cost and energy only (they do not depend on the count at a fixed MFU).

    Physically absurd answers are refused with the reason (InputError): a run shorter than one optimizer step
    (each GPU processes at least ``step_tokens`` tokens, one sequence, per step, and at best at its peak), more GPUs
    than ``MAX_GPUS`` (more than exist), and any result that is not a finite number.
    """
    if tokens < 1:
        raise InputError("--tokens", tokens, "must be >= 1")
    if gpus is not None and gpus < 1:
        raise InputError("--gpus", gpus, "must be >= 1")
    if days is not None and not days > 0:
        raise InputError("--days", days, "must be > 0")
    if gpu_multiple < 1:
        raise InputError("--gpu-multiple", gpu_multiple, "must be >= 1")
    if not pue >= 1:
        raise InputError("--pue", pue, "must be >= 1 (facility energy / IT energy)")
    require_finite("--peak-tflops", peak_flop_per_s)
    if days is not None:
        _check_not_shorter_than_a_step(days, step_tokens * flop_per_token / peak_flop_per_s)
    if gpus is not None and tokens < gpus * step_tokens:
        raise InputError("--tokens", tokens, f"is less than one optimizer step on {gpus:,} GPUs (each GPU takes at "
                         f"least one sequence of {step_tokens:,} tokens per step: {gpus * step_tokens:,} tokens)")
    if mfu is not None and tokens_per_s_per_gpu is not None:
        raise InputError("--mfu", mfu, "give --mfu or --tokens-per-gpu-s, not both")
    assumptions: list[str] = []
    warnings: list[str] = []
    if tokens_per_s_per_gpu is not None:
        if not tokens_per_s_per_gpu > 0:
            raise InputError("--tokens-per-gpu-s", tokens_per_s_per_gpu, "must be > 0")
        mfu = tokens_per_s_per_gpu * flop_per_token / peak_flop_per_s
        mfu_source = message("time.assume.mfu_implied", tokens_per_s=f"{tokens_per_s_per_gpu:,.0f}",
                             flop_per_token=f"{flop_per_token:.4g}", peak=f"{peak_flop_per_s / 1e12:g}")
        if mfu > 1:
            warnings.append(message("time.warn.implied_mfu", mfu=f"{mfu:.2f}"))
    elif mfu is not None:
        check_mfu(mfu)
        mfu_source = message("time.assume.mfu_user")

    seconds = exact = None
    n = gpus
    if gpus is not None and days is not None:
        if mfu is not None:
            raise InputError("--days", days, "give two of --gpus, --days and --mfu; the third is solved for")
        seconds = days * SECONDS_PER_DAY
        mfu = mfu_for(total_flop, peak_flop_per_s, gpus, seconds)
        mfu_source = message("time.assume.mfu_deadline")
        solved = "mfu"
        if mfu > 1:
            warnings.append(message("time.warn.mfu_impossible", days=f"{days:g}", gpus=f"{gpus:,}", mfu=f"{mfu:.2f}",
                                    days_at_peak=f"{days * mfu:,.1f}", min_gpus=f"{math.ceil(gpus * mfu):,}"))
        elif mfu > 0.6:
            warnings.append(message("time.warn.mfu_high", mfu=f"{mfu:.0%}"))
    elif days is not None:
        seconds_goal = days * SECONDS_PER_DAY
        if mfu is None:
            if gpu_id is None:
                raise InputError("--mfu", None, "is required without --gpu")
            n, exact, mfu, mfu_source = _solve_gpus_default_mfu(total_flop, peak_flop_per_s, seconds_goal, gpu_id,
                                                                gpu_multiple)
        else:
            exact = gpus_for_seconds(total_flop, peak_flop_per_s, seconds_goal, mfu)
            _check_gpu_count(exact, days)  # before rounding: an infinite count has no ceiling
            n = round_up_gpus(exact, gpu_multiple)
        _check_gpu_count(n, days)
        if tokens < n * step_tokens:
            raise InputError("--days", days, f"is shorter than one optimizer step: meeting it takes {n:,} GPUs, and "
                             f"{tokens:,} tokens do not give each GPU one sequence of {step_tokens:,} tokens")
        seconds = run_seconds(total_flop, peak_flop_per_s, n, mfu)
        solved = "gpus"
    else:
        if mfu is None:
            if gpu_id is None:
                raise InputError("--mfu", None, "is required without --gpu")
            entry = default_mfu(gpu_id, gpus or 1)
            mfu, mfu_source = entry.mfu, entry.source
            if gpus is None:
                assumptions.append(message("time.assume.no_count"))
        if gpus is not None:
            seconds = run_seconds(total_flop, peak_flop_per_s, gpus, mfu)
            solved = "days"
        else:
            solved = "gpu_hours"

    hours = gpu_hours(total_flop, peak_flop_per_s, mfu)  # = GPUs x seconds / 3600 whenever both are known
    achieved = mfu * peak_flop_per_s
    tps = achieved / flop_per_token if flop_per_token else 0.0
    cost = cost_range = None
    if price is not None:
        cost = cost_usd(hours, price.usd_per_gpu_hour)
        if price.low is not None and price.high is not None:
            cost_range = (cost_usd(hours, price.low), cost_usd(hours, price.high))
    watts = power_w
    if watts is None or not watts > 0:
        raise InputError("--gpu-power-w", power_w, "must be > 0 (watts per GPU)")
    kwh = energy_kwh(hours, watts, pue)
    co2 = None if co2_kg_per_kwh is None else kwh * co2_kg_per_kwh
    for name, value in (("total_flop", total_flop), ("mfu", mfu), ("seconds", seconds or 0.0), ("gpu_hours", hours),
                        ("cost_usd", cost or 0.0), ("energy_kwh", kwh), ("co2_kg", co2 or 0.0),
                        ("tokens_per_s_per_gpu", tps), ("required_flop_per_s", _required(total_flop, days))):
        require_finite(name, value)
    terms = [
        Term("total_flop", total_flop, "FLOP/token × tokens", "gpuplan.compute.flops",
             {"flop_per_token": flop_per_token, "tokens": tokens}),
        Term("seconds", seconds or 0.0, "total_flop / (peak × GPUs × MFU)", "seed 004 §7.2.3",
             {"peak_flop_per_s": peak_flop_per_s, "gpus": n, "mfu": mfu}),
        Term("gpu_hours", hours, "total_flop / (peak × MFU) / 3600  (= GPUs × seconds / 3600)", ""),
        Term("energy_kwh", kwh, "GPU-hours × power_w / 1000 × PUE", PUE_SOURCE, {"power_w": watts, "pue": pue}),
    ]
    return RunEstimate(total_flop=total_flop, recompute_flop=recompute_flop, tokens=tokens,
                       peak_flop_per_s=peak_flop_per_s, mfu=mfu, mfu_source=mfu_source, gpus=n, gpus_exact=exact,
                       seconds=seconds, gpu_hours=hours, tokens_per_s_per_gpu=tps,
                       achieved_flop_per_s_per_gpu=achieved, price=price, cost_usd=cost, cost_usd_range=cost_range,
                       power_w_per_gpu=watts, pue=pue, energy_kwh=kwh, co2_kg=co2, solved_for=solved, terms=terms,
                       assumptions=assumptions, warnings=warnings)


def _required(total_flop: float, days: float | None) -> float:
    """FLOP/s the whole cluster must sustain to finish in ``days`` (0 without a deadline)."""
    return total_flop / (days * SECONDS_PER_DAY) if days else 0.0


def _check_not_shorter_than_a_step(days: float, step_s: float) -> None:
    """A deadline shorter than one optimizer step (one sequence on one GPU at 100 % of its peak) has no answer."""
    if days * SECONDS_PER_DAY < step_s:
        raise InputError("--days", days, f"is shorter than one optimizer step: one sequence on one GPU takes at "
                         f"least {step_s:.3g} s at 100 % of its peak")


def _check_gpu_count(n: float, days: float) -> None:
    """A solved GPU count above MAX_GPUS is more GPUs than exist: refuse it rather than print it."""
    if not n <= MAX_GPUS:
        raise InputError("--days", days, f"would need {n:.3g} GPUs, more than exist (at most {MAX_GPUS:.0e} "
                         "is accepted)", hint="give a longer deadline")


@dataclass(frozen=True)
class StatesFloor:
    """The fewest GPUs of one kind that hold a model's training states (weights, gradients, optimizer states and
    master weights) fully sharded over all of them (ZeRO-3 / FSDP). A lower bound on the GPU count of a run:
    activations, temporary buffers and the CUDA context come on top."""

    min_gpus: int
    states_bytes: int  # all training states, unsharded (what one GPU would hold)
    per_gpu_bytes: int  # per GPU at min_gpus
    usable_bytes: int
    precision: str


def states_per_gpu_bytes(params_total: int, precision: str, gpus: int) -> int:
    """Weights + gradients + optimizer states + master weights per GPU with every state sharded over ``gpus`` data-
    parallel ranks (ZeRO-3 with PyTorch FSDP2, AdamW; the ZeRO paper's accounting, arXiv:1910.02054 section 5), from
    the training-memory engine's parameter-count path (gpuplan.train.engine.estimate_training with params only).
    Ignores activations, logits, optimizer-step temporaries and the CUDA context."""
    from gpuplan.train.config import TrainConfig
    from gpuplan.train.engine import estimate_training

    cfg = TrainConfig(precision=precision, optimizer="adamw", framework="torch", dp=gpus, zero=3 if gpus > 1 else 0)
    m = estimate_training(None, cfg, params_total=params_total).memory
    return m.weights_bytes + m.gradients_bytes + m.optimizer_bytes + m.master_weights_bytes


def states_floor(params_total: int, precision: str, usable_bytes: int) -> StatesFloor:
    """The smallest N with ``states_per_gpu_bytes(P, precision, N) <= usable_bytes``: start from
    ceil(states / usable), then step down (or up) while the engine's per-GPU figure says so."""
    if usable_bytes < 1:
        raise InputError("--gpu", usable_bytes, "has no usable memory in the catalog")
    states = states_per_gpu_bytes(params_total, precision, 1)
    n = max(1, -(-states // usable_bytes))
    while n > 1 and states_per_gpu_bytes(params_total, precision, n - 1) <= usable_bytes:
        n -= 1
    while states_per_gpu_bytes(params_total, precision, n) > usable_bytes:
        n += 1
    return StatesFloor(n, states, states_per_gpu_bytes(params_total, precision, n), usable_bytes, precision)
