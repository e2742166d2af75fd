from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import openai
import pytest
from hypothesis import settings

from tests.support.sdk_clients import close_all

# Property tests judge results, never time: a loaded machine must not fail them (hypothesis's default
# deadline is 200 ms per example).
settings.register_profile("gateway", deadline=None)
settings.load_profile("gateway")

# Exact token counts offline: tiktoken finds the shipped cl100k_base file here.
os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(Path(__file__).parent / "data" / "tiktoken"))


@pytest.fixture(autouse=True)
def _close_sdk_clients() -> Iterator[None]:
    """The SDK clients a test made through tests.support.sdk_clients.opened are closed with it."""
    yield
    close_all()


@pytest.fixture
def make_client() -> Iterator[Callable[..., openai.OpenAI]]:
    """Factory for official-SDK clients pointed at a gateway; every client is closed after the test."""
    clients: list[openai.OpenAI] = []

    def make(base_url: str, api_key: str = "sk-demo", **options: object) -> openai.OpenAI:
        options.setdefault("max_retries", 0)
        options.setdefault("timeout", 10)
        client = openai.OpenAI(base_url=base_url, api_key=api_key, **options)  # type: ignore[arg-type]
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
