"""Runtime keys: two registries on one store behave as two replicas."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from gateway.auth import Authenticator
from gateway.config import AuthConfig
from gateway.errors import AuthenticationError, ConflictError, InvalidRequestError, NotFoundError
from gateway.metrics import Metrics
from gateway.ratelimit.keys import KeyRegistry, parse_spec
from gateway.store.memory import MemoryStore


async def test_create_refresh_update_revoke_across_registries() -> None:
    store = MemoryStore()
    a, b = KeyRegistry(store, Metrics()), KeyRegistry(store, Metrics())
    record, plain = await a.create(parse_spec(b'{"name": "svc", "team": "t", "limits": {"rpm": 5}}', partial=False))
    digest = hashlib.sha256(plain.encode()).hexdigest()
    assert record.key_sha256 == digest and plain not in record.model_dump_json()
    assert a.lookup(digest) is not None and b.lookup(digest) is None
    await b.refresh()
    principal = b.lookup(digest)
    assert principal is not None and principal.team == "t" and principal.limits is not None
    assert principal.limits.rpm == 5
    await a.update(record.id, parse_spec(b'{"limits": {"rpm": 9}}', partial=True))
    await b.refresh()
    updated = b.lookup(digest)
    assert updated is not None and updated.limits is not None and updated.limits.rpm == 9
    await a.revoke(record.id)
    assert a.lookup(digest) is None
    await b.refresh()
    assert b.lookup(digest) is None
    assert (await b.get(record.id)).revoked is not None
    with pytest.raises(InvalidRequestError):
        await a.update(record.id, {"limits": {"rpm": 1}})
    with pytest.raises(NotFoundError):
        await a.get("key_missing")


def test_authenticator_consults_runtime_keys_after_config_keys() -> None:
    registry = {hashlib.sha256(b"sk-runtime-key").hexdigest(): "runtime"}
    from gateway.context import Principal

    auth = Authenticator(AuthConfig(keys=[]), lambda d: Principal(name=registry[d]) if d in registry else None)
    assert auth.authenticate({"authorization": "Bearer sk-runtime-key"}).name == "runtime"
    with pytest.raises(AuthenticationError):
        auth.authenticate({"authorization": "Bearer sk-other-key-0123456789"})


@pytest.mark.parametrize("body", [b"[]", b"{", b'{"name": ""}', b'{"name": "x", "limits": {"rpm": 0}}',
                                  b'{"name": "x", "extra": 1}'])
def test_bad_specs_are_400(body: bytes) -> None:
    with pytest.raises(InvalidRequestError):
        parse_spec(body, partial=False)


async def test_a_live_keys_name_is_refused_to_another_key_on_every_replica() -> None:
    store = MemoryStore()
    a, b = KeyRegistry(store, Metrics()), KeyRegistry(store, Metrics())
    first, _ = await a.create(parse_spec(b'{"name": "svc", "team": "red"}', partial=False))
    with pytest.raises(ConflictError) as refused:
        await b.create(parse_spec(b'{"name": "svc", "team": "blue"}', partial=False))
    assert refused.value.http_status == 409 and first.id in refused.value.message
    second, _ = await b.create(parse_spec(b'{"name": "svc-2"}', partial=False))
    with pytest.raises(ConflictError):
        await a.update(second.id, {"name": "svc"})
    await a.revoke(first.id)
    assert (await b.update(second.id, {"name": "svc"})).name == "svc"
    await b.create(parse_spec(b'{"name": "svc-2"}', partial=False))  # freed by the rename


async def test_two_replicas_creating_one_name_at_once_get_one_key() -> None:
    """The store's claim decides, even when neither saw the other's key yet."""

    class SlowStore(MemoryStore):
        async def keys_load(self) -> tuple[int, dict[str, bytes]]:
            loaded = await super().keys_load()
            await asyncio.sleep(0.01)  # both replicas have read the records before either saves
            return loaded

    store = SlowStore()
    registries = [KeyRegistry(store, Metrics()) for _ in range(2)]
    outcomes = await asyncio.gather(*(r.create({"name": "race"}) for r in registries), return_exceptions=True)
    assert sorted(type(o).__name__ for o in outcomes) == ["ConflictError", "tuple"]
