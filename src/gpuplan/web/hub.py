"""Hugging Face ids on the web API: the server fetches a repository's ``config.json`` (``gpuplan serve --hub on``).

Only that one file, through the command line's own code path (:func:`gpuplan.model.resolve.fetch_hub_config`):
no remote code, no weights, anonymously (the server's own hub login is never lent to its visitors). The id is
checked before any network call; the file is refused above ``max_bytes``; each request to the hub has a timeout
and the whole fetch a time limit (504 past it; the fetch finishes in the background and fills the cache). Parsed
configs are kept in an in-process LRU, above huggingface_hub's disk cache, and concurrent requests for the same
id share one fetch. What the hub said against an id (missing, gated, too large, not a model) is kept for
``FAILURE_TTL_S``, so that repeating a bad id does not ask the hub again. Fetches run in their own few threads,
never on the event loop.

Off (the default of a server reachable from the network), an id that is not a preset is refused with a 422
saying how to turn it on. Settings: ``gpuplan serve --hub on|off``, or the environment variable below (read by
the app factory, so every uvicorn worker process sees it).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from gpuplan.errors import HubUnavailable, InputError
from gpuplan.model.resolve import MAX_HUB_CONFIG_BYTES, check_hub_id, fetch_hub_config
from gpuplan.web.slow import SlowRefused

HUB_ENV = "GPUPLAN_WEB_HUB"
CONFIG_ENTRIES = 256  # parsed configs kept (a config is a few KiB)
REQUEST_TIMEOUT_S = 10.0  # each request to the hub (huggingface_hub's own default)
TIME_LIMIT_S = 25.0  # the whole fetch, as a request waits for it
THREADS = 4  # fetches wait on the network, not the interpreter lock
FAILURE_TTL_S = 60.0  # how long the hub's refusal of an id is repeated without asking again
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
# A name that ends like a file the command line would read is never taken for a hub id by the server.
_FILE_SUFFIXES = (".json", ".toml", ".yaml", ".yml", ".sh", ".bash", ".txt", ".args", ".cmd")


def default_for_host(host: str) -> bool:
    """``--hub``'s default: on when the server listens on the loopback only (its user is the machine's own)."""
    return host.strip().lower() in LOCAL_HOSTS


def hub_from_env() -> bool:
    """The setting for an app built without one: :data:`HUB_ENV` ('on' or 'off'), off when unset."""
    raw = os.environ.get(HUB_ENV, "").strip().lower()
    if raw in ("", "off"):
        return False
    if raw == "on":
        return True
    raise ValueError(f"{HUB_ENV}={raw!r}: must be 'on' or 'off'")


class HubConfigs:
    """The server's fetches of hub configs: id checks, single flight, time limit and an LRU (module docstring)."""

    def __init__(self, enabled: bool, *, entries: int = CONFIG_ENTRIES, max_bytes: int = MAX_HUB_CONFIG_BYTES,
                 request_timeout_s: float = REQUEST_TIMEOUT_S, time_limit_s: float = TIME_LIMIT_S,
                 threads: int = THREADS) -> None:
        self.enabled, self.entries, self.max_bytes = enabled, entries, max_bytes
        self.request_timeout_s, self.time_limit_s = request_timeout_s, time_limit_s
        self._configs: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._failures: OrderedDict[str, tuple[float, InputError]] = OrderedDict()  # id -> (until, error)
        self._inflight: dict[str, Future] = {}
        self._lock = threading.Lock()
        self._threads = threads
        self._pool: ThreadPoolExecutor | None = None
        self.fetches = 0  # calls that went to fetch_hub_config (the rest came from the LRU or joined one)

    def check(self, name: str) -> str:
        """``name`` as a hub id this server fetches, or the InputError saying why not (off, not an id)."""
        if not self.enabled:
            check_hub_id(name)  # a name that cannot be an id gets the id rule, not the advice below
            raise InputError("model", name, "is not a preset, and this server does not fetch config.json files "
                             "from the Hugging Face hub", hint="start it with `gpuplan serve --hub on`, paste the "
                             "config.json into 'config', or run gpuplan locally")
        if name.lower().endswith(_FILE_SUFFIXES):
            raise InputError("model", name, "is a file name; the web API never reads files",
                             hint="give a preset id or a Hugging Face id org/name, or paste the file's content")
        return check_hub_id(name)

    def cached(self, repo_id: str) -> dict[str, Any] | None:
        """The kept config of ``repo_id``, or None; raises the hub's recent refusal of it again."""
        with self._lock:
            config = self._configs.get(repo_id)
            if config is not None:
                self._configs.move_to_end(repo_id)
                return config
            failure = self._failures.get(repo_id)
            if failure is not None:
                if time.monotonic() < failure[0]:
                    raise failure[1]
                del self._failures[repo_id]
            return None

    def _future(self, repo_id: str) -> Future:
        """The fetch of ``repo_id`` in flight, or a new one (one per id at a time)."""
        with self._lock:
            future = self._inflight.get(repo_id)
            if future is None:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="gpuplan-hub")
                future = self._pool.submit(self._fetch, repo_id)
                self._inflight[repo_id] = future
                future.add_done_callback(lambda _f: self._done(repo_id))
            return future

    def _done(self, repo_id: str) -> None:
        with self._lock:
            self._inflight.pop(repo_id, None)

    def _fetch(self, repo_id: str) -> dict[str, Any]:
        with self._lock:
            self.fetches += 1
        try:
            config = fetch_hub_config(repo_id, max_bytes=self.max_bytes, timeout_s=self.request_timeout_s,
                                      token=False)
        except HubUnavailable as exc:  # not the id's fault: asked again next time; the hint is the page's way round
            raise HubUnavailable(exc.field, exc.value, exc.rule, hint="paste its config.json (https://huggingface.co/"
                                 f"{repo_id}/blob/main/config.json) into 'config'") from None
        except InputError as exc:
            with self._lock:
                self._failures[repo_id] = (time.monotonic() + FAILURE_TTL_S, exc)
                while len(self._failures) > self.entries:
                    self._failures.popitem(last=False)
            raise
        with self._lock:
            self._configs[repo_id] = config
            self._configs.move_to_end(repo_id)
            while len(self._configs) > self.entries:
                self._configs.popitem(last=False)
        return config

    def _timed_out(self, repo_id: str) -> SlowRefused:
        return SlowRefused(504, f"the Hugging Face hub did not give the config.json of {repo_id} within "
                                f"{self.time_limit_s:g} s", "try again shortly (a fetch that started finishes and "
                                "is kept), or paste the config.json into 'config'")

    async def prefetch(self, repo_id: str) -> dict[str, Any]:
        """The config of ``repo_id`` (a checked id), fetched in a hub thread if the LRU lacks it; the event loop
        waits at most ``time_limit_s``."""
        config = self.cached(repo_id)
        if config is not None:
            return config
        future = self._future(repo_id)
        try:
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), self.time_limit_s)
        except asyncio.TimeoutError:
            raise self._timed_out(repo_id) from None

    def config(self, repo_id: str) -> dict[str, Any]:
        """The config of ``repo_id``, blocking: from the LRU, else from the shared fetch (for a caller in a
        thread; the endpoints call :meth:`prefetch` first, so this is an LRU hit)."""
        config = self.cached(repo_id)
        if config is not None:
            return config
        try:
            return self._future(repo_id).result(self.time_limit_s)
        except TimeoutError:
            raise self._timed_out(repo_id) from None
