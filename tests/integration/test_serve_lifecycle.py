"""`gateway serve` as a process says what it is doing: one line when it listens (address, config and
its hash, aliases, store, auth) and one when it has stopped; it never reaches the network for tokenizer
files, and names the aliases whose token counts are estimates; and with its port taken it exits
non-zero at once, whatever the store (the Redis store and budgets used to hang it forever)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.app import create_app
from gateway.config import load_config
from tests.support.scratch_redis import scratch_prefix
from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = "redis://127.0.0.1:6379/0"
WITH_BUDGETS = """
server: {{host: 127.0.0.1, port: {port}}}
store: {{redis_url: "{redis}", key_prefix: "{prefix}"}}
auth:
  required: true
  keys: [{{name: app, key: k, budget: {{usd: 5, period: day}}}}]
providers: {{mock: {{type: mock}}, openai: {{type: openai, api_key: x}}}}
models:
  demo: {{deployments: [{{provider: mock, model: echo, price: {{input: 1, output: 1}}}}]}}
  gpt-4o-mini: {{deployments: [{{provider: openai, model: gpt-4o-mini}}]}}
"""


@pytest.fixture
def prefix() -> Iterator[str]:
    with scratch_prefix("serve") as prefix:
        yield prefix


def environment() -> dict[str, str]:
    """The process's environment without the test suite's tokenizer directory: the gateway's own
    shipped files must be enough."""
    env = {k: v for k, v in os.environ.items() if k != "TIKTOKEN_CACHE_DIR"}
    env["PYTHONPATH"] = str(ROOT)
    return env


def test_with_its_port_taken_serve_exits_non_zero_with_a_redis_store_and_budgets(tmp_path: Path,
                                                                                 prefix: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "gateway.yaml"
        config.write_text(WITH_BUDGETS.format(port=port, redis=REDIS_URL, prefix=prefix))
        for _ in range(3):  # the hang was a race: it took 5 of 6 tries
            proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--config", str(config)],
                                    cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    env=environment())
            try:
                _, err = proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                pytest.fail("gateway serve did not exit with its port taken")
            assert proc.returncode == 1
            assert f"cannot listen on 127.0.0.1:{port}" in err


async def test_the_app_stops_right_after_it_started_with_a_redis_store_and_budgets(tmp_path: Path,
                                                                                   prefix: str) -> None:
    """The lifespan alone, started and stopped at once: the store monitor's first check must not hold
    the shutdown (a cancellation swallowed inside the Redis client used to send it back to sleep)."""
    path = tmp_path / "gateway.yaml"
    path.write_text(WITH_BUDGETS.format(port=free_port(), redis=REDIS_URL, prefix=prefix))
    app = create_app(load_config(path), config_path=str(path))
    for _ in range(5):
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
        stopping = asyncio.ensure_future(lifespan.__aexit__(None, None, None))
        done, _ = await asyncio.wait({stopping}, timeout=30)
        assert done == {stopping}, "the lifespan shutdown hung"


@contextlib.contextmanager
def serving(tmp_path: Path, text: str) -> Iterator[tuple[subprocess.Popen[str], str, Path]]:
    config = tmp_path / "gateway.yaml"
    config.write_text(text)
    log = tmp_path / "gateway.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--config", str(config),
                                 "--log-format", "json"], cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
                                text=True, env=environment())
        try:
            yield proc, config.read_text(), log
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(30)


def lines(log: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]


def test_serve_says_when_it_listens_and_when_it_stopped(tmp_path: Path, prefix: str) -> None:
    port = free_port()
    with serving(tmp_path, WITH_BUDGETS.format(port=port, redis=REDIS_URL, prefix=prefix)) as (proc, _, log):
        deadline = time.monotonic() + 60
        while not any(line["msg"] == "gateway listening" for line in lines(log)):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "no startup line"
            time.sleep(0.1)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    found = lines(log)
    (listening,) = [line for line in found if line["msg"] == "gateway listening"]
    assert listening["address"] == f"http://127.0.0.1:{port}"
    assert listening["config"] == str(tmp_path / "gateway.yaml")
    assert listening["config_hash"] == load_config(tmp_path / "gateway.yaml").digest()
    assert listening["aliases"] == 2
    assert listening["store"] == "single 127.0.0.1:6379"
    assert listening["auth"] == "keys required (1 key in the config)"
    assert listening["admin_api"] == "closed (no master key)"
    (stopped,) = [line for line in found if line["msg"] == "gateway stopped"]
    assert stopped["address"] == listening["address"]
    # Offline from the start: the shipped cl100k_base file, never a download attempt.
    assert "ConnectionError" not in log.read_text()
    (estimates,) = [line for line in found if "estimates" in str(line["msg"])]
    assert estimates["aliases"] == "gpt-4o-mini" and estimates["counted_with"] == "cl100k_base"
