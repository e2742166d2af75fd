from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.contract.stores import STORE_KINDS, StoreFactory, open_store, real_redis_up
from tests.support.redis_topologies import MISSING, redis_cluster


@pytest.fixture(scope="session")
def redis_cluster_url() -> Iterator[str]:
    """A private 3-master Redis Cluster on loopback ports for the whole session (started on first use)."""
    if MISSING:
        pytest.skip(MISSING)
    with redis_cluster() as ports:
        yield "redis-cluster://" + ",".join(f"127.0.0.1:{port}" for port in ports)


@pytest.fixture(params=STORE_KINDS)
def store_factory(request: pytest.FixtureRequest) -> StoreFactory:
    kind = request.param
    if kind == "redis" and not real_redis_up():
        pytest.skip("no Redis at 127.0.0.1:6379")
    if kind == "cluster":
        url = request.getfixturevalue("redis_cluster_url")
        return lambda: open_store(kind, url)
    return lambda: open_store(kind)
