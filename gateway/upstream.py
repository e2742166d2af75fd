"""Sending requests to providers: one long-lived keep-alive pool per provider (gateway.httpclient),
and the in-process responder behind the mock provider.

Clients return an `UpstreamResponse` whose body is read whole or streamed as it arrives; transport
failures are mapped to the gateway's errors here, where they enter.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Protocol

import orjson

from gateway import httpclient
from gateway.config import MockProvider, ProviderSettings
from gateway.errors import InternalError, UpstreamConnectError, UpstreamProtocolError
from gateway.logs import get_logger
from gateway.metrics import Metrics
from gateway.providers import Provider, UpstreamRequest
from gateway.providers import mock as mock_answers
from gateway.schemas import Operation

log = get_logger("upstream")

_BLANK_LINE = re.compile(rb"\n\r?\n")
_EVENT_ENDS = (b"\n\n", b"\r\n\r\n")
# Seconds between two log lines about one provider's full connection pool.
POOL_LOG_INTERVAL = 10.0


class UpstreamResponse(Protocol):
    status: int
    headers: Mapping[str, str]

    async def read(self) -> bytes: ...

    def chunks(self) -> AsyncIterator[bytes]: ...

    def close(self) -> None: ...


class UpstreamClient(Protocol):
    async def send(self, request: UpstreamRequest, on_slot: Callable[[], None] | None = None) -> UpstreamResponse:
        """Send `request`; `on_slot` runs when it holds a connection (before, it waited for the pool)."""
        ...

    async def close(self) -> None: ...


class _HttpResponse:
    __slots__ = ("_max_body", "_max_event", "_provider", "_response", "headers", "status")

    def __init__(self, response: httpclient.Response, provider: str, max_body: int, max_event: int) -> None:
        self._response = response
        self._provider = provider
        self._max_body = max_body
        # Binary streams (Bedrock's event stream) have no SSE events to bound.
        sse = response.headers.get("content-type", "").startswith("text/event-stream")
        self._max_event = max_event if sse else 0
        self.status = response.status
        self.headers: Mapping[str, str] = response.headers

    async def read(self) -> bytes:
        try:
            return await self._response.read(self._max_body)
        except (httpclient.ConnectError, httpclient.ProtocolError) as exc:
            raise _transport_error(exc, self._provider) from None

    async def chunks(self) -> AsyncIterator[bytes]:
        limit = self._max_event
        pending = 0  # bytes since the last blank line, the end of an SSE event
        previous = b""
        try:
            async for data in self._response.chunks():
                if limit:
                    if pending + len(data) > limit:  # an event may pass the bound: measure each one
                        largest, pending = _measure_events(previous[-2:], pending, data)
                        if largest > limit:
                            raise UpstreamProtocolError(f"Provider '{self._provider}' sent a stream event "
                                                        f"larger than {limit} bytes (max_event_bytes).")
                    elif data.endswith(_EVENT_ENDS):  # the usual read: whole events
                        pending = 0
                    else:
                        end = _event_end(data)
                        if end < 0 and previous:  # a blank line split across two reads
                            end = _event_end(previous[-2:] + data[:2]) - min(2, len(previous))
                        pending = pending + len(data) if end < 0 else len(data) - end
                    previous = data if len(data) > 1 else previous[-1:] + data  # a blank line spans 3 reads
                yield data
        except (httpclient.ConnectError, httpclient.ProtocolError) as exc:
            raise _transport_error(exc, self._provider) from None

    def close(self) -> None:
        # An answer not read to its end drops its connection, so an abandoned stream stops the
        # provider generating; one read to the end is already back in the pool.
        self._response.close()


def _event_end(data: bytes) -> int:
    """Where the bytes after the last blank line (LF LF, or CR LF CR LF) of `data` start; -1: none."""
    lf, crlf = data.rfind(b"\n\n"), data.rfind(b"\n\r\n")
    if lf < 0 and crlf < 0:
        return -1
    return max(lf + 2, crlf + 3)


def _measure_events(before: bytes, pending: int, data: bytes) -> tuple[int, int]:
    """The largest event that ends or continues in `data` (`pending` bytes of it came in earlier
    reads, which ended with `before`), and the bytes after its last blank line."""
    buffer = before + data
    largest, carry, start = 0, pending, len(before)
    for blank in _BLANK_LINE.finditer(buffer):
        if blank.end() > len(before):  # one wholly in `before` was counted with the earlier read
            largest = max(largest, carry + blank.end() - start)
            carry, start = 0, blank.end()
    rest = carry + len(buffer) - start
    return max(largest, rest), rest


class _PoolWaits:
    """A provider's full pool: each wait goes to the metrics; a log line at most every
    POOL_LOG_INTERVAL seconds says how many requests waited since the last one."""

    def __init__(self, provider: str, pool_size: int, metrics: Metrics | None) -> None:
        self._provider = provider
        self._pool_size = pool_size
        self._metrics = metrics
        self._logged_at = -POOL_LOG_INTERVAL
        self._waits = 0

    def __call__(self, seconds: float) -> None:
        metrics = self._metrics
        if metrics is not None:
            metrics.child(metrics.pool_wait_seconds, self._provider).observe(seconds)
            metrics.child(metrics.pool_exhausted, self._provider).inc()
        self._waits += 1
        now = time.monotonic()
        if now - self._logged_at >= POOL_LOG_INTERVAL:
            log.warning("upstream connection pool exhausted; requests wait for a free connection",
                        extra={"fields": {"provider": self._provider, "pool_size": self._pool_size,
                                          "waits": self._waits, "waited_seconds": round(seconds, 3)}})
            self._logged_at = now
            self._waits = 0


class HttpClient:
    """A keep-alive connection pool per provider (gateway.httpclient), created once per provider."""

    def __init__(self, name: str, config: ProviderSettings, metrics: Metrics | None = None) -> None:
        self._name = name
        self._max_body = config.max_response_bytes
        self._max_event = config.max_event_bytes
        # Total and first-token deadlines are enforced by the router, which knows the attempt.
        self._client = httpclient.Client(
            pool_size=config.pool_size, connect_timeout=config.connect_timeout, idle_timeout=config.idle_timeout,
            ca_file=config.ca_file, verify=config.verify_tls, proxy=config.proxy,
            max_decoded=config.max_response_bytes, on_pool_wait=_PoolWaits(name, config.pool_size, metrics))

    async def send(self, request: UpstreamRequest, on_slot: Callable[[], None] | None = None) -> UpstreamResponse:
        # Adapters build URLs already encoded (a SigV4 signature covers the exact path): sent as is.
        try:
            response = await self._client.request(request.method, request.url, request.headers, request.body,
                                                   on_slot)
        except (httpclient.ConnectError, httpclient.ProtocolError) as exc:
            raise _transport_error(exc, self._name) from None
        except httpclient.HeaderError as exc:
            # A configured header or key with a line break, or a client value relayed upstream: never
            # written (it would split into two headers), and not the provider's fault.
            raise InternalError(f"The request to provider '{self._name}' has a header ({exc.name}) with a "
                                "line break, NUL or non-latin-1 character; it was not sent.",
                                code="invalid_upstream_header") from None
        except ValueError as exc:  # a proxy setting from the environment the client cannot use
            raise UpstreamConnectError(f"Could not reach provider '{self._name}': {exc}.") from None
        return _HttpResponse(response, self._name, self._max_body, self._max_event)

    async def close(self) -> None:
        self._client.close()


def _transport_error(exc: Exception, provider: str) -> UpstreamConnectError | UpstreamProtocolError:
    if isinstance(exc, httpclient.ConnectError):
        # The reason only: neither address nor URL (URLs can carry credentials for some providers).
        reason = os.strerror(exc.errno) if exc.errno else exc.reason
        return UpstreamConnectError(f"Could not reach provider '{provider}': {reason}.")
    return UpstreamProtocolError(f"Provider '{provider}' broke the connection: {exc}.")


# ---------------------------------------------------------------------------------------------
# The mock provider's responder
# ---------------------------------------------------------------------------------------------

# A mock stream without delays gives the event loop a turn this often (in chunks).
_YIELD_EVERY = 64

_OPERATION_BY_SUFFIX = {
    "/chat/completions": Operation.CHAT,
    "/completions": Operation.COMPLETIONS,
    "/embeddings": Operation.EMBEDDINGS,
}


class _MockResponse:
    __slots__ = ("_body", "_chunks", "_delays", "headers", "status")

    def __init__(self, status: int, body: bytes = b"", chunks: Iterable[bytes] | None = None,
                 delays: tuple[float, float] = (0.0, 0.0)) -> None:
        self.status = status
        self.headers: Mapping[str, str] = {
            "content-type": "text/event-stream" if chunks is not None else "application/json"}
        self._body = body
        self._chunks = chunks
        self._delays = delays

    async def read(self) -> bytes:
        return self._body

    async def chunks(self) -> AsyncIterator[bytes]:
        first, between = self._delays
        for i, chunk in enumerate(self._chunks if self._chunks is not None else [self._body]):
            delay = first if i == 0 else between
            if delay:
                await asyncio.sleep(delay)
            elif i % _YIELD_EVERY == _YIELD_EVERY - 1:
                await asyncio.sleep(0)  # a long answer without delays leaves room for other requests
            yield chunk

    def close(self) -> None:
        return None


class MockClient:
    """Answers like an OpenAI server would, in-process: deterministic text, configurable latency,
    time to first token, delay between chunks, and an error rate with a chosen status."""

    def __init__(self, config: MockProvider) -> None:
        self._config = config
        self._random = random.Random(config.seed)

    async def send(self, request: UpstreamRequest, on_slot: Callable[[], None] | None = None) -> UpstreamResponse:
        if on_slot is not None:
            on_slot()
        cfg = self._config
        operation = next((op for suffix, op in _OPERATION_BY_SUFFIX.items() if request.url.endswith(suffix)),
                         Operation.CHAT)
        body = orjson.loads(request.body)
        if cfg.error_rate and self._random.random() < cfg.error_rate:
            if cfg.latency:
                await asyncio.sleep(cfg.latency)
            message = f"The mock provider failed on purpose (error_rate={cfg.error_rate})."
            error = {"error": {"message": message, "type": "server_error", "param": None, "code": None}}
            return _MockResponse(cfg.error_status, orjson.dumps(error))
        if request.stream:
            # Encoded as they are read, between the read's yields to the loop.
            chunks = itertools.chain((b"data: " + orjson.dumps(c) + b"\n\n"
                                      for c in mock_answers.stream_chunks(operation, body)), (b"data: [DONE]\n\n",))
            return _MockResponse(200, chunks=chunks, delays=(cfg.ttft or cfg.latency, cfg.chunk_delay))
        if cfg.latency:
            await asyncio.sleep(cfg.latency)
        return _MockResponse(200, orjson.dumps(mock_answers.completion(operation, body)))

    async def close(self) -> None:
        return None


class UpstreamPool:
    """The clients of every configured provider, by provider name. Clients of providers whose
    config did not change are carried over on reload, so their connection pools stay warm."""

    def __init__(self, metrics: Metrics | None = None) -> None:
        self._metrics = metrics
        self._clients: dict[str, UpstreamClient] = {}
        self._configs: dict[str, object] = {}

    def client(self, provider: str) -> UpstreamClient:
        return self._clients[provider]

    async def update(self, providers: Mapping[str, Provider]) -> None:
        stale = [name for name in self._clients
                 if name not in providers or self._configs[name] != providers[name].config]
        for name in stale:
            client = self._clients.pop(name)
            self._configs.pop(name)
            # Let in-flight requests on the old pool finish before closing it.
            asyncio.get_running_loop().call_later(60, _close_later, client)
        for name, provider in providers.items():
            if name not in self._clients:
                self._clients[name] = _make_client(provider, self._metrics)
                self._configs[name] = provider.config

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()
        self._clients.clear()
        self._configs.clear()


def _close_later(client: UpstreamClient) -> None:
    task = asyncio.ensure_future(client.close())
    _background.add(task)
    task.add_done_callback(_background.discard)


_background: set[asyncio.Future[None]] = set()


def _make_client(provider: Provider, metrics: Metrics | None) -> UpstreamClient:
    cfg = provider.config
    if isinstance(cfg, MockProvider):
        return MockClient(cfg)
    return HttpClient(provider.name, cfg, metrics)
