"""Pipeline schedules: their bubbles and the communication they hide.

Bubbles are given in units of one micro-batch's forward + backward on a stage (``t_micro``), for ``p`` stages and
``v`` virtual stages (model chunks per rank). With the usual split of a backward into an input-gradient half B and
a weight-gradient half W, each as long as the forward F (a layer's backward runs two GEMMs per forward GEMM), one
micro-batch is F + B + W = 3F:

    1f1b           (p − 1)                       Narayanan et al. 2021 (arXiv:2104.04473) §2.2.1
    interleaved    (p − 1) / v                   the same paper, §2.2.2 (Megatron-LM's interleaved 1F1B)
    zero-bubble    (p − 1)(F + B − 2W) / 3F      Qi et al. 2024, "Zero Bubble Pipeline Parallelism" (arXiv:2401.10241)
                   = (p − 1) / 3                 §3, ZB-H1 (the schedule with 1F1B's memory)
    dualpipe       (p/2 − 1)(F&B + B − 3W) / 3F  DeepSeek-V3 technical report (arXiv:2412.19437) §3.2.1, Table 2;
                   = (p/2 − 1) / 3               F&B, a forward and a backward chunk overlapped, lasts F + B + W

DualPipe also overlaps each chunk's expert-parallel all-to-all and pipeline send/receive with the computation of
the other chunk of the pair ("both all-to-all and PP communication can be fully hidden", §3.2.1), keeps two copies
of its stage's parameters (Table 2: 2× parameters) and needs an even number of stages and at least 2·p
micro-batches (deepseek-ai/DualPipe ``dualpipe.py``: ``num_chunks >= num_ranks * 2``).
"""

from __future__ import annotations

from gpuplan.errors import InputError

SCHEDULES = ("1f1b", "interleaved", "zero-bubble", "dualpipe")

# Fraction of a micro-batch's time that the weight-gradient half W takes: F : B : W = 1 : 1 : 1 (both papers' own
# assumption when they state their bubbles in one unit: Qi et al. 2024 §2, DeepSeek-V3 Table 2).
WEIGHT_GRAD_SHARE = 1 / 3


def bubble_slots(schedule: str, pp: int, vpp: int) -> float:
    """Idle micro-batch slots of one step on a stage (see the module docstring for each formula)."""
    if pp <= 1:
        return 0.0
    if schedule in ("1f1b", "interleaved"):
        return (pp - 1) / vpp
    if schedule == "zero-bubble":
        return (pp - 1) * WEIGHT_GRAD_SHARE
    if schedule == "dualpipe":
        return (pp / 2 - 1) * WEIGHT_GRAD_SHARE
    raise InputError("--schedule", schedule, f"must be one of {', '.join(SCHEDULES)}")


def check_schedule(schedule: str, pp: int, vpp: int, microbatches: int) -> None:
    """InputError when a layout cannot run ``schedule``: interleaving needs vpp > 1 (and 1f1b, zero-bubble and
    dualpipe run one chunk per rank: vpp 1); DualPipe needs an even pp and at least 2·pp micro-batches."""
    if schedule not in SCHEDULES:
        raise InputError("--schedule", schedule, f"must be one of {', '.join(SCHEDULES)}")
    if schedule == "interleaved" and pp > 1 and vpp < 2:
        raise InputError("--vpp", vpp, "must be 2 or more with --schedule interleaved")
    if schedule != "interleaved" and vpp > 1:
        raise InputError("--vpp", vpp, f"must be 1 with --schedule {schedule} (interleaving is --schedule interleaved)")
    if schedule == "dualpipe" and pp > 1 and (pp % 2 or microbatches < 2 * pp):
        raise InputError("--schedule", schedule, f"DualPipe needs an even pp and at least 2·pp micro-batches "
                         f"(pp {pp}, {microbatches} micro-batches)")


def schedule_allows(schedule: str | None, pp: int, vpp: int, microbatches: int) -> bool:
    """Whether the layout can run ``schedule`` (None: the Megatron default, 1F1B or interleaved 1F1B)."""
    if schedule is None:
        return True
    try:
        check_schedule(schedule, pp, vpp, microbatches)
    except InputError:
        return False
    return True


def hides_ep_and_pp(schedule: str | None) -> bool:
    """DualPipe overlaps a chunk's all-to-all and pipeline transfers with the paired chunk's computation."""
    return schedule == "dualpipe"


# SMs DeepSeek-V3 gives the all-to-all kernels that run beside computation (report section 3.2.2: "only 20 SMs are
# sufficient to fully utilize the bandwidths of IB and NVLink"), of the H800's 132.
COMM_SMS = 20


def comm_sm_slowdown(sms: int | None) -> float:
    """Computation overlapped with DualPipe's all-to-all runs on the SMs left to it: sms / (sms − COMM_SMS)
    (1.0 when the SM count is unknown)."""
    if not sms or sms <= COMM_SMS:
        return 1.0
    return sms / (sms - COMM_SMS)


def exposed_after_overlap_s(comm_s: float, compute_s: float) -> float:
    """Communication overlapped with computation on separate streams (or SMs): only what outlasts it shows,
    max(0, comm − compute)."""
    return max(0.0, comm_s - compute_s)
