"""Typed reads of a config file's values; a wrong type is an InputError naming the file and the key."""

from __future__ import annotations

from typing import Any

from gpuplan.errors import InputError


class Keys:
    """Reads one file's keys; errors are named ``FILE: dotted.key``."""

    def __init__(self, name: str) -> None:
        self.name = name

    def error(self, key: str, value: Any, rule: str, hint: str | None = None) -> InputError:
        return InputError(f"{self.name}: {key}", value, rule, hint=hint)

    def table(self, key: str, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.error(key, value, "must be a table")
        return value

    def int(self, key: str, value: Any, least: int = 1) -> int:
        # JSON writes 2e8 as a float: a whole float is accepted as the integer it is
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise self.error(key, value, f"must be a whole number >= {least}")
        return value

    def bool(self, key: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise self.error(key, value, "must be true or false")
        return value

    def str(self, key: str, value: Any, choices: tuple[str, ...] | None = None) -> str:
        if not isinstance(value, str):
            raise self.error(key, value, "must be a string")
        if choices is not None and value not in choices:
            raise self.error(key, value, "must be one of " + ", ".join(choices))
        return value

    def unknown(self, section: str, table: dict[str, Any], known: set[str] | frozenset[str], source: str) -> None:
        """An unknown key of a section the reader understands is refused (a typo would otherwise be lost)."""
        for key in table:
            if key not in known:
                where = f"{section}.{key}" if section else key
                raise self.error(where, table[key], f"is not a key of [{section or 'top level'}] ({source})",
                                 hint="known: " + ", ".join(sorted(known)))
