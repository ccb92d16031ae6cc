"""From an API request to the CLI's JSON: model checks, count limits, the CLI parser, the command, a small cache."""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from typing import Any

from gpuplan.errors import InputError
from gpuplan.units import parse_count
from gpuplan.cli.bridge import Command, evaluate
from gpuplan.web.limits import check_dimensions, check_model_name, pasted_config_file, spec_from_pasted

CACHE_ENTRIES = 512
RAW_KEY_MAX_BYTES = 4096  # larger bodies (pasted configs) are keyed by their canonical form only


def _normalize(command: Command, body: dict[str, Any]) -> dict[str, Any]:
    """Drop absent options; parse counts ('7B', '128k') and hold them to the API's bounds."""
    values = {k: v for k, v in body.items() if v is not None}
    for dest, v in values.items():
        opt = command.by_dest.get(dest)
        if opt is None or opt.kind != "count":
            continue
        try:
            n = parse_count(v, opt.dest)
        except OverflowError:  # '1e999': parse_count lets float('inf') through to int()
            raise InputError(opt.dest, v, "must be a finite count") from None
        if not 1 <= n <= opt.maximum:
            raise InputError(opt.dest, v, f"must be a count between 1 and {opt.maximum:,}")
        values[opt.dest] = n
    check_dimensions(values)
    return values


def compute(command: Command, body: dict[str, Any]) -> Any:
    """The JSON ``gpuplan <command> ... --json`` prints for this request."""
    values = _normalize(command, body)
    model, config = values.pop("model", None), values.pop("config", None)
    if model is not None and config is not None:
        raise InputError("config", "(object)", "give 'model' or 'config', not both")
    if config is not None:
        spec_from_pasted(config)  # every problem reported on 'config' before the CLI sees it
        with pasted_config_file(config) as path:
            return evaluate(command, values, path)
    return evaluate(command, values, None if model is None else check_model_name(model))


def encode(result: Any) -> bytes:
    """The response body: compact UTF-8 JSON, byte for byte what Starlette's ``JSONResponse`` renders."""
    return json.dumps(result, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode()


class ResultCache:
    """Least-recently-used response bodies. Estimates are pure functions of the request and the packaged data, so
    a repeated request (the page going back to a state, a shared link, a script polling) is answered from here.

    Two keys lead to the same stored bytes: the canonical request (options parsed and sorted), and, for small
    bodies, the raw request body as received, which answers an identical repeat before any JSON decoding or
    validation. Only successful answers are stored."""

    def __init__(self, entries: int = CACHE_ENTRIES) -> None:
        self.entries = entries
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

    def answer(self, command: Command, body: dict[str, Any]) -> bytes:
        """The JSON body answering ``body`` (validated request values), computed once per canonical request."""
        key = (command.name, json.dumps(body, sort_keys=True, separators=(",", ":"), default=str))
        with self._lock:
            data = self._data.get(key)
            if data is not None:
                self._data.move_to_end(key)
                self.hits += 1
                return data
        data = encode(compute(command, body))
        with self._lock:
            self.misses += 1
        self._put(self._data, key, data)
        return data
