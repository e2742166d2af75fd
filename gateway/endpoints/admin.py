"""The admin API, guarded by the master key."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

import orjson
from starlette.types import Receive, Scope, Send

from gateway.accounting import queries
from gateway.accounting.records import typed
from gateway.cache.keys import GLOBAL_SCOPE_ID, key_scope_id, purge_pattern, short_id, team_scope_id
from gateway.context import JSONReply
from gateway.endpoints.asgi import read_body, request_headers, send_json
from gateway.errors import (
    AuthenticationError,
    ConflictError,
    InvalidRequestError,
    MethodNotAllowedError,
    NotFoundError,
)
from gateway.ratelimit.keys import parse_spec
from gateway.runtime import ReloadOutcome, Services
from gateway.schemas.body import parse_json

Reloader = Callable[[], Awaitable[ReloadOutcome]]


def require_master(services: Services, scope: Scope) -> None:
    auth = services.current().auth
    if not auth.has_master_key:
        # Otherwise the operator would be told to present a key that does not exist.
        raise AuthenticationError(
            "The admin API is closed: no master key is set. Set auth.master_key in the config, for example "
            "master_key: ${GATEWAY_MASTER_KEY}, give the GATEWAY_MASTER_KEY environment variable a value, and "
            "restart the gateway.", code="master_key_not_set")
    if not auth.is_master(request_headers(scope)):
        raise AuthenticationError("The admin API needs the master key (auth.master_key) as "
                                  "'Authorization: Bearer <master key>'.")


class ReloadEndpoint:
    """POST /admin/config/reload: reread the config file; a broken file keeps the running config and
    the answer lists every problem."""

    def __init__(self, services: Services, reload: Reloader) -> None:
        self.services = services
        self.reload = reload

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            raise MethodNotAllowedError("Use POST to reload the config.", headers={"allow": "POST"})
        require_master(self.services, scope)
        ok, problems, digest = await self.reload()
        body = {"reloaded": ok, "config": digest, "problems": problems}
        await send_json(send, JSONReply(200 if ok else 422, orjson.dumps(body)))


# --- accounting ---
class SpendEndpoint:
    """GET /admin/spend?by=key|team|alias|deployment[&name=…][&since=YYYY-MM-DD&until=…|&period=day|month]:
    spend per name over whole UTC days (default: this month), with per-day detail.
    GET /admin/budgets: every budget and what its current period has used.
    GET /admin/usage?since=…[&until=…][&limit=…]: usage-log records."""

    def __init__(self, services: Services, what: str) -> None:
        self.services = services
        self.what = what

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "GET":
            raise MethodNotAllowedError(f"Use GET for {scope['path']}.", headers={"allow": "GET"})
        require_master(self.services, scope)
        store = self.services.store
        assert store is not None
        query = {k: v[-1] for k, v in parse_qs(scope.get("query_string", b"").decode("latin-1")).items()}
        now = time.time()
        body: dict[str, object]
        try:
            if self.what == "spend":
                start, end = queries.day_range(query.get("since"), query.get("until"), query.get("period"), now)
                body = await queries.spend(store, query.get("by", "key"), query.get("name"), start, end)
            elif self.what == "budgets":
                body = {"budgets": await queries.budgets(store, self.services.current().config.auth, now)}
            else:
                start_ms = queries.since_ms(query["since"]) if "since" in query else int(now * 1000) - 3_600_000
                end_ms = queries.since_ms(query["until"]) if "until" in query else int(now * 1000)
                raw_limit = query.get("limit", "1000")
                limit = int(raw_limit) if raw_limit.isascii() and raw_limit.isdigit() else 1000
                rows = await store.usage_read(start_ms, end_ms, min(limit, 10_000))
                body = {"records": [typed(r) for r in rows]}
        except queries.QueryError as exc:
            raise InvalidRequestError(str(exc), code="invalid_query") from None
        await send_json(send, JSONReply(200, orjson.dumps(body)))
# --- end accounting ---


# --- cache ---
class CachePurgeEndpoint:
    """POST /admin/cache/purge with a JSON body naming what to delete: `alias`, and/or one scope:
    `key` (a key's name), `team`, or `global: true`. An empty body purges every entry."""

    def __init__(self, services: Services) -> None:
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            raise MethodNotAllowedError("Use POST to purge the cache.", headers={"allow": "POST"})
        require_master(self.services, scope)
        raw = await read_body(receive, request_headers(scope), 64 * 1024)
        body = parse_json(raw) if raw.strip() else {}
        if not isinstance(body, dict) or set(body) - {"alias", "key", "team", "global"}:
            raise InvalidRequestError("Give a JSON object with any of: alias, and one of key, team, global.")
        scopes = [name for name in ("key", "team", "global") if body.get(name)]
        if len(scopes) > 1:
            raise InvalidRequestError("Name at most one scope: key, team or global.")
        for name in ("alias", "key", "team"):
            if name in body and not isinstance(body[name], str):
                raise InvalidRequestError(f"'{name}' must be a string.", param=name)
        scope_ids: list[str | None] = (
            [key_scope_id(identity) for identity in await self._identities(body["key"])] if body.get("key")
            else [team_scope_id(body["team"])] if body.get("team")
            else [GLOBAL_SCOPE_ID] if body.get("global") else [None])
        alias_id = short_id(body["alias"]) if body.get("alias") else None
        runtime = self.services.current()
        store = self.services.store
        assert store is not None, "the store is built before the app serves"
        purged = 0
        for scope_id in scope_ids:
            purged += await store.cache_purge(purge_pattern(runtime.config.store.key_prefix, alias_id, scope_id))
        await send_json(send, JSONReply(200, orjson.dumps({"purged": purged})))

    async def _identities(self, name: str) -> list[str]:
        """The key-scope identities filed under a key's name: the hash of every key (config or runtime,
        revoked included) so named, and the name itself (the anonymous caller)."""
        found = [key.digest() for key in self.services.current().config.auth.keys if key.name == name]
        registry = self.services.keys
        if registry is not None:
            found += [record.key_sha256 for record in await registry.all() if record.name == name]
        return [*found, name]
# --- end cache ---


# --- rate limits: gateway keys ---


class KeysEndpoint:
    """Runtime gateway keys (master key only):

    POST /admin/keys              create; the answer holds the plain key, shown this once
    GET /admin/keys               list (revoked keys included, marked)
    GET /admin/keys/{id}          one key
    PATCH /admin/keys/{id}        update limits, models, metadata, team or name
    DELETE /admin/keys/{id}       revoke (every replica refuses it within a second)
    """

    def __init__(self, services: Services) -> None:
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        require_master(self.services, scope)
        registry = self.services.keys
        if registry is None:
            raise NotFoundError("Runtime keys are not available.", code="unknown_url")
        key_id = scope.get("path_params", {}).get("key_id")
        method = scope["method"]
        if key_id is None and method == "POST":
            spec = parse_spec(await read_body(receive, request_headers(scope), 1 << 20), partial=False)
            self._check_names(spec)
            record, plain = await registry.create(spec)
            await send_json(send, JSONReply(201, orjson.dumps({**record.public(), "key": plain})))
        elif key_id is None and method == "GET":
            records = await registry.all()
            await send_json(send, JSONReply(200, orjson.dumps(
                {"object": "list", "data": [r.public() for r in records]})))
        elif key_id is not None and method == "GET":
            await send_json(send, JSONReply(200, orjson.dumps((await registry.get(key_id)).public())))
        elif key_id is not None and method == "PATCH":
            changes = parse_spec(await read_body(receive, request_headers(scope), 1 << 20), partial=True)
            self._check_names(changes)
            record = await registry.update(key_id, changes)
            await send_json(send, JSONReply(200, orjson.dumps(record.public())))
        elif key_id is not None and method == "DELETE":
            record = await registry.revoke(key_id)
            await send_json(send, JSONReply(200, orjson.dumps(record.public())))
        else:
            allow = "GET, POST" if key_id is None else "GET, PATCH, DELETE"
            raise MethodNotAllowedError(f"{method} is not supported on {scope['path']}.", headers={"allow": allow})

    def _check_names(self, spec: dict[str, Any]) -> None:
        config = self.services.current().config
        for model in spec.get("models") or []:
            if model not in config.models:
                raise InvalidRequestError(f"Unknown model alias '{model}'.", param="models")
        name = spec.get("name")
        if name is not None and any(k.name == name for k in config.auth.keys):
            raise ConflictError(f"The config already declares a key named '{name}'. Key names must be unique: "
                                "choose another name.", code="duplicate_key_name", param="name")
