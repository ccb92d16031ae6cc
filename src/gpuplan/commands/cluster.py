"""``--cluster`` for ``time`` and ``plan``: the option values and the run -> the cluster bill and its JSON."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from gpuplan.errors import InputError
from gpuplan.i18n import message

MONEY_KEYS = ("rent_usd", "capex_usd", "depreciation_usd", "power_cost_usd", "purchase_usd")


@dataclass
class ClusterResult:
    bill: Any  # gpuplan.compute.cluster.ClusterBill
    inputs: Any  # gpuplan.compute.cluster.ClusterInputs
    system: Any  # gpuplan.hardware.systems.SystemSpec
    currency: str
    fx: float
    usd_per_gpu_hour: float | None
    rent_kind: str | None
    usd_per_server: float | None
    server_kind: str | None
    usd_per_kwh: float
    years: float
    pue: float
    round_rule: str
    radix: int
    assumptions: list[str] = field(default_factory=list)

    def money(self, key: str) -> float | None:
        """A money line of the bill in the output currency (None where it has no value)."""
        usd = self.bill.purchase_usd if key == "purchase_usd" else getattr(self.bill, key)
        return None if usd is None else usd * self.fx


def currency_of(values: Any) -> tuple[str, float]:
    """(ISO code, units per USD) from --currency / --fx; USD needs no rate, any other currency one."""
    code = str(values.currency or "USD").strip().upper()
    if not re.fullmatch(r"[A-Z]{3}", code):
        raise InputError("--currency", values.currency, "must be a three-letter ISO 4217 code (USD, CNY, EUR)")
    fx = values.fx
    if code == "USD":
        if fx is not None and fx != 1:
            raise InputError("--fx", fx, "must be 1 (or left out) with --currency USD")
        return code, 1.0
    if fx is None:
        raise InputError("--fx", None, f"is required with --currency {code}: the units of {code} per US dollar",
                         hint="e.g. --currency CNY --fx 7.2")
    return code, fx


def cluster_bill(values: Any, *, gpu: Any, gpus: int, model_parallel: int, gpus_per_node: int | None,
                 seconds: float | None, tokens: int | None, params_total: int, precision: str, framework: str,
                 staged_per_gpu_bytes: float | None, price: Any, gpu_power_w: float | None = None,
                 pue: float | None = None) -> ClusterResult:
    """The bill of a run of ``gpus`` GPUs for ``seconds``; ``price`` is the --price entry (None: the table's
    newest entry for the GPU, when it has one)."""
    from gpuplan.compute.cluster import (
        ClusterInputs,
        checkpoint_bytes,
        estimate_cluster,
    )
    from gpuplan.compute.prices import (
        default_depreciation,
        default_power_price,
        load_prices,
        load_server_prices,
    )
    from gpuplan.compute.timecost import DEFAULT_PUE, PUE_SOURCE
    from gpuplan.hardware.systems import get_system

    code, fx = currency_of(values)
    system = get_system(gpu.id)
    node = gpus_per_node or system.gpus_per_node
    if price is None:
        mine = [p for p in load_prices() if p.gpu == gpu.id]
        price = max(mine, key=lambda p: p.date) if mine else None
    server = load_server_prices().get(gpu.id)
    usd_per_server = values.server_usd if values.server_usd is not None else (server.usd_per_server if server else None)
    power_price = default_power_price()
    usd_per_kwh = values.power_usd_per_kwh if values.power_usd_per_kwh is not None else power_price.usd_per_kwh
    dep = default_depreciation()
    years = values.years if values.years is not None else dep.years
    pue_value = pue if pue is not None else DEFAULT_PUE
    ckpt = checkpoint_bytes(params_total, precision, framework)
    staged = staged_per_gpu_bytes if staged_per_gpu_bytes is not None else ckpt / gpus
    server_source = ("given (--server-usd)" if values.server_usd is not None else
                     f"{server.source} ({server.date}, {server.kind})" if server else "")
    rent_source = "" if price is None else (f"{price.source} ({price.date}, {price.kind})" if price.date
                                            else price.source)
    inputs = ClusterInputs(
        gpus=gpus, model_parallel=model_parallel, gpus_per_node=node,
        nics_per_node=max(1, -(-system.nics_per_node * node // system.gpus_per_node)),
        nic_bits_per_s=system.nic_bits_per_s, node_power_max_w=system.node_power_max_w, gpu_tdp_w=gpu.tdp_w,
        gpu_power_w=gpu_power_w or gpu.tdp_w, host_memory_bytes=system.host_memory_bytes,
        system_name=system.name, system_source=system.source, checkpoint_bytes=ckpt, staged_per_gpu_bytes=staged,
        tokens=tokens, seconds=seconds, spare=values.spare, round_rule=values.round, rack_w=values.rack_kw * 1000,
        pue=pue_value, pue_source=PUE_SOURCE if pue is None else "given (--pue)", switch_radix=values.switch_radix,
        storage_bytes_per_s=values.storage_gbps * 1e9, bytes_per_token=values.bytes_per_token,
        usd_per_gpu_hour=None if price is None else price.usd_per_gpu_hour, rent_source=rent_source,
        usd_per_server=usd_per_server, server_source=server_source, usd_per_kwh=usd_per_kwh,
        power_price_source=("given (--power-usd-per-kwh)" if values.power_usd_per_kwh is not None
                            else f"{power_price.source} ({power_price.date})"),
        years=years, years_source="given (--years)" if values.years is not None else dep.source,
        system_gpus_per_node=system.gpus_per_node)
    bill = estimate_cluster(inputs)
    notes = [message("cluster.assume.system_estimate" if system.estimate else "cluster.assume.system",
                     system=system.name, source=system.source, note=system.note)]
    if node != system.gpus_per_node:
        notes.append(message("cluster.assume.node_size", node=node, system=system.name,
                             system_gpus=system.gpus_per_node))
    if gpu.id.startswith("ascend"):
        notes.append(message("cluster.assume.hccl"))
    if staged_per_gpu_bytes is None:
        notes.append(message("cluster.assume.staged_sharded", gpus=f"{gpus:,}"))
    if price is None:
        notes.append(message("cluster.assume.no_rent", gpu=gpu.id))
    elif price.kind == "estimate":
        notes.append(message("cluster.assume.rent_estimate", source=price.source))
    if usd_per_server is None:
        notes.append(message("cluster.assume.no_server", gpu=gpu.id))
    elif values.server_usd is None and server.kind == "estimate":
        notes.append(message("cluster.assume.server_estimate", source=server.source))
    if code != "USD":
        notes.append(message("cluster.assume.fx", code=code, fx=f"{fx:g}"))
    return ClusterResult(bill=bill, inputs=inputs, system=system, currency=code, fx=fx,
                         usd_per_gpu_hour=inputs.usd_per_gpu_hour, rent_kind=None if price is None else price.kind,
                         usd_per_server=usd_per_server,
                         server_kind="given" if values.server_usd is not None else (server.kind if server else None),
                         usd_per_kwh=usd_per_kwh, years=years, pue=pue_value, round_rule=values.round,
                         radix=values.switch_radix, assumptions=notes)


def cluster_json(r: ClusterResult, explain: bool) -> dict[str, Any]:
    """The ``"cluster"`` object of the JSON: the bill in base units (USD), the currency lines converted."""
    out = {**r.bill.as_dict(), "system": r.system.name, "system_is_estimate": r.system.estimate,
           "round_rule": r.round_rule, "switch_radix": r.radix, "pue": r.pue,
           "usd_per_gpu_hour": r.usd_per_gpu_hour, "rent_price_kind": r.rent_kind,
           "usd_per_server": r.usd_per_server, "server_price_kind": r.server_kind, "usd_per_kwh": r.usd_per_kwh,
           "depreciation_years": r.years, "currency": r.currency, "fx_per_usd": r.fx,
           "in_currency": {key.removesuffix("_usd"): r.money(key) for key in MONEY_KEYS},
           "assumptions": [str(a) for a in r.assumptions]}
    if explain:
        out["terms"] = [t.as_dict() for t in r.bill.terms]
    return out

