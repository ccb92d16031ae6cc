"""The accelerator catalog: ``gpuplan/data/gpus.toml`` loaded into :class:`GpuSpec` records in base units.

Marketed memory is stored as the datasheet's decimal GB x 1e9, even though vendors' HBM "GB" is physically GiB
(an "80GB" H100 carries 80 GiB of HBM); ``memory_usable_bytes`` is the total the CUDA runtime reports to a process
(``torch.cuda.get_device_properties(i).total_memory``), which is the figure to plan with; ``memory_nvidia_smi_bytes``
is the larger nvidia-smi "Total" (the driver reserves the difference), or None where the catalog has none.
Throughput is dense (no sparsity) peak FLOP/s per dtype; a dtype that is absent is unknown, except that a part
without bf16 units names the dtype it trains bf16 models in (``bf16_fallback``: fp16 on V100 and T4).
Each entry also carries what the planner needs of the system the part is sold in: the per-GPU network bandwidth
between nodes (``inter_node_GBps`` with its ``inter_node_source``) and the GPUs per node (``gpus_per_node``).
"""

from __future__ import annotations

import difflib
import tomllib
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from gpuplan.errors import InputError
from gpuplan.units import GB, MiB

# TOML key -> dtype name; every value is in units of 10^12 per second.
_THROUGHPUT_KEYS = {"fp32_TFLOPs": "fp32", "tf32_TFLOPs": "tf32", "bf16_TFLOPs": "bf16", "fp16_TFLOPs": "fp16",
                    "fp8_TFLOPs": "fp8", "int8_TOPs": "int8", "fp4_TFLOPs": "fp4"}
_REQUIRED_STR = ("id", "name", "vendor", "interconnect", "source", "source_note", "inter_node_source")
_REQUIRED_NUM = ("memory_marketed_GB", "memory_usable_MiB", "fp16_TFLOPs", "hbm_bandwidth_GBps",
                 "interconnect_GBps", "tdp_W", "inter_node_GBps", "gpus_per_node")
_OPTIONAL = ("memory_usable_note", "source_date", "bf16_fallback")
_OPTIONAL_NUM = ("memory_nvidia_smi_MiB",)
_ALLOWED = {*_REQUIRED_STR, *_REQUIRED_NUM, *_OPTIONAL, *_OPTIONAL_NUM, *_THROUGHPUT_KEYS, "aliases"}
_DTYPE_KEYS = {dtype: key for key, dtype in _THROUGHPUT_KEYS.items()}


def catalog_field(dtype: str) -> str:
    """The gpus.toml key holding the peak of ``dtype`` (``bf16`` -> ``bf16_TFLOPs``), for error messages."""
    key = dtype.strip().lower()
    return _DTYPE_KEYS.get(_DTYPE_ALIASES.get(key, key), f"{key}_TFLOPs")
_DTYPE_ALIASES = {"float32": "fp32", "float16": "fp16", "half": "fp16", "bfloat16": "bf16", "float8": "fp8"}


class CatalogError(ValueError):
    """The packaged catalog data is malformed (a bug in gpus.toml, not bad user input)."""


@dataclass(frozen=True)
class GpuSpec:
    """One accelerator, all quantities in base units (bytes, FLOP/s, bytes/s, W)."""

    id: str
    name: str
    vendor: str
    aliases: tuple[str, ...]
    memory_marketed_bytes: int
    memory_usable_bytes: int  # CUDA-runtime total (torch total_memory / cudaMemGetInfo total)
    memory_nvidia_smi_bytes: int | None  # nvidia-smi "Total"; >= memory_usable_bytes; None when unknown or not NVIDIA
    peak_flop_per_s: dict[str, float] = field(hash=False)  # dense peak per dtype; treat as read-only
    hbm_bandwidth_bytes_per_s: float
    interconnect: str
    interconnect_bytes_per_s: float  # per GPU, one direction, to peers inside the node
    tdp_w: float
    source: str
    notes: str
    inter_node_bytes_per_s: float | None = None  # per GPU, one direction, to GPUs in other nodes (the NIC)
    inter_node_source: str = ""
    gpus_per_node: int = 8
    bf16_fallback: str | None = None  # dtype bf16 models train in where the part has no bf16 units
    source_date: str = ""  # the datasheet's date or revision, where the entry gives one

    def peak_flop_per_s_for(self, dtype: str) -> float | None:
        """Dense peak FLOP/s (OP/s for int8) for ``dtype``, or None when the catalog has no figure."""
        key = dtype.strip().lower()
        return self.peak_flop_per_s.get(_DTYPE_ALIASES.get(key, key))

    def compute_dtype(self, dtype: str) -> str:
        """The dtype ``dtype`` runs in on this part: bf16 becomes ``bf16_fallback`` (fp16 on V100, T4) where the
        part has no bf16 figure; every other dtype is itself."""
        key = _DTYPE_ALIASES.get(dtype.strip().lower(), dtype.strip().lower())
        if key == "bf16" and self.peak_flop_per_s_for("bf16") is None and self.bf16_fallback:
            return self.bf16_fallback
        return key


def _normalize(name: str) -> str:
    """Lower-case and collapse spaces/underscores to '-' so 'H100 SXM' and 'h100_sxm' match 'h100-sxm'."""
    return "-".join(name.strip().lower().replace("_", " ").split())


def _positive(gpu_id: str, entry: dict[str, Any], key: str) -> float:
    value = entry[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise CatalogError(f"gpus.toml: gpu {gpu_id!r}: key {key!r} must be a positive number, got {value!r}")
    return float(value)


def _parse_entry(entry: dict[str, Any]) -> GpuSpec:
    """Validate one ``[[gpu]]`` table and convert it to a :class:`GpuSpec`."""
    gpu_id = str(entry.get("id", "<missing id>"))
    for key in (*_REQUIRED_STR, *_REQUIRED_NUM, "aliases"):
        if key not in entry:
            raise CatalogError(f"gpus.toml: gpu {gpu_id!r}: missing required key {key!r}")
    unknown = sorted(set(entry) - _ALLOWED)
    if unknown:
        raise CatalogError(f"gpus.toml: gpu {gpu_id!r}: unknown key(s) {unknown}")
    for key in (k for k in (*_REQUIRED_STR, *_OPTIONAL) if k in entry):
        if not isinstance(entry[key], str) or not entry[key].strip():
            raise CatalogError(f"gpus.toml: gpu {gpu_id!r}: key {key!r} must be a non-empty string")
    aliases = entry["aliases"]
    if not isinstance(aliases, list) or not all(isinstance(a, str) and a.strip() for a in aliases):
        raise CatalogError(f"gpus.toml: gpu {gpu_id!r}: key 'aliases' must be a list of non-empty strings")
    nums = {key: _positive(gpu_id, entry, key) for key in (*_REQUIRED_NUM, *_OPTIONAL_NUM) if key in entry}
    smi_mib = nums.get("memory_nvidia_smi_MiB")
    if smi_mib is not None and smi_mib < nums["memory_usable_MiB"]:
        raise CatalogError(f"gpus.toml: gpu {gpu_id!r}: 'memory_nvidia_smi_MiB' ({smi_mib:g}) is below "
                           f"'memory_usable_MiB' ({nums['memory_usable_MiB']:g}); the driver only ever subtracts")
    peaks = {dtype: _positive(gpu_id, entry, key) * 1e12 for key, dtype in _THROUGHPUT_KEYS.items() if key in entry}
    if nums["gpus_per_node"] != int(nums["gpus_per_node"]):
        raise CatalogError(f"gpus.toml: gpu {gpu_id!r}: 'gpus_per_node' must be a whole number")
    fallback = entry.get("bf16_fallback")
    if fallback is not None and ("bf16" in peaks or fallback not in peaks):
        raise CatalogError(f"gpus.toml: gpu {gpu_id!r}: 'bf16_fallback' ({fallback!r}) is only for a part without "
                           "a bf16 figure, and must name a dtype the entry has a figure for")
    notes = entry["source_note"] + (f" Usable memory: {entry['memory_usable_note']}."
                                    if "memory_usable_note" in entry else "")
    return GpuSpec(
        id=gpu_id, name=entry["name"], vendor=entry["vendor"], aliases=tuple(aliases),
        memory_marketed_bytes=round(nums["memory_marketed_GB"] * GB),
        memory_usable_bytes=round(nums["memory_usable_MiB"] * MiB),
        memory_nvidia_smi_bytes=None if smi_mib is None else round(smi_mib * MiB),
        peak_flop_per_s=peaks,
        hbm_bandwidth_bytes_per_s=nums["hbm_bandwidth_GBps"] * GB,
        interconnect=entry["interconnect"],
        interconnect_bytes_per_s=nums["interconnect_GBps"] * GB,
        tdp_w=nums["tdp_W"],
        source=entry["source"],
        notes=notes,
        inter_node_bytes_per_s=nums["inter_node_GBps"] * GB,
        inter_node_source=entry["inter_node_source"],
        gpus_per_node=int(nums["gpus_per_node"]),
        bf16_fallback=fallback,
        source_date=entry.get("source_date", ""),
    )


def parse_catalog(data: dict[str, Any]) -> dict[str, GpuSpec]:
    """Validate parsed TOML (``{"gpu": [...]}``) into ``{id: GpuSpec}``; ids and aliases must be unique."""
    entries = data.get("gpu")
    if not isinstance(entries, list) or not entries:
        raise CatalogError("gpus.toml: expected one or more [[gpu]] tables")
    catalog: dict[str, GpuSpec] = {}
    seen: dict[str, str] = {}  # normalized id/alias -> owning id
    for entry in entries:
        spec = _parse_entry(entry)
        if spec.id != _normalize(spec.id):
            raise CatalogError(f"gpus.toml: gpu {spec.id!r}: id must be lower-case with '-' separators")
        for name in (spec.id, *spec.aliases):
            owner = seen.setdefault(_normalize(name), spec.id)
            if owner != spec.id or (name == spec.id and spec.id in catalog):
                raise CatalogError(f"gpus.toml: gpu {spec.id!r}: name {name!r} already used by {owner!r}")
        catalog[spec.id] = spec
    return catalog


@cache
def load_catalog() -> dict[str, GpuSpec]:
    """Load and validate the packaged catalog (cached; do not mutate the returned objects)."""
    text = resources.files("gpuplan").joinpath("data", "gpus.toml").read_text(encoding="utf-8")
    return parse_catalog(tomllib.loads(text))


@cache
def _name_index() -> dict[str, str]:
    """Normalized id/alias -> catalog id."""
    return {_normalize(n): spec.id for spec in load_catalog().values() for n in (spec.id, *spec.aliases)}


def get_gpu(name: str) -> GpuSpec:
    """Resolve an id or alias (case-insensitive) to its spec; unknown names raise InputError naming the closest."""
    index = _name_index()
    gpu_id = index.get(_normalize(str(name)))
    if gpu_id is not None:
        return load_catalog()[gpu_id]
    close = difflib.get_close_matches(_normalize(str(name)), list(index), n=6, cutoff=0.5)
    ids = list(dict.fromkeys(index[c] for c in close))[:3]
    hint = f"closest: {', '.join(ids)}" if ids else f"known: {', '.join(sorted(load_catalog()))}"
    raise InputError("gpu", name, "unknown GPU", hint=hint)
