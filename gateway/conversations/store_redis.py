"""Stored Responses conversations on Redis (mixed into RedisStore; the in-process twins are in
`store_memory.py`): one round trip per operation.

A record is one string key, `prefix:{owner tag}:resp:<response id>`, holding `<previous id>\\n<JSON>`
with a TTL (SET PX). Every record of an owner shares the owner's hash tag, so the scripts that walk
a chain (`previous id` links) reach every key of it on one Redis Cluster node: a put refreshes the
TTL of the chain it extends (reading only each record's first bytes), and a history read gathers
the whole chain, bounded in length and bytes, in one call."""

from __future__ import annotations

from gateway.store.scripts import RedisClient, ScriptOps

# A response id is far shorter than this; the link of a record is found in its first bytes.
_HEAD_BYTES = 255

_PUT = f"""
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local base, prev, left = ARGV[3], ARGV[4], tonumber(ARGV[5])
while prev ~= '' and left > 0 do
  local key = base .. prev
  if redis.call('PEXPIRE', key, ARGV[2]) == 0 then break end
  local head = redis.call('GETRANGE', key, 0, {_HEAD_BYTES})
  local cut = string.find(head, '\\n', 1, true)
  if not cut then break end
  prev = string.sub(head, 1, cut - 1)
  left = left - 1
end
return 1
"""

# {0, newest record, …, oldest}; or {1, missing id}; {2, id past the length bound}; {3, id past the
# byte bound}.
_CHAIN = """
local base, id, most, budget = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local out, total = {0}, 0
while id ~= '' do
  if #out > most then return {2, id} end
  local value = redis.call('GET', base .. id)
  if not value then return {1, id} end
  total = total + #value
  if total > budget then return {3, id} end
  out[#out + 1] = value
  local cut = string.find(value, '\\n', 1, true)
  id = string.sub(value, 1, cut - 1)
end
return out
"""


class RedisConversationOps(ScriptOps):
    client: RedisClient

    def conversation_key(self, owner_tag: str, response_id: str) -> str:
        return self.key("resp", response_id, tag=owner_tag)

    async def conversation_put(self, owner_tag: str, response_id: str, previous_id: str, value: bytes,
                               ttl_ms: int, max_chain: int) -> None:
        base = self.conversation_key(owner_tag, "")
        await self.call(self.run_script(
            _PUT, [base + response_id], [value, ttl_ms, base, previous_id, max_chain]))

    async def conversation_get(self, owner_tag: str, response_id: str) -> bytes | None:
        value = await self.call(self.client.get(self.conversation_key(owner_tag, response_id)))
        if value is None:
            return None
        return value if isinstance(value, bytes) else value.encode()

    async def conversation_delete(self, owner_tag: str, response_id: str) -> bool:
        return bool(await self.call(self.client.delete(self.conversation_key(owner_tag, response_id))))

    async def conversation_chain(self, owner_tag: str, response_id: str, max_chain: int,
                                 max_bytes: int) -> tuple[int, list[bytes]]:
        base = self.conversation_key(owner_tag, "")
        result = await self.call(self.run_script(
            _CHAIN, [base + response_id], [base, response_id, max_chain, max_bytes]))
        return int(result[0]), [bytes(value) for value in result[1:]]
