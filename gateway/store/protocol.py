"""`Store`: every feature's store protocol at once, plus what every store does (`StoreClient`). Both
stores declare it (`MemoryStore`, `RedisStore`), so mypy checks that each implements every operation
with the signature its feature expects, and the composition root hands the one store to every
feature as the protocol that feature names. (Here rather than in gateway/store/__init__.py: the
features import that module, and this one imports theirs.)"""

from __future__ import annotations

from typing import Protocol

from gateway.accounting.store import AccountingStore
from gateway.cache.store import CacheStore
from gateway.conversations.store import ConversationStore
from gateway.ratelimit.store import KeyStore, LimitStore
from gateway.routing.store import RoutingStore, SessionStore
from gateway.store import StoreClient


class Store(StoreClient, LimitStore, KeyStore, CacheStore, AccountingStore, RoutingStore, SessionStore,
            ConversationStore, Protocol):
    """The shared store's operations, a group per feature (each declared in the feature's store.py)."""
