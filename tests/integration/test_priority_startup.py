"""`strategy: priority` from the very first request of a fresh `gateway serve`: a list written without
`priority` fields is tried in its order (it used to be shuffled as equal priorities, so a fresh process
sent its first request to the second deployment about half the time)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.integration.test_serve_lifecycle import lines, serving
from tests.support.openai_fake import chat_chunks
from tests.support.servers import FakeUpstream, Recorded, Reply, free_port, sse_lines

CONFIG = """
server: {{host: 127.0.0.1, port: {port}}}
auth: {{required: false}}
providers: {{up: {{type: openai, base_url: "{upstream}/v1", api_key: x}}}}
models:
  ordered:
    strategy: priority
    ttft_timeout: 500ms
    retries: 1
    deployments: [{{provider: up, model: stalls}}, {{provider: up, model: quick}}]
  sharing:
    deployments: [{{provider: up, model: quick}}]
"""
FRESH_STARTS = 6


def answer(request: Recorded) -> Reply:
    model = request.json["model"]
    chunks = sse_lines(chat_chunks("hello", model, include_usage=False))
    return Reply(chunks=chunks, delay=3.0 if model == "stalls" else 0.0)


def first_streamed_request(tmp_path: Path, upstream: FakeUpstream) -> httpx.Response:
    port = free_port()
    with serving(tmp_path, CONFIG.format(port=port, upstream=upstream.url)) as (proc, _, log):
        deadline = time.monotonic() + 60
        while not any(line["msg"] == "gateway listening" for line in lines(log)):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "no startup line"
            time.sleep(0.05)
        body = {"model": "ordered", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        with httpx.stream("POST", f"http://127.0.0.1:{port}/v1/chat/completions", json=body,
                          timeout=30) as response:
            response.read()
            return response


def test_a_fresh_gateway_tries_a_priority_list_in_its_written_order(tmp_path: Path) -> None:
    with FakeUpstream(answer) as upstream:
        for start in range(FRESH_STARTS):
            before = len(upstream.requests)
            workdir = tmp_path / str(start)
            workdir.mkdir()
            response = first_streamed_request(workdir, upstream)
            assert response.status_code == 200
            models = [r.json["model"] for r in upstream.requests[before:]]
            assert models[0] == "stalls", f"fresh start {start}: the first attempt went to {models}"
            assert response.headers["x-gateway-attempts"] == "2"
            assert response.headers["x-gateway-deployment"] == "up/quick"
