"""config/examples/production.yaml: `gateway config check` accepts it with its environment set and names
every variable missing without it; served with that environment, a fake OpenAI upstream in place of
the real one and the real Redis at 6379 (under a unique key prefix), it answers through the official
SDK with keys, limits, priced costs, the cache, budgets and the admin API working."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from uuid import uuid4

import httpx
import openai
import pytest
import redis

from gateway.config import load_config
from tests.support.openai_fake import openai_echo
from tests.support.scratch_redis import scratch_prefix
from tests.support.servers import FakeUpstream, GatewayServer

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "examples" / "production.yaml"
REDIS_URL = "redis://127.0.0.1:6379/0"
SECRETS = {"OPENAI_API_KEY": "sk-upstream-openai", "ANTHROPIC_API_KEY": "sk-upstream-anthropic",
           "GATEWAY_MASTER_KEY": "master-" + uuid4().hex, "SEARCH_APP_KEY": "sk-search-" + uuid4().hex,
           "SUPPORT_BOT_KEY": "sk-support-" + uuid4().hex}


def check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", "config", "check", str(EXAMPLE)],
                          capture_output=True, text=True, timeout=60, cwd="/",
                          env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), **env})


def test_config_check_accepts_it_with_its_environment_and_names_what_is_missing() -> None:
    ok = check({**SECRETS, "GATEWAY_REDIS_URL": REDIS_URL})
    assert ok.returncode == 0, ok.stderr
    assert "ok (2 providers, 2 model aliases, 2 keys," in ok.stdout
    missing = check({})
    assert missing.returncode == 1
    for name in [*SECRETS, "GATEWAY_REDIS_URL"]:
        assert f"environment variable {name} is not set" in missing.stderr, name


@pytest.fixture
def prefix() -> Iterator[str]:
    with scratch_prefix("production") as prefix:
        yield prefix


def test_it_serves_with_keys_limits_costs_cache_budgets_and_the_admin_api(
        prefix: str, make_client: Callable[..., openai.OpenAI]) -> None:
    with FakeUpstream(openai_echo) as upstream:
        env = {**SECRETS, "GATEWAY_REDIS_URL": REDIS_URL, "GATEWAY_KEY_PREFIX": prefix,
               "OPENAI_BASE_URL": upstream.url + "/v1"}
        config = load_config(EXAMPLE, env=env)
        assert config.store.redis_url == REDIS_URL and config.auth.required
        with GatewayServer(config) as gw:
            search = make_client(gw.url + "/v1", api_key=SECRETS["SEARCH_APP_KEY"])
            ask = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello production"}]}
            first = search.chat.completions.with_raw_response.create(**ask)  # type: ignore[call-overload]
            assert first.parse().choices[0].message.content == "echo: hello production"
            assert float(first.headers["x-gateway-cost-usd"]) > 0  # priced from the shipped table
            assert first.headers["x-gateway-cache"] == "MISS"
            assert first.headers["x-ratelimit-limit-requests"] == "600"
            again = search.chat.completions.with_raw_response.create(**ask)  # type: ignore[call-overload]
            assert again.headers["x-gateway-cache"] == "HIT"
            assert len(upstream.requests) == 1
            sent = upstream.requests[0]
            assert sent.headers["authorization"] == "Bearer " + SECRETS["OPENAI_API_KEY"]

            support = make_client(gw.url + "/v1", api_key=SECRETS["SUPPORT_BOT_KEY"])
            with pytest.raises(openai.PermissionDeniedError):
                support.chat.completions.create(model="claude", messages=[{"role": "user", "content": "x"}])
            with pytest.raises(openai.AuthenticationError):
                make_client(gw.url + "/v1", api_key="sk-unknown").models.list()

            admin = {"Authorization": "Bearer " + SECRETS["GATEWAY_MASTER_KEY"]}
            budgets = httpx.get(gw.url + "/admin/budgets", headers=admin, timeout=10).json()
            by_name = {(b["scope"], b["name"]): b for b in budgets["budgets"]}
            assert by_name[("key", "search-app")]["limit_usd"] == "50.000000"
            assert by_name[("team", "search")]["limit_usd"] == "1000.000000"
            assert float(by_name[("key", "search-app")]["used_usd"]) > 0
            assert httpx.get(gw.url + "/admin/budgets", timeout=10).status_code == 401
            ready = httpx.get(gw.url + "/readyz", timeout=10).json()
            assert ready["checks"]["store"] is True
        with redis.Redis.from_url(REDIS_URL) as client:
            assert list(client.scan_iter(match=f"{prefix}:*")), "limits, cache and spend live in Redis"
