"""Reading an ASGI request body once, under a size limit, and handing it on to the next application."""

from __future__ import annotations

from typing import Any, Awaitable, Callable

Receive = Callable[[], Awaitable[dict]]


async def read_body(receive: Receive, max_bytes: int) -> tuple[bytes, bool] | None:
    """The request body, read until it ends or grows past ``max_bytes``: (the bytes read, whether more follows),
    or None when the client went away. A body over the limit comes back longer than ``max_bytes``."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        more = bool(message.get("more_body"))
        if size > max_bytes or not more:
            return b"".join(chunks), more


def replaying(body: bytes, more: bool, receive: Receive) -> Callable[[], Awaitable[Any]]:
    """A ``receive`` for the next application: first the part of the body read already, then the rest from the
    client's own ``receive``."""
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": more}

    return replay
