"""An upstream's Retry-After reaches the client as sane whole seconds (0..3600), however odd the
provider's value; an unreadable one is not passed on. Through the real app."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from tests.support.openai_fake import openai_error
from tests.support.servers import FakeUpstream, GatewayServer, Recorded, Reply

VALUES = {"inf": "3600", "1e308": "3600", "-5": "0", "86400": "3600", "2.2": "3", "7": "7",
          "Wed, 21 Oct 2015 07:28:00 GMT": "0", "nan": None, "soon": None}


def throttled(request: Recorded) -> Reply:
    value = list(VALUES)[int(request.json["model"])]
    return openai_error(429, "Slow down.", type_="rate_limit_error", headers={"retry-after": value})


@pytest.fixture(scope="module")
def gw() -> Iterator[GatewayServer]:
    with FakeUpstream(throttled) as up:
        models = {f"m{i}": {"deployments": [{"provider": "up", "model": str(i)}], "retries": 0}
                  for i in range(len(VALUES))}
        config = {"auth": {"required": False}, "models": models,
                  "providers": {"up": {"type": "openai", "base_url": f"{up.url}/v1"}}}
        with GatewayServer(json.dumps(config)) as server:
            yield server


@pytest.mark.parametrize(("index", "value"), list(enumerate(VALUES)), ids=list(VALUES))
def test_retry_after_is_clamped_to_whole_seconds(gw: GatewayServer, index: int, value: str) -> None:
    body = {"model": f"m{index}", "messages": [{"role": "user", "content": "hi"}]}
    answer = httpx.post(f"{gw.url}/v1/chat/completions", json=body, timeout=10)
    assert answer.status_code == 429
    assert answer.headers.get("retry-after") == VALUES[value]
