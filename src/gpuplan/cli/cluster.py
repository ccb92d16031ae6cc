"""The cluster bill (``--cluster`` of ``time`` and ``plan``) as a table, in ``--lang``."""

from __future__ import annotations

from gpuplan.cli.render import render_table, term_lines
from gpuplan.i18n import localize, t
from gpuplan.units import SECONDS_PER_DAY, SECONDS_PER_HOUR, format_bytes


def render_cluster(r, lang: str, explain: bool) -> list[str]:
    """The section's lines: title, table, and with ``explain`` each number's formula and source."""
    b, s = r.bill, r.system

    def tr(key: str, **fields) -> str:
        return t(key, lang, **fields)

    def money(key: str) -> str:
        value = r.money(key)
        return tr("cluster.none") if value is None else f"{value:,.0f}"

    est = tr("cluster.estimate")
    c = r.inputs
    fields = {"run": f"{b.gpus_run:,}", "spare": c.spare, "spared": f"{b.gpus_with_spares:,}",
              "rule": r.round_rule, "unit": b.unit}
    gpus_note = tr("cluster.note.gpus_pow2" if r.round_rule == "pow2" else "cluster.note.gpus", **fields)
    rows = [
        (tr("cluster.row.gpus"), f"{b.gpus:,}", gpus_note),
        (tr("cluster.row.servers"), f"{b.servers:,}", tr("cluster.note.servers", gpus_per_node=c.gpus_per_node)),
        (tr("cluster.row.node_kw"), f"{b.node_w / 1000:,.2f}",
         tr("cluster.note.node_kw", gpus_per_node=c.gpus_per_node, gpu_w=c.gpu_power_w, overhead=b.node_overhead_w)),
        (tr("cluster.row.racks"), f"{b.racks:,}",
         tr("cluster.note.racks", per_rack=b.nodes_per_rack, rack_kw=c.rack_w / 1000)),
        (tr("cluster.row.it_mw"), f"{b.it_w / 1e6:,.3f}", ""),
        (tr("cluster.row.facility_mw"), f"{b.facility_w / 1e6:,.3f}", tr("cluster.note.pue", pue=r.pue)),
    ]
    seconds = c.seconds
    if b.energy_kwh is not None:
        rows.append((tr("cluster.row.energy"), f"{b.energy_kwh / 1000:,.1f}",
                     tr("cluster.note.energy", days=seconds / SECONDS_PER_DAY)))
    net = b.network
    rows += [
        (tr("cluster.row.network"), f"{b.per_gpu_network_bytes_per_s / 1e9:,.1f}",
         tr("cluster.note.network", nics=c.nics_per_node, gbps=c.nic_bits_per_s / 1e9)),
        (tr("cluster.row.switches"), f"{net.switches:,}",
         tr("cluster.note.switches", tiers=net.tiers, radix=r.radix, leaf=net.leaf_switches, spine=net.spine_switches,
            core=net.core_switches)),
        (tr("cluster.row.links"), f"{net.links:,} / {net.transceivers:,}",
         tr("cluster.note.links", endpoints=net.endpoints)),
        (tr("cluster.row.checkpoint"), format_bytes(b.checkpoint_bytes), tr("cluster.note.checkpoint")),
        (tr("cluster.row.checkpoint_write"), f"{b.checkpoint_write_s:,.1f}",
         tr("cluster.note.checkpoint_write", gbps=c.storage_bytes_per_s / 1e9)),
    ]
    if b.dataset_bytes is not None:
        rows.append((tr("cluster.row.dataset"), format_bytes(b.dataset_bytes),
                     tr("cluster.note.dataset", bytes_per_token=c.bytes_per_token)))
    rows.append((tr("cluster.row.host_memory"), format_bytes(b.host_memory_per_node_bytes),
                 tr("cluster.note.host_memory", available=format_bytes(b.host_memory_available_bytes))))
    if b.rent_usd is not None:
        rows.append((tr("cluster.row.rent"), money("rent_usd"),
                     tr("cluster.note.rent", gpus=b.gpus, hours=seconds / SECONDS_PER_HOUR,
                        price=r.usd_per_gpu_hour * r.fx, estimate=est if r.rent_kind == "estimate" else "")))
    elif seconds is None:
        rows.append((tr("cluster.row.rent"), tr("cluster.none"), tr("cluster.note.no_run")))
    else:
        rows.append((tr("cluster.row.rent"), tr("cluster.none"), tr("cluster.note.no_price", gpu=s.gpu)))
    if b.capex_usd is None:
        rows.append((tr("cluster.row.capex"), tr("cluster.none"), tr("cluster.note.no_server", gpu=s.gpu)))
    else:
        rows.append((tr("cluster.row.capex"), money("capex_usd"),
                     tr("cluster.note.capex", servers=b.servers, price=r.usd_per_server * r.fx,
                        estimate=est if r.server_kind == "estimate" else "")))
        if b.depreciation_usd is not None:
            rows += [
                (tr("cluster.row.depreciation"), money("depreciation_usd"),
                 tr("cluster.note.depreciation", years=r.years)),
                (tr("cluster.row.power_cost"), money("power_cost_usd"),
                 tr("cluster.note.power_cost", price=r.usd_per_kwh * r.fx)),
                (tr("cluster.row.purchase"), money("purchase_usd"), tr("cluster.note.purchase")),
            ]
    names = ("quantity", "value", "note")
    lines = ["", tr("cluster.title", system=s.name, currency=r.currency),
             render_table([tr(f"cluster.header.{n}") for n in names], rows, "lrl")]
    if explain:
        lines += term_lines(b.terms, lang)
    lines += [f"- {localize(a, lang)}" for a in r.assumptions]
    return lines
