"""The request headers a Messages passthrough carries to an Anthropic provider."""

from __future__ import annotations

from collections.abc import Mapping


def forwarded_headers(headers: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The client's `anthropic-*` headers (lower-cased names): `anthropic-version`, `anthropic-beta` (the
    features Claude Code turns on: context management, interleaved thinking, cache scopes, ...) and any
    later ones. Credentials (`x-api-key`, `authorization`) are the gateway's business and never pass."""
    return tuple((name.lower(), value) for name, value in headers.items() if name.lower().startswith("anthropic-"))
