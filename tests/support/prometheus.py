"""A real Prometheus (Debian's `prometheus` package) on a free port with throwaway storage, for tests
that check the dashboard's queries and the alert rules against what the gateway exposes."""

from __future__ import annotations

import math
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from tests.support.servers import free_port

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def available(binary: str) -> bool:
    return Path(binary).is_file()


class Prometheus:
    def __init__(self, workdir: Path, targets: list[str], *, interval: str = "1s",
                 rule_files: list[str] | None = None) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        rules = "".join(f"\n  - {f}" for f in rule_files or [])
        (workdir / "prometheus.yml").write_text(
            f"global: {{scrape_interval: {interval}, evaluation_interval: {interval}, scrape_timeout: {interval}}}\n"
            f"rule_files:{rules or ' []'}\n"
            "scrape_configs:\n"
            "  - job_name: llm-gateway\n"
            f"    static_configs: [{{targets: [{', '.join(repr(t) for t in targets)}]}}]\n")
        self._proc: subprocess.Popen[bytes] | None = None
        self.client = httpx.Client(base_url=self.url, timeout=5)

    def __enter__(self) -> Prometheus:
        with (self.workdir / "prometheus.log").open("wb") as log:
            self._proc = subprocess.Popen(
                [PROMETHEUS, f"--config.file={self.workdir / 'prometheus.yml'}",
                 f"--storage.tsdb.path={self.workdir / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}",
                 "--log.level=warn"], stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                if self.client.get("/-/ready").status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if self._proc.poll() is not None:
                break
            time.sleep(0.1)
        self.__exit__()
        raise RuntimeError("prometheus did not start: " + (self.workdir / "prometheus.log").read_text()[-2000:])

    def __exit__(self, *exc: object) -> None:
        self.client.close()
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)

    def query(self, expr: str) -> dict[str, Any]:
        """An instant query; the whole API answer (status, data or error)."""
        answer: dict[str, Any] = self.client.get("/api/v1/query", params={"query": expr}).json()
        return answer

    def scrapes(self) -> int:
        """How many samples of `up` Prometheus holds for the gateway in the last minute."""
        result = self.query('count_over_time(up{job="llm-gateway"}[1m])')["data"]["result"]
        return int(float(result[0]["value"][1])) if result else 0


def finite_values(answer: dict[str, Any]) -> list[float]:
    values: list[float] = []
    for series in answer.get("data", {}).get("result", []):
        value = float(series["value"][1])
        if math.isfinite(value):
            values.append(value)
    return values
