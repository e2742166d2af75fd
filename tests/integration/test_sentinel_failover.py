"""A Sentinel failover under accounting load: a private master (min-replicas-to-write 1), one replica
and one sentinel on loopback; writers send settle batches the way the pipeline does (usage record +
spend, with the accounting retry queue taking what fails), `SENTINEL FAILOVER` switches the master
mid-load (or the master is killed), and afterwards the new master's usage log holds every record.

docs/deployment.md promises, with `store.replica_acks` equal to the number of replicas: no record
lost and none counted twice in a failover, planned or not. A batch counts as written only once every
replica confirmed it (WAIT), so whichever the sentinel promotes has it; what was not confirmed goes
back to the retry queue and is sent again, and each write carries an id that Redis marks atomically
with it, so one that had reached the promoted replica is not applied twice. Without replica_acks,
asynchronous replication loses the writes acknowledged in the instant of the switch."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from uuid import uuid4

import pytest
import redis

from gateway.accounting.retry import RETRY_PER_BATCH, RetryQueue
from gateway.accounting.store import SPEND_ADD, USAGE_APPEND
from gateway.errors import StoreUnavailableError
from gateway.metrics import Metrics
from gateway.store.redis import RedisStore
from tests.support.redis_topologies import MISSING, cli, redis_sentinel, wait_for

pytestmark = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")

MASTER_ARGS = ("--min-replicas-to-write", "1", "--min-replicas-max-lag", "10")



async def load(store: RedisStore, retry: RetryQueue, ids: list[str], stop: asyncio.Event, writer: int) -> None:
    """One writer: a settle batch per call, failed groups kept for the next batch (as the stage does)."""
    n = 0
    while not stop.is_set():
        rid = f"w{writer}-{n}"
        n += 1
        ids.append(rid)
        group = (USAGE_APPEND.once((rid, "u0"), {"request_id": rid, "alias": "demo"}, 1_000_000),
                 SPEND_ADD.once((rid, "s0"), "2026-01-01", 3600, ("key|app",), (("requests", 1),)))
        groups = [*retry.take(RETRY_PER_BATCH), group]
        try:
            await store.run_batch([op for g in groups for op in g])
        except StoreUnavailableError as exc:
            retry.push(groups, exc)
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.002)


async def until(condition: Callable[[], bool], what: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def run_failover(url: str, trigger: object, new_master: object) -> tuple[list[str], RedisStore, RetryQueue]:
    store = RedisStore(url, timeout=0.5, key_prefix=f"t-deploy-{uuid4().hex[:8]}", replica_acks=1)
    assert store.request_connection is not None  # the settle batches take it, re-resolving the master
    retry = RetryQueue(100_000, Metrics())
    ids: list[str] = []
    stop = asyncio.Event()
    writers = [asyncio.create_task(load(store, retry, ids, stop, w)) for w in range(4)]
    # Enough calls on each side of the switch, however slow the machine (the suite may share it).
    await until(lambda: len(ids) >= 300, "300 calls before the failover")
    await asyncio.to_thread(trigger)  # type: ignore[arg-type]
    await asyncio.to_thread(new_master)  # type: ignore[arg-type]
    promoted_at = len(ids)
    await until(lambda: len(ids) >= promoted_at + 150, "150 calls after the promotion")  # to the new master
    stop.set()
    await asyncio.gather(*writers)
    # The new master's only possible replica is the old master, which the sentinel re-points after
    # about 10 s; until then the writes wait in the retry queue, as docs/deployment.md says.
    deadline = time.monotonic() + 40
    while len(retry):  # drain what is still queued (as the next settles, or the shutdown flush, would)
        groups = retry.take(RETRY_PER_BATCH)
        try:
            await store.run_batch([op for g in groups for op in g])
        except StoreUnavailableError as exc:
            retry.push(groups, exc)
            assert time.monotonic() < deadline, "the new master never took the queued writes"
            await asyncio.sleep(0.1)
    return ids, store, retry


@pytest.mark.parametrize("how", ["sentinel-failover", "master-killed"])
def test_failover_under_load_loses_no_accounting_records(how: str) -> None:
    with redis_sentinel(master_args=MASTER_ARGS) as setup:
        old = setup.master_port()
        assert old == setup.master

        def trigger() -> None:
            if how == "master-killed":
                setup.servers.kill(setup.master)
                # The node comes back as the new master's replica (how an operator or an init script
                # that asks the sentinels brings a crashed master back; restarting it as an empty master
                # invites the sentinel to fail back to it): until then no replica can confirm a write.
                wait_for(lambda: setup.master_port() == setup.replica, "the sentinel to promote the replica", 15)
                setup.servers.start(setup.master, "--repl-diskless-sync-delay", "0",
                                    "--replicaof", "127.0.0.1", str(setup.replica))
            else:
                assert cli(setup.sentinels[0], "sentinel", "failover", setup.service) == "OK"

        def new_master() -> None:
            wait_for(lambda: setup.master_port() == setup.replica, "the sentinel to promote the replica", 15)

        async def scenario() -> tuple[list[str], Counter[str], int]:
            ids, store, _retry = await run_failover(setup.url, trigger, new_master)
            try:
                entries = await store.usage_read(0, 2**62, 1_000_000)
                spend = await store.spend_read(["2026-01-01"])
            finally:
                await store.close()
            seen = Counter(record["request_id"] for record in entries)
            return ids, seen, spend["2026-01-01"].get("key|app|requests", 0)

        ids, seen, requests = asyncio.run(scenario())
        # The records were read from the promoted replica: the old master's data did not matter.
        assert setup.master_port() == setup.replica
        lost = [rid for rid in ids if rid not in seen]
        assert not lost, (len(lost), lost[:10])
        # Batches the old master took but no replica confirmed were sent again; each write applied once.
        duplicates = [rid for rid, n in seen.items() if n > 1]
        assert not duplicates, (len(duplicates), duplicates[:10])
        assert requests == len(ids)  # spend went through the same batches, also once each
        if how == "master-killed":
            return
        # The old master came back as a replica of the new one.
        wait_for(lambda: "role:slave" in cli(old, "info", "replication"), "the old master to be demoted", 15)
        client = redis.Redis(port=setup.replica)
        try:
            assert client.info("replication")["role"] == "master"
        finally:
            client.close()
