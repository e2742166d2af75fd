"""The Redis store: shared state for every replica, one round trip per operation.

A batch op runs the function its write names for this store (`BatchWrite.redis(store, batch, once,
*args)`), which queues exactly one command (a script call goes through `ScriptOps.queue_script`:
EVALSHA, see store/scripts.py) on one non-transactional pipeline; the whole batch is one round trip.
Keys carry a `{hash tag}` so multi-key scripts work on Redis Cluster.

An op Redis refuses fails alone: its result is the error, the rest of the batch stands. Writes that
carry an id (`StoreOp.once`: every accounting write) are applied at most once, so a batch that timed out
at the gateway after Redis applied it can be sent again safely.

With `replica_acks` set, a batch carrying a durable write (`BatchWrite.durable`: every accounting
write) ends with `WAIT n` on the same connection: Redis replicates asynchronously, so a write the
master acknowledged can vanish in a failover; a batch whose writes fewer than n replicas confirmed
counts as failed, and the accounting retry queue sends it again (to the new master, after a
failover)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, RedisError

from gateway.accounting.store_redis import RedisAccountingOps
from gateway.cache.store_redis import RedisCacheOps
from gateway.conversations.store_redis import RedisConversationOps
from gateway.errors import StoreUnavailableError
from gateway.ratelimit.store_redis import RedisLimitOps
from gateway.routing.store_redis import RedisRoutingOps, RedisSessionOps
from gateway.store import StoreOp
from gateway.store.protocol import Store
from gateway.store.resp import RequestBatch, RequestConnection
from gateway.store.scripts import SOURCES
from gateway.store.topology import ClusterBatch, aclose_all, async_client, follow_master, is_cluster, request_connection


# The operations live in one mixin per feature, in the feature's package (its store_redis.py).
class RedisStore(RedisCacheOps, RedisLimitOps, RedisRoutingOps, RedisAccountingOps, RedisSessionOps,
                 RedisConversationOps, Store):
    in_process = False

    def __init__(self, url: str, *, timeout: float, key_prefix: str, cluster: bool = False,
                 replica_acks: int = 0) -> None:
        self.timeout = timeout
        self.prefix = key_prefix
        self.replica_acks = replica_acks
        # WAIT must give up well inside the batch's own timeout, so a lost replica reads as "not
        # replicated" (retry) rather than as a store timeout: a quarter, since a batch that met
        # NOSCRIPT is sent again (a second WAIT) within the same timeout.
        self._wait_ms = max(1, int(timeout * 250))
        self._followed_at = 0.0
        # --- deploy: topologies (single, Sentinel, Cluster; gateway/store/topology.py) ---
        self.client: aioredis.Redis = async_client(url, timeout=timeout, cluster=cluster)
        self.cluster = is_cluster(url, cluster=cluster)
        # --- end deploy ---
        # The per-request calls (reserves, cache lookups, the settle batch) share one connection
        # (store/resp.py) on one plain Redis or a Sentinel master; the rest, TLS and Cluster go through
        # redis-py (see topology.request_connection).
        self.request_connection: RequestConnection | None = request_connection(url, timeout=timeout, cluster=cluster,
                                                                               client=self.client)

    @property
    def ordered(self) -> bool:
        """See StoreClient.ordered: every per-request call on the one request connection. Not with
        replica_acks: batches that WAIT for replicas go through redis-py's pool, since WAIT blocks
        its connection and would hold every other request's calls behind it. (Routing statistics
        are read through redis-py; they are eventual by design.)"""
        return self.request_connection is not None and not self.replica_acks

    async def ping(self) -> bool:
        try:
            async with asyncio.timeout(self.timeout):
                return bool(await self.client.ping())
        except (RedisError, OSError, TimeoutError):
            return False

    async def run_batch(self, ops: Sequence[StoreOp]) -> list[Any]:
        if not ops:
            return []
        try:
            async with asyncio.timeout(self.timeout):
                results, acked = await self._execute(ops)
                missing = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
                if missing:
                    # The server lost our scripts (restart, failover): those commands did not run.
                    # Load the scripts and send just those commands again.
                    again, acked_again = await self._execute([ops[i] for i in missing], load_scripts=True)
                    for i, result in zip(missing, again, strict=True):
                        results[i] = result
                    if acked_again is not None:
                        acked = acked_again if acked is None else min(acked, acked_again)
        except (RedisError, OSError, TimeoutError) as exc:
            await self._follow_master()
            raise StoreUnavailableError(f"The shared store did not answer: {type(exc).__name__}.") from None
        for result in results:  # each fails alone; a READONLY may mean a failover
            if isinstance(result, Exception):
                await self._follow_master()
                break
        if acked is not None and acked < self.replica_acks:
            await self._follow_master()
            raise StoreUnavailableError(f"The shared store's replicas confirmed {acked} of "
                                        f"{self.replica_acks} required copies of a write.")
        return results

    async def _follow_master(self) -> None:
        """After a failed batch: if Sentinel moved the master, reconnect there (at most twice a second:
        a master without its replica refuses every write, and each refusal lands here)."""
        now = time.monotonic()
        if self.cluster or now - self._followed_at < 0.5:  # (a Cluster client follows MOVED itself)
            return
        self._followed_at = now
        try:
            async with asyncio.timeout(self.timeout):
                master = await follow_master(self.client)  # one sentinel query serves both clients
                if master is not None and self.request_connection is not None:
                    self.request_connection.follow(*master)
        except (RedisError, OSError, TimeoutError):
            pass  # the sentinels did not answer either; the next failure asks again

    async def _execute(self, ops: Sequence[StoreOp], *, load_scripts: bool = False) -> tuple[list[Any], int | None]:
        """The ops' results and, when the batch had to wait for replicas, how many confirmed it."""
        # (Only batches with a write whose loss costs money or audit trail wait for replicas.)
        durable = self.replica_acks and any(op.write.durable for op in ops)
        pipe: Any
        if self.request_connection is not None and not durable:
            pipe = RequestBatch(self.request_connection)
        else:  # (a batch that WAITs takes a pooled connection of its own: see `ordered`)
            pipe = self.client.pipeline(transaction=False)
            if self.cluster:  # --- deploy ---
                pipe = ClusterBatch(pipe)
        loads = 0
        if load_scripts:
            for source in SOURCES.values():
                pipe.script_load(source)
                loads += 1
        for op in ops:
            op.write.redis(self, pipe, op.once, *op.args)  # `once`: may be sent again, applied at most once
        if durable:  # WAIT covers every write sent before it on this connection: the whole pipeline
            pipe.execute_command("WAIT", self.replica_acks, self._wait_ms)
        results: list[Any] = await pipe.execute(raise_on_error=False)
        acked: int | None = None
        if durable:
            confirmed = results.pop()
            acked = confirmed if isinstance(confirmed, int) else 0
        return results[loads:], acked

    async def close(self) -> None:
        if self.request_connection is not None:
            await self.request_connection.aclose()
        await aclose_all(self.client)  # deploy: also a Sentinel client's sentinel connections
