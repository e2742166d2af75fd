"""When a call settles, for every row of the settle table (gateway/settlement.py): the real endpoint
and pipeline, driven through their ASGI surface with a fake transport, a fake store that logs its
writes beside what the client was sent, and a fake router; no server, no network."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.auth import Authenticator
from gateway.config import AuthConfig, GatewayConfig
from gateway.context import JSONReply, Reply, RequestContext, Usage
from gateway.dialects.chat import ChatDialect
from gateway.endpoints.asgi import DISCONNECT_SLOT, DisconnectSlot
from gateway.endpoints.calls import DialectEndpoint
from gateway.errors import GatewayError, UpstreamError
from gateway.metrics import Metrics
from gateway.pipeline import Pipeline
from gateway.providers.base import ParsedResponse
from gateway.runtime import Runtime, Services
from gateway.settlement import Timing, settle_timing
from gateway.store import BatchWrite, StoreOp
from gateway.tokens import TokenCounter
from gateway.upstream import UpstreamPool

COMPLETION = {"id": "c", "object": "chat.completion", "created": 1, "model": "m",
              "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
              "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}
CHUNKS = [b'data: {"choices":[{"index":0,"delta":{"content":"hi"}}]}\n\n', b"data: [DONE]\n\n"]


def expected(*, stream: bool, failed: bool, holds: bool, ordered: bool) -> Timing:
    """The table of the settlement module's docstring, read top to bottom."""
    rows: list[tuple[bool, Timing]] = [
        (failed, Timing.BEFORE),
        (holds, Timing.BEFORE),
        (not ordered and not stream, Timing.BEFORE),
    ]
    return next((timing for applies, timing in rows if applies), Timing.AFTER)


@given(st.booleans(), st.booleans(), st.booleans(), st.booleans())
def test_the_table(stream: bool, failed: bool, holds: bool, ordered: bool) -> None:
    ctx = RequestContext(request_id="r", operation=ChatDialect().operation, body={}, alias="a", stream=stream,
                         headers={}, settle_before_reply=holds)
    assert settle_timing(ctx, stream=stream, failed=failed, ordered=ordered) is expected(
        stream=stream, failed=failed, holds=holds, ordered=ordered)


# --- the fakes -------------------------------------------------------------------------------------

@dataclass
class Log:
    events: list[str] = field(default_factory=list)


class FakeStore:
    in_process = True

    def __init__(self, log: Log, *, ordered: bool) -> None:
        self.log = log
        self.ordered = ordered

    async def run_batch(self, ops: Sequence[StoreOp]) -> list[Any]:
        self.log.events.append("store")
        return [None for _ in ops]


# The probe stage's settle write; the fake store records the batch and applies nothing.
PROBE_WRITE = BatchWrite("probe", memory=lambda store: None, redis=lambda store, batch, once: None)


class Stage:
    """Writes one op at settle; sets the context's settle flags when it admits."""

    name = "probe"
    dialects = None

    def __init__(self, log: Log, *, holds: bool) -> None:
        self.log, self.holds = log, holds
        self.settled: list[GatewayError | None] = []

    async def admit(self, ctx: RequestContext) -> Reply | None:
        ctx.settle_before_reply = self.holds
        return None

    def settle(self, ctx: RequestContext, reply: Reply | None, error: GatewayError | None) -> Sequence[StoreOp]:
        self.settled.append(error)
        return (PROBE_WRITE(),)

    def settle_failed(self, ctx: RequestContext, ops: Sequence[StoreOp], error: Exception) -> None:
        raise AssertionError("the fake store never fails")

    def annotate(self, ctx: RequestContext, reply: JSONReply | None, error: GatewayError | None) -> None:
        self.log.events.append("annotate")


class Translator:
    usage: Usage | None = Usage(3, 1)
    finish_reason: str | None = "stop"
    done = True


class Response:
    def close(self) -> None:
        return None


@dataclass
class Opened:
    first: bytes
    rest: AsyncIterator[bytes]
    translator: Translator = field(default_factory=Translator)
    response: Response = field(default_factory=Response)
    native: bool = False


class Table:
    def resolve(self, name: str) -> str:
        return name


class Router:
    table = Table()

    def __init__(self, *, fail: bool) -> None:
        self.fail = fail

    async def complete(self, ctx: RequestContext) -> ParsedResponse:
        if self.fail:
            raise UpstreamError("down", status=500)
        return ParsedResponse(COMPLETION, orjson.dumps(COMPLETION), Usage(3, 1))

    async def open_stream(self, ctx: RequestContext) -> Opened:
        if self.fail:
            raise UpstreamError("down", status=500)

        async def rest() -> AsyncIterator[bytes]:
            yield CHUNKS[1]

        return Opened(CHUNKS[0], rest())


def endpoint(log: Log, stage: Stage, *, ordered: bool, fail: bool, store: FakeStore | None = None) -> DialectEndpoint:
    metrics = Metrics()
    store = store or FakeStore(log, ordered=ordered)
    pipeline = Pipeline(Authenticator(AuthConfig(required=False)), cast(Any, Router(fail=fail)), metrics,
                        cast(Any, store), (cast(Any, stage),))
    services = Services(metrics=metrics, pool=UpstreamPool(), tokens=TokenCounter(), store=cast(Any, store))
    services.runtime = Runtime(config=GatewayConfig(), digest="", auth=pipeline.auth, table=cast(Any, None),
                               pipeline=pipeline, conversations=cast(Any, None))
    return DialectEndpoint(ChatDialect(), services)


async def call(app: DialectEndpoint, log: Log, *, stream: bool, slot: DisconnectSlot | None = None) -> None:
    """`slot`: the request's DisconnectSlot, as the gateway's server puts it in the scope."""
    body = orjson.dumps({"model": "m", "stream": stream, "messages": [{"role": "user", "content": "x"}]})
    scope: dict[str, Any] = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": []}
    if slot is not None:
        scope[DISCONNECT_SLOT] = slot
    requests = iter([{"type": "http.request", "body": body, "more_body": False}])

    async def receive() -> dict[str, Any]:
        return next(requests, None) or await asyncio.Event().wait()  # then: a client that stays

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body" and not message.get("more_body"):
            log.events.append("answered")

    await app(scope, receive, send)
    log.events.append("returned")


MATRIX = list(itertools.product([False, True], repeat=3))


@pytest.mark.parametrize(("stream", "holds", "ordered"), MATRIX)
async def test_each_row_settles_once_at_its_time(stream: bool, holds: bool, ordered: bool) -> None:
    log = Log()
    stage = Stage(log, holds=holds)
    await call(endpoint(log, stage, ordered=ordered, fail=False), log, stream=stream)
    timing = expected(stream=stream, failed=False, holds=holds, ordered=ordered)
    if timing is Timing.BEFORE:
        assert log.events == ["store", "answered", "returned"]
    else:
        annotated = [] if stream else ["annotate"]  # a JSON answer's headers are set before it leaves
        assert log.events == [*annotated, "answered", "store", "returned"]
    assert len(stage.settled) == 1


@pytest.mark.parametrize("stream", [False, True])
async def test_a_failed_call_settles_before_its_error_leaves(stream: bool) -> None:
    log = Log()
    stage = Stage(log, holds=False)
    app = endpoint(log, stage, ordered=True, fail=True)
    with pytest.raises(UpstreamError):
        await call(app, log, stream=stream)
    assert log.events == ["store"]
    assert isinstance(stage.settled[0], UpstreamError)


class RemoteStore(FakeStore):
    """A store across the network (Redis): a batch is a round trip, which the test ends when it likes."""

    in_process = False

    def __init__(self, log: Log, *, ordered: bool) -> None:
        super().__init__(log, ordered=ordered)
        self.sent = asyncio.Event()
        self.answer = asyncio.Event()

    async def run_batch(self, ops: Sequence[StoreOp]) -> list[Any]:
        self.log.events.append("store")
        self.sent.set()
        await self.answer.wait()
        self.log.events.append("stored")
        return [None for _ in ops]


@pytest.mark.parametrize("fail", [False, True])
async def test_a_settle_before_the_answer_is_written_when_the_client_leaves_during_it(fail: bool) -> None:
    """The client leaving cancels the call's task; a settle already under way (a call that holds a
    limit, or a failed one) still writes: its writes are the call's spend, usage record and limits."""
    log = Log()
    stage = Stage(log, holds=True)
    store = RemoteStore(log, ordered=True)
    app = endpoint(log, stage, ordered=True, fail=fail, store=store)
    slot = DisconnectSlot()
    task = asyncio.create_task(call(app, log, stream=False, slot=slot))
    await store.sent.wait()
    slot.lost()  # as the server does when the connection is lost
    await task  # nobody to answer
    store.answer.set()
    await app.services.current().pipeline.settler.wait_writes()
    assert log.events == ["store", "returned", "stored"]
    assert len(stage.settled) == 1
