"""What the web API accepts: size limits on bodies and pasted configs, and the only ways a request names a model.

A request names a model in one of three ways, never by a path or a URL:
1. ``model``: a preset id, alias or Hugging Face id that a preset carries (resolved offline); with
   ``gpuplan serve --hub on``, also any Hugging Face id ``org/name``, whose ``config.json`` the server fetches
   (:mod:`gpuplan.web.hub`; only that file, checked by :func:`check_config` like a pasted one);
2. ``config``: a pasted ``config.json`` object, at most ``MAX_CONFIG_BYTES`` once serialized, checked by
   :func:`check_config` and parsed by ``gpuplan.model.hf_config.spec_from_config`` (no remote code);
3. the raw-dimension options (``layers``, ``hidden``, ``heads``...), as on the command line.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator

from gpuplan.errors import InputError
from gpuplan.limits import COUNT_BOUNDS, MAX_LAYER_EXPERTS, MAX_MODEL_NAME_CHARS, MAX_MTP_LAYERS  # noqa: F401
from gpuplan.web.jsonsafe import NON_FINITE_RULE, find_non_finite, show

if TYPE_CHECKING:
    from gpuplan.web.hub import HubConfigs

MAX_BODY_BYTES = 256 * 1024  # whole request body
MAX_CONFIG_BYTES = 64 * 1024  # a pasted config.json, serialized compactly

# Keys of a config.json that set how many layers, experts or MTP modules the tensor table enumerates: bounded so
# one request cannot make the server enumerate billions of tensors. Real models stay far below (DeepSeek-V3: 61
# layers x 256 experts).
_LAYER_KEYS = ("num_hidden_layers", "n_layer")
_EXPERT_KEYS = ("num_local_experts", "num_experts", "n_routed_experts")
# The same bounds the core applies to --layers / --experts (gpuplan.limits), checked here before parsing.
MAX_CONFIG_LAYERS = COUNT_BOUNDS["layers"]
MAX_CONFIG_EXPERTS = COUNT_BOUNDS["experts"]
MAX_CONFIG_LAYER_EXPERTS = MAX_LAYER_EXPERTS
MAX_CONFIG_MTP = MAX_MTP_LAYERS


def _int_at(config: dict[str, Any], keys: tuple[str, ...]) -> int:
    for key in keys:
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return 0


def check_config(config: Any, max_bytes: int = MAX_CONFIG_BYTES) -> dict[str, Any]:
    """Refuse a pasted config that is not an object, is larger than ``max_bytes`` serialized, or asks for more
    layers/experts than any real model; return it unchanged otherwise (``spec_from_config`` checks the rest)."""
    if not isinstance(config, dict):
        raise InputError("config", type(config).__name__, "must be a JSON object (the content of config.json)")
    try:
        size = len(json.dumps(config, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode())
    except ValueError:  # NaN or infinity in it (1e999 decodes to infinity): the search runs only then
        where = find_non_finite(config, "config")
        if where is None:
            raise
        raise InputError(where[0], show(where[1]), NON_FINITE_RULE) from None
    if size > max_bytes:
        raise InputError("config", f"{size} bytes", f"must be at most {max_bytes} bytes")
    for cfg in (config, config.get("text_config") if isinstance(config.get("text_config"), dict) else {}):
        layers, experts = _int_at(cfg, _LAYER_KEYS), _int_at(cfg, _EXPERT_KEYS)
        if layers > MAX_CONFIG_LAYERS:
            raise InputError("config.num_hidden_layers", layers, f"must be at most {MAX_CONFIG_LAYERS} in the web API")
        if experts > MAX_CONFIG_EXPERTS:
            raise InputError("config.num_experts", experts, f"must be at most {MAX_CONFIG_EXPERTS} in the web API")
        if layers * experts > MAX_CONFIG_LAYER_EXPERTS:
            raise InputError("config", f"{layers} layers x {experts} experts",
                             f"layers x experts must be at most {MAX_CONFIG_LAYER_EXPERTS} in the web API")
        mtp = _int_at(cfg, ("num_nextn_predict_layers",))
        if mtp > MAX_CONFIG_MTP:
            raise InputError("config.num_nextn_predict_layers", mtp, f"must be at most {MAX_CONFIG_MTP}")
        types = cfg.get("layer_types")
        if isinstance(types, list) and len(types) > MAX_CONFIG_LAYERS:
            raise InputError("config.layer_types", f"{len(types)} entries", f"must be at most {MAX_CONFIG_LAYERS}")
    return config


def spec_from_pasted(config: Any):
    """Validate and parse a pasted config into a ModelSpec; every failure is an InputError on ``config``."""
    from gpuplan.model.hf_config import spec_from_config

    check_config(config)
    try:
        return spec_from_config(config, name=_file_stem(config), source="config")
    except InputError:
        raise
    except (ValueError, TypeError, KeyError, ArithmeticError, AttributeError, IndexError) as exc:
        raise InputError("config", None, f"could not be read as a model ({type(exc).__name__}: {exc})") from None


def check_dimensions(values: dict[str, Any]) -> None:
    """Raw dimensions: the same bound on layers x experts as for a pasted config."""
    layers, experts = values.get("layers") or 0, values.get("experts") or 0
    if isinstance(layers, int) and isinstance(experts, int) and layers * experts > MAX_CONFIG_LAYER_EXPERTS:
        raise InputError("experts", experts, f"layers x experts must be at most {MAX_CONFIG_LAYER_EXPERTS} "
                         f"in the web API (here {layers} x {experts})")


def check_hub_config(repo_id: str, config: Any, max_bytes: int) -> dict[str, Any]:
    """A config fetched from the hub, held to the bounds of a pasted one (its size aside: ``max_bytes``); a
    refusal is on ``model``, naming the key."""
    try:
        return check_config(config, max_bytes)
    except InputError as exc:
        raise InputError("model", repo_id, f"its config.json: {exc.field}={exc.value!r} {exc.rule}") from None


def is_hub_name(name: str) -> bool:
    """Whether a ``model`` name, as :func:`check_model_name` returned it, is a hub id to fetch (not a preset)."""
    from gpuplan.model.presets import find_preset

    return find_preset(name) is None


def check_model_name(name: str, hub: HubConfigs | None = None) -> str:
    """A ``model`` field names a preset (resolved offline: its id is returned), or, with ``hub`` given, a
    Hugging Face id (checked, and refused when the server does not fetch from the hub). Never a path or URL."""
    from gpuplan.model.presets import closest_presets, find_preset

    if len(name) > MAX_MODEL_NAME_CHARS:
        raise InputError("model", name[:40] + "...", f"must be at most {MAX_MODEL_NAME_CHARS} characters")
    preset = find_preset(name)
    if preset is not None:
        return preset.id
    if hub is not None and name.count("/") == 1 and not name.startswith((".", "/", "~")) and "\\" not in name:
        return hub.check(name)
    close = closest_presets(name)
    where = ("a Hugging Face id org/name; " if hub is not None and hub.enabled else
             "the web API resolves presets only; ")
    raise InputError("model", name, f"is not a preset ({where}paste the config.json into 'config' for other "
                     "models)", hint=("closest: " + ", ".join(close)) if close else "see /api/v1/models")


_PRIVATE_DIR: str | None = None


def _file_stem(config: dict[str, Any]) -> str:
    """A safe file name for the model's display name: the last part of ``_name_or_path``, else 'pasted'."""
    raw = str(config.get("_name_or_path") or "").replace("\\", "/").split("/")[-1][:64]
    stem = "".join(ch for ch in raw if ch.isascii() and (ch.isalnum() or ch in "-._")).strip(".")
    return stem or "pasted"


@contextmanager
def pasted_config_file(config: dict[str, Any]) -> Iterator[str]:
    """Hand a pasted config to a CLI command that only accepts a path: write it into a folder the server creates
    itself (private, random name) and delete both after the call. The request never names a path."""
    global _PRIVATE_DIR
    if _PRIVATE_DIR is None or not os.path.isdir(_PRIVATE_DIR):
        _PRIVATE_DIR = tempfile.mkdtemp(prefix="gpuplan-web-")
    folder = tempfile.mkdtemp(dir=_PRIVATE_DIR)
    path = os.path.join(folder, _file_stem(config) + ".json")
    try:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(config, f)
        yield path
    finally:
        with _suppress_oserror():
            os.unlink(path)
        with _suppress_oserror():
            os.rmdir(folder)


MAX_STACK_CONFIG_CHARS = 64 * 1024


def stack_config_suffix(text: str) -> str:
    """The file name suffix that makes gpuplan's readers take a pasted launch config as what it is: ``.json`` (a
    DeepSpeed or TrainingArguments JSON), ``.toml`` (a torchtitan job config), ``.yaml`` (a YAML recipe or an
    accelerate config: a mapping), else ``.txt`` (a Megatron-LM argument list or a ``vllm serve`` line)."""
    import tomllib

    stripped = text.strip()
    if stripped.startswith("{"):
        return ".json"
    try:
        if tomllib.loads(text):
            return ".toml"
    except (tomllib.TOMLDecodeError, ValueError):
        pass
    try:
        import yaml

        if isinstance(yaml.safe_load(text), dict):
            return ".yaml"
    except Exception:  # not YAML (or PyYAML missing): a command line
        pass
    return ".txt"


@contextmanager
def pasted_stack_config(text: str) -> Iterator[str]:
    """A pasted launch config written where only the server can name it (as :func:`pasted_config_file`), with
    the suffix its reader needs; deleted after the call."""
    if len(text) > MAX_STACK_CONFIG_CHARS:
        raise InputError("stack_config", f"({len(text)} characters)",
                         f"must be at most {MAX_STACK_CONFIG_CHARS} characters")
    global _PRIVATE_DIR
    if _PRIVATE_DIR is None or not os.path.isdir(_PRIVATE_DIR):
        _PRIVATE_DIR = tempfile.mkdtemp(prefix="gpuplan-web-")
    folder = tempfile.mkdtemp(dir=_PRIVATE_DIR)
    path = os.path.join(folder, "pasted" + stack_config_suffix(text))
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        yield path
    finally:
        with _suppress_oserror():
            os.unlink(path)
        with _suppress_oserror():
            os.rmdir(folder)


def hide_private_paths(text: str | None) -> str | None:
    """Replace the server's own temporary file names in a message by 'config' (a pasted config's file)."""
    if not text or _PRIVATE_DIR is None or _PRIVATE_DIR not in text:
        return text
    import re

    return re.sub(re.escape(_PRIVATE_DIR) + r"[^\s:'\"]*", "config", text)


@contextmanager
def _suppress_oserror() -> Iterator[None]:
    try:
        yield
    except OSError:
        pass
