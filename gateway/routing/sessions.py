"""Session-sticky routing: a client session (a coding agent's conversation) keeps going to the
deployment that served it last, while that deployment is healthy, so the provider's prompt cache
stays warm. The pin lives in the store (store_memory.py, store_redis.py), so every replica honours it."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from gateway.routing.table import Target

# Where clients say which session a request belongs to, in the order they are consulted.
SESSION_HEADERS = ("x-claude-code-session-id", "session_id", "session-id", "x-session-id")
MAX_SESSION_ID = 256


def session_of(headers: Mapping[str, str], body: Mapping[str, Any]) -> str | None:
    """The session a request belongs to: a session header, else the body's `prompt_cache_key`."""
    for name in SESSION_HEADERS:
        value = headers.get(name)
        if value:
            return value[:MAX_SESSION_ID]
    key = body.get("prompt_cache_key")
    return key[:MAX_SESSION_ID] if isinstance(key, str) and key else None


def pin_key(alias: str, session: str) -> str:
    """The store key of a session's pin: hashed, so a client's id never becomes a key as sent."""
    return hashlib.blake2b(f"{alias}\0{session}".encode(), digest_size=12).hexdigest()


def pinned_first(order: Sequence[Target], pinned: str | None) -> list[Target]:
    """The strategy's order with the pinned deployment first, when it is among the usable ones."""
    if pinned is None or not order or order[0].id == pinned:
        return list(order)
    chosen = [t for t in order if t.id == pinned]
    return chosen + [t for t in order if t.id != pinned] if chosen else list(order)
