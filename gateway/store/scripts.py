"""Lua scripts inside settle batches: EVALSHA of the script's locally computed SHA1, so a batch never
carries script text (packing and sending kilobytes of Lua per request costs the gateway more CPU than
the rest of the request) and never needs a SCRIPT EXISTS round trip. A server that does not know a
script (a restart, a failover) answers NOSCRIPT for that command only, without running it; the store
then loads the scripts and resends just those commands (RedisStore.run_batch).

On Redis Cluster the script text is sent (EVAL): redis-py's cluster pipeline does not route EVALSHA."""

from __future__ import annotations

import hashlib
from typing import Any

_SHA_BY_SOURCE: dict[str, str] = {}
SOURCES: dict[str, str] = {}  # sha → source, every script a batch has used


def sha_of(source: str) -> str:
    sha = _SHA_BY_SOURCE.get(source)
    if sha is None:
        sha = _SHA_BY_SOURCE[source] = hashlib.sha1(source.encode()).hexdigest()
        SOURCES[sha] = source
    return sha


class ScriptOps:
    """What every Redis feature mixin shares: key naming and script calls in batches."""

    cluster: bool = False
    prefix: str = ""

    def key(self, *parts: str, tag: str) -> str:
        """`prefix:{tag}:part:part` — the tag decides the Cluster slot."""
        return ":".join((self.prefix, "{" + tag + "}", *parts))

    def once_marker(self, once: tuple[str, str]) -> str:
        """The key recording which of one request's writes were applied (see `guarded`)."""
        return self.key(once[0], tag="once")

    def queue_script(self, pipe: Any, source: str, numkeys: int, *args: Any) -> None:
        """Queue one script call on a batch pipeline (exactly one command)."""
        if self.cluster:
            pipe.eval(source, numkeys, *args)
        else:
            pipe.evalsha(sha_of(source), numkeys, *args)


# Seconds a request's applied-write markers live: longer than a write waits in the accounting retry
# queue in any outage README.md (Deployment) plans for.
ONCE_TTL_SECONDS = 3600
_GUARD = f"""
local marker = table.remove(KEYS)
local write = table.remove(ARGV)
if redis.call('HSETNX', marker, write, 1) == 0 then return false end
redis.call('EXPIRE', marker, {ONCE_TTL_SECONDS})
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
