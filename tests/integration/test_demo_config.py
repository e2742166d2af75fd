"""The shipped demo config: the built-in mock provider answers without any API key."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import openai

from tests.support.servers import GatewayServer, free_port

ROOT = Path(__file__).resolve().parents[2]


def test_demo_config_through_the_sdk(make_client: Callable[..., openai.OpenAI]) -> None:
    config = (ROOT / "config" / "gateway.yaml").read_text()
    with GatewayServer(config) as gw:
        client = make_client(gw.url + "/v1", api_key="anything")
        answer = client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "ping pong"}])
        assert answer.choices[0].message.content == "ping pong"
        stream = client.chat.completions.create(model="lorem", max_tokens=12, stream=True,
                                                stream_options={"include_usage": True},
                                                messages=[{"role": "user", "content": "x"}])
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert len(text.split()) == 12
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 12
        assert client.completions.create(model="demo", prompt="hello").choices[0].text == "hello"
        assert len(client.embeddings.create(model="demo", input="x").data[0].embedding) == 8
        assert httpx.get(gw.url + "/readyz").json()["status"] == "ready"
        assert httpx.get(gw.url + "/healthz").status_code == 200
        metrics = httpx.get(gw.url + "/metrics").text
        sample = 'gateway_requests_total{alias="demo",deployment="mock/echo",provider="mock",status_class="2xx"}'
        assert sample in metrics


def test_gateway_serve_command_starts_and_stops_cleanly() -> None:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--config", "config/gateway.yaml",
                                "--port", str(port)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                response = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions",
                                      json={"model": "demo", "messages": [{"role": "user", "content": "hi"}]})
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline and process.poll() is None, "gateway serve did not start"
                time.sleep(0.1)
        assert response.status_code == 200
        assert response.json()["choices"][0]["message"]["content"] == "hi"
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=15)
    # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status reports the signal.
    assert process.returncode in (0, -signal.SIGTERM)
    assert b"demo mode" in stderr  # the startup warning for auth.required: false
    assert b"Traceback" not in stderr


def test_admin_api_without_a_master_key_says_none_is_set_and_how_to_set_one() -> None:
    config = (ROOT / "config" / "gateway.yaml").read_text()
    with GatewayServer(config, env={}) as gw:
        answer = httpx.post(gw.url + "/admin/keys", headers={"Authorization": "Bearer guess"},
                            json={"name": "x"}, timeout=10)
        assert answer.status_code == 401
        error = answer.json()["error"]
        assert error["code"] == "master_key_not_set"
        assert "no master key is set" in error["message"] and "GATEWAY_MASTER_KEY" in error["message"]
    with GatewayServer(config, env={"GATEWAY_MASTER_KEY": "the-master"}) as gw:
        wrong = httpx.get(gw.url + "/admin/budgets", headers={"Authorization": "Bearer guess"}, timeout=10)
        assert wrong.status_code == 401 and "no master key" not in wrong.json()["error"]["message"]
        # The README's create-key example, verbatim in substance, against the shipped config.
        readme = (ROOT / "README.md").read_text()
        (example,) = re.findall(r"-d '(\{\"name\": \"batch-job\".*?\})'", readme)
        created = httpx.post(gw.url + "/admin/keys", headers={"Authorization": "Bearer the-master"},
                             content=example, timeout=10)
        assert created.status_code == 201, created.text
        key = created.json()["key"]
        chat = httpx.post(gw.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                          json={"model": "demo", "messages": [{"role": "user", "content": "hi"}]}, timeout=10)
        assert chat.status_code == 200
        assert set(json.loads(example)["models"]) <= set(gw.config.models)
