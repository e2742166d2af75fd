"""promtool validates what the gateway exposes and what deploy/prometheus ships: the /metrics
exposition of a gateway that served every kind of request, the scrape config, the alert rules, and
the rules' unit tests (deploy/prometheus/gateway-alerts.test.yml)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest

from tests.support.prometheus import PROMTOOL, available
from tests.support.servers import GatewayServer

ROOT = Path(__file__).resolve().parents[2]
PROM_DIR = ROOT / "deploy" / "prometheus"

pytestmark = pytest.mark.skipif(not available(PROMTOOL), reason="needs promtool (Debian's prometheus package)")

CONFIG = """
auth:
  required: true
  keys:
    - {name: app, team: search, key: sk-app-promtool, budget: {usd: 10}}
providers:
  mock: {type: mock}
  broken: {type: mock, error_rate: 1.0}
models:
  demo:
    deployments: [{provider: mock, model: lorem, price: {input: 1, output: 2}}]
    cache: {ttl: 1h}
  down:
    deployments: [{provider: broken, model: x}]
    retries: 0
    fallbacks: [demo]
metrics: {key_labels: true, check_interval: 50ms}
"""


def promtool(*args: str, stdin: bytes | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([PROMTOOL, *args], input=stdin, capture_output=True, cwd=cwd, timeout=60)


def test_exposition_passes_promtool_check_metrics() -> None:
    headers = {"authorization": "Bearer sk-app-promtool"}
    with GatewayServer(CONFIG) as gw, httpx.Client(base_url=gw.url, timeout=10) as client:
        for stream in (False, True):
            for model in ("demo", "demo", "down"):
                body = {"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}
                assert client.post("/v1/chat/completions", json=body, headers=headers).status_code == 200
        client.post("/v1/chat/completions", json={"model": "demo"}, headers=headers)  # 400
        exposition = client.get("/metrics")
    assert exposition.status_code == 200
    text = exposition.text
    for name in ("gateway_requests_total", "gateway_upstream_duration_seconds_bucket",
                 "gateway_inter_token_latency_seconds_bucket", "gateway_team_cost_usd_total",
                 "gateway_team_tokens_total", "gateway_deployment_in_flight", "gateway_store_duration_seconds_bucket",
                 "gateway_budget_used_ratio", "gateway_config_info", "gateway_routing_fallbacks_total",
                 "gateway_cache_lookups_total", "gateway_deployment_info"):
        assert f"\n{name}" in text, name
    assert 'gateway_team_cost_usd_total{key="app",team="search"}' in text  # metrics.key_labels opted in
    assert 'gateway_budget_used_ratio{name="app",period="month",scope="key"}' in text
    assert "sk-app-promtool" not in text
    checked = promtool("check", "metrics", stdin=exposition.content)
    assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()


def test_key_names_stay_out_of_labels_unless_the_config_opts_in() -> None:
    config = CONFIG.replace("key_labels: true", "key_labels: false")
    headers = {"authorization": "Bearer sk-app-promtool"}
    with GatewayServer(config) as gw, httpx.Client(base_url=gw.url, timeout=10) as client:
        body = {"model": "demo", "messages": [{"role": "user", "content": "hi"}]}
        assert client.post("/v1/chat/completions", json=body, headers=headers).status_code == 200
        text = client.get("/metrics").text
    assert 'gateway_team_cost_usd_total{key="",team="search"}' in text
    assert 'key="app"' not in text and 'name="app"' not in text


def test_scrape_config_and_rules_pass_promtool() -> None:
    config = promtool("check", "config", str(PROM_DIR / "prometheus.yml"))
    assert config.returncode == 0, config.stdout.decode() + config.stderr.decode()
    rules = promtool("check", "rules", str(PROM_DIR / "gateway-alerts.yml"))
    assert rules.returncode == 0, rules.stdout.decode() + rules.stderr.decode()
    assert b"7 rules found" in rules.stdout


def test_alert_rules_unit_tests_pass() -> None:
    result = promtool("test", "rules", "gateway-alerts.test.yml", cwd=PROM_DIR)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert b"SUCCESS" in result.stdout


def test_alert_rules_unit_tests_can_fail(tmp_path: Path) -> None:
    """The rules tests check something: with the error-rate threshold raised they fail."""
    rules = (PROM_DIR / "gateway-alerts.yml").read_text().replace("> 0.05", "> 0.5")
    (tmp_path / "gateway-alerts.yml").write_text(rules)
    (tmp_path / "gateway-alerts.test.yml").write_text((PROM_DIR / "gateway-alerts.test.yml").read_text())
    result = promtool("test", "rules", "gateway-alerts.test.yml", cwd=tmp_path)
    assert result.returncode != 0
    assert b"GatewayHighErrorRate" in result.stdout + result.stderr
