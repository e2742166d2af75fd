"""Which Redis the gateway talks to: one server, a Sentinel-managed master, or a Cluster — always
through redis-py's own clients, so failover and slot routing are theirs, not ours.

URL forms (`store.redis_url`):
- `redis://[user:pass@]host:port/db` (or `rediss://`, `unix://`): one server.
- `redis+sentinel://[user:pass@]host:port,host:port/service_name?db=0`: ask the sentinels for the
  master of `service_name` (`rediss+sentinel://` for TLS to the data nodes). The credentials are the
  data nodes'; `sentinel_password=` in the query authenticates against the sentinels themselves.
- `redis-cluster://[user:pass@]host:port,host:port` (or `rediss-cluster://`): seed nodes of a Cluster;
  `redis://host:port` with `store.cluster: true` means the same.

Every client gets the same per-call socket timeouts; the store adds its own `asyncio.timeout` on top.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from gateway.store.resp import RequestConnection, request_connection_serves
from gateway.store.scripts import SOURCES

SENTINEL_SCHEMES = {"redis+sentinel": False, "rediss+sentinel": True}
CLUSTER_SCHEMES = {"redis-cluster": False, "rediss-cluster": True}


@dataclass(frozen=True)
class Topology:
    kind: str  # "single" | "sentinel" | "cluster"
    url: str = ""  # single (and cluster given as a plain URL)
    hosts: tuple[tuple[str, int], ...] = ()
    service: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False
    options: dict[str, str] = field(default_factory=dict)


class TopologyError(ValueError):
    pass


def _hosts(netloc: str, default_port: int) -> tuple[tuple[str, int], ...]:
    hosts = []
    for part in netloc.split(","):
        part = part.strip()
        if not part:
            continue
        if part.startswith("["):  # [IPv6]:port
            host, _, port = part[1:].partition("]")
            port = port.lstrip(":") or str(default_port)
        elif part.count(":") == 1:
            host, port = part.split(":")
        else:  # a bare host name or IPv6 address
            host, port = part, str(default_port)
        try:
            hosts.append((host, int(port)))
        except ValueError:
            raise TopologyError(f"bad port in {part!r}") from None
    if not hosts:
        raise TopologyError("no host:port given")
    return tuple(hosts)


def parse_topology(url: str, *, cluster: bool = False) -> Topology:
    """Parse `store.redis_url` (never echoes the password in an error)."""
    scheme, _, rest = url.partition("://")
    scheme = scheme.lower()
    if scheme in SENTINEL_SCHEMES or scheme in CLUSTER_SCHEMES:
        creds, at, netloc_path = rest.rpartition("@")
        if not at:
            creds, netloc_path = "", rest
        netloc, _, path_query = netloc_path.partition("/")
        if "?" in netloc:  # `redis-cluster://h:1,h:2?x=y` without a path
            netloc, _, query = netloc.partition("?")
            path = ""
        else:
            path, _, query = path_query.partition("?")
        user, colon, password = creds.partition(":")
        username = unquote(user) if user and colon else None
        secret = unquote(password) if colon else (unquote(user) if user else None)
        options = {k: v[-1] for k, v in parse_qs(query).items()}
        if scheme in SENTINEL_SCHEMES:
            service = unquote(path.strip("/"))
            if not service:
                raise TopologyError("redis+sentinel:// needs the service name as the path: "
                                    "redis+sentinel://host:26379,host:26379/mymaster")
            db = options.pop("db", "0")
            if not db.isdigit():
                raise TopologyError("db must be a number")
            return Topology("sentinel", hosts=_hosts(netloc, 26379), service=service, db=int(db),
                            username=username, password=secret, tls=SENTINEL_SCHEMES[scheme], options=options)
        return Topology("cluster", hosts=_hosts(netloc, 6379), username=username, password=secret,
                        tls=CLUSTER_SCHEMES[scheme], options=options)
    if scheme not in ("redis", "rediss", "unix"):
        raise TopologyError(f"unknown scheme {scheme!r}: use redis://, rediss://, unix://, "
                            "redis+sentinel:// or redis-cluster://")
    return Topology("cluster" if cluster else "single", url=url)


def describe(url: str, *, cluster: bool = False) -> str:
    """A log-safe summary: the kind and the hosts, never credentials."""
    try:
        t = parse_topology(url, cluster=cluster)
    except TopologyError:
        return "invalid"
    if t.kind == "single" or (t.kind == "cluster" and t.url):
        parts = urlsplit(t.url)
        return f"{t.kind} {parts.hostname or parts.path}:{parts.port or ''}".rstrip(":")
    hosts = ",".join(f"{h}:{p}" for h, p in t.hosts)
    return f"{t.kind} {hosts}" + (f"/{t.service}" if t.service else "")


def async_client(url: str, *, timeout: float, cluster: bool = False) -> Any:
    """The redis.asyncio client for the topology: Redis, a Sentinel-managed master, or RedisCluster."""
    t = parse_topology(url, cluster=cluster)
    common: dict[str, Any] = dict(socket_timeout=timeout, socket_connect_timeout=timeout)
    if t.kind == "single":
        import redis.asyncio as aioredis

        return aioredis.Redis.from_url(url, health_check_interval=30, **common)
    if t.kind == "cluster":
        from redis.asyncio.cluster import ClusterNode, RedisCluster

        if t.url:
            return RedisCluster.from_url(t.url, **common)
        nodes = [ClusterNode(h, p) for h, p in t.hosts]
        return RedisCluster(startup_nodes=nodes, username=t.username, password=t.password, ssl=t.tls, **common)
    from redis.asyncio.sentinel import Sentinel

    sentinel_kwargs = {**common, "password": t.options.get("sentinel_password")}
    sentinel = Sentinel(list(t.hosts), sentinel_kwargs=sentinel_kwargs, **common)  # type: ignore[no-untyped-call, unused-ignore]
    client = sentinel.master_for(t.service, db=t.db, username=t.username, password=t.password, ssl=t.tls,
                                 health_check_interval=30)
    client.gateway_sentinels = sentinel.sentinels  # closed with the client: see `aclose_all`
    return client


async def aclose_all(client: Any) -> None:
    """Close the client and, for a Sentinel-managed master, the connections to the sentinels."""
    await client.aclose()
    for sentinel in getattr(client, "gateway_sentinels", ()):
        await sentinel.aclose()


async def follow_master(client: Any) -> tuple[str, int] | None:
    """For a Sentinel-managed client: ask the sentinels where the master is now, and if it moved,
    send every pooled connection there. redis-py re-resolves the master only when a connection opens
    (or on READONLY), but a planned failover leaves the old master a master for ~10 s, refusing
    writes with NOREPLICAS on connections that stay open; without this, writes keep going to it.
    Idle connections close now, busy ones when they return to the pool. Returns the master's
    address (None: one server or Cluster, nothing to follow)."""
    # (A Cluster client has no single pool: redis-py 8 dropped its `connection_pool` attribute.)
    pool = getattr(client, "connection_pool", None)
    if not hasattr(pool, "get_master_address"):
        return None
    assert pool is not None
    host, port = await pool.get_master_address()  # also closes idle connections to another address
    for connection in list(getattr(pool, "_in_use_connections", ())):
        if (connection.host, connection.port) != (host, port):
            connection.mark_for_reconnect()
    return host, port


def request_connection(url: str, *, timeout: float, cluster: bool, client: Any) -> RequestConnection | None:
    """The connection the per-request calls share (store/resp.py), where it can serve the topology:
    one plain-TCP or unix-socket Redis, or a Sentinel-managed master without TLS (its address is
    looked up through `client`, the redis-py Sentinel client). None: redis-py serves everything."""
    t = parse_topology(url, cluster=cluster)
    if t.kind == "single":
        return RequestConnection.from_url(url, timeout=timeout) if request_connection_serves(url) else None
    if t.kind == "sentinel" and not t.tls:
        pool = client.connection_pool
        return RequestConnection(timeout=timeout, username=t.username, password=t.password, db=t.db,
                                 resolve=pool.get_master_address)
    return None


def sync_client(url: str, *, timeout: float, cluster: bool = False) -> Any:
    """The blocking twin (CLI tools such as `gateway usage export`)."""
    t = parse_topology(url, cluster=cluster)
    common: dict[str, Any] = dict(socket_timeout=timeout, socket_connect_timeout=timeout)
    if t.kind == "single":
        import redis

        return redis.Redis.from_url(url, **common)
    if t.kind == "cluster":
        from redis.cluster import ClusterNode, RedisCluster

        if t.url:
            return RedisCluster.from_url(t.url, **common)
        nodes = [ClusterNode(h, p) for h, p in t.hosts]  # type: ignore[no-untyped-call, unused-ignore]
        return RedisCluster(startup_nodes=nodes, username=t.username, password=t.password, ssl=t.tls, **common)
    from redis.sentinel import Sentinel

    sentinel_kwargs = {**common, "password": t.options.get("sentinel_password")}
    sentinel = Sentinel(list(t.hosts), sentinel_kwargs=sentinel_kwargs, **common)  # type: ignore[no-untyped-call, unused-ignore]
    return sentinel.master_for(t.service, db=t.db, username=t.username, password=t.password, ssl=t.tls)  # type: ignore[no-untyped-call, unused-ignore]


def is_cluster(url: str, *, cluster: bool = False) -> bool:
    return parse_topology(url, cluster=cluster).kind == "cluster"


# --- Cluster batches ---
# redis-py's ClusterPipeline refuses EVALSHA (a node may not have the script: after a failover or a
# resharding, NOSCRIPT would fail the batch), but routes EVAL by its keys' slot like any command. On a
# Cluster the settle batch therefore sends the script text (EVAL; Redis caches the compiled script),
# and the pipeline splits the batch per node: one round trip per node, in parallel, not atomic —
# which the settle batch never was (a non-transactional pipeline).
class ClusterBatch:
    """A ClusterPipeline whose `evalsha` queues EVAL of the same script (every other call passes through)."""

    __slots__ = ("pipe",)

    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe

    def __getattr__(self, name: str) -> Any:
        return getattr(self.pipe, name)

    def evalsha(self, sha: str, numkeys: int, *args: Any) -> Any:
        source = SOURCES.get(sha)
        if source is None:
            raise KeyError(f"EVALSHA {sha} in a Cluster batch of a script never hashed by store/scripts.sha_of")
        return self.pipe.eval(source, numkeys, *args)
