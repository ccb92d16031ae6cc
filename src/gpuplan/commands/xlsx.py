"""``--xlsx FILE`` of ``time`` and ``plan``: the numbers the spreadsheet's input cells start from."""

from __future__ import annotations

from typing import Any

from gpuplan.xlsx import Row, cluster_rows, run_rows, write_workbook


def _cluster_section(c) -> tuple[list[Row], list[Row]]:
    i = c.inputs
    return cluster_rows(spare=i.spare, rule=i.round_rule, unit=c.bill.unit, gpus_per_node=i.gpus_per_node,
                        node_overhead_w=c.bill.node_overhead_w, rack_kw=i.rack_w / 1000,
                        usd_per_server=i.usd_per_server, usd_per_kwh=i.usd_per_kwh, years=i.years, fx=c.fx,
                        currency=c.currency)


def write_time(values: Any, run) -> None:
    """The time equation of ``gpuplan time`` (and its cluster bill) with the solved GPU count as an input."""
    est, flops = run.est, run.flops
    price = run.cluster.usd_per_gpu_hour if run.cluster is not None else (run.price.usd_per_gpu_hour
                                                                           if run.price else None)
    sections = [run_rows(params=flops.dense_flop_per_token / 6, flop_per_token=flops.model_flop_per_token,
                         tokens=est.tokens, peak_flop_per_s=est.peak_flop_per_s, mfu=est.mfu, gpus=est.gpus or 1,
                         gpu_power_w=est.power_w_per_gpu, pue=est.pue, usd_per_gpu_hour=price)]
    if run.cluster is not None:
        sections.append(_cluster_section(run.cluster))
    write_workbook(values.xlsx, "gpuplan time", sections)


def write_plan(values: Any, r) -> None:
    """The winner of ``gpuplan plan``: its GPUs and MFU as inputs (and its cluster bill)."""
    from gpuplan.compute.timecost import DEFAULT_PUE
    from gpuplan.hardware.catalog import get_gpu
    from gpuplan.options.time import PRECISION_DTYPE

    win, flops = r.win, r.flops
    gpu = get_gpu(win.gpu_id)
    step_tokens = r.global_batch * r.seq
    tokens = -(-(values.tokens or 0) // step_tokens) * step_tokens  # the planner runs whole optimizer steps
    price = r.cluster.usd_per_gpu_hour if r.cluster is not None else None
    sections = [run_rows(params=flops.dense_flop_per_token / 6, flop_per_token=flops.model_flop_per_token,
                         tokens=tokens, peak_flop_per_s=gpu.peak_flop_per_s_for(
                             PRECISION_DTYPE[values.precision]), mfu=win.mfu, gpus=win.gpus, gpu_power_w=gpu.tdp_w,
                         pue=values.pue if values.pue is not None else DEFAULT_PUE, usd_per_gpu_hour=price,
                         tokens_label="training tokens D, in whole optimizer steps")]
    if r.cluster is not None:
        sections.append(_cluster_section(r.cluster))
    write_workbook(values.xlsx, "gpuplan plan: " + win.gpu_id, sections)
