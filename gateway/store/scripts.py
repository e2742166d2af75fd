"""Lua scripts inside settle batches: EVALSHA of the script's locally computed SHA1, so a batch never
carries script text (packing and sending kilobytes of Lua per request costs the gateway more CPU than
the rest of the request) and never needs a SCRIPT EXISTS round trip. A server that does not know a
script (a restart, a failover) answers NOSCRIPT for that command only, without running it; the store
then loads the scripts and resends just those commands (RedisStore.run_batch).

On Redis Cluster the script text is sent (EVAL): redis-py's cluster pipeline does not route EVALSHA."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Sequence
from typing import Any, Protocol, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, RedisError

from gateway.errors import StoreUnavailableError

T = TypeVar("T")
# The Redis client the features' operations call (redis-py's; only the store imports redis).
RedisClient = aioredis.Redis
# What a Redis call raises when the store does not answer: refused, disconnected, timed out (an OSError).
REDIS_FAILURES = (RedisError, OSError)


class CommandBatch(Protocol):
    """The commands a settle write may queue on a batch (the request connection's, or a redis-py
    pipeline); each write queues exactly one, and RedisStore sends the batch in one round trip."""

    def evalsha(self, sha: str, numkeys: int, *args: Any) -> object: ...

    def eval(self, source: str, numkeys: int, *args: Any) -> object: ...

    def execute_command(self, *args: Any) -> object: ...

    def xadd(self, name: str, fields: dict[str, Any], *, maxlen: int | None = None,
             approximate: bool = True) -> object: ...


def unavailable(error: BaseException) -> StoreUnavailableError:
    """The gateway's error for a Redis call that failed (the exception's text is not repeated: it may
    name a host or carry a credential)."""
    return StoreUnavailableError(f"The shared store did not answer: {type(error).__name__}.")

_SHA_BY_SOURCE: dict[str, str] = {}
SOURCES: dict[str, str] = {}  # sha → source, every script a batch has used


def sha_of(source: str) -> str:
    sha = _SHA_BY_SOURCE.get(source)
    if sha is None:
        sha = _SHA_BY_SOURCE[source] = hashlib.sha1(source.encode()).hexdigest()
        SOURCES[sha] = source
    return sha


class ScriptOps:
    """What every Redis feature mixin shares: key naming and script calls, direct or in batches."""

    cluster: bool = False
    prefix: str = ""
    timeout: float = 0.0
    client: Any = None
    request_connection: Any = None  # the per-request calls' connection (store/resp.py), where the topology has one

    async def run_script(self, source: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """One script call outside a batch. Through the request connection when there is one: being
        one connection, it keeps this call in order with the settle batches sent before it (a write that
        left just after an earlier answer is applied before this read). Otherwise redis-py's Script
        (EVALSHA, loading the script on NOSCRIPT). Errors raise as redis-py exceptions."""
        connection = self.request_connection
        if connection is not None:
            call = ("EVALSHA", sha_of(source), len(keys), *keys, *args)
            (result,) = await connection.execute([call])
            if isinstance(result, NoScriptError):  # a restarted or failed-over Redis: load it, same write
                _, result = await connection.execute([("SCRIPT", "LOAD", source), call])
            if isinstance(result, Exception):
                raise result
            return result
        # redis-py: load once (SCRIPT LOAD reaches every primary of a Cluster), then EVALSHA.
        loaded: set[str] = self.__dict__.setdefault("_loaded_scripts", set())
        sha = sha_of(source)
        if sha not in loaded:
            await self.client.script_load(source)
            loaded.add(sha)
        try:
            return await self.client.evalsha(sha, len(keys), *keys, *args)
        except NoScriptError:  # a restarted or failed-over Redis: load again, once
            await self.client.script_load(source)
            return await self.client.evalsha(sha, len(keys), *keys, *args)

    async def call(self, awaitable: Awaitable[T]) -> T:
        """One direct call outside a batch, bounded by the store's timeout; a failure raises
        StoreUnavailableError."""
        try:
            async with asyncio.timeout(self.timeout):
                return await awaitable
        except REDIS_FAILURES as exc:
            raise unavailable(exc) from None

    def key(self, *parts: str, tag: str) -> str:
        """`prefix:{tag}:part:part` — the tag decides the Cluster slot."""
        return ":".join((self.prefix, "{" + tag + "}", *parts))

    def once_marker(self, call: str, slot: str, slot_part: str = "") -> str:
        """The key recording which of one call's writes were applied (see `guarded`): one per call, or
        on Cluster one per call and slot (`slot` + `slot_part`: the hash tag of the keys the write
        touches, given in two parts so the common case builds no string for it), since a script's
        keys must share a slot."""
        if self.cluster:
            return f"{self.prefix}:{{{slot}{slot_part}}}:once:{call}"
        return f"{self.prefix}:{{once}}:{call}"

    def queue_script(self, pipe: CommandBatch, source: str, numkeys: int, *args: Any) -> None:
        """Queue one script call on a batch pipeline (exactly one command)."""
        if self.cluster:
            pipe.eval(source, numkeys, *args)
        else:
            pipe.evalsha(sha_of(source), numkeys, *args)


# Seconds a request's applied-write markers live: longer than a write waits in the accounting retry
# queue in any outage docs/deployment.md plans for.
ONCE_TTL_SECONDS = 3600
# A skipped write still touches the marker (EXPIRE): Redis 7.2+ makes WAIT wait only for what the
# connection itself sent to the replicas, so a resent batch made only of skipped writes must still
# send something, or its WAIT would return at once without proving the replica has the writes.
_GUARD = f"""
local marker = table.remove(KEYS)
local write = table.remove(ARGV)
local fresh = redis.call('HSETNX', marker, write, 1)
redis.call('EXPIRE', marker, {ONCE_TTL_SECONDS})
if fresh == 0 then return false end
"""
_GUARDED: dict[str, str] = {}


def guarded(source: str) -> str:
    """`source` made idempotent: called with one more key (the request's marker hash) and one more
    argument (the write's id), it runs only if that write is not marked yet, and marks it in the same
    atomic step, so a write that reached Redis and is sent again (its confirmation was lost) is not
    counted twice."""
    text = _GUARDED.get(source)
    if text is None:
        text = _GUARDED[source] = _GUARD + source
    return text
