"""Accounting's Redis operations, mixed into RedisStore (their in-process twins are in
`store_memory.py`; same semantics, one contract suite).

Batch ops (the settle writes of store.py, sent with every other stage's writes in one round trip):
- `spend_add(day, ttl, dims, metrics)`: add each metric's integer to the field `<dim>|<metric>` of the
  day's spend hash, for every dimension (`key|<id>|<name>`, `alias|gpt`, …); one EVAL.
- `budget_adjust(tag, counters, delta, ttl)`: reconcile budget counters after the call (one EVALSHA).
- `budget_release(tag, counters, call)`: take back a reservation whose outcome the gateway never
  learnt (the reserve timed out): only if it was applied, and so that it cannot apply afterwards.
- `usage_append(fields, maxlen)`: one record on the usage log (XADD with `MAXLEN ~`).

On Redis every accounting write carries its call's id (`StoreOp.once`) and is applied at most once
(scripts.guarded), whatever is sent again: a batch that timed out at the gateway may still have been
applied by Redis, and the retry queue sends it again.

Direct ops (one round trip each):
- `budget_reserve(tag, counters, limits, amount, ttl, call)`: 0 when `amount` fits under every limit
  (and was added to every counter), else the 1-based index of the first counter that has no room.
  With `call`, Redis notes the reservation in the call's marker, for `budget_release`.
- `budget_read`, `spend_read(days)`, `usage_read(start_ms, end_ms, count)` for the admin API.

Budget counters of one principal share a hash tag, so the multi-key scripts work on Redis Cluster;
the spend hash of a day is one key."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import orjson

from gateway.errors import StoreUnavailableError
from gateway.store import Once
from gateway.store.scripts import ONCE_TTL_SECONDS, REDIS_FAILURES, CommandBatch, ScriptOps, guarded

# Returns (refused) or falls through (reserved): the body of both reserve scripts.
_CHECK_AND_RESERVE = """
local amount = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
for i, key in ipairs(KEYS) do
  local current = tonumber(redis.call('GET', key) or '0')
  local limit = tonumber(ARGV[2 + i])
  if current >= limit or current + amount > limit then
    return i
  end
end
for _, key in ipairs(KEYS) do
  redis.call('INCRBY', key, amount)
  if redis.call('TTL', key) < 0 then redis.call('EXPIRE', key, ttl) end
end
"""
_RESERVE = _CHECK_AND_RESERVE + "return 0\n"

# The reservation of call ARGV[#ARGV], noted in its marker hash (last key) with the amount: sent
# again, or arriving after budget_release gave up on it (a tombstone), it reserves nothing.
_RESERVE_NOTED = f"""
local marker = table.remove(KEYS)
local call = table.remove(ARGV)
if redis.call('HEXISTS', marker, call) == 1 then return 0 end
{_CHECK_AND_RESERVE.strip()}
redis.call('HSET', marker, call, ARGV[1])
redis.call('EXPIRE', marker, {ONCE_TTL_SECONDS})
return 0
"""

# Undo the noted reservation of call ARGV[1] if it was applied; either way leave a tombstone ('x').
_RELEASE = f"""
local marker = table.remove(KEYS)
local held = redis.call('HGET', marker, ARGV[1])
redis.call('HSET', marker, ARGV[1], 'x')
redis.call('EXPIRE', marker, {ONCE_TTL_SECONDS})
if not held or held == 'x' then return 0 end
for _, key in ipairs(KEYS) do redis.call('DECRBY', key, held) end
return tonumber(held)
"""

_ADJUST = """
local delta = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
for _, key in ipairs(KEYS) do
  redis.call('INCRBY', key, delta)
  if redis.call('TTL', key) < 0 then redis.call('EXPIRE', key, ttl) end
end
return 0
"""

_SPEND = """
local ndims = tonumber(ARGV[2])
for m = 3 + ndims, #ARGV, 2 do
  for d = 3, 2 + ndims do
    redis.call('HINCRBY', KEYS[1], ARGV[d] .. '|' .. ARGV[m], ARGV[m + 1])
  end
end
if redis.call('TTL', KEYS[1]) < 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return 0
"""


# The field of a call's marker hash that holds its budget reservation (the amount, or 'x' once released).
RESERVATION_FIELD = "r"


def make_key(prefix: str, *parts: str, tag: str) -> str:
    return ":".join((prefix, "{" + tag + "}", *parts))


def usage_stream_key(prefix: str) -> str:
    """The Redis Stream holding the usage log (also read by `gateway usage export`)."""
    return make_key(prefix, "usage", tag="usage")


def spend_key(prefix: str, day: str) -> str:
    return make_key(prefix, "spend", day, tag=f"spend:{day}")


def budget_key(prefix: str, tag: str, counter: str) -> str:
    return make_key(prefix, "budget", counter, tag=f"budget:{tag}")


class RedisAccountingOps(ScriptOps):
    """Mixed into RedisStore: needs `client`, `timeout` and `prefix`."""

    client: Any
    timeout: float
    prefix: str

    # batch ops ---------------------------------------------------------------------------------
    # `once` (call id, write id): apply at most once (see StoreOp and scripts.guarded).
    def queue_spend_add(self, pipe: CommandBatch, once: Once | None, day: str, ttl: int, dims: Sequence[str],
                        metrics: Sequence[tuple[str, int]]) -> None:
        args: list[Any] = [ttl, len(dims), *dims]
        for name, value in metrics:
            args += (name, value)
        if once is None:
            self.queue_script(pipe, _SPEND, 1, spend_key(self.prefix, day), *args)
        else:
            self.queue_script(pipe, _SPEND_ONCE, 2, spend_key(self.prefix, day),
                              self.once_marker(once[0], "spend:", day), *args, once[1])

    def queue_budget_adjust(self, pipe: CommandBatch, once: Once | None, tag: str, counters: Sequence[str],
                            delta: int, ttl: int) -> None:
        keys = [budget_key(self.prefix, tag, c) for c in counters]
        if once is None:
            self.queue_script(pipe, _ADJUST, len(keys), *keys, delta, ttl)
        else:
            self.queue_script(pipe, _ADJUST_ONCE, len(keys) + 1, *keys, self.once_marker(once[0], "budget:", tag),
                              delta, ttl, once[1])

    def queue_budget_release(self, pipe: CommandBatch, once: Once | None, tag: str, counters: Sequence[str],
                             call: str) -> None:
        # Idempotent by itself (its tombstone): `once` is not needed.
        keys = [budget_key(self.prefix, tag, c) for c in counters]
        self.queue_script(pipe, _RELEASE, len(keys) + 1, *keys, self.once_marker(call, "budget:", tag),
                          RESERVATION_FIELD)

    def queue_usage_append(self, pipe: CommandBatch, once: Once | None, fields: dict[str, str], maxlen: int) -> None:
        # One JSON field rather than one stream field per column: the client encodes two arguments
        # instead of forty on every request (see decode_record).
        record = orjson.dumps(fields)
        if once is None:
            pipe.xadd(usage_stream_key(self.prefix), {RECORD_FIELD: record}, maxlen=maxlen, approximate=True)
        else:
            self.queue_script(pipe, _APPEND_ONCE, 2, usage_stream_key(self.prefix),
                              self.once_marker(once[0], "usage"), maxlen, record, once[1])

    # direct ops --------------------------------------------------------------------------------
    async def budget_reserve(self, tag: str, counters: Sequence[str], limits: Sequence[int], amount: int,
                             ttl: int, call: str = "") -> int:
        keys = [budget_key(self.prefix, tag, c) for c in counters]
        if not call:
            return int(await self.call(self.run_script(_RESERVE, keys, [amount, ttl, *limits])))
        keys.append(self.once_marker(call, "budget:", tag))
        return int(await self.call(self.run_script(_RESERVE_NOTED, keys, [amount, ttl, *limits, RESERVATION_FIELD])))

    async def budget_read(self, tag: str, counters: Sequence[str]) -> list[int]:
        keys = [budget_key(self.prefix, tag, c) for c in counters]
        values = await self.call(self.client.mget(keys))
        return [int(v) if v is not None else 0 for v in values]

    async def spend_read(self, days: Sequence[str]) -> dict[str, dict[str, int]]:
        async def read() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            for day in days:
                pipe.hgetall(spend_key(self.prefix, day))
            return list(await pipe.execute())

        results = await self.call(read())
        return {day: {_s(k): int(v) for k, v in raw.items()} for day, raw in zip(days, results, strict=True)}

    async def usage_read(self, start_ms: int, end_ms: int, count: int) -> list[dict[str, str]]:
        key = usage_stream_key(self.prefix)
        entries = await self.call(
            self.client.xrange(key, min=f"{start_ms}-0", max=f"{end_ms}-18446744073709551615", count=count))
        return [decode_record(fields) for _id, fields in entries]


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


RECORD_FIELD = "r"
# The usage-log append as a script, for the guarded (apply-once) form only.
_APPEND = f"""
return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', '{RECORD_FIELD}', ARGV[2])
"""
# The apply-once forms every settle sends (looked up once, not per write).
_SPEND_ONCE, _ADJUST_ONCE, _APPEND_ONCE = guarded(_SPEND), guarded(_ADJUST), guarded(_APPEND)


def decode_record(fields: dict[Any, Any]) -> dict[str, str]:
    """A usage-log stream entry → its record: the JSON field, or (entries written by earlier
    versions) one stream field per column."""
    packed = fields.get(RECORD_FIELD.encode()) or fields.get(RECORD_FIELD)
    if packed is not None:
        record = orjson.loads(packed)
        if isinstance(record, dict):
            return {str(k): str(v) for k, v in record.items()}
    return {_s(k): _s(v) for k, v in fields.items()}


# --- the usage log, read synchronously (the `gateway usage export` CLI) ---
EXPORT_PAGE = 1000


def read_usage_stream(url: str, prefix: str, start_ms: int, end_ms: int | None) -> Iterator[dict[str, str]]:
    """Every usage-log record from `start_ms` (to `end_ms`), paging through XRANGE so any length streams
    in bounded memory. Raises StoreUnavailableError when Redis cannot be read."""
    from gateway.store.topology import sync_client  # deploy: redis://, redis+sentinel://, redis-cluster://

    client = sync_client(url, timeout=30)
    key = usage_stream_key(prefix)
    low = f"{start_ms}-0"
    high = f"{end_ms}-18446744073709551615" if end_ms is not None else "+"
    try:
        while True:
            entries: Any = client.xrange(key, min=low, max=high, count=EXPORT_PAGE)
            for _id, fields in entries:
                yield decode_record(fields)
            if len(entries) < EXPORT_PAGE:
                return
            low = "(" + _s(entries[-1][0])
    except REDIS_FAILURES as exc:
        raise StoreUnavailableError(f"Cannot read the usage log: {type(exc).__name__}: {exc}") from None
    finally:
        client.close()
