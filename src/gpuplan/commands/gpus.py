"""``gpuplan gpus [QUERY]``: the hardware catalog entries matching a query."""

from __future__ import annotations

from typing import Any

from gpuplan.hardware.catalog import GpuSpec, load_catalog


def matching(query: str | None) -> list[GpuSpec]:
    q = (query or "").lower()
    return [g for g in load_catalog().values()
            if q in g.id or q in g.name.lower() or q in g.vendor.lower() or any(q in a.lower() for a in g.aliases)]


def payload(values: Any) -> list[dict[str, Any]]:
    """The JSON of ``gpuplan gpus [QUERY] --json``."""
    return [{"id": g.id, "name": g.name, "vendor": g.vendor, "memory_usable_bytes": g.memory_usable_bytes,
             "memory_marketed_bytes": g.memory_marketed_bytes, "memory_nvidia_smi_bytes": g.memory_nvidia_smi_bytes,
             "peak_flop_per_s": g.peak_flop_per_s, "hbm_bandwidth_bytes_per_s": g.hbm_bandwidth_bytes_per_s,
             "interconnect": g.interconnect, "interconnect_bytes_per_s": g.interconnect_bytes_per_s,
             "tdp_w": g.tdp_w, "gpus_per_node": g.gpus_per_node,
             "inter_node_bytes_per_s": g.inter_node_bytes_per_s, "inter_node_source": g.inter_node_source,
             "bf16_fallback": g.bf16_fallback, "source": g.source, "source_date": g.source_date or None}
            for g in matching(values.query)]
