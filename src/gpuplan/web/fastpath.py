"""The short way through the server for the common request: a valid JSON estimate that is answered at once.

Why it is kept: it cuts the server's CPU per new estimate from 0.72 to 0.41 ms (bench_web.py --in-process).

A ``POST /api/v1/<command>`` with ``content-type: application/json`` is read here, before FastAPI's routing,
dependency solving and middleware stack:

1. the body is read (a declared or actual size over the limit goes the full way, where it gets its 413);
2. an identical body seen before is answered from the result cache without decoding it;
3. otherwise the body is decoded with ``json.loads`` (refusing NaN and Infinity) and validated against the same
   pydantic request model, in the same (Python) mode as FastAPI's body handling; the values are the ones the
   endpoint would see;
4. a quick estimate is computed through the same cache; a bad input gets the same 422 body the app's
   ``InputError`` handler writes.

Everything else goes the full way with the body replayed, so its answer is exactly the app's: another content
type, a body that is not JSON, holds NaN or Infinity, or fails validation (FastAPI words those errors), a command
that runs in a worker thread (a layout search, the advisor), and any unexpected exception (logged and answered 500
there).
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

from pydantic import BaseModel, ValidationError

from gpuplan.commands.registry import Command
from gpuplan.errors import InputError
from gpuplan.web.api import ResultCache
from gpuplan.web.body import read_body, replaying
from gpuplan.web.jsonsafe import loads as strict_loads

ASGIApp = Callable[[dict, Any, Any], Awaitable[None]]
JSON_TYPE = b"application/json"


class FastPath:
    """The quick handler for the estimate routes registered with :meth:`add`."""

    def __init__(self, cache: ResultCache, *, max_body_bytes: int, inline: Callable[[Command, dict], bool],
                 input_error: Callable[[InputError], Any], extra_headers: list[tuple[bytes, bytes]]) -> None:
        self.cache, self.max_body_bytes = cache, max_body_bytes
        self.inline, self.input_error, self.extra_headers = inline, input_error, extra_headers
        self.routes: dict[str, tuple[Command, type[BaseModel]]] = {}
        self.enabled = True

    def add(self, path: str, command: Command, model: type[BaseModel]) -> None:
        self.routes[path] = (command, model)

    def route(self, scope: dict) -> tuple[Command, type[BaseModel]] | None:
        """The route this request takes the short way, or None."""
        if not self.enabled or scope["type"] != "http" or scope.get("method") != "POST" or scope.get("root_path"):
            return None
        return self.routes.get(scope.get("path", ""))

    async def __call__(self, route: tuple[Command, type[BaseModel]], scope: dict, receive: Any, send: Any,
                       full: ASGIApp) -> None:
        content_type = declared = None
        for name, value in scope.get("headers") or ():
            if name == b"content-type" and content_type is None:
                content_type = value
            elif name == b"content-length" and declared is None:
                declared = value
        if content_type != JSON_TYPE or declared is not None and (not declared.isdigit()
                                                                  or int(declared) > self.max_body_bytes):
            return await full(scope, receive, send)
        read = await read_body(receive, self.max_body_bytes)
        if read is None:
            return  # the client went away
        body, more = read
        replay = replaying(body, more, receive)
        if more or len(body) > self.max_body_bytes:
            return await full(scope, replay, send)
        command, model = route
        # Yield once before computing: the event loop then collects the requests that arrived while this batch
        # was being read, and they are answered in this round. Without it, under saturation one or two connections
        # kept missing the round and waited two (closed-loop p99 about twice the p50; benchmarks/bench_web.py).
        await asyncio.sleep(0)
        data = self.cache.get_raw(command.name, body)
        if data is None:
            try:
                decoded = strict_loads(body)
                values = model.model_validate(decoded).model_dump(by_alias=True, exclude_none=True)
            except (ValueError, ValidationError, RecursionError):  # JSONDecodeError, UnicodeDecodeError, NaN too
                return await full(scope, replay, send)
            if not self.inline(command, values):
                return await full(scope, replay, send)
            try:
                data = self.cache.answer(command, values)
            except InputError as exc:
                try:
                    response = self.input_error(exc)
                except Exception:  # the full way answers it (a JSON 500 at worst) and logs it
                    return await full(scope, replay, send)
                return await self._send(send, response.status_code, response.body, response.raw_headers)
            except Exception:
                return await full(scope, replay, send)
            self.cache.put_raw(command.name, body, data)
        await self._send(send, 200, data, [(b"content-length", str(len(data)).encode()),
                                           (b"content-type", JSON_TYPE)])

    async def _send(self, send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        await send({"type": "http.response.start", "status": status, "headers": [*headers, *self.extra_headers]})
        await send({"type": "http.response.body", "body": body})
