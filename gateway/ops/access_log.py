"""One structured access-log line per request, on the `gateway.access` logger.

Built only when that logger is enabled for INFO (a dict and one orjson dump per request; nothing at
all when it is off). Secrets never reach it: the key's *name* is logged, never the key or its hash,
and no request headers. Prompts are logged only when `logging.log_prompts` is on."""

from __future__ import annotations

import logging
import time
from typing import Any

from gateway.context import RequestContext
from gateway.logs import get_logger, write_json_line

access = get_logger("access")
_PROMPT_FIELDS = ("messages", "prompt", "input")


class AccessLog:
    """The per-config switches (swapped with the config on reload)."""

    __slots__ = ("enabled", "log_prompts")

    def __init__(self, enabled: bool = True, log_prompts: bool = False) -> None:
        self.enabled = enabled
        self.log_prompts = log_prompts

    def active(self) -> bool:
        return self.enabled and access.isEnabledFor(logging.INFO)

    def write(self, request_id: str, path: str, status: int, started: float, ctx: RequestContext | None,
              error_type: str | None = None) -> None:
        now = time.perf_counter()
        fields: dict[str, Any] = {"request_id": request_id, "path": path, "status": status,
                                  "latency_ms": round((now - started) * 1000, 3)}
        if ctx is not None:
            fields.update(entry(ctx, now))
            if self.log_prompts:
                for name in _PROMPT_FIELDS:
                    if name in ctx.body:
                        fields[name] = ctx.body[name]
        if error_type is not None:
            fields.setdefault("error", error_type)
        if not write_json_line("gateway.access", "request", fields):
            access.info("request", extra={"fields": fields})


def entry(ctx: RequestContext, now: float) -> dict[str, Any]:
    """The request's fields (no prompt, no secret)."""
    usage = ctx.usage
    if ctx.first_byte_at is not None:
        overhead = max(0.0, ctx.first_byte_at - ctx.started - ctx.upstream_seconds) * 1000
    else:
        overhead = ctx.overhead_ms(now)
    out: dict[str, Any] = {
        "key": ctx.principal.name, "team": ctx.principal.team, "alias": ctx.alias,
        "deployment": ctx.deployment, "provider": ctx.provider, "stream": ctx.stream,
        "attempts": ctx.attempts, "overhead_ms": round(overhead, 3),
        "upstream_ms": round(ctx.upstream_seconds * 1000, 3),
        "cache": ctx.response_headers.get("x-gateway-cache") or ("HIT" if ctx.cache_hit else None),
        "prompt_tokens": usage.prompt_tokens if usage is not None else None,
        "completion_tokens": usage.completion_tokens if usage is not None else None,
        "cached_tokens": usage.cached_tokens if usage is not None else None,
        "cost_usd": ctx.cost_micro_usd / 1_000_000 if ctx.cost_micro_usd is not None else None,
    }
    if ctx.dialect != "chat":
        out["dialect"] = ctx.dialect
    if ctx.session_id is not None:
        out["session"] = ctx.session_id
    if ctx.served_alias:
        out["served_alias"] = ctx.served_alias
    if ctx.error_type:
        out["error"] = ctx.error_type
    return out
