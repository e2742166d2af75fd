"""Hot reload of the routing YAML: the file watcher (plain files and Kubernetes ConfigMap symlink
swaps), SIGHUP on a real `gateway serve`, and the admin endpoint. Edits under load change routing
with zero failed requests; a broken file keeps the last good config and bumps the failure metric."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.servers import GatewayServer, free_port

ROOT = Path(__file__).resolve().parents[2]

BASE = """
auth: {{required: false, master_key: sk-master-reload}}
providers:
  mock: {{type: mock}}
  other: {{type: mock, seed: {seed}}}
models:
  main:
    deployments: [{{provider: {provider}, model: echo, name: {name}}}]
reload: {{watch_interval: {interval}}}
"""


def config(name: str, provider: str = "mock", interval: str = "50ms", seed: int = 0) -> str:
    return BASE.format(name=name, provider=provider, interval=interval, seed=seed)


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def reloads(gw: GatewayServer, result: str) -> float:
    value = gw.services.metrics.registry.get_sample_value("gateway_config_reloads_total", {"result": result})
    return value or 0.0


def wait_for(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


class Load:
    """Threads sending requests to alias `main`, recording (status, deployment) of every answer."""

    def __init__(self, url: str, threads: int = 6) -> None:
        self.url = url
        self.results: list[list[tuple[int, str]]] = [[] for _ in range(threads)]
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def _run(self, i: int) -> None:
        body = {"model": "main", "messages": [{"role": "user", "content": "which deployment?"}]}
        try:
            with httpx.Client(base_url=self.url, timeout=10) as client:
                while not self._stop.is_set():
                    r = client.post("/v1/chat/completions", json=body)
                    self.results[i].append((r.status_code, r.headers.get("x-gateway-deployment", "")))
        except BaseException as exc:
            self.errors.append(exc)

    def seen(self, deployment: str) -> bool:
        return any(d == deployment for rows in self.results for _, d in rows[-3:])

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(10)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[GatewayServer, Path]]:
    path = tmp_path / "gateway.yaml"
    path.write_text(config("dep-a"))
    server = GatewayServer(config("dep-a"))
    server.services.config_path = str(path)
    with server:
        yield server, path


def test_editing_the_yaml_under_load_changes_routing_without_a_failed_request(
        served: tuple[GatewayServer, Path]) -> None:
    gw, path = served
    pool_client = gw.services.pool.client("mock")
    with Load(gw.url) as load:
        wait_for(lambda: load.seen("dep-a"))
        # A broken file: refused, every problem logged, the running config keeps serving.
        write_atomically(path, config("dep-broken", provider="nowhere"))
        wait_for(lambda: reloads(gw, "failure") >= 1)
        count = sum(map(len, load.results))
        wait_for(lambda: sum(map(len, load.results)) > count + 20)
        assert not load.seen("dep-broken")
        # A good edit: routing moves to the new deployment.
        write_atomically(path, config("dep-b"))
        wait_for(lambda: load.seen("dep-b"))
        count = sum(map(len, load.results))
        wait_for(lambda: sum(map(len, load.results)) > count + 30)
    assert not load.errors, load.errors
    rows = [row for rows in load.results for row in rows]
    assert len(rows) > 60
    assert all(status == 200 for status, _ in rows), {s for s, _ in rows}
    assert {d for _, d in rows} == {"dep-a", "dep-b"}
    for thread_rows in load.results:  # once a thread saw the new config, it never saw the old one
        first_b = next(i for i, (_, d) in enumerate(thread_rows) if d == "dep-b")
        assert all(d == "dep-b" for _, d in thread_rows[first_b:])
    assert reloads(gw, "success") >= 1
    assert gw.services.pool.client("mock") is pool_client  # the unchanged provider kept its pool


def test_a_broken_file_logs_every_problem_with_its_yaml_path(served: tuple[GatewayServer, Path],
                                                              caplog: pytest.LogCaptureFixture) -> None:
    gw, path = served
    broken = (config("dep-x").replace("watch_interval: 50ms", "watch_interval: 50ms, bogus: 1")
              .replace("name: dep-x}", "name: dep-x, weight: -1}"))
    with caplog.at_level("ERROR", logger="gateway.app"):
        write_atomically(path, broken)
        wait_for(lambda: reloads(gw, "failure") >= 1)
    problems = [r.fields["problem"] for r in caplog.records if hasattr(r, "fields") and "problem" in r.fields]
    assert any(p.startswith("reload.bogus") for p in problems), problems
    assert any(p.startswith("models.main.deployments[0].weight") for p in problems), problems
    assert gw.services.current().config.models["main"].deployments[0].name == "dep-a"


def test_a_configmap_symlink_swap_is_picked_up(tmp_path: Path) -> None:
    """Kubernetes mounts a ConfigMap as gateway.yaml -> ..data/gateway.yaml, ..data -> ..<timestamp>;
    an update writes a new timestamped directory and atomically repoints ..data."""
    mount = tmp_path / "mount"
    (mount / "..v1").mkdir(parents=True)
    (mount / "..v1" / "gateway.yaml").write_text(config("dep-a"))
    os.symlink("..v1", mount / "..data")
    os.symlink("..data/gateway.yaml", mount / "gateway.yaml")
    server = GatewayServer(config("dep-a"))
    server.services.config_path = str(mount / "gateway.yaml")
    with server as gw, Load(gw.url, threads=2) as load:
        wait_for(lambda: load.seen("dep-a"))
        (mount / "..v2").mkdir()
        (mount / "..v2" / "gateway.yaml").write_text(config("dep-b"))
        os.symlink("..v2", mount / "..data_tmp")
        os.replace(mount / "..data_tmp", mount / "..data")
        wait_for(lambda: load.seen("dep-b"))
    assert not load.errors
    assert all(status == 200 for rows in load.results for status, _ in rows)


def test_admin_reload_reports_problems_and_keeps_the_config(served: tuple[GatewayServer, Path]) -> None:
    gw, path = served
    write_atomically(path, config("dep-a", interval="0").replace("models:", "models: [", 1))  # invalid YAML
    answer = httpx.post(gw.url + "/admin/config/reload", headers={"authorization": "Bearer sk-master-reload"})
    assert answer.status_code == 422
    assert answer.json()["reloaded"] is False and answer.json()["problems"]
    write_atomically(path, config("dep-c", interval="0"))
    answer = httpx.post(gw.url + "/admin/config/reload", headers={"authorization": "Bearer sk-master-reload"})
    assert answer.status_code == 200 and answer.json()["reloaded"] is True
    reply = httpx.post(gw.url + "/v1/chat/completions",
                       json={"model": "main", "messages": [{"role": "user", "content": "x"}]})
    assert reply.headers["x-gateway-deployment"] == "dep-c"


def test_an_empty_file_is_refused_by_a_reload(served: tuple[GatewayServer, Path]) -> None:
    """An empty file is the embedded defaults at start-up; as a reload it would drop every model and
    the master key (a file caught mid-write, most likely): refused, the running config kept."""
    gw, path = served
    write_atomically(path, "# nothing yet\n")
    answer = httpx.post(gw.url + "/admin/config/reload", headers={"authorization": "Bearer sk-master-reload"})
    assert answer.status_code == 422 and answer.json()["reloaded"] is False
    assert "empty" in answer.json()["problems"][0]
    reply = httpx.post(gw.url + "/v1/chat/completions",
                       json={"model": "main", "messages": [{"role": "user", "content": "x"}]})
    assert reply.status_code == 200 and reply.headers["x-gateway-deployment"] == "dep-a"


def test_a_reload_applies_the_edge_settings(served: tuple[GatewayServer, Path]) -> None:
    """CORS (like the access log and the auth throttle) lives in the edge, outside the runtime a
    reload swaps: the reload reconfigures it."""
    gw, path = served
    origin = "https://app.example.com"
    preflight = {"origin": origin, "access-control-request-method": "POST"}
    chat = gw.url + "/v1/chat/completions"

    def reload(text: str) -> None:
        write_atomically(path, text)
        answer = httpx.post(gw.url + "/admin/config/reload", headers={"authorization": "Bearer sk-master-reload"})
        assert answer.status_code == 200 and answer.json()["reloaded"] is True

    assert "access-control-allow-origin" not in httpx.options(chat, headers=preflight).headers
    reload(config("dep-a", interval="0") + f"server: {{cors: {{allow_origins: [{origin}]}}}}\n")
    allowed = httpx.options(chat, headers=preflight)
    assert allowed.status_code == 204 and allowed.headers["access-control-allow-origin"] == origin
    reload(config("dep-a", interval="0"))
    assert "access-control-allow-origin" not in httpx.options(chat, headers=preflight).headers


@pytest.mark.skipif(sys.platform == "win32", reason="SIGHUP")
def test_sighup_reloads_a_real_gateway_serve(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(config("dep-a", interval="0"))  # the watcher off: only the signal reloads
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--config", str(path), "--port", str(port)],
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    body = {"model": "main", "messages": [{"role": "user", "content": "x"}]}

    def deployment() -> str:
        try:
            return httpx.post(url + "/v1/chat/completions", json=body, timeout=5).headers["x-gateway-deployment"]
        except httpx.TransportError:
            return ""

    try:
        wait_for(lambda: deployment() == "dep-a", timeout=20)
        path.write_text(config("dep-b", interval="0"))
        time.sleep(0.2)
        assert deployment() == "dep-a"  # no watcher: nothing happens until the signal
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: deployment() == "dep-b")
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=20)
    assert b"SIGHUP: reloading the config" in stderr
