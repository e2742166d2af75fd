"""Session-sticky routing through the real app: a session's requests keep going to the deployment
that served it last (on one replica and across replicas sharing a real Redis), fall over when that
deployment fails, and an alias without the setting spreads the same requests by its strategy."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from uuid import uuid4

import httpx
import pytest

from tests.contract.stores import real_redis_up
from tests.support.openai_fake import openai_echo, openai_error
from tests.support.servers import FakeUpstream, GatewayServer, Recorded, Reply

CONFIG = """
{store}
auth: {{required: false}}
providers:
  a: {{type: openai, base_url: "{a}/v1"}}
  b: {{type: openai, base_url: "{b}/v1"}}
models:
  sticky:
    deployments: [{{provider: a, model: m}}, {{provider: b, model: m}}]
    sticky_sessions: true
    retries: 1
  spread:
    deployments: [{{provider: a, model: m}}, {{provider: b, model: m}}]
"""


@contextlib.contextmanager
def upstreams() -> Iterator[tuple[FakeUpstream, FakeUpstream]]:
    with FakeUpstream(openai_echo) as a, FakeUpstream(openai_echo) as b:
        yield a, b


def ask(url: str, model: str, session: str | None, header: str = "x-claude-code-session-id") -> str:
    headers = {header: session} if session else {}
    response = httpx.post(f"{url}/v1/chat/completions", headers=headers, timeout=10,
                          json={"model": model, "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 200, response.text
    return response.headers["x-gateway-deployment"]


def test_a_session_stays_on_one_deployment_and_another_alias_spreads() -> None:
    with upstreams() as (a, b), GatewayServer(CONFIG.format(store="", a=a.url, b=b.url)) as gw:
        for session in ("s-1", "s-2", "s-3"):
            served = {ask(gw.url, "sticky", session) for _ in range(8)}
            assert len(served) == 1, served
        # Codex names its session with a `session_id` header: the same pinning.
        assert len({ask(gw.url, "sticky", "codex-1", header="session_id") for _ in range(8)}) == 1
        spread = {ask(gw.url, "spread", "s-1") for _ in range(40)}
        assert len(spread) == 2  # weighted 50/50: both in 40 calls but with probability 2^-39


def test_a_failing_pinned_deployment_gives_the_session_a_new_pin() -> None:
    failing: set[str] = set()

    def maybe_fail(name: str) -> object:
        def handle(request: Recorded) -> Reply:
            return openai_error(500, "down") if name in failing else openai_echo(request)
        return handle

    with FakeUpstream(maybe_fail("a")) as a, FakeUpstream(maybe_fail("b")) as b, \
            GatewayServer(CONFIG.format(store="", a=a.url, b=b.url)) as gw:
        first = ask(gw.url, "sticky", "s-9")
        failing.add(first.split("/")[0] if "/" in first else first)
        failing.update({"a"} if first.startswith("a") else {"b"})
        moved = ask(gw.url, "sticky", "s-9")
        assert moved != first
        failing.clear()
        assert {ask(gw.url, "sticky", "s-9") for _ in range(6)} == {moved}


@pytest.mark.skipif(not real_redis_up(), reason="no Redis at 127.0.0.1:6379")
def test_replicas_on_one_redis_share_the_pin() -> None:
    prefix = f"t-sticky-{uuid4().hex[:8]}"
    store = f'store: {{redis_url: "redis://127.0.0.1:6379/0", key_prefix: "{prefix}"}}'
    with upstreams() as (a, b):
        text = CONFIG.format(store=store, a=a.url, b=b.url)
        with GatewayServer(text) as one, GatewayServer(text) as two:
            for n in range(6):
                session = f"s-{n}"
                first = ask(one.url, "sticky", session)
                assert {ask(two.url, "sticky", session) for _ in range(4)} == {first}
