"""Model presets shipped as data (``gpuplan/data/presets/*.toml``), each with its source and published size."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, replace
from datetime import date
from functools import lru_cache
from importlib import resources
from typing import Any

from gpuplan.model.hf_config import spec_from_config
from gpuplan.model.spec import ModelSpec

# What a released checkpoint takes in and gives out (``modality`` of a preset). A vision-language checkpoint's preset
# is its text model; the vision tower and projector it leaves out are named in ``left_out`` or by ``text_config``.
MODALITIES = ("text", "vision-language")


@dataclass(frozen=True)
class Preset:
    id: str
    hf_id: str | None
    aliases: tuple[str, ...]
    family: str
    published_params: str  # as printed by the source, e.g. "8.03B"
    published_params_source: str
    published_active_params: str | None
    config_source: str
    config: dict[str, Any]
    file: str
    left_out: str | None = None  # a multimodal checkpoint whose preset is its text model: the parts left out
    released: date | None = None  # the day the weights (or, never released, the paper) became public
    released_source: str = ""  # where that day is printed: model card, release blog, paper, hub creation date
    modality: str | None = None  # one of MODALITIES

    def spec(self) -> ModelSpec:
        return _spec(self.id)


def parse_published(text: str) -> tuple[float, float]:
    """'8.03B' -> (8.03e9, 0.005e9): the value and half a unit of its last printed digit."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.([0-9]+))?)\s*([KMBT])\s*", text, re.IGNORECASE)
    if not m:
        raise ValueError(f"published_params={text!r}: expected a number with K, M, B or T")
    scale = {"k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}[m.group(3).lower()]
    decimals = len(m.group(2) or "")
    return float(m.group(1)) * scale, 0.5 * 10 ** (-decimals) * scale


@lru_cache(maxsize=1)
def load_presets() -> dict[str, Preset]:
    """All presets by id, in file order."""
    out: dict[str, Preset] = {}
    folder = resources.files("gpuplan.data") / "presets"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".toml"):
            continue
        data = tomllib.loads(entry.read_text(encoding="utf-8"))
        for raw in data.get("preset", []):
            cfg = dict(raw["config"])
            if cfg.get("q_lora_rank") == 0:  # TOML has no null: 0 stands for config.json's null
                cfg["q_lora_rank"] = None
            p = Preset(
                id=raw["id"], hf_id=raw.get("hf_id"), aliases=tuple(raw.get("aliases", ())),
                family=str(cfg.get("model_type", "")), published_params=raw["published_params"],
                published_params_source=raw.get("published_params_source", ""),
                published_active_params=raw.get("published_active_params"),
                config_source=raw.get("config_source", ""), config=cfg, file=entry.name,
                left_out=raw.get("left_out"), released=_date(raw.get("released"), raw["id"]),
                released_source=raw.get("released_source", ""), modality=raw.get("modality"))
            if p.id in out:
                raise ValueError(f"duplicate preset id {p.id!r} in {entry.name}")
            out[p.id] = p
    return out


def _date(value: Any, preset_id: str) -> date | None:
    """A preset's ``released`` (a TOML date, 2024-07-23), or None when absent; anything else is a data error."""
    if value is None:
        return None
    if isinstance(value, date) and not hasattr(value, "hour"):
        return value
    raise ValueError(f"preset {preset_id!r}: released={value!r} must be a TOML date such as 2024-07-23")


@lru_cache(maxsize=1)
def _index() -> dict[str, str]:
    """Lower-cased id, Hugging Face id and aliases -> preset id."""
    idx: dict[str, str] = {}
    for p in load_presets().values():
        for key in (p.id, p.hf_id, *p.aliases):
            if key:
                idx.setdefault(key.lower(), p.id)
                if "/" in key:
                    idx.setdefault(key.split("/", 1)[1].lower(), p.id)
    return idx


def find_preset(name: str) -> Preset | None:
    pid = _index().get(name.strip().lower())
    return load_presets()[pid] if pid else None


def closest_presets(name: str, n: int = 5) -> list[str]:
    import difflib

    key = name.strip().lower().split("/")[-1]
    ids = list(load_presets())
    hits = difflib.get_close_matches(key, ids, n=n, cutoff=0.4)
    if len(hits) < n:
        hits += [i for i in ids if key and key.split("-")[0] in i and i not in hits][: n - len(hits)]
    return hits


@lru_cache(maxsize=128)
def _spec(preset_id: str) -> ModelSpec:
    p = load_presets()[preset_id]
    spec = spec_from_config(p.config, name=p.id, source=f"preset {p.id}")
    if p.left_out:
        note = (f"{p.hf_id or p.id} is multimodal: only its text model ({spec.family}) is estimated; "
                f"left out: {p.left_out}")
        spec = replace(spec, notes=(*spec.notes, note))
    return spec
