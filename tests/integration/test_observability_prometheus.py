"""A real Prometheus scrapes a real gateway under a little load of every kind (streams, cache hits,
fallbacks, failures, rate-limit and budget refusals, a reload); then every query of the shipped
Grafana dashboard is evaluated through Prometheus's HTTP API and must return data: no panel of
deploy/grafana/gateway-dashboard.json is empty or broken. The shipped alert rules load too."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.prometheus import PROMETHEUS, Prometheus, available, finite_values
from tests.support.servers import GatewayServer

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "gateway-dashboard.json"
ALERTS = ROOT / "deploy" / "prometheus" / "gateway-alerts.yml"

pytestmark = pytest.mark.skipif(not available(PROMETHEUS), reason="needs Debian's prometheus package")

CONFIG = """
auth:
  required: true
  master_key: sk-master-observability
  # Every round sends one wrong key (the 4xx panels): the per-address throttle would soon refuse
  # everything this one loopback client sends, and the dashboard would see only 429s.
  throttle: {failures: 0}
  keys:
    - {name: app, team: search, key: sk-app-observability}
    - {name: tiny, team: ops, key: sk-tiny-observability, limits: {rpm: 1}}
    - {name: broke, team: ops, key: sk-broke-observability, budget: {usd: 0.000001, period: day}}
  teams:
    search: {budget: {usd: 1000, period: month}}
providers:
  mock: {type: mock}
  broken: {type: mock, error_rate: 1.0, error_status: 503}
models:
  demo:
    deployments: [{provider: mock, model: echo, price: {input: 1, output: 2}}]
    cache: {ttl: 1h}
  lorem:
    deployments: [{provider: mock, model: lorem, price: {input: 1, output: 2}}]
  retrying:
    deployments:
      - {provider: broken, model: x, name: broken-first, priority: 0}
      - {provider: mock, model: echo, name: healthy-second, priority: 1}
    strategy: priority
    retries: 1
  flaky:
    deployments: [{provider: broken, model: z}]
    retries: 0
    fallbacks: [demo]
  down:
    deployments: [{provider: broken, model: y}]
    retries: 0
    fallbacks: []
metrics: {check_interval: 300ms}
reload: {watch_interval: 0}
"""

APP = {"authorization": "Bearer sk-app-observability"}


def chat(model: str, content: str = "hello observability world", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": content}], **extra}


def one_round(client: httpx.Client, n: int) -> None:
    post = client.post
    post("/v1/chat/completions", json=chat("demo", "cached question"), headers=APP)  # cache hit after the 1st
    post("/v1/chat/completions", json=chat("demo", f"fresh question {n}"), headers=APP)
    with client.stream("POST", "/v1/chat/completions", headers=APP,
                       json=chat("lorem", stream=True, max_tokens=12,
                                 stream_options={"include_usage": True})) as streamed:
        for _ in streamed.iter_bytes():
            pass
    post("/v1/chat/completions", json=chat("retrying", f"retry me {n}"), headers=APP)
    post("/v1/chat/completions", json=chat("flaky", f"fall back {n}"), headers=APP)
    post("/v1/chat/completions", json=chat("down"), headers=APP)
    post("/v1/chat/completions", json=chat("demo"), headers={"authorization": "Bearer sk-tiny-observability"})
    post("/v1/chat/completions", json=chat("demo", f"spend {n}"),
         headers={"authorization": "Bearer sk-broke-observability"})
    post("/v1/chat/completions", json=chat("demo"), headers={"authorization": "Bearer sk-wrong"})


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[GatewayServer]:
    path = tmp_path / "gateway.yaml"
    path.write_text(CONFIG)
    server = GatewayServer(CONFIG)
    server.services.config_path = str(path)
    with server:
        yield server


def dashboard_queries() -> list[tuple[str, str, str]]:
    """(panel title, refId, expr) of every target of every panel."""
    board = json.loads(DASHBOARD.read_text())
    out = []
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            out.append((panel["title"], target["refId"], target["expr"]))
    return out


def grafana_to_promql(expr: str) -> str:
    """What Grafana sends for the dashboard's variables with every value selected."""
    return (expr.replace("$__rate_interval", "15s").replace("$__range", "1m")
            .replace("$job", ".*").replace("$alias", ".*"))


def test_dashboard_is_importable_json() -> None:
    board = json.loads(DASHBOARD.read_text())
    assert board["uid"] and board["title"] and board["schemaVersion"] >= 36
    assert {v["name"] for v in board["templating"]["list"]} == {"datasource", "job", "alias"}
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    titles = " ".join(p["title"].lower() for p in board["panels"])
    for topic in ("requests", "5xx", "latency", "first token", "overhead", "tokens", "cost", "team",
                  "cache hit", "rate-limit", "fallbacks", "circuit"):
        assert topic in titles, topic
    for panel in board["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"] and all(t["expr"] and t["refId"] for t in panel["targets"])
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"}


def test_every_dashboard_query_returns_data(gateway: GatewayServer, tmp_path: Path) -> None:
    stop = threading.Event()
    failures: list[BaseException] = []

    def load(worker: int) -> None:
        try:
            with httpx.Client(base_url=gateway.url, timeout=10) as client:
                n = 0
                while not stop.is_set():
                    one_round(client, worker * 100_000 + n)
                    n += 1
                    time.sleep(0.02)
        except BaseException as exc:  # surfaced in the main thread
            failures.append(exc)

    threads = [threading.Thread(target=load, args=(i,), daemon=True) for i in range(2)]
    with Prometheus(tmp_path, [f"127.0.0.1:{gateway.port}"], rule_files=[str(ALERTS)]) as prom:
        for thread in threads:
            thread.start()
        try:
            # A reload, so the reload counter has a series (the admin endpoint, as an operator would).
            reloaded = httpx.post(gateway.url + "/admin/config/reload",
                                  headers={"authorization": "Bearer sk-master-observability"})
            assert reloaded.status_code == 200, reloaded.text
            deadline = time.monotonic() + 20
            while prom.scrapes() < 6:
                assert time.monotonic() < deadline, "prometheus did not scrape the gateway"
                assert not failures, failures
                time.sleep(0.25)
            empty = []
            for title, ref, expr in dashboard_queries():
                answer = prom.query(grafana_to_promql(expr))
                assert answer["status"] == "success", (title, ref, answer)
                if not finite_values(answer):
                    empty.append((title, ref, expr, answer["data"]["result"]))
            assert not empty, "dashboard queries without data:\n" + "\n".join(map(str, empty))
            rules = prom.client.get("/api/v1/rules").json()["data"]["groups"]
            assert sum(len(g["rules"]) for g in rules) >= 6
            assert all(r["health"] != "err" for g in rules for r in g["rules"]), rules
        finally:
            stop.set()
            for thread in threads:
                thread.join(10)
    assert not failures, failures


def test_dashboard_json_is_the_builders_output() -> None:
    import runpy

    builder = runpy.run_path(str(DASHBOARD.with_name("build_dashboard.py")))
    assert DASHBOARD.read_text(encoding="utf-8") == builder["render"](), "run deploy/grafana/build_dashboard.py"
