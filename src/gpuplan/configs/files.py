"""Reading a config file's text into a mapping: TOML (standard library), JSON, YAML (PyYAML, the ``[yaml]`` extra)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from gpuplan.errors import InputError


def read_text(path: Path, field: str) -> str:
    try:
        return path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise InputError(field, str(path), f"cannot be read ({exc.strerror or exc})") from None
    except ValueError:  # a NUL byte in the path: no file system has such a name
        raise InputError(field, str(path), "is not a valid file path") from None
    except UnicodeDecodeError as exc:
        raise InputError(field, str(path), f"is not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def parse(path: Path, field: str) -> dict[str, Any]:
    """The file's top-level table; InputError naming ``field`` for a file that cannot be read or parsed."""
    text = read_text(path, field)
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            data: Any = tomllib.loads(text)
        elif suffix == ".json":
            data = json.loads(text)
        elif suffix in (".yaml", ".yml"):
            data = _yaml(text, path, field)
        else:
            raise InputError(field, str(path), "must end in .toml, .json, .yaml or .yml")
    except tomllib.TOMLDecodeError as exc:
        raise InputError(field, str(path), f"is not valid TOML: {exc}") from None
    except json.JSONDecodeError as exc:
        raise InputError(field, str(path), f"is not valid JSON: {exc}") from None
    except RecursionError:
        raise InputError(field, str(path), "is nested too deeply") from None
    if not isinstance(data, dict):
        raise InputError(field, str(path), "must hold a table (key = value) at the top level")
    return data


def _yaml(text: str, path: Path, field: str) -> Any:
    try:
        import yaml
    except ImportError:
        raise InputError(field, str(path), "is YAML, which needs PyYAML",
                         hint="pip install 'gpuplan[yaml]'") from None
    try:
        return yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise InputError(field, str(path), f"is not valid YAML: {exc}") from None


def yaml_missing(path: Path) -> bool:
    """A YAML file while PyYAML is not installed: it cannot be read, and saying so beats a wrong guess."""
    if path.suffix.lower() not in (".yaml", ".yml"):
        return False
    try:
        import yaml  # noqa: F401
    except ImportError:
        return True
    return False
