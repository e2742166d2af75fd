"""`/v1/messages/count_tokens` and the Anthropic-shaped `/v1/models` page."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from gateway.dialects.messages.request import parse_request_lenient
from gateway.tokens import TokenCounter


def count_tokens(body: object, counter: TokenCounter) -> int:
    """Input tokens of a count_tokens body (a Messages body without `max_tokens`), counted over its
    canonical form as the TPM reserve counts it: system, messages, tools. What the canonical form
    cannot carry (a server tool's definition) is left out of the count, not refused: counting sends
    nothing to a provider."""
    canonical, _ = parse_request_lenient(body, counting=True)
    tokens, _exact = counter.count_prompt("chat", canonical, canonical["model"])
    return tokens


def models_page(aliases: list[str], created: int) -> dict[str, Any]:
    """Anthropic's model list: every alias as an active model, created at `created` (Unix seconds)."""
    stamp = datetime.fromtimestamp(created, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    data = [{"type": "model", "id": alias, "display_name": alias, "created_at": stamp, "lifecycle": "active"}
            for alias in aliases]
    return {"data": data, "has_more": False, "first_id": aliases[0] if aliases else None,
            "last_id": aliases[-1] if aliases else None}
