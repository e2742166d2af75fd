"""`gateway serve --workers 2`: prometheus multiprocess mode (every worker's values merged in one
scrape, a stale directory cleaned at start, the exposition valid for promtool), and every worker
reloading the edited YAML."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.prometheus import PROMTOOL, available
from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[2]

CONFIG = """
auth: {{required: false}}
providers: {{mock: {{type: mock}}}}
models:
  main: {{deployments: [{{provider: mock, model: echo, name: {name}}}]}}
reload: {{watch_interval: 100ms}}
metrics: {{check_interval: 100ms}}
"""


def total(text: str, name: str) -> float:
    return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


def test_workers_share_one_metrics_view_and_each_reloads(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(CONFIG.format(name="dep-a"))
    metrics_dir = tmp_path / "prom"
    metrics_dir.mkdir()
    (metrics_dir / "counter_99999.db").write_bytes(b"stale values of an earlier run")
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--config", str(path), "--port", str(port),
                             "--workers", "2"], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    body = {"model": "main", "messages": [{"role": "user", "content": "x"}]}
    try:
        with httpx.Client(base_url=url, timeout=5) as client:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline and proc.poll() is None, "gateway serve did not start"
                time.sleep(0.1)
            assert not (metrics_dir / "counter_99999.db").exists()
            # /readyz answers once one worker is up: wait for both (each writes its own metric files),
            # so that neither loads the edited file at startup instead of reloading it.
            while len({f.stem.rsplit("_", 1)[-1] for f in metrics_dir.glob("*.db")}) < 2:
                assert time.monotonic() < deadline, "the second worker did not start"
                time.sleep(0.1)
            sent = 40
            for _ in range(sent):
                assert client.post("/v1/chat/completions", json=body).status_code == 200
            scrapes = [client.get("/metrics").text for _ in range(6)]
            for text in scrapes:  # whichever worker answers, it reports all of them
                assert total(text, "gateway_requests_total") == sent
                assert total(text, "gateway_in_flight_requests") == 0
            checked = (subprocess.run([PROMTOOL, "check", "metrics"], input=scrapes[0].encode(), capture_output=True)
                       if available(PROMTOOL) else None)
            assert checked is None or checked.returncode == 0, checked.stdout + checked.stderr
            path.write_text(CONFIG.format(name="dep-b"))
            deadline = time.monotonic() + 15
            streak = 0
            while streak < 20:  # twenty answers in a row from the new config
                served = client.post("/v1/chat/completions", json=body)
                assert served.status_code == 200
                streak = streak + 1 if served.headers["x-gateway-deployment"] == "dep-b" else 0
                assert time.monotonic() < deadline, "a worker kept the old config"
            # A keep-alive client may talk to one worker only: the merged metrics show that each
            # worker reloaded (each watches the file on its own, within its poll interval).
            reloads = 0.0
            while reloads < 2:
                reloads = total(client.get("/metrics").text, 'gateway_config_reloads_total{result="success"}')
                assert time.monotonic() < deadline, f"only {reloads:.0f} worker(s) reloaded"
                time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(30)
