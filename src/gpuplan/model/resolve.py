"""Turn what the user typed (preset id, Hugging Face id, path, or raw dimensions) into a ModelSpec."""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Iterator, Mapping

from gpuplan.errors import HubUnavailable, InputError, UnknownFamily
from gpuplan.limits import MAX_MODEL_NAME_CHARS
from gpuplan.model.hf_config import load_config_file, spec_from_config
from gpuplan.model.presets import closest_presets, find_preset
from gpuplan.model.spec import ModelSpec, encoder_decoder_rule, require_decoder, require_modelled_attention


# A Hugging Face repo id is exactly ``org/name``: one slash, names of letters, digits, '-', '_' and '.'.
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")
# The hub's own rule for each part of a repo id (huggingface_hub ``utils/_validators.py``, ``validate_repo_id``):
# 1 to 96 of letters, digits, '-', '_', '.', not starting or ending with '-' or '.', no '--' or '..', and the
# name not ending in '.git'.
HUB_ID_PART_MAX_CHARS = 96
_HUB_PART = re.compile(rf"[A-Za-z0-9_](?:[A-Za-z0-9._-]{{0,{HUB_ID_PART_MAX_CHARS - 2}}}[A-Za-z0-9_])?")
HUB_ID_RULE = ("must be a Hugging Face repository id org/name: two parts of 1 to 96 letters, digits, '-', '_' or "
               "'.', not starting or ending with '-' or '.', without '--' or '..'")
# What a server asks of the hub (gpuplan.web.hub): the largest config.json it reads, in bytes. Real ones are a few
# KiB (DeepSeek-V3's: 1.7 KiB); 1 MiB leaves room for long quantization tables.
MAX_HUB_CONFIG_BYTES = 1024 * 1024
# Hub ids whose config.json the caller has fetched already (gpuplan.web.hub): resolved from here, never from the
# file system or the network, within :func:`supplied_hub_configs`.
_SUPPLIED: ContextVar[Mapping[str, dict] | None] = ContextVar("gpuplan_supplied_hub_configs", default=None)


def check_hub_id(repo_id: str) -> str:
    """``repo_id`` if it is a valid hub repository id ``org/name`` (see :data:`HUB_ID_RULE`), else InputError.
    Checked before any network call."""
    parts = repo_id.split("/")
    if (len(parts) != 2 or not all(_HUB_PART.fullmatch(p) for p in parts) or "--" in repo_id or ".." in repo_id
            or repo_id.lower().endswith(".git")):
        raise InputError("model", repo_id, HUB_ID_RULE)
    return repo_id


@contextmanager
def supplied_hub_configs(configs: Mapping[str, dict]) -> Iterator[None]:
    """Within the block, MODEL names that are keys of ``configs`` resolve as those hub ids with that config.json
    content (fetched by the caller): no file is looked for and nothing is downloaded."""
    token = _SUPPLIED.set(configs)
    try:
        yield
    finally:
        _SUPPLIED.reset(token)


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
    if name in (_SUPPLIED.get() or {}):
        return "hub", None
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
    return _resolve(name)[0]


def _resolve(name: str) -> tuple[ModelSpec, dict[str, Any]]:
    """(spec, the config.json dict it was read from) for MODEL: see :func:`resolve_model`."""
    kind, path = model_source(name)
    if kind == "preset":
        preset = find_preset(name)
        assert preset is not None
        return preset.spec(), preset.config
    if kind == "path":
        assert path is not None
        config = load_config_file(path)
        return spec_from_config(config, name=path.stem if path.is_file() else path.name, source=str(path)), config
    if kind == "hub":
        config = fetch_hub_config(name)
        return spec_from_config(config, name=name.split("/")[-1].lower(), source=name), config
    raise InputError("model", name, "is not a preset, a Hugging Face id or a config.json path",
                     hint="closest presets: " + ", ".join(closest_presets(name)) + "; list them with `gpuplan models`")


def model_from_options(values: Any, *, allow_params_only: bool = False, encoders: bool = False,
                       count_only: bool = False, seq2seq: bool = False) -> ModelSpec | None:
    """The model that option values name: MODEL or the raw dimensions (``--layers``, ``--hidden``, ``--heads``...);
    ``None`` when only ``--params`` was given and ``allow_params_only``. ``values`` is read by attribute (checked
    :class:`gpuplan.options.Values` or parsed command-line arguments). An encoder (bert, roberta) is refused
    unless ``encoders`` (only ``params`` counts them: ``gpuplan.model.spec.require_decoder``); DeepSeek Sparse
    Attention unless ``count_only`` (the caller only counts parameters: ``require_modelled_attention``); an
    encoder-decoder (T5) unless ``count_only`` or ``seq2seq`` (the caller counts its FLOPs): elsewhere it is the
    UnknownFamily that sends ``train`` and ``infer`` down the traced path."""
    model = getattr(values, "model", None)
    dims = {k: getattr(values, k, None) for k in ("layers", "hidden", "heads")}
    if model:
        if any(dims.values()):
            raise InputError("model", model, "give MODEL or --layers/--hidden/--heads, not both")
        spec, config = _resolve(model)
        if not count_only:
            require_modelled_attention(spec)
            if spec.layout == "t5" and not seq2seq:
                # its tensors have rules, its memory comes from the traced path (gpuplan.commands.generic)
                raise UnknownFamily("model", model, encoder_decoder_rule(spec.family), config=dict(config),
                                    name=spec.name, source=model)
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


def fetch_hub_config(repo_id: str, *, max_bytes: int | None = None, timeout_s: float | None = None,
                     token: bool | str | None = None) -> dict:
    """Download only ``config.json`` of ``repo_id`` with huggingface_hub (extra ``[hub]``); never remote code,
    never weights. The id is checked first; a copy in the local hub cache is read without the network; offline
    (``HF_HUB_OFFLINE``, or the hub unreachable at one quick connect) the answer comes at once.

    ``max_bytes``: refuse a larger file (its size is asked for before it is downloaded, and checked again after);
    ``timeout_s``: huggingface_hub's timeout for each request to the hub; ``token``: as huggingface_hub takes it
    (False: ask anonymously). Failures are InputErrors on ``model`` saying what the hub answered; those that say
    nothing about the id (offline, the extra missing, the hub unreachable or slow) are :class:`HubUnavailable`."""
    supplied = _SUPPLIED.get()
    if supplied is not None and repo_id in supplied:
        return dict(supplied[repo_id])
    check_hub_id(repo_id)
    offline_hint = ("download its config.json and pass the file's path, e.g. "
                    f"`gpuplan params ./config.json` (from https://huggingface.co/{repo_id}/blob/main/config.json)")
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        raise HubUnavailable("model", repo_id, "is not a preset and HF_HUB_OFFLINE is set", hint=offline_hint)
    try:
        import huggingface_hub
    except ImportError:
        raise HubUnavailable("model", repo_id, "is not a preset; fetching by hub id needs `pip install "
                             "gpuplan[hub]`", hint=offline_hint) from None
    try:  # a config.json fetched before is read from the local hub cache, online or not
        cached = huggingface_hub.hf_hub_download(repo_id, "config.json", local_files_only=True)
    except Exception:
        cached = None
    if cached is not None:
        return _read_hub_config(repo_id, cached, max_bytes)
    unreachable = _hub_unreachable()
    if unreachable:
        raise HubUnavailable("model", repo_id, f"is not a preset and the hub cannot be reached ({unreachable})",
                             hint=offline_hint)
    timeouts: dict[str, float] = {} if timeout_s is None else {"etag_timeout": timeout_s}
    try:
        if max_bytes is not None:
            url = huggingface_hub.hf_hub_url(repo_id, "config.json")
            meta = huggingface_hub.get_hf_file_metadata(url, token=token, timeout=timeout_s)
            if meta.size is not None and meta.size > max_bytes:
                raise _too_large(repo_id, meta.size, max_bytes)
        local = huggingface_hub.hf_hub_download(repo_id, "config.json", token=token, **timeouts)
    except InputError:
        raise
    except Exception as exc:  # what the hub answered, or why it did not
        raise hub_failure(repo_id, exc, offline_hint) from None
    return _read_hub_config(repo_id, local, max_bytes)


def _too_large(repo_id: str, size: int, max_bytes: int) -> InputError:
    return InputError("model", repo_id, f"its config.json is {size:,} bytes, more than the {max_bytes:,} bytes "
                      "read from the hub", hint="download it and pass a trimmed copy, or paste it as 'config'")


def _read_hub_config(repo_id: str, local: str, max_bytes: int | None) -> dict:
    """The parsed config.json the hub cache holds at ``local``; errors name the hub id, not the cache path."""
    if max_bytes is not None:
        size = os.path.getsize(local)
        if size > max_bytes:
            raise _too_large(repo_id, size, max_bytes)
    try:
        config = load_config_file(local)
    except InputError as exc:
        raise InputError("model", repo_id, "its config.json " + exc.rule) from None
    if not isinstance(config, dict):
        raise InputError("model", repo_id, f"its config.json holds a JSON {type(config).__name__}, not an object")
    return config


def _status_of(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


def hub_failure(repo_id: str, exc: BaseException, offline_hint: str) -> InputError:
    """The readable error for what ``hf_hub_download`` raised: the hub's 401/403/404 (missing, private or gated
    repository; no config.json in it), a rate limit, a timeout or no connection. Matched by class name and
    HTTP status, which stay the same across huggingface_hub releases."""
    names = {c.__name__ for c in type(exc).__mro__}
    status = _status_of(exc)
    page = f"https://huggingface.co/{repo_id}"
    if "GatedRepoError" in names:
        return InputError("model", repo_id, "is a gated repository on the Hugging Face hub: its config.json is "
                          "given only to accounts that accepted its conditions",
                          hint=f"accept them on {page}, log in with `hf auth login` and run gpuplan locally, or "
                               "paste the config.json as 'config'")
    if names & {"RemoteEntryNotFoundError", "EntryNotFoundError"} and "LocalEntryNotFoundError" not in names:
        return InputError("model", repo_id, "has no config.json on the Hugging Face hub (not a transformers model?)",
                          hint=f"see the files on {page}/tree/main")
    if "RepositoryNotFoundError" in names or status in (401, 404):
        return InputError("model", repo_id, "no such model repository on the Hugging Face hub (or it is private)",
                          hint=f"check the id on {page}; the id is org/name, as in its address")
    if status == 403:
        return InputError("model", repo_id, "the Hugging Face hub refused access to its config.json (HTTP 403)",
                          hint=f"see {page}")
    if status == 429:
        return HubUnavailable("model", repo_id, "the Hugging Face hub is limiting requests (HTTP 429)",
                              hint="try again in a minute, or " + offline_hint)
    if names & {"TimeoutError", "TimeoutException", "Timeout", "ReadTimeout", "ConnectTimeout"}:
        return HubUnavailable("model", repo_id, "the Hugging Face hub did not answer in time", hint=offline_hint)
    if status is not None:
        return HubUnavailable("model", repo_id, f"the Hugging Face hub answered HTTP {status}", hint=offline_hint)
    return HubUnavailable("model", repo_id, f"could not fetch config.json from the hub ({type(exc).__name__})",
                          hint=offline_hint)


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
