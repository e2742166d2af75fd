"""Azure OpenAI clients switch to the gateway by changing only their endpoint: the official SDK's
`AzureOpenAI` calls /openai/deployments/{deployment}/... with `api-key`, and the deployment named in
the path is the alias (whatever the body's `model` says)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.support.openai_fake import openai_echo
from tests.support.servers import FakeUpstream, GatewayServer

KEY = "sk-azure-client-0123456789"
CONFIG = """
auth: {{keys: [{{name: app, key: {key}, models: [gpt-4o-prod, emb]}}]}}
providers: {{up: {{type: openai, base_url: "{url}/v1", api_key: upstream-key}}}}
models:
  gpt-4o-prod: {{deployments: [{{provider: up, model: upstream-chat}}]}}
  emb: {{deployments: [{{provider: up, model: upstream-embed}}]}}
  other: {{deployments: [{{provider: up, model: upstream-other}}]}}
"""


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(openai_echo) as fake:
        yield fake


@pytest.fixture(scope="module")
def gw(upstream: FakeUpstream) -> Iterator[GatewayServer]:
    with GatewayServer(CONFIG.format(key=KEY, url=upstream.url)) as server:
        yield server


@pytest.fixture
def azure(gw: GatewayServer) -> Iterator[openai.AzureOpenAI]:
    client = openai.AzureOpenAI(azure_endpoint=gw.url, api_key=KEY, api_version="2024-10-21", max_retries=0,
                                timeout=10)
    yield client
    client.close()


def test_chat_through_the_deployment_path(azure: openai.AzureOpenAI, upstream: FakeUpstream) -> None:
    answer = azure.chat.completions.create(model="gpt-4o-prod", messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content == "echo: hi"
    sent = upstream.requests[-1]
    assert sent.json["model"] == "upstream-chat" and sent.headers["authorization"] == "Bearer upstream-key"


def test_streamed_chat_and_completions_and_embeddings(azure: openai.AzureOpenAI) -> None:
    stream = azure.chat.completions.create(model="gpt-4o-prod", messages=[{"role": "user", "content": "a b"}],
                                           stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "echo: a b"
    assert azure.completions.create(model="gpt-4o-prod", prompt="p").choices[0].text == "echo: p"
    assert len(azure.embeddings.create(model="emb", input=["x", "y"]).data) == 2


def test_the_path_names_the_alias_whatever_the_body_says(gw: GatewayServer, upstream: FakeUpstream) -> None:
    """A client built for one deployment (`azure_deployment`) sends its own idea of `model` in the body."""
    client = openai.AzureOpenAI(azure_endpoint=gw.url, azure_deployment="gpt-4o-prod", api_key=KEY,
                                api_version="2024-10-21", max_retries=0, timeout=10)
    with client:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert upstream.requests[-1].json["model"] == "upstream-chat"


def test_the_key_and_its_allow_list_apply(gw: GatewayServer, azure: openai.AzureOpenAI) -> None:
    with pytest.raises(openai.PermissionDeniedError):
        azure.chat.completions.create(model="other", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.NotFoundError) as unknown:
        azure.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    assert unknown.value.code == "model_not_found"
    wrong = openai.AzureOpenAI(azure_endpoint=gw.url, api_key="sk-wrong", api_version="2024-10-21", max_retries=0)
    with wrong, pytest.raises(openai.AuthenticationError):
        wrong.chat.completions.create(model="gpt-4o-prod", messages=[{"role": "user", "content": "hi"}])


def test_other_paths_under_deployments_are_404(gw: GatewayServer) -> None:
    for path in ("/openai/deployments/gpt-4o-prod/images/generations", "/openai/deployments//chat/completions"):
        r = httpx.post(gw.url + path, json={}, headers={"api-key": KEY})
        assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_url", path
