"""Stored Responses conversations for the embedded store (mixed into MemoryStore): the same records
and chain walks as store_redis.py, in a dict bounded to `conversation_max_records` and
`conversation_max_bytes` (the oldest written evicted first: one process's memory is the limit here,
not a TTL alone), expiring by `conversation_clock` (monotonic seconds)."""

from __future__ import annotations

import time
from collections.abc import Callable


class MemoryConversationOps:
    conversation_max_records = 100_000
    conversation_max_bytes = 256 * 1024 * 1024
    conversation_clock: Callable[[], float] = staticmethod(time.monotonic)

    def _conversations(self) -> dict[tuple[str, str], tuple[bytes, float]]:
        return self.__dict__.setdefault("_conversation_records", {})  # type: ignore[no-any-return]

    def _conversation_bytes(self, change: int) -> int:
        total: int = self.__dict__.get("_conversation_total", 0) + change
        self.__dict__["_conversation_total"] = total
        return total

    def _conversation_read(self, owner_tag: str, response_id: str) -> bytes | None:
        records = self._conversations()
        found = records.get((owner_tag, response_id))
        if found is None:
            return None
        if found[1] <= self.conversation_clock():
            del records[(owner_tag, response_id)]
            self._conversation_bytes(-len(found[0]))
            return None
        return found[0]

    async def conversation_put(self, owner_tag: str, response_id: str, previous_id: str, value: bytes,
                               ttl_ms: int, max_chain: int) -> None:
        records = self._conversations()
        expires = self.conversation_clock() + ttl_ms / 1000
        replaced = records.pop((owner_tag, response_id), None)
        records[(owner_tag, response_id)] = (value, expires)
        self._conversation_bytes(len(value) - (len(replaced[0]) if replaced else 0))
        while previous_id and max_chain > 0:
            found = self._conversation_read(owner_tag, previous_id)
            if found is None:
                break
            # Renewed, and moved behind the records nobody continues: the first to be evicted.
            del records[(owner_tag, previous_id)]
            records[(owner_tag, previous_id)] = (found, expires)
            previous_id = _link(found)
            max_chain -= 1
        total = self._conversation_bytes(0)
        while len(records) > self.conversation_max_records or total > self.conversation_max_bytes:
            oldest = next(iter(records))
            total = self._conversation_bytes(-len(records.pop(oldest)[0]))

    async def conversation_get(self, owner_tag: str, response_id: str) -> bytes | None:
        return self._conversation_read(owner_tag, response_id)

    async def conversation_delete(self, owner_tag: str, response_id: str) -> bool:
        found = self._conversation_read(owner_tag, response_id)
        if found is None:
            return False
        del self._conversations()[(owner_tag, response_id)]
        self._conversation_bytes(-len(found))
        return True

    async def conversation_chain(self, owner_tag: str, response_id: str, max_chain: int,
                                 max_bytes: int) -> tuple[int, list[bytes]]:
        """As the Redis script: (0, records newest first), or (1 missing | 2 too long | 3 too big, [id])."""
        out: list[bytes] = []
        total = 0
        current = response_id
        while current:
            if len(out) >= max_chain:
                return 2, [current.encode()]
            value = self._conversation_read(owner_tag, current)
            if value is None:
                return 1, [current.encode()]
            total += len(value)
            if total > max_bytes:
                return 3, [current.encode()]
            out.append(value)
            current = _link(value)
        return 0, out


def _link(value: bytes) -> str:
    return value[:value.index(b"\n")].decode()
