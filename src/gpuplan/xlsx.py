"""``--xlsx FILE`` of ``time`` and ``plan``: the run (and, with ``--cluster``, its bill) as a spreadsheet whose
input cells drive live formula cells, so a planner can change the MFU, the GPU count or a price and see the days,
servers, power and cost follow. openpyxl (extra ``[xlsx]``) is imported only when a file is asked for.

The formulas are gpuplan's own (seed 004 §7.2.3 for the time; gpuplan.compute.cluster for the bill), written with
ROUND / ROUNDUP / INT / IF / LOG / MAX only, so any spreadsheet computes them; ROUND(x, 6) inside ROUNDUP keeps a
product such as 880 × 1.05 from rounding up past 924 (the tolerance gpuplan's own round-up applies).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpuplan.errors import InputError


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    value: Any  # a number or text for an input; an Excel formula ("=...") with {key} placeholders for a result
    unit: str = ""


def check_xlsx_path(path: str | Path) -> Path:
    """The output file: a ``.xlsx`` name in an existing folder (checked before any work)."""
    p = Path(path).expanduser()
    if p.suffix.lower() != ".xlsx":
        raise InputError("--xlsx", str(path), "must end in .xlsx")
    if not p.parent.exists():
        raise InputError("--xlsx", str(path), f"folder {str(p.parent)!r} does not exist")
    return p


def run_rows(*, params: float, flop_per_token: float, tokens: int, peak_flop_per_s: float, mfu: float, gpus: int,
             gpu_power_w: float, pue: float, usd_per_gpu_hour: float | None,
             tokens_label: str = "training tokens D") -> tuple[list[Row], list[Row]]:
    """(inputs, results) of the time equation: total FLOPs = (6·P + attention FLOP/token) × D; days = FLOPs /
    (peak × GPUs × MFU) / 86,400; GPU-hours, cost and GPU energy."""
    inputs = [
        Row("params", "parameters in matrix multiplies P", params, "count"),
        Row("extra_flop", "attention FLOP per token (beyond 6·P)", flop_per_token - 6 * params, "FLOP"),
        Row("tokens", tokens_label, tokens, "tokens"),
        Row("peak", "peak FLOP/s per GPU", peak_flop_per_s, "FLOP/s"),
        Row("mfu", "MFU", mfu, "fraction"),
        Row("gpus_run", "GPUs", gpus, "count"),
        Row("gpu_w", "power per GPU", gpu_power_w, "W"),
        Row("pue", "PUE", pue, ""),
        Row("price", "rent per GPU-hour", usd_per_gpu_hour if usd_per_gpu_hour is not None else 0.0, "USD"),
    ]
    results = [
        Row("total_flop", "total FLOPs (6·P·D + attention)", "=(6*{params}+{extra_flop})*{tokens}", "FLOP"),
        Row("days", "days", "={total_flop}/({peak}*{gpus_run}*{mfu})/86400", "days"),
        Row("gpu_hours", "GPU-hours", "={gpus_run}*{days}*24", "h"),
        Row("cost", "rent of the run's GPUs", "={gpu_hours}*{price}", "USD"),
        Row("energy_gpu", "GPU energy", "={gpu_hours}*{gpu_w}/1000*{pue}/1000", "MWh"),
    ]
    return inputs, results


def cluster_rows(*, spare: float, rule: str, unit: int, gpus_per_node: int, node_overhead_w: float, rack_kw: float,
                 usd_per_server: float | None, usd_per_kwh: float, years: float, fx: float,
                 currency: str) -> tuple[list[Row], list[Row]]:
    """(inputs, results) of the cluster bill, the formulas of gpuplan.compute.cluster."""
    inputs = [
        Row("spare", "spare fraction", spare, "fraction"),
        Row("rule", "rounding rule (unit, pow2 or node)", rule, ""),
        Row("unit", "parallel unit (lcm of TP·PP·CP and node size)", unit, "GPUs"),
        Row("gpn", "GPUs per server", gpus_per_node, "count"),
        Row("overhead", "server power besides its GPUs", node_overhead_w, "W"),
        Row("rack_kw", "IT power budget per rack", rack_kw, "kW"),
        Row("server_usd", "price per server", usd_per_server if usd_per_server is not None else 0.0, "USD"),
        Row("usd_per_kwh", "electricity per kWh", usd_per_kwh, "USD"),
        Row("years", "depreciation years", years, "years"),
        Row("fx", f"{currency} per USD", fx, currency),
    ]
    results = [
        Row("spared", "GPUs with spares", "=ROUNDUP(ROUND({gpus_run}*(1+{spare}),6),0)", "GPUs"),
        Row("cluster_gpus", "cluster GPUs",
            '=IF({rule}="pow2",{unit}*2^MAX(0,ROUNDUP(ROUND(LOG({spared}/{unit},2),9),0)),'
            'ROUNDUP(ROUND({spared}/{unit},9),0)*{unit})', "GPUs"),
        Row("servers", "servers", "=ROUNDUP({cluster_gpus}/{gpn},0)", "count"),
        Row("node_w", "power per server", "={gpn}*{gpu_w}+{overhead}", "W"),
        Row("per_rack", "servers per rack", "=INT({rack_kw}*1000/{node_w})", "count"),
        Row("racks", "racks", "=ROUNDUP({servers}/{per_rack},0)", "count"),
        Row("facility_mw", "facility power", "={servers}*{node_w}*{pue}/1000000", "MW"),
        Row("energy", "energy for the run, every server on", "={facility_mw}*{days}*24", "MWh"),
        Row("rent", "rent of the cluster", "={cluster_gpus}*{days}*24*{price}", "USD"),
        Row("capex", "purchase of the servers", "={servers}*{server_usd}", "USD"),
        Row("depreciation", "run's share of the purchase", "={capex}*{days}/({years}*365.25)", "USD"),
        Row("power_cost", "electricity", "={energy}*1000*{usd_per_kwh}", "USD"),
        Row("purchase", "buy: run's cost", "={depreciation}+{power_cost}", "USD"),
        Row("rent_fx", f"rent in {currency}", "={rent}*{fx}", currency),
        Row("purchase_fx", f"buy: run's cost in {currency}", "={purchase}*{fx}", currency),
        Row("capex_fx", f"purchase of the servers in {currency}", "={capex}*{fx}", currency),
    ]
    return inputs, results


def write_workbook(path: str | Path, title: str, sections: list[tuple[list[Row], list[Row]]]) -> Path:
    """One sheet: column A the label, B the value (inputs as numbers, results as formulas), C the unit, D the
    key. Inputs of every section come first, then the results."""
    try:
        from openpyxl import Workbook
        from openpyxl.styles import Font, PatternFill
    except ImportError:
        raise InputError("--xlsx", str(path), "needs openpyxl: pip install 'gpuplan[xlsx]'") from None
    p = check_xlsx_path(path)
    inputs = [r for section in sections for r in section[0]]
    results = [r for section in sections for r in section[1]]
    wb = Workbook()
    ws = wb.active
    ws.title = "gpuplan"
    ws.append([title])
    ws["A1"].font = Font(bold=True)
    ws.append(["inputs (change these)", "value", "unit", "key"])
    cells: dict[str, str] = {}
    fill = PatternFill("solid", fgColor="FFF2CC")
    for row in inputs:
        ws.append([row.label, row.value, row.unit, row.key])
        cells[row.key] = f"B{ws.max_row}"
        ws.cell(ws.max_row, 2).fill = fill
    ws.append([])
    ws.append(["results (formulas)", "value", "unit", "key"])
    for row in results:
        ws.append([row.label, None, row.unit, row.key])
        cells[row.key] = f"B{ws.max_row}"
    for row in results:
        ws[cells[row.key]] = row.value.format(**cells)
    for col, width in (("A", 46), ("B", 22), ("C", 10), ("D", 14)):
        ws.column_dimensions[col].width = width
    wb.save(p)
    return p
