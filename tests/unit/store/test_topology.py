"""Parsing `store.redis_url` into a topology, and the clients redis-py builds for each."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from gateway.config import ConfigError, parse_config
from gateway.store.scripts import sha_of
from gateway.store.topology import (
    ClusterBatch,
    TopologyError,
    async_client,
    describe,
    is_cluster,
    parse_topology,
)


def test_single_server_urls_stay_as_they_are() -> None:
    for url in ("redis://127.0.0.1:6379/0", "rediss://h:6380/1", "unix:///tmp/redis.sock"):
        t = parse_topology(url)
        assert (t.kind, t.url) == ("single", url)


def test_sentinel_url() -> None:
    t = parse_topology("redis+sentinel://user:p%40ss@s1:26379,s2,[::1]:26380/mymaster?db=2&sentinel_password=x")
    assert t.kind == "sentinel"
    assert t.hosts == (("s1", 26379), ("s2", 26379), ("::1", 26380))
    assert (t.service, t.db, t.username, t.password, t.tls) == ("mymaster", 2, "user", "p@ss", False)
    assert t.options == {"sentinel_password": "x"}
    assert parse_topology("rediss+sentinel://:secret@s1/main").password == "secret"
    assert parse_topology("rediss+sentinel://:secret@s1/main").tls


def test_cluster_url_and_flag() -> None:
    t = parse_topology("redis-cluster://n1:7000,n2:7001,n3")
    assert (t.kind, t.hosts) == ("cluster", (("n1", 7000), ("n2", 7001), ("n3", 6379)))
    flagged = parse_topology("redis://n1:7000", cluster=True)
    assert (flagged.kind, flagged.url) == ("cluster", "redis://n1:7000")
    assert is_cluster("redis://n1:7000", cluster=True) and not is_cluster("redis://n1:7000")


@pytest.mark.parametrize("url", ["redis+sentinel://s1:26379", "redis+sentinel://s1:26379/", "redis-cluster://",
                                 "redis-cluster://h:port", "memcached://h", "redis+sentinel://s1/m?db=x"])
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(TopologyError):
        parse_topology(url)


def test_describe_never_shows_credentials() -> None:
    assert describe("redis+sentinel://u:hunter2@s1:26379,s2:26379/mymaster") == "sentinel s1:26379,s2:26379/mymaster"
    assert "hunter2" not in describe("redis://:hunter2@h:6379/0")
    assert describe("redis-cluster://:hunter2@n1:7000") == "cluster n1:7000"


def test_config_refuses_an_unknown_scheme() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("store: {redis_url: 'memcached://h:11211'}\nproviders: {}\nmodels: {}\n")
    assert any("unknown scheme" in p for p in info.value.problems)
    config = parse_config("store: {redis_url: 'redis-cluster://a:1,b:2', cluster: false}\nproviders: {}\nmodels: {}\n")
    assert config.store.redis_url == "redis-cluster://a:1,b:2"


async def test_clients_per_topology() -> None:
    single = async_client("redis://127.0.0.1:1/0", timeout=0.1)
    cluster = async_client("redis-cluster://127.0.0.1:1,127.0.0.1:2", timeout=0.1)
    sentinel = async_client("redis+sentinel://127.0.0.1:1/mymaster", timeout=0.1)
    try:
        assert isinstance(single, Redis) and not isinstance(single, RedisCluster)
        assert isinstance(cluster, RedisCluster)
        assert type(sentinel.connection_pool).__name__ == "SentinelConnectionPool"
        assert len(sentinel.gateway_sentinels) == 1
    finally:
        await single.aclose()
        await cluster.aclose()
        await sentinel.aclose()
        for s in sentinel.gateway_sentinels:
            await s.aclose()


def test_cluster_batch_turns_evalsha_into_eval() -> None:
    class Pipe:
        def __init__(self) -> None:
            self.calls: list[tuple[str, tuple[object, ...]]] = []

        def eval(self, *args: object) -> None:
            self.calls.append(("eval", args))

        def xadd(self, *args: object) -> None:
            self.calls.append(("xadd", args))

    pipe = Pipe()
    batch = ClusterBatch(pipe)
    source = "return 1"
    sha = sha_of(source)
    batch.evalsha(sha, 1, "k", "a")
    batch.xadd("s", {"f": "v"})
    assert pipe.calls == [("eval", (source, 1, "k", "a")), ("xadd", ("s", {"f": "v"}))]
    with pytest.raises(KeyError):
        batch.evalsha("0" * 40, 0)


async def test_a_cluster_client_has_no_master_to_follow() -> None:
    """redis-py 8's RedisCluster has no `connection_pool`: a failed batch on Cluster must not raise
    AttributeError while looking for a moved Sentinel master."""
    from redis.asyncio.cluster import RedisCluster

    from gateway.store.topology import follow_master

    client = RedisCluster(host="127.0.0.1", port=1)  # never connects: nothing is sent
    assert await follow_master(client) is None
    await client.aclose()
