"""Gateway keys managed at run time (the admin API): stored in the store as SHA-256 digests with
their name, team, allowed aliases, metadata and limits; the plain key is returned once, at creation.

Every replica keeps a local snapshot (digest → Principal) that authentication reads with one dict
lookup. A refresher polls the store's version counter every `limits_defaults.key_refresh` (≤ 1s)
and reloads the records when it moved, so a revocation reaches every replica within a second. When
the store is unreachable the last snapshot stays in force."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from typing import Annotated, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.background import Background
from gateway.config import Limits
from gateway.context import Principal
from gateway.errors import ConflictError, InvalidRequestError, NotFoundError
from gateway.logs import get_logger
from gateway.metrics import Metrics
from gateway.ratelimit.store import KeyStore

log = get_logger("keys")

KEY_PREFIX = "sk-gw-"


class KeySpec(BaseModel):
    """The admin API's body for creating a key (every field) or updating one (any subset)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(min_length=1, max_length=200)]
    team: str | None = None
    models: list[str] | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    limits: Limits | None = None


class KeyRecord(BaseModel):
    """What the store keeps per key (never the plain key)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str
    key_sha256: str
    hint: str
    name: str
    team: str | None = None
    models: list[str] | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    limits: Limits | None = None
    created: int
    revoked: int | None = None

    def public(self) -> dict[str, Any]:
        """The admin API's view: everything but the digest, with `key_id`, the identity spend and usage
        records file this key under (Principal.key_id)."""
        return {**self.model_dump(exclude={"key_sha256"}, mode="json"), "key_id": self.principal().key_id}

    def principal(self) -> Principal:
        return Principal(name=self.name, team=self.team, key_hash=self.key_sha256,
                         models=frozenset(self.models) if self.models is not None else None,
                         metadata=tuple(sorted(self.metadata.items())), limits=self.limits)


def parse_spec(body: bytes, *, partial: bool) -> dict[str, Any]:
    try:
        raw = orjson.loads(body or b"{}")
    except orjson.JSONDecodeError:
        raise InvalidRequestError("The body must be valid JSON.", code="invalid_json") from None
    if not isinstance(raw, dict):
        raise InvalidRequestError("The body must be a JSON object.")
    try:
        if partial:
            unknown = set(raw) - set(KeySpec.model_fields)
            if unknown:
                raise InvalidRequestError(f"Unknown field(s): {', '.join(sorted(unknown))}.")
            KeySpec.model_validate({"name": "x", **raw})  # validates the fields that are present
            return raw
        return KeySpec.model_validate(raw).model_dump()
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidRequestError(f"Invalid key field {where}: {first['msg']}.", param=where) from None


class KeyRegistry:
    def __init__(self, store: KeyStore, metrics: Metrics, refresh: float = 0.5) -> None:
        self.store = store
        self.metrics = metrics
        self.refresh_every = refresh
        self.version = -1
        self._by_digest: dict[str, Principal] = {}
        self._task = Background("keys-refresher")
        self._next_log = 0.0

    def lookup(self, digest: str) -> Principal | None:
        """The hot path: one dict lookup in the local snapshot."""
        return self._by_digest.get(digest)

    async def refresh(self) -> None:
        """Reload the snapshot when the store's version moved (one round trip when it did not)."""
        if await self.store.keys_version() == self.version:
            return
        version, records = await self.store.keys_load()
        snapshot: dict[str, Principal] = {}
        for raw in records.values():
            record = KeyRecord.model_validate_json(raw)
            if record.revoked is None:
                snapshot[record.key_sha256] = record.principal()
        self._by_digest = snapshot
        self.version = version

    async def run(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception as exc:  # the store is down: keep the last snapshot
                self.metrics.child(self.metrics.ratelimit_store_failures, "keys_refresh", "keep_snapshot").inc()
                now = time.monotonic()
                if now >= self._next_log:
                    self._next_log = now + 10.0
                    log.warning("runtime keys could not be refreshed; keeping the last snapshot",
                                extra={"fields": {"error": str(exc)}})
            await asyncio.sleep(self.refresh_every)

    def start(self) -> None:
        self._task.start(self.run)

    async def stop(self) -> None:
        await self._task.stop()

    # --- admin operations (each a store round trip or two) ---

    async def create(self, spec: dict[str, Any]) -> tuple[KeyRecord, str]:
        plain = KEY_PREFIX + secrets.token_urlsafe(32)
        digest = hashlib.sha256(plain.encode()).hexdigest()
        record = KeyRecord(id="key_" + secrets.token_hex(8), key_sha256=digest, hint=f"{plain[:8]}...{plain[-4:]}",
                           created=int(time.time()), **spec)
        await self._claim(record.name, record.id)
        try:
            await self.store.key_save(record.id, record.model_dump_json().encode())
        except Exception:  # not created: its name stays free
            await self.store.key_name_release(record.name, record.id)
            raise
        self._by_digest[digest] = record.principal()  # usable on this replica at once
        return record, plain

    async def all(self) -> list[KeyRecord]:
        _, records = await self.store.keys_load()
        return sorted((KeyRecord.model_validate_json(r) for r in records.values()), key=lambda r: r.created)

    async def get(self, key_id: str) -> KeyRecord:
        raw = await self.store.key_load(key_id)
        if raw is None:
            raise NotFoundError(f"No key with id '{key_id}'.", code="key_not_found")
        return KeyRecord.model_validate_json(raw)

    async def update(self, key_id: str, changes: dict[str, Any]) -> KeyRecord:
        record = await self.get(key_id)
        if record.revoked is not None:
            raise InvalidRequestError(f"The key '{key_id}' is revoked.", code="key_revoked")
        updated = KeyRecord.model_validate({**record.model_dump(), **changes})
        if updated.name == record.name:
            await self.store.key_save(key_id, updated.model_dump_json().encode())
        else:
            await self._claim(updated.name, key_id)
            try:
                await self.store.key_save(key_id, updated.model_dump_json().encode())
            except Exception:  # not renamed: the new name stays free
                await self.store.key_name_release(updated.name, key_id)
                raise
            await self.store.key_name_release(record.name, key_id)
        self._by_digest[updated.key_sha256] = updated.principal()
        return updated

    async def revoke(self, key_id: str) -> KeyRecord:
        record = await self.get(key_id)
        if record.revoked is None:
            record = record.model_copy(update={"revoked": int(time.time())})
            await self.store.key_save(key_id, record.model_dump_json().encode())
            await self.store.key_name_release(record.name, key_id)  # a revoked key's name may be given again
        self._by_digest.pop(record.key_sha256, None)
        return record

    async def _claim(self, name: str, key_id: str) -> None:
        """Refuse a name another live key has: spend reports and the admin API show keys by name, and two
        tenants must never read as one. The store's claim settles two replicas creating the same name at
        once; the scan catches keys saved before names were claimed."""
        _, records = await self.store.keys_load()
        for raw in records.values():
            other = KeyRecord.model_validate_json(raw)
            if other.name == name and other.id != key_id and other.revoked is None:
                raise _taken(name, other.id)
        owner = await self.store.key_name_claim(name, key_id)
        if owner != key_id:
            raise _taken(name, owner)


def _taken(name: str, owner: str) -> ConflictError:
    return ConflictError(f"A key named '{name}' already exists ({owner}). Key names must be unique: choose "
                         "another name, or revoke that key first.", code="duplicate_key_name", param="name")
