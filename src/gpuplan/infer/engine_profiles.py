"""Serving-engine profiles as data: ``gpuplan/data/engines/<name>.toml``, one default per table with its source.

Each file has ``name``, ``title``, ``version``, ``url`` and tables ``[defaults.KEY]`` / ``[rules.KEY]`` holding a
``value`` and a ``source``. The engine code reads its defaults from here, so a changed default is a changed data
line with a changed source, never a silent constant.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from gpuplan.errors import InputError


@dataclass(frozen=True)
class EngineProfile:
    name: str
    title: str
    version: str
    url: str
    defaults: dict[str, Any]
    rules: dict[str, Any]
    sources: dict[str, str]

    def value(self, key: str) -> Any:
        if key in self.defaults:
            return self.defaults[key]
        return self.rules[key]


def _engine_dir():
    return resources.files("gpuplan").joinpath("data", "engines")


@lru_cache(maxsize=1)
def engine_profile_names() -> tuple[str, ...]:
    return tuple(sorted(p.name.removesuffix(".toml") for p in _engine_dir().iterdir() if p.name.endswith(".toml")))


def parse_engine_profile(data: dict[str, Any], where: str) -> EngineProfile:
    """Validate one engine file: its header strings, and a value and a non-empty source in every table."""
    for key in ("name", "title", "version", "url"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise ValueError(f"{where}: needs a non-empty string {key!r}")
    defaults, rules, sources = {}, {}, {}
    for section, out in (("defaults", defaults), ("rules", rules)):
        for key, table in data.get(section, {}).items():
            if not isinstance(table, dict) or "value" not in table:
                raise ValueError(f"{where}: [{section}.{key}] needs a value")
            src = table.get("source")
            if not isinstance(src, str) or len(src.strip()) < 20:
                raise ValueError(f"{where}: [{section}.{key}] needs a source (where the value was read)")
            out[key] = table["value"]
            sources[key] = src
    unknown = set(data) - {"name", "title", "version", "url", "defaults", "rules"}
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
    return EngineProfile(data["name"], data["title"], data["version"], data["url"], defaults, rules, sources)


@lru_cache(maxsize=8)
def load_engine_profile(name: str) -> EngineProfile:
    """The engine ``name``'s profile; InputError for an unknown one."""
    if name not in engine_profile_names():
        raise InputError("--engine", name, f"has no profile; profiles: {', '.join(engine_profile_names())}")
    text = _engine_dir().joinpath(f"{name}.toml").read_text(encoding="utf-8")
    return parse_engine_profile(tomllib.loads(text), f"{name}.toml")
