"""Each alias's effective cache settings, resolved once per config load."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.cache.keys import Scope, short_id
from gateway.config import CacheConfig, GatewayConfig


@dataclass(frozen=True, slots=True)
class Policy:
    alias_id: str
    ttl: float
    scope: Scope
    max_entry_bytes: int
    cache_length_finish: bool
    lock_ms: int
    lock_wait: float


def effective(default: CacheConfig | None, own: CacheConfig | None) -> CacheConfig | None:
    """An alias's cache settings: its own fields over the top-level defaults."""
    if own is None or default is None:
        return own or default
    return default.model_copy(update=own.model_dump(exclude_unset=True))


def policies(config: GatewayConfig) -> dict[str, Policy]:
    out: dict[str, Policy] = {}
    for alias, spec in config.models.items():
        cfg = effective(config.cache, spec.cache)
        if cfg is not None and cfg.enabled:
            out[alias] = Policy(short_id(alias), cfg.ttl, cfg.scope, cfg.max_entry_bytes, cfg.cache_length_finish,
                                max(1, int(cfg.lock_wait * 1000)), cfg.lock_wait)
    return out
