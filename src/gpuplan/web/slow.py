"""Slow requests (a layout search, the advisor) run in a few worker threads, behind a bounded queue and a time limit.

Without these, four concurrent advisor requests on a large MoE model waited minutes with no answer, and every
new one waited longer. Now:

* at most ``threads`` slow requests compute at once, and at most ``max_queue`` more wait for a thread; a request
  beyond that is refused at once (503, with Retry-After);
* a request that has no answer ``time_limit`` seconds after it arrived gets a 504. A waiting one leaves the queue.
  A running one cannot be interrupted (Python threads cannot be stopped from outside): it finishes in the
  background, still holding its thread, so abandoned work is bounded by ``threads`` too, and its answer goes into
  the result cache, where asking again finds it.

Settings: ``gpuplan serve --time-limit S --max-queue N``, or the environment variables named below (read by the
app factory, so every uvicorn worker process sees them).
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, TypeVar

T = TypeVar("T")

TIME_LIMIT_ENV = "GPUPLAN_WEB_TIME_LIMIT"
MAX_QUEUE_ENV = "GPUPLAN_WEB_MAX_QUEUE"
THREADS_ENV = "GPUPLAN_WEB_SLOW_THREADS"
DEFAULT_TIME_LIMIT_S = 120.0
DEFAULT_MAX_QUEUE = 8
DEFAULT_THREADS = 2  # the engines are pure Python: more threads only share the same interpreter lock
RETRY_AFTER_S = 10


class SlowRefused(Exception):
    """A slow request refused by the gate: 503 (queue full) or 504 (time limit)."""

    def __init__(self, status: int, rule: str, hint: str, retry_after: int | None = None) -> None:
        super().__init__(rule)
        self.status, self.rule, self.hint, self.retry_after = status, rule, hint, retry_after


def _env_number(name: str, default: float, *, minimum: float) -> float:
    """A setting from the environment; a value that is not a number >= minimum is refused at start-up."""
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value >= minimum or value == float("inf"):
        raise ValueError(f"{name}={raw!r}: must be a finite number >= {minimum:g}")
    return value


class SlowGate:
    """The worker threads, queue and time limit for slow requests (see the module docstring)."""

    def __init__(self, time_limit: float | None = None, max_queue: int | None = None,
                 threads: int | None = None) -> None:
        self.time_limit = (time_limit if time_limit is not None
                           else _env_number(TIME_LIMIT_ENV, DEFAULT_TIME_LIMIT_S, minimum=0.001))
        self.max_queue = int(max_queue if max_queue is not None
                             else _env_number(MAX_QUEUE_ENV, DEFAULT_MAX_QUEUE, minimum=0))
        self.threads = int(threads if threads is not None else _env_number(THREADS_ENV, DEFAULT_THREADS, minimum=1))
        if not (self.time_limit > 0 and self.max_queue >= 0 and self.threads >= 1):
            raise ValueError(f"time_limit={self.time_limit}, max_queue={self.max_queue}, threads={self.threads}: "
                             "need time_limit > 0, max_queue >= 0, threads >= 1")
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="gpuplan-slow")
        self._pending: set[Future] = set()  # submitted and not finished: running or waiting for a thread

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """``fn(*args)`` in a worker thread, within the queue bound and the time limit."""
        if len(self._pending) >= self.threads + self.max_queue:
            raise SlowRefused(503, f"the server is busy: {self.threads} slow requests are running and "
                                   f"{self.max_queue} waiting (the most it queues)",
                              f"try again in {RETRY_AFTER_S} s", retry_after=RETRY_AFTER_S)
        future = self._pool.submit(fn, *args)
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)  # set.discard is atomic under the GIL
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self.time_limit)
        except asyncio.TimeoutError:
            future.cancel()  # leaves the queue if it never started; a running one finishes in the background
            raise SlowRefused(504, f"no answer within the server's time limit of {self.time_limit:g} s",
                              "narrow the request (fewer GPUs or fixed degrees for a plan, no advice), or run "
                              "gpuplan locally; a search that started finishes and a repeat then answers from "
                              "the cache") from None
