"""What the Responses API's stored conversations need of a store (no settle writes: a response is
stored before the client sees its end, not after).

Both stores declare `ConversationStore` (gateway.store.protocol.Store); the operations are in
`store_memory.py` (the embedded store) and `store_redis.py` (Redis: one round trip each)."""

from __future__ import annotations

from typing import Protocol


class ConversationStore(Protocol):
    async def conversation_put(self, owner_tag: str, response_id: str, previous_id: str, value: bytes,
                               ttl_ms: int, max_chain: int) -> None:
        """Store a record and renew the TTL of the chain it continues (up to `max_chain` records)."""
        ...

    async def conversation_get(self, owner_tag: str, response_id: str) -> bytes | None: ...

    async def conversation_delete(self, owner_tag: str, response_id: str) -> bool: ...

    async def conversation_chain(self, owner_tag: str, response_id: str, max_chain: int,
                                 max_bytes: int) -> tuple[int, list[bytes]]:
        """(0, records newest first), or (1 missing | 2 too long | 3 too big, [the id where it stopped])."""
        ...
