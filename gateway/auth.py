"""Gateway keys: `Authorization: Bearer <key>`, `api-key: <key>` or `x-api-key: <key>`, looked up by SHA-256.

Plain keys are never kept: the config's keys are hashed at load, and a presented key is hashed once
per request and compared by dictionary lookup (constant work whatever the key)."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Mapping

from gateway.config import AuthConfig, AuthThrottleConfig
from gateway.context import ANONYMOUS, Principal
from gateway.errors import AuthenticationError, PermissionDeniedError


class Authenticator:
    def __init__(self, config: AuthConfig,
                 runtime_keys: Callable[[str], Principal | None] | None = None) -> None:
        self.required = config.required
        # Keys created through the admin API: a local snapshot lookup (gateway/ratelimit/keys.py).
        self._runtime_keys = runtime_keys
        self._by_digest: dict[str, Principal] = {}
        for key in config.keys:
            digest = key.digest()
            self._by_digest[digest] = Principal(
                name=key.name, team=key.team, key_hash=digest,
                models=frozenset(key.models) if key.models is not None else None,
                metadata=tuple(sorted(key.metadata.items())), limits=key.limits,
            )
        master = config.master_key.get_secret_value() if config.master_key else ""
        self._master_digest = hashlib.sha256(master.encode()).digest() if master else b""

    def authenticate(self, headers: Mapping[str, str]) -> Principal:
        presented = presented_key(headers)
        if presented is None:
            if self.required:
                raise AuthenticationError(
                    "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.",
                    code="missing_api_key")
            return ANONYMOUS
        digest = hashlib.sha256(presented.encode()).hexdigest()
        principal = self._by_digest.get(digest)
        if principal is None and self._runtime_keys is not None:
            principal = self._runtime_keys(digest)
        if principal is not None:
            return principal
        if not self.required:
            # Demo mode: SDKs insist on sending some key; an unknown one is simply anonymous.
            return ANONYMOUS
        raise AuthenticationError(f"Incorrect API key provided: {redact(presented)}.")

    def authorize(self, principal: Principal, alias: str) -> None:
        if not principal.may_use(alias):
            raise PermissionDeniedError(f"The key '{principal.name}' may not use the model '{alias}'.")

    @property
    def has_master_key(self) -> bool:
        return bool(self._master_digest)

    def is_master(self, headers: Mapping[str, str]) -> bool:
        presented = presented_key(headers)
        if not self._master_digest or presented is None:
            return False
        return hmac.compare_digest(hashlib.sha256(presented.encode()).digest(), self._master_digest)


def presented_key(headers: Mapping[str, str]) -> str | None:
    value = headers.get("authorization")
    if value:
        scheme, _, token = value.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        return None
    # Azure's SDKs send `api-key`; Anthropic's (and Claude Code with ANTHROPIC_API_KEY) `x-api-key`.
    api_key = headers.get("api-key") or headers.get("x-api-key")
    return api_key.strip() or None if api_key else None


def redact(key: str) -> str:
    """Enough of a key to recognise it, never enough to use it (as OpenAI's own errors do)."""
    return f"{key[:3]}***{key[-4:]}" if len(key) >= 20 else "***"


class FailureThrottle:
    """Failed authentications per client address, in fixed windows: an address that fails `failures`
    times within `window` seconds is refused until its window ends. Per process, and it outlives config
    reloads (`configure` takes the new settings). Memory is bounded: past `max_addresses` the oldest
    address is forgotten."""

    def __init__(self, config: AuthThrottleConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        # address → (window start, failures in it)
        self._windows: dict[str, tuple[float, int]] = {}
        # address → when it may try again; empty on the common path, so one truth test per request
        self.blocked: dict[str, float] = {}
        self.configure(config)

    def configure(self, config: AuthThrottleConfig) -> None:
        self.failures, self.window, self.max_addresses = config.failures, config.window, config.max_addresses
        if not self.failures:
            self._windows.clear()
            self.blocked.clear()

    def retry_after(self, address: str) -> float | None:
        """Seconds until `address` may try again, or None when it may now."""
        until = self.blocked.get(address)
        if until is None:
            return None
        left = until - self.clock()
        if left > 0:
            return left
        del self.blocked[address]
        return None

    def failed(self, address: str) -> None:
        if not self.failures:
            return
        now = self.clock()
        start, count = self._windows.get(address, (now, 0))
        if now - start >= self.window:
            start, count = now, 0
        count += 1
        windows = self._windows
        if address not in windows and len(windows) >= self.max_addresses:
            del windows[next(iter(windows))]
        windows[address] = (start, count)
        if count >= self.failures:
            blocked = self.blocked
            if address not in blocked and len(blocked) >= self.max_addresses:
                del blocked[next(iter(blocked))]
            blocked[address] = start + self.window
