"""Hostile or unusual requests through the real app: the caller is authenticated before its body is read,
compressed bodies are decoded within the size bound, JSON nested too deep is a 400 on every JSON
endpoint, embeddings do not stream, 405 answers say what is allowed, and a model name with a newline
cannot forge a text log line."""

from __future__ import annotations

import gzip
import logging
import socket
import zlib
from collections.abc import Callable, Iterator

import httpx
import openai
import orjson
import pytest

from gateway.logs import TextFormatter
from tests.support.openai_fake import openai_echo
from tests.support.redis_topologies import wait_for
from tests.support.servers import FakeUpstream, GatewayServer, read_answer

KEY = "sk-edge-requests-0123456789"
MASTER = "mk-edge-requests-0123456789"
CONFIG = """
server: {{max_body_bytes: 65536}}
auth: {{master_key: {master}, keys: [{{name: app, key: {key}}}]}}
providers: {{up: {{type: openai, base_url: "{url}/v1", api_key: upstream-key}}}}
models: {{m: {{deployments: [{{provider: up, model: up-model}}]}}}}
"""
AUTH = {"authorization": f"Bearer {KEY}"}
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}
BODIES = {"/v1/chat/completions": CHAT, "/v1/completions": {"model": "m", "prompt": "hello"},
          "/v1/embeddings": {"model": "m", "input": "hello"}}


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(openai_echo) as fake:
        yield fake


@pytest.fixture(scope="module")
def gw(upstream: FakeUpstream) -> Iterator[GatewayServer]:
    with GatewayServer(CONFIG.format(key=KEY, master=MASTER, url=upstream.url)) as server:
        yield server


def post(gw: GatewayServer, path: str, content: bytes, **headers: str) -> httpx.Response:
    return httpx.post(gw.url + path, content=content, headers={"content-type": "application/json", **AUTH,
                                                                **headers}, timeout=10)


# --- authentication before the body ---

def test_an_anonymous_invalid_body_is_a_401_not_a_400(gw: GatewayServer) -> None:
    r = httpx.post(gw.url + "/v1/chat/completions", json={"model": "m", "messages": []})
    assert r.status_code == 401 and r.json()["error"]["code"] == "missing_api_key"
    wrong = httpx.post(gw.url + "/v1/chat/completions", content=b"{not json", headers={"authorization": "Bearer no"})
    assert wrong.status_code == 401


def test_an_anonymous_body_is_not_waited_for(gw: GatewayServer) -> None:
    """The answer comes while most of the declared body is still unsent: it was never read."""
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n"
                     b"content-length: 60000\r\n\r\n" + b'{"model": "m", "x": "' + b"a" * 1000)
        head, body, _ = read_answer(sock)
    assert head.startswith(b"HTTP/1.1 401 ") and orjson.loads(body)["error"]["code"] == "missing_api_key"


# --- compressed bodies ---

@pytest.mark.parametrize(("encoding", "compress"), [("gzip", gzip.compress), ("deflate", zlib.compress),
                                                    ("deflate", lambda b: zlib.compress(b, wbits=-15))],
                         ids=["gzip", "deflate", "raw-deflate"])
def test_compressed_bodies_are_decoded(gw: GatewayServer, upstream: FakeUpstream, encoding: str,
                                       compress: Callable[[bytes], bytes]) -> None:
    r = post(gw, "/v1/chat/completions", compress(orjson.dumps(CHAT)), **{"content-encoding": encoding})
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "echo: hello"
    assert upstream.requests[-1].json["messages"] == CHAT["messages"]


def test_a_gzip_bomb_is_a_413(gw: GatewayServer) -> None:
    bomb = gzip.compress(b'{"model": "m", "x": "' + b" " * 50_000_000 + b'"}')
    assert len(bomb) < 65536  # within the limit as sent: only its decompressed size is past it
    r = post(gw, "/v1/chat/completions", bomb, **{"content-encoding": "gzip"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    assert "decompressed" in r.json()["error"]["message"]


@pytest.mark.parametrize(("encoding", "content", "status", "code"), [
    ("br", b"\x0b\x02\x80{}\x03", 415, "unsupported_content_encoding"),
    ("gzip", b"not gzip at all", 400, "invalid_content_encoding"),
    ("gzip", gzip.compress(orjson.dumps(CHAT))[:-12], 400, "invalid_content_encoding"),
], ids=["unknown", "corrupt", "truncated"])
def test_undecodable_bodies_are_clear_errors(gw: GatewayServer, encoding: str, content: bytes, status: int,
                                             code: str) -> None:
    r = post(gw, "/v1/chat/completions", content, **{"content-encoding": encoding})
    assert (r.status_code, r.json()["error"]["code"]) == (status, code)


# --- JSON depth ---

def nested(body: dict[str, object], depth: int) -> bytes:
    raw = orjson.dumps(body)
    return raw[:-1] + b', "metadata_x": ' + b"[" * depth + b"]" * depth + b"}"


@pytest.mark.parametrize("path", list(BODIES))
def test_json_nested_too_deep_is_a_400_on_every_endpoint(gw: GatewayServer, path: str) -> None:
    r = post(gw, path, nested(BODIES[path], 300))
    assert r.status_code == 400, r.text
    assert r.json()["error"] == {"message": "The JSON body is nested more than 128 levels deep.",
                                 "type": "invalid_request_error", "param": None, "code": "invalid_json"}


def test_json_nested_within_the_bound_is_served(gw: GatewayServer) -> None:
    assert post(gw, "/v1/chat/completions", nested(CHAT, 100)).status_code == 200


# --- small protocol points ---

def test_embeddings_refuse_stream(gw: GatewayServer, make_client: Callable[..., openai.OpenAI]) -> None:
    client = make_client(gw.url + "/v1", KEY)
    with pytest.raises(openai.BadRequestError) as refused:
        client.embeddings.create(model="m", input="x", extra_body={"stream": True})
    assert refused.value.param == "stream"


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("GET", "/v1/chat/completions", "POST"), ("PUT", "/v1/embeddings", "POST"),
    ("POST", "/v1/models", "GET"), ("GET", "/admin/config/reload", "POST"), ("PUT", "/admin/keys", "GET, POST"),
])
def test_405_answers_say_what_is_allowed(gw: GatewayServer, method: str, path: str, allow: str) -> None:
    key = MASTER if path.startswith("/admin") else KEY
    r = httpx.request(method, gw.url + path, headers={"authorization": f"Bearer {key}"})
    assert r.status_code == 405 and r.headers["allow"] == allow
    assert r.json()["error"]["code"] == "method_not_allowed"


def test_a_newline_in_the_model_cannot_forge_a_text_log_line(gw: GatewayServer,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    forged = "nope\n2026-01-01 00:00:00 INFO gateway.access request status=200 key=admin"
    with caplog.at_level(logging.INFO, logger="gateway.access"):
        r = post(gw, "/v1/chat/completions", orjson.dumps({**CHAT, "model": forged}))
        assert r.status_code == 404
        wait_for(lambda: any(rec.name == "gateway.access" for rec in caplog.records), "the access line")
    (record,) = [rec for rec in caplog.records if rec.name == "gateway.access"]
    line = TextFormatter("%(asctime)s %(levelname)s %(name)s %(message)s").format(record)
    assert "\n" not in line and "alias=nope\\n2026-01-01" in line
