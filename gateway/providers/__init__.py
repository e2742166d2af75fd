"""Provider adapters, registered in one table by config `type`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gateway.config import (
    AnthropicProvider,
    AzureProvider,
    BedrockProvider,
    GeminiProvider,
    MockProvider,
    OpenAIProvider,
    ProviderConfig,
)
from gateway.providers.anthropic import AnthropicAdapter
from gateway.providers.azure import AzureOpenAIAdapter
from gateway.providers.base import (
    Capabilities,
    ParsedResponse,
    ProviderAdapter,
    SpeaksDialect,
    StreamTranslator,
    UpstreamRequest,
)
from gateway.providers.bedrock import BedrockAdapter
from gateway.providers.credentials import Credentials, NoCredentials, SigV4Credentials, azure, bearer, header
from gateway.providers.gemini import GeminiAdapter
from gateway.providers.mock import MockAdapter
from gateway.providers.openai import OpenAIAdapter


@dataclass(frozen=True, slots=True)
class Provider:
    """A configured provider: its translator and its auth style, built once per config load."""

    name: str
    config: ProviderConfig
    adapter: ProviderAdapter
    credentials: Credentials
    # The adapter, when its provider also speaks a client dialect (see SpeaksDialect).
    speaker: SpeaksDialect | None = None

    @property
    def type(self) -> str:
        return self.config.type


def _openai(name: str, cfg: ProviderConfig) -> tuple[ProviderAdapter, Credentials]:
    assert isinstance(cfg, OpenAIProvider)
    headers = dict(cfg.headers)
    if cfg.organization:
        headers["openai-organization"] = cfg.organization
    # api.openai.com speaks Responses; an OpenAI-compatible server says so itself (`responses: true`).
    responses = cfg.responses if cfg.responses is not None else cfg.base_url is None
    return OpenAIAdapter(cfg.base_url, headers, responses=responses), bearer(cfg.api_key)


def _anthropic(name: str, cfg: ProviderConfig) -> tuple[ProviderAdapter, Credentials]:
    assert isinstance(cfg, AnthropicProvider)
    adapter = AnthropicAdapter(cfg.base_url, version=cfg.anthropic_version, headers=cfg.headers)
    return adapter, header("x-api-key", cfg.api_key)


def _mock(name: str, cfg: ProviderConfig) -> tuple[ProviderAdapter, Credentials]:
    assert isinstance(cfg, MockProvider)
    return MockAdapter(name), NoCredentials()


def _azure(name: str, cfg: ProviderConfig) -> tuple[ProviderAdapter, Credentials]:
    assert isinstance(cfg, AzureProvider)
    if not cfg.base_url:
        raise ValueError(f"provider '{name}': base_url is required for Azure (https://NAME.openai.azure.com)")
    adapter = AzureOpenAIAdapter(cfg.base_url, cfg.api_version, cfg.headers)
    return adapter, azure(cfg.api_key, cfg.azure_ad_token)


def _bedrock(name: str, cfg: ProviderConfig) -> tuple[ProviderAdapter, Credentials]:
    assert isinstance(cfg, BedrockProvider)
    try:
        credentials = SigV4Credentials.from_config(cfg.access_key_id, cfg.secret_access_key,
                                                   cfg.session_token, region=cfg.region)
    except ValueError as exc:  # botocore missing, or no AWS keys anywhere
        raise ValueError(f"provider '{name}': {exc}") from None
    return BedrockAdapter(cfg.region, cfg.base_url, cfg.headers), credentials


def _gemini(name: str, cfg: ProviderConfig) -> tuple[ProviderAdapter, Credentials]:
    assert isinstance(cfg, GeminiProvider)
    if cfg.vertex_location and not cfg.vertex_project:
        raise ValueError(f"provider '{name}': vertex_location needs vertex_project")
    adapter = GeminiAdapter(cfg.base_url, headers=cfg.headers, vertex_project=cfg.vertex_project,
                            vertex_location=cfg.vertex_location)
    # Vertex AI takes an OAuth bearer token; the Generative Language API an API key header.
    credentials = bearer(cfg.access_token) if cfg.vertex_project else header("x-goog-api-key", cfg.api_key)
    return adapter, credentials


# type → factory. Each provider module adds its own entry here.
ADAPTERS: dict[str, Callable[[str, ProviderConfig], tuple[ProviderAdapter, Credentials]]] = {
    "openai": _openai,
    "azure": _azure,
    "bedrock": _bedrock,
    "mock": _mock,
    "anthropic": _anthropic,
    "gemini": _gemini,
}


def build_provider(name: str, cfg: ProviderConfig) -> Provider:
    factory = ADAPTERS.get(cfg.type)
    if factory is None:
        raise ValueError(f"provider '{name}': type '{cfg.type}' is not available in this build")
    adapter, credentials = factory(name, cfg)
    speaker = adapter if isinstance(adapter, SpeaksDialect) else None
    return Provider(name=name, config=cfg, adapter=adapter, credentials=credentials, speaker=speaker)


__all__ = [
    "ADAPTERS",
    "Capabilities",
    "ParsedResponse",
    "Provider",
    "ProviderAdapter",
    "SpeaksDialect",
    "StreamTranslator",
    "UpstreamRequest",
    "build_provider",
]
