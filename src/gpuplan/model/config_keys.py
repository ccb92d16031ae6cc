"""Typed access to a ``config.json`` dict: every read names the key, and a missing or mistyped key is an
InputError naming it (the family readers of ``gpuplan.model.hf_config`` and ``gpuplan.model.hf_families``)."""

from __future__ import annotations

from typing import Any

from gpuplan.errors import InputError


class ConfigKeys:
    """Typed access to a config dict; missing or mistyped keys raise InputError naming the key."""

    def __init__(self, data: dict[str, Any], source: str) -> None:
        self.data, self.source = data, source

    def int(self, *keys: str, default: int | None = None) -> int:
        for key in keys:
            value = self.data.get(key)
            if value is not None:
                if isinstance(value, bool) or not isinstance(value, int):
                    raise InputError(f"{self.source}: {key}", value, "must be an integer")
                return value
        if default is None:
            also = f" (nor {', '.join(keys[1:])})" if len(keys) > 1 else ""
            raise InputError(f"{self.source}: {keys[0]}", None, f"missing required key in config.json{also}")
        return default

    def pos_int(self, *keys: str, default: int | None = None) -> int:
        """An integer >= 1: the sizes and steps used as divisors or loop strides."""
        value = self.int(*keys, default=default)
        if value < 1:
            key = next((k for k in keys if self.data.get(k) is not None), keys[0])
            raise InputError(f"{self.source}: {key}", value, "must be an integer >= 1")
        return value

    def int_list(self, key: str) -> list[int]:
        """A list of integers (layer indices such as ``mlp_only_layers``); absent or null: empty."""
        value = self.data.get(key)
        if value is None:
            return []
        if not isinstance(value, list) or any(isinstance(v, bool) or not isinstance(v, int) for v in value):
            raise InputError(f"{self.source}: {key}", value, "must be a list of integers")
        return value

    def opt_int(self, key: str) -> int | None:
        value = self.data.get(key)
        return None if value is None else self.int(key)

    def bool(self, key: str, default: bool) -> bool:
        value = self.data.get(key, default)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise InputError(f"{self.source}: {key}", value, "must be true or false")
        return value

    def fraction(self, *keys: str, default: float = 0.0) -> float:
        """The largest of the dropout probabilities named (``default``, the config class's, for a missing key)."""
        out = 0.0
        for key in keys:
            value = self.data.get(key, default)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                if not 0.0 <= value < 1.0:
                    raise InputError(f"{self.source}: {key}", value, "must be a probability in [0, 1)")
                out = max(out, float(value))
        return out

    def str(self, *keys: str, default: str) -> str:
        for key in keys:
            if self.data.get(key) is not None:
                return str(self.data[key])
        return default
