"""Opt-in CORS (`server.cors`), so browser apps can call the gateway.

The edge asks `Cors.policy` once per request; when CORS is off it is None and nothing else runs. With a
policy, a request carrying an allowed `Origin` gets the CORS response headers on whatever it is answered
(errors included, so a script can read a 401 or a 429), and a preflight (`OPTIONS` with
`Access-Control-Request-Method`) is answered here, before authentication: browsers send it without
credentials."""

from __future__ import annotations

from collections.abc import Iterable

from gateway.config import CorsConfig

Header = tuple[bytes, bytes]


class CorsPolicy:
    def __init__(self, config: CorsConfig) -> None:
        self.any_origin = "*" in config.allow_origins
        self.origins = frozenset(o.encode("latin-1") for o in config.allow_origins)
        self.credentials = config.allow_credentials
        self.methods = frozenset(m.upper() for m in config.allow_methods)
        self.any_header = "*" in config.allow_headers
        self.headers = frozenset(h.lower() for h in config.allow_headers)
        common: list[Header] = []
        if self.credentials:
            common.append((b"access-control-allow-credentials", b"true"))
        # An answer that depends on the Origin must say so to caches in between.
        self.echo_origin = not self.any_origin or self.credentials
        if self.echo_origin:
            common.append((b"vary", b"origin"))
        self._common = common
        self._expose = [(b"access-control-expose-headers", ", ".join(config.expose_headers).encode("latin-1"))] \
            if config.expose_headers else []
        self._preflight = [(b"access-control-allow-methods", ", ".join(sorted(self.methods)).encode("latin-1")),
                           (b"access-control-max-age", str(config.max_age).encode())]

    def allows(self, origin: bytes) -> bool:
        return self.any_origin or origin in self.origins

    def _origin(self, origin: bytes) -> Header:
        return b"access-control-allow-origin", origin if self.echo_origin else b"*"

    def response_headers(self, origin: bytes) -> list[Header]:
        """Headers for an actual response to an allowed origin."""
        return [self._origin(origin), *self._common, *self._expose]

    def preflight(self, origin: bytes, method: bytes, requested: bytes | None) -> list[Header] | None:
        """Headers for a preflight's answer, or None when it asks for what the policy does not allow."""
        if method.decode("latin-1").upper() not in self.methods:
            return None
        names = [n.strip().lower() for n in (requested or b"").decode("latin-1").split(",") if n.strip()]
        if not self.any_header and any(name not in self.headers for name in names):
            return None
        allowed = ", ".join(names) if self.any_header else ", ".join(sorted(self.headers))
        return [self._origin(origin), *self._common, *self._preflight,
                (b"access-control-allow-headers", allowed.encode("latin-1"))]


class Cors:
    """The current policy, swapped with the config on reload (None: CORS off)."""

    __slots__ = ("policy",)

    def __init__(self, config: CorsConfig | None = None) -> None:
        self.policy = CorsPolicy(config) if config is not None else None

    def configure(self, config: CorsConfig | None) -> None:
        self.policy = CorsPolicy(config) if config is not None else None


def header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for key, value in headers:
        if key == name:
            return value
    return None
