"""Readiness while Redis is unreachable: with `fail_open` the replica stays in the load balancer (it
serves without limits and cache, as documented), with `fail_closed` it reports not ready."""

from __future__ import annotations

import httpx
import pytest

from tests.support.servers import GatewayServer, free_port

CONFIG = """
store: {{redis_url: "redis://127.0.0.1:{port}/0", timeout: 100ms, failure_policy: {policy}}}
auth: {{required: false}}
providers: {{mock: {{type: mock}}}}
models: {{demo: {{deployments: [{{provider: mock, model: echo}}]}}}}
"""


@pytest.mark.parametrize(("policy", "status"), [("fail_open", 200), ("fail_closed", 503)])
def test_readiness_without_redis_follows_the_failure_policy(policy: str, status: int) -> None:
    with GatewayServer(CONFIG.format(port=free_port(), policy=policy)) as gw:
        reply = httpx.get(gw.url + "/readyz", timeout=5)
        assert reply.status_code == status
        assert reply.json()["checks"] == {"config": True, "store": False}
        assert httpx.get(gw.url + "/healthz", timeout=5).status_code == 200
        if policy == "fail_open":
            body = {"model": "demo", "messages": [{"role": "user", "content": "still served"}]}
            answer = httpx.post(gw.url + "/v1/chat/completions", json=body, timeout=10)
            assert answer.status_code == 200, answer.text
