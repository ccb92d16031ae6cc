"""Turn what the user typed (preset id, Hugging Face id, path, or raw dimensions) into a ModelSpec."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from gpuplan.errors import InputError
from gpuplan.limits import MAX_MODEL_NAME_CHARS
from gpuplan.model.hf_config import load_config_file, spec_from_config
from gpuplan.model.presets import closest_presets, find_preset
from gpuplan.model.spec import ModelSpec, require_decoder


# A Hugging Face repo id is exactly ``org/name``: one slash, names of letters, digits, '-', '_' and '.'.
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")


def check_model_name(name: str) -> str:
    """Refuse a MODEL that no preset, path or hub id can be: too long, or holding control characters."""
    if len(name) > MAX_MODEL_NAME_CHARS:
        raise InputError("model", name, f"must be at most {MAX_MODEL_NAME_CHARS} characters (a preset id, a "
                         "Hugging Face id org/name, or a path to a config.json)")
    if any(ord(ch) < 32 for ch in name):
        raise InputError("model", name, "must not hold control characters")
    return name


def model_source(name: str) -> tuple[str, Path | None]:
    """How MODEL is read: ("preset", None), ("path", path) or ("hub", None). An existing file or folder is a
    path; so is anything written like one (ending in .json, starting with '.', '/' or '~', or with more than one
    slash); a hub id is exactly org/name."""
    from gpuplan.model.presets import find_preset

    check_model_name(name)
    if find_preset(name) is not None:
        return "preset", None
    path = Path(name).expanduser()
    try:
        exists = path.exists()
    except (OSError, ValueError):  # a name the file system cannot hold
        exists = False
    if exists or name.endswith(".json") or name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name:
        return "path", path
    if _HUB_ID.fullmatch(name):
        return "hub", None
    return "unknown", None


def resolve_model(name: str) -> ModelSpec:
    """Preset id or Hugging Face id (offline via presets) → local path → hub fetch (optional, online)."""
    kind, path = model_source(name)
    if kind == "preset":
        return find_preset(name).spec()  # type: ignore[union-attr]
    if kind == "path":
        assert path is not None
        return spec_from_config(load_config_file(path), name=path.stem if path.is_file() else path.name,
                                source=str(path))
    if kind == "hub":
        return spec_from_config(fetch_hub_config(name), name=name.split("/")[-1].lower(), source=name)
    raise InputError("model", name, "is not a preset, a Hugging Face id or a config.json path",
                     hint="closest presets: " + ", ".join(closest_presets(name)) + "; list them with `gpuplan models`")


def model_from_options(values: Any, *, allow_params_only: bool = False, encoders: bool = False) -> ModelSpec | None:
    """The model that option values name: MODEL or the raw dimensions (``--layers``, ``--hidden``, ``--heads``...);
    ``None`` when only ``--params`` was given and ``allow_params_only``. ``values`` is read by attribute (checked
    :class:`gpuplan.options.Values` or parsed command-line arguments). An encoder (bert, roberta) is refused
    unless ``encoders`` (only ``params`` counts them: ``gpuplan.model.spec.require_decoder``)."""
    model = getattr(values, "model", None)
    dims = {k: getattr(values, k, None) for k in ("layers", "hidden", "heads")}
    if model:
        if any(dims.values()):
            raise InputError("model", model, "give MODEL or --layers/--hidden/--heads, not both")
        spec = resolve_model(model)
        if not encoders:
            require_decoder(spec)
        return spec
    if any(dims.values()):
        missing = [f"--{k}" for k, v in dims.items() if not v]
        if missing:
            raise InputError(missing[0], None, "is required with raw dimensions (--layers, --hidden and --heads)")
        extra = {k: getattr(values, k, None) for k in ("kv_heads", "ffn", "vocab", "head_dim", "experts", "top_k")}
        return spec_from_dims(layers=dims["layers"], hidden=dims["hidden"], heads=dims["heads"],
                              kv_heads=extra["kv_heads"], ffn=extra["ffn"], vocab=extra["vocab"] or 32000,
                              head_dim=extra["head_dim"], experts=extra["experts"] or 0, top_k=extra["top_k"] or 0)
    params = getattr(values, "params", None)
    if params:
        if allow_params_only:
            return None
        raise InputError("--params", params, "is not enough for this command: give MODEL or the dimensions")
    raise InputError("model", None, "missing: give a preset id (see `gpuplan models`), a config.json path, "
                     "or --layers/--hidden/--heads")


def fetch_hub_config(repo_id: str) -> dict:
    """Download only ``config.json`` of ``repo_id`` with huggingface_hub (extra ``[hub]``); never remote code."""
    offline_hint = ("download its config.json and pass the file's path, e.g. "
                    f"`gpuplan params ./config.json` (from https://huggingface.co/{repo_id}/blob/main/config.json)")
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        raise InputError("model", repo_id, "is not a preset and HF_HUB_OFFLINE is set", hint=offline_hint)
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise InputError("model", repo_id, "is not a preset; fetching by hub id needs `pip install gpuplan[hub]`",
                         hint=offline_hint) from None
    try:  # a config.json fetched before is read from the local hub cache, online or not
        return load_config_file(hf_hub_download(repo_id, "config.json", local_files_only=True))
    except Exception:
        pass
    unreachable = _hub_unreachable()
    if unreachable:
        raise InputError("model", repo_id, f"is not a preset and the hub cannot be reached ({unreachable})",
                         hint=offline_hint)
    try:
        local = hf_hub_download(repo_id, "config.json")
    except Exception as exc:  # network errors, gated repos, missing files: all end the same way for the user
        raise InputError("model", repo_id, f"could not fetch config.json ({type(exc).__name__})",
                         hint=offline_hint) from None
    return load_config_file(local)


def _hub_unreachable(timeout_s: float = 3.0) -> str | None:
    """Why the hub endpoint (``HF_ENDPOINT``, default huggingface.co) cannot be reached, or None. One TCP connect
    with a short timeout, so an offline machine gets its answer at once rather than after huggingface_hub's
    retries (about 20 s). Skipped behind a proxy, where only the proxy can tell."""
    import socket
    from urllib.parse import urlparse

    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None
    try:
        from huggingface_hub import constants
        endpoint = urlparse(constants.ENDPOINT)
    except Exception:
        return None
    host = endpoint.hostname or "huggingface.co"
    port = endpoint.port or (80 if endpoint.scheme == "http" else 443)
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as exc:
        return f"{host}:{port}: {exc.strerror or type(exc).__name__}"
    return None


def spec_from_dims(*, layers: int, hidden: int, heads: int, kv_heads: int | None = None, ffn: int | None = None,
                   vocab: int = 32000, head_dim: int | None = None, seq: int = 4096, gated: bool = True,
                   tie: bool = False, experts: int = 0, top_k: int = 0, expert_ffn: int | None = None) -> ModelSpec:
    """A Llama-style model from raw dimensions (``--layers --hidden --heads`` ...). ``ffn`` defaults to the
    Llama rule 8h/3 rounded up to a multiple of 256 for gated MLPs, else 4h."""
    from gpuplan.model.spec import MoESpec

    if head_dim is None:
        if hidden % heads:
            raise InputError("heads", heads, f"must divide hidden={hidden} when --head-dim is not given")
        head_dim = hidden // heads
    if ffn is None:
        ffn = -(-(8 * hidden // 3) // 256) * 256 if gated else 4 * hidden
    moe = None
    if experts:
        moe = MoESpec(num_experts=experts, top_k=top_k or 2, expert_ffn_size=expert_ffn or ffn,
                      moe_layers=(True,) * layers)
    return ModelSpec(
        name="custom", family="custom", layout="mixtral" if moe else ("llama" if gated else "gpt_neox"),
        num_layers=layers, hidden_size=hidden, num_heads=heads, num_kv_heads=kv_heads or heads, head_dim=head_dim,
        ffn_size=ffn, vocab_size=vocab, max_position=seq, gated_mlp=gated, tie_embeddings=tie, moe=moe,
        norm="rmsnorm" if gated else "layernorm", qkv_bias=not gated, o_bias=not gated, mlp_bias=not gated)
