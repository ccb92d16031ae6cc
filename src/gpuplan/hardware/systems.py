"""The server catalog (``gpuplan/data/systems.toml``): the node each GPU is bought in, in base units.

Used by ``--cluster``: GPUs per node, compute NICs per node and their line rate, the node's maximum input power
(the non-GPU part: CPUs, NICs, switches, fans, supply losses) and its host memory, each with its source.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from gpuplan.errors import InputError
from gpuplan.units import GiB

_KEYS = {"gpu", "name", "gpus_per_node", "nics_per_node", "nic_Gbps", "node_power_max_W", "host_memory_GiB",
         "estimate", "source", "note"}


@dataclass(frozen=True)
class SystemSpec:
    """One server: counts, bits/s, watts, bytes."""

    gpu: str
    name: str
    gpus_per_node: int
    nics_per_node: int
    nic_bits_per_s: float
    node_power_max_w: float
    host_memory_bytes: int
    estimate: bool
    source: str
    note: str


def _parse(entry: dict[str, Any]) -> SystemSpec:
    gpu = str(entry.get("gpu", "<missing gpu>"))
    if set(entry) != _KEYS:
        raise ValueError(f"systems.toml: {gpu!r}: keys must be {sorted(_KEYS)}, got {sorted(entry)}")
    for key in ("gpus_per_node", "nics_per_node", "nic_Gbps", "node_power_max_W", "host_memory_GiB"):
        value = entry[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"systems.toml: {gpu!r}: {key} must be a positive number, got {value!r}")
    if not str(entry["source"]).strip():
        raise ValueError(f"systems.toml: {gpu!r}: needs a source")
    return SystemSpec(gpu=gpu, name=entry["name"], gpus_per_node=int(entry["gpus_per_node"]),
                      nics_per_node=int(entry["nics_per_node"]), nic_bits_per_s=float(entry["nic_Gbps"]) * 1e9,
                      node_power_max_w=float(entry["node_power_max_W"]),
                      host_memory_bytes=round(entry["host_memory_GiB"] * GiB), estimate=bool(entry["estimate"]),
                      source=entry["source"], note=entry["note"])


@cache
def load_systems() -> dict[str, SystemSpec]:
    """All servers by GPU id, validated: each names a catalog GPU, once, and draws more than its GPUs' TDP."""
    from gpuplan.hardware.catalog import load_catalog

    catalog = load_catalog()
    text = resources.files("gpuplan").joinpath("data", "systems.toml").read_text(encoding="utf-8")
    out: dict[str, SystemSpec] = {}
    for raw in tomllib.loads(text).get("system", []):
        spec = _parse(raw)
        if spec.gpu not in catalog or spec.gpu in out:
            raise ValueError(f"systems.toml: {spec.gpu!r} is not a catalog GPU, or appears twice")
        if spec.node_power_max_w <= spec.gpus_per_node * catalog[spec.gpu].tdp_w:
            raise ValueError(f"systems.toml: {spec.gpu!r}: node power must exceed its GPUs' TDP")
        out[spec.gpu] = spec
    return out


def get_system(gpu_id: str) -> SystemSpec:
    """The server of catalog GPU ``gpu_id``; InputError naming the GPUs that have one."""
    systems = load_systems()
    if gpu_id not in systems:
        raise InputError("--gpu", gpu_id, "has no server entry for --cluster (gpuplan/data/systems.toml)",
                         hint="servers are known for: " + ", ".join(sorted(systems)))
    return systems[gpu_id]
