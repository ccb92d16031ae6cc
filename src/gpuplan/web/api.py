"""From an API request to a command's JSON: model checks, the declared options, the command, a small cache."""

from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from gpuplan.commands.registry import Command, evaluate
from gpuplan.errors import InputError
from gpuplan.web.jsonsafe import echo, find_non_finite, show
from gpuplan.web.limits import (check_dimensions, check_hub_config, check_model_name, is_hub_name,
                                pasted_config_file, pasted_stack_config, spec_from_pasted)

if TYPE_CHECKING:
    from gpuplan.web.hub import HubConfigs

CACHE_ENTRIES = 512
RAW_KEY_MAX_BYTES = 4096  # larger bodies (pasted configs) are keyed by their canonical form only


# Option kinds whose numbers a user types freely (counts are capped by the schema, choices are fixed).
_NUMERIC_KINDS = frozenset({"int", "float", "real", "names", "int_list", "values"})


def _suspects(command: Command, values: dict[str, Any]) -> list[str]:
    """The numbers in a request extreme enough to overflow an estimate (the likely cause when one does)."""
    out = []
    for dest, value in values.items():
        opt = command.by_dest.get(dest)
        if opt is None or opt.kind not in _NUMERIC_KINDS or isinstance(value, bool):
            continue
        try:
            x = float(value)  # numbers given as text ('1e300') too
        except (TypeError, ValueError):
            continue
        if not math.isfinite(x) or abs(x) >= 1e12 or 0 < abs(x) <= 1e-12:
            out.append(dest)
    return out


def out_of_range(command: Command, values: dict[str, Any], detail: str) -> InputError:
    """A 422 for inputs that make the engine overflow or divide by zero: on the extreme number when there is one."""
    suspects = _suspects(command, values)
    if not suspects:
        return InputError("body", None, f"the inputs are outside the range the estimate can handle ({detail})",
                          hint="use sizes and rates real runs have")
    also = f"; also check {', '.join(suspects[1:])}" if len(suspects) > 1 else ""
    return InputError(suspects[0], echo(values[suspects[0]]),
                      f"is outside the range the estimate can handle ({detail})",
                      hint="use a value real runs have" + also)


def compute(command: Command, body: dict[str, Any], hub: HubConfigs | None = None) -> Any:
    """The JSON ``gpuplan <command> ... --json`` prints for this request (``hub``: the server's fetches of hub
    configs, None to resolve presets only). Overflow, division by zero and other arithmetic failures on the
    request's numbers are input errors (422), never server errors."""
    from gpuplan.model.traced import without_tracing

    try:
        with without_tracing():  # a family without rules takes minutes of CPU tracing: a local run's job
            return _compute(command, body, hub)
    except InputError as exc:
        suspects = _suspects(command, body)
        if exc.field == command.name and exc.value is None and len(suspects) == 1:
            # the command refused the request as a whole ('no layout meets 1e-300 days'): name the extreme number
            raise InputError(suspects[0], echo(body[suspects[0]]), exc.rule, exc.hint) from None
        raise
    except (ArithmeticError, ValueError) as exc:  # OverflowError, ZeroDivisionError, math domain errors
        raise out_of_range(command, body, f"{type(exc).__name__}: {exc}") from None


def _compute(command: Command, body: dict[str, Any], hub: HubConfigs | None) -> Any:
    values = {k: v for k, v in body.items() if v is not None}
    check_dimensions(values)
    model, config = values.pop("model", None), values.pop("config", None)
    stack_config = values.pop("stack_config", None)
    if model is not None and config is not None:
        raise InputError("config", "(object)", "give 'model' or 'config', not both")
    if stack_config is not None:
        return _with_stack_config(command, values, stack_config, model, config)
    if config is not None:
        spec_from_pasted(config)  # every problem reported on 'config' before the CLI sees it
        with pasted_config_file(config) as path:
            return evaluate(command, values, path)
    if model is None:
        return evaluate(command, values, None)
    name = check_model_name(model, hub)
    if hub is not None and is_hub_name(name):
        from gpuplan.model.resolve import supplied_hub_configs

        config = check_hub_config(name, hub.config(name), hub.max_bytes)
        with supplied_hub_configs({name: config}):  # resolved as the CLI resolves a hub id, from this config
            return evaluate(command, values, name)
    return evaluate(command, values, name)


def _with_stack_config(command: Command, values: dict[str, Any], text: str, model: str | None,
                       config: dict[str, Any] | None) -> Any:
    """A pasted launch config (``stack_config``): as MODEL when it names the model and no model is given, else as
    ``--from`` beside the named model, as ``gpuplan train|plan|infer FILE`` reads it; the answer's account names
    the file '(pasted)'."""
    from gpuplan.configs import FORMATS, detect

    if "from_file" in values:
        raise InputError("stack_config", "(text)", "give 'stack_config' or 'from_file', not both")
    with pasted_stack_config(text) as path:
        fmt = detect(path)
        if fmt is None or fmt not in FORMATS:
            raise InputError("stack_config", "(text)", "is not a launch config gpuplan reads: a torchtitan TOML, "
                             "a torchtune, axolotl, LLaMA-Factory or TRL / Trainer YAML recipe, a DeepSpeed JSON, "
                             "an accelerate config YAML, a Megatron-LM argument list or a `vllm serve` line")
        if model is None and config is None and fmt not in ("deepspeed", "accelerate"):
            out = evaluate(command, values, path)
        elif config is not None:
            with pasted_config_file(config) as cfg_path:
                out = evaluate(command, {**values, "from_file": path}, cfg_path)
        else:
            if model is None:
                raise InputError("stack_config", "(text)", f"is a {fmt} config, which names no model",
                                 hint="give the model in 'model' (or 'config') beside it")
            out = evaluate(command, {**values, "from_file": path}, check_model_name(model))
    if isinstance(out, dict) and isinstance(out.get("config_file"), dict):
        out["config_file"]["path"] = "(pasted)"
    return out


class NonFiniteResult(ValueError):
    """An estimate came out as NaN or infinity at ``path``: JSON cannot carry it and it means nothing."""

    def __init__(self, path: str, value: float) -> None:
        super().__init__(f"{path} = {show(value)}")
        self.path, self.value = path, value


def encode(result: Any) -> bytes:
    """The response body: compact UTF-8 JSON, byte for byte what Starlette's ``JSONResponse`` renders. A NaN or
    infinity anywhere raises :class:`NonFiniteResult` (json refuses it; the search runs only then)."""
    try:
        return json.dumps(result, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode()
    except ValueError:
        where = find_non_finite(result)
        if where is None:
            raise
        raise NonFiniteResult(*where) from None


class ResultCache:
    """Least-recently-used response bodies. Estimates are pure functions of the request and the packaged data, so
    a repeated request (the page going back to a state, a shared link, a script polling) is answered from here.

    Two keys lead to the same stored bytes: the canonical request (options parsed and sorted), and, for small
    bodies, the raw request body as received, which answers an identical repeat before any JSON decoding or
    validation. Only successful answers are stored."""

    def __init__(self, entries: int = CACHE_ENTRIES, hub: HubConfigs | None = None) -> None:
        self.entries, self.hub = entries, hub
        self._data: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._raw: OrderedDict[tuple[str, bytes], bytes] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def _put(self, table: OrderedDict, key: Any, data: bytes) -> None:
        with self._lock:
            table[key] = data
            table.move_to_end(key)
            if len(table) > self.entries:
                table.popitem(last=False)

    def get_raw(self, name: str, raw: bytes) -> bytes | None:
        """The stored answer to this exact request body, if any."""
        if len(raw) > RAW_KEY_MAX_BYTES:
            return None
        with self._lock:
            data = self._raw.get((name, raw))
            if data is not None:
                self._raw.move_to_end((name, raw))
                self.hits += 1
            return data

    def put_raw(self, name: str, raw: bytes, data: bytes) -> None:
        if len(raw) <= RAW_KEY_MAX_BYTES:
            self._put(self._raw, (name, raw), data)

    @staticmethod
    def _key(command: Command, body: dict[str, Any]) -> tuple[str, str]:
        return command.name, json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)

    def cached(self, command: Command, body: dict[str, Any]) -> bytes | None:
        """The stored answer to ``body``, if any (a slow request answered before needs no worker thread)."""
        key = self._key(command, body)
        with self._lock:
            data = self._data.get(key)
            if data is not None:
                self._data.move_to_end(key)
                self.hits += 1
            return data

    def answer(self, command: Command, body: dict[str, Any]) -> bytes:
        """The JSON body answering ``body`` (validated request values), computed once per canonical request."""
        data = self.cached(command, body)
        if data is not None:
            return data
        key = self._key(command, body)
        try:
            data = encode(compute(command, body, self.hub))
        except NonFiniteResult as exc:
            raise out_of_range(command, body, f"the estimate's {exc.path} would be {show(exc.value)}") from None
        with self._lock:
            self.misses += 1
        self._put(self._data, key, data)
        return data
