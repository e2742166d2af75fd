"""Small ASGI helpers shared by the endpoints: reading a bounded body and sending replies."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Mapping
from typing import TypeVar

from starlette.types import Receive, Scope, Send

from gateway.context import JSONReply, StreamReply
from gateway.errors import ClientClosedRequestError, PayloadTooLargeError
from gateway.providers.sse import DONE
from gateway.schemas.body import decode_body

JSON_TYPE = (b"content-type", b"application/json")
# How long the provider may take to end its stream once the client has its whole answer.
DRAIN_SECONDS = 10.0
STREAM_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


# Where the server (gateway.server) leaves a request's DisconnectSlot in the scope.
DISCONNECT_SLOT = "gateway.disconnect"

T = TypeVar("T")


class DisconnectSlot:
    """Set by the server for one request: whether its client is gone, and the task to cancel when it
    goes (the one awaiting the call's answer, if any)."""

    __slots__ = ("gone", "task")

    def __init__(self) -> None:
        self.gone = False
        self.task: asyncio.Task[object] | None = None

    def lost(self) -> None:
        self.gone = True
        if self.task is not None:
            self.task.cancel()


async def unless_client_leaves(scope: Scope, receive: Receive, work: Awaitable[T]) -> T | None:
    """Await `work` (a call's answer) unless the client disconnects first: then `work` is cancelled at
    once (its upstream connection is closed, so the provider stops generating; the pipeline still
    settles what it admitted) and None is returned."""
    slot, watcher = _watched(scope, receive)
    task = slot.task = asyncio.current_task()
    assert task is not None
    try:
        if slot.gone:
            if asyncio.iscoroutine(work):
                work.close()
            return None
        return await work
    except asyncio.CancelledError:
        if not slot.gone:
            raise
        task.uncancel()
        return None
    finally:
        slot.task = None
        if watcher is not None:
            watcher.cancel()


def _watched(scope: Scope, receive: Receive) -> tuple[DisconnectSlot, asyncio.Task[None] | None]:
    """The request's DisconnectSlot. Under the gateway's server the disconnect arrives through the
    one in the scope; elsewhere a watcher task reads `receive` to fill a new one."""
    slot: DisconnectSlot | None = scope.get(DISCONNECT_SLOT)
    if slot is not None:
        return slot, None
    slot = DisconnectSlot()
    return slot, asyncio.get_running_loop().create_task(_watch(receive, slot))


async def _watch(receive: Receive, slot: DisconnectSlot) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            slot.lost()
            return


def request_headers(scope: Scope) -> dict[str, str]:
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}


async def read_body(receive: Receive, headers: Mapping[str, str], limit: int) -> bytes:
    """The whole request body, refused with 413 as soon as it is known to pass `limit` (decompressed,
    when it came with a Content-Encoding)."""
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"The request body is {declared} bytes; the limit is {limit} bytes.")
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body"):
        if message["type"] == "http.disconnect":
            raise _client_gone()
        if len(body) > limit:
            raise PayloadTooLargeError(f"The request body is larger than the limit of {limit} bytes.")
        encoding = headers.get("content-encoding")
        return body if encoding is None else decode_body(body, encoding, limit)
    parts = [body]
    size = len(body)
    while message.get("more_body"):
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _client_gone()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"The request body is larger than the limit of {limit} bytes.")
        parts.append(chunk)
    encoding = headers.get("content-encoding")
    return b"".join(parts) if encoding is None else decode_body(b"".join(parts), encoding, limit)


def _client_gone() -> ClientClosedRequestError:
    return ClientClosedRequestError("The client closed the connection before its request body arrived.")


def encode_headers(headers: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


async def send_json(send: Send, reply: JSONReply) -> None:
    raw = encode_headers(reply.headers)
    raw.append(JSON_TYPE)
    raw.append((b"content-length", str(len(reply.body)).encode()))
    await send({"type": "http.response.start", "status": reply.status, "headers": raw})
    await send({"type": "http.response.body", "body": reply.body})


async def send_stream(scope: Scope, send: Send, receive: Receive, reply: StreamReply) -> None:
    """Send an SSE reply as it is produced. While the provider is still producing, a client that goes
    away (see unless_client_leaves) cancels this task, which closes the upstream response at once
    (the provider stops generating) and settles the request. A stream that is already complete has
    nothing to wait for. Once the client has its whole answer (it ends at `data: [DONE]`), the
    provider's end is read without the client (see _end)."""
    answered: bool | None = False
    try:
        if reply.complete:
            answered = await _pump(send, reply)
        else:
            answered = await unless_client_leaves(scope, receive, _pump(send, reply))  # None: it left
    finally:
        await _end(reply, answered is True)


async def _pump(send: Send, reply: StreamReply) -> bool:
    """Send the answer; True when it ended at [DONE] before the provider's stream did (unless the
    stream must settle first: then the response completes after the settle)."""
    headers = encode_headers(reply.headers)
    headers.extend(STREAM_HEADERS)
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    chunk, rest = reply.first, reply.rest
    while reply.settle_first or not chunk.endswith(DONE):
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
        try:
            chunk = await rest.__anext__()
        except StopAsyncIteration:
            if reply.settle_first and reply.settlement is not None:
                await reply.settlement.run(shield=True)  # before the response completes
            await send({"type": "http.response.body", "body": b""})
            return False
    # `data: [DONE]` is the last thing a client reads: the answer ends with it, in the same write
    # (a stream that arrived whole leaves in one), and the provider's end and the settle follow.
    await send({"type": "http.response.body", "body": chunk})
    return True


async def _end(reply: StreamReply, answered: bool) -> None:
    """After an answer that ended at [DONE], read the provider's stream to its end (at most
    DRAIN_SECONDS): its connection goes back to the pool instead of being dropped, and whatever
    follows [DONE] is not for a client. Either way the stream is then closed: its `finally` closes
    the upstream answer and settles."""
    try:
        if answered:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(DRAIN_SECONDS):
                    async for _ in reply.rest:
                        pass
    finally:
        with contextlib.suppress(BaseException):
            await reply.rest.aclose()
