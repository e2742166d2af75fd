"""Key-scoped data is filed by the key's identity (its hash), never its display name, end to end: the
real app under uvicorn, the openai SDK, a fake OpenAI upstream, on the embedded store and on the real
Redis at 6379 (a unique key prefix). Two keys can still end up with one name (a config reload adds a
config key named like a runtime key): the same prompt through each is two cache misses, and their
spend and usage records stay apart. The admin API refuses to create such a pair itself (409)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest
import redis

from tests.support.openai_fake import openai_echo
from tests.support.servers import FakeUpstream, GatewayServer

MASTER = "sk-master-0123456789abcdef"
BLUE_KEY = "sk-gw-blue-app-0123456789abcdef"
CONFIG = """
store: {{redis_url: "{redis_url}", key_prefix: "{prefix}"}}
auth:
  master_key: {master}
  keys:
    - {{name: cfg, key: sk-gw-cfg-0123456789abcdef}}
{extra_key}
providers:
  up: {{type: openai, base_url: "{url}/v1", api_key: upstream-secret}}
models:
  gpt:
    deployments: [{{provider: up, model: gpt-up, price: {{input: 2.5, output: 10}}}}]
    cache: {{ttl: 1h, scope: key}}
accounting: {{prices_file: /nonexistent/prices.yaml}}
reload: {{watch_interval: 0}}
"""
BLUE = f"    - {{name: app, team: blue, key: {BLUE_KEY}}}"


@pytest.fixture(params=["embedded", "redis"])
def redis_setup(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    if request.param == "embedded":
        yield "", "gw"
        return
    prefix = f"t-identity-{uuid4().hex[:8]}"
    client = redis.Redis.from_url("redis://127.0.0.1:6379/0", socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError:
        client.close()
        pytest.skip("no Redis at 127.0.0.1:6379")
    yield "redis://127.0.0.1:6379/0", prefix
    keys = list(client.scan_iter(match=f"{prefix}:*"))
    if keys:
        client.delete(*keys)
    client.close()


def admin(gw: GatewayServer, method: str, path: str, body: Any = None) -> httpx.Response:
    return httpx.request(method, gw.url + path, headers={"authorization": f"Bearer {MASTER}"}, json=body, timeout=10)


def ask(gw: GatewayServer, key: str) -> httpx.Response:
    response = httpx.post(gw.url + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"}, timeout=10,
                          json={"model": "gpt", "messages": [{"role": "user", "content": "the same question"}]})
    assert response.status_code == 200, response.text
    return response


def test_two_keys_named_alike_share_no_cache_entry_and_no_spend(redis_setup: tuple[str, str], tmp_path: Path) -> None:
    redis_url, prefix = redis_setup
    with FakeUpstream(openai_echo) as upstream:
        text = CONFIG.format(redis_url=redis_url, prefix=prefix, master=MASTER, url=upstream.url, extra_key="")
        path = tmp_path / "gateway.yaml"
        path.write_text(text)
        with GatewayServer(text) as gw:
            gw.services.config_path = str(path)
            red = admin(gw, "POST", "/admin/keys", {"name": "app", "team": "red"})
            assert red.status_code == 201, red.text
            # The admin API refuses a second key of that name, runtime or config.
            for name in ("app", "cfg"):
                taken = admin(gw, "POST", "/admin/keys", {"name": name, "team": "blue"})
                assert taken.status_code == 409, taken.text
                error = taken.json()["error"]
                assert error["code"] == "duplicate_key_name" and error["param"] == "name" and name in error["message"]
            # A config reload is not refused for it: the platform team adds a config key named `app`.
            path.write_text(CONFIG.format(redis_url=redis_url, prefix=prefix, master=MASTER, url=upstream.url,
                                          extra_key=BLUE))
            assert admin(gw, "POST", "/admin/config/reload").json()["reloaded"] is True

            first, second = ask(gw, red.json()["key"]), ask(gw, BLUE_KEY)
            assert first.headers["x-gateway-cache"] == second.headers["x-gateway-cache"] == "MISS"
            assert len(upstream.requests) == 2
            assert ask(gw, BLUE_KEY).headers["x-gateway-cache"] == "HIT"  # each key's own entry serves it

            red_id, blue_id = red.json()["key_id"], hashlib.sha256(BLUE_KEY.encode()).hexdigest()[:16]
            spend = admin(gw, "GET", "/admin/spend?by=key&period=day").json()["spend"]
            assert set(spend) == {red_id, blue_id}
            assert spend[red_id]["name"] == spend[blue_id]["name"] == "app"
            assert (spend[red_id]["requests"], spend[blue_id]["requests"]) == (1, 2)
            assert spend[red_id]["cost_micro_usd"] > 0 and spend[blue_id].get("cache_hits") == 1
            assert admin(gw, "GET", "/admin/spend?by=key&period=day&name=app").json()["spend"].keys() == {red_id,
                                                                                                            blue_id}
            records = admin(gw, "GET", "/admin/usage?since=0").json()["records"]
            assert sorted((r["key"], r["key_id"], r["team"]) for r in records) == sorted(
                [("app", red_id, "red"), ("app", blue_id, "blue"), ("app", blue_id, "blue")])
            by_team = admin(gw, "GET", "/admin/spend?by=team&period=day").json()["spend"]
            assert (by_team["red"]["requests"], by_team["blue"]["requests"]) == (1, 2)


def test_a_name_is_free_again_once_its_key_is_revoked_and_renames_are_checked(redis_setup: tuple[str, str],
                                                                               tmp_path: Path) -> None:
    redis_url, prefix = redis_setup
    with FakeUpstream(openai_echo) as upstream, GatewayServer(
            CONFIG.format(redis_url=redis_url, prefix=prefix, master=MASTER, url=upstream.url, extra_key="")) as gw:
        first = admin(gw, "POST", "/admin/keys", {"name": "svc"}).json()
        other = admin(gw, "POST", "/admin/keys", {"name": "svc-2"}).json()
        renamed = admin(gw, "PATCH", f"/admin/keys/{other['id']}", {"name": "svc"})
        assert renamed.status_code == 409 and renamed.json()["error"]["code"] == "duplicate_key_name"
        assert admin(gw, "PATCH", f"/admin/keys/{other['id']}", {"name": "cfg"}).status_code == 409
        assert admin(gw, "PATCH", f"/admin/keys/{other['id']}", {"name": "svc-3"}).status_code == 200
        assert admin(gw, "POST", "/admin/keys", {"name": "svc-2"}).status_code == 201  # the old name is free
        assert admin(gw, "DELETE", f"/admin/keys/{first['id']}").status_code == 200
        assert admin(gw, "POST", "/admin/keys", {"name": "svc"}).status_code == 201
