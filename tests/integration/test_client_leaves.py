"""A non-streamed call whose client leaves is cancelled at once, as a stream is: its upstream
connection is closed (the provider stops working on it) long before the alias timeout, and the
deployment's in-flight count comes back down."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable

from tests.support.openai_fake import openai_echo
from tests.support.servers import FakeUpstream, GatewayServer, Recorded, Reply, metrics_show


def slow(request: Recorded) -> Reply:
    answer = openai_echo(request)
    answer.delay = 60.0
    return answer


def wait_for(predicate: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_a_call_whose_client_left_is_cancelled_upstream() -> None:
    with FakeUpstream(slow) as up:
        config = {"auth": {"required": False},
                  "providers": {"up": {"type": "openai", "base_url": f"{up.url}/v1"}},
                  "models": {"m": {"deployments": [{"provider": "up", "model": "x"}], "timeout": "120s"}}}
        with GatewayServer(json.dumps(config)) as gw:
            body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()
            abandoned = 5
            clients = []
            for _ in range(abandoned):
                client = socket.create_connection(("127.0.0.1", gw.port))
                client.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n"
                               b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
                clients.append(client)
            assert wait_for(lambda: len(up.requests) == abandoned), "every call reached the upstream"
            for client in clients:
                client.close()
            assert wait_for(lambda: up.disconnects == abandoned), \
                f"{up.disconnects} of {abandoned} upstream calls were given up"
            idle = 'gateway_deployment_in_flight{deployment="up/x"} 0.0'
            assert idle in metrics_show(gw.url, idle), "the deployment's in-flight count came back down"
