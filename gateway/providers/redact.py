"""Configured secrets kept out of text that came from an upstream.

A provider, or a proxy in front of it, may quote the request it received in an error: its
credentials, the extra headers the gateway sent, anything. Every secret the config holds (provider
keys and tokens, the values of providers' extra `headers:`, AWS keys, the Redis password, the master
key, the configured gateway keys) is replaced by `[REDACTED]` in such text before it reaches a
response body, a stream's error event or a log line.

The redactor is built once per config load and only ever runs on error text: a successful answer
never passes through it. Values shorter than MIN_SECRET_CHARS are not treated as secrets (an extra
header such as `x-region: eu` would otherwise blank out every "eu" of every message); every real
credential is longer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, unquote, urlsplit

from pydantic import SecretStr

from gateway.config import GatewayConfig
from gateway.errors import GatewayError

MIN_SECRET_CHARS = 8
REDACTED = "[REDACTED]"


class Redactor:
    __slots__ = ("_bytes", "_text")

    def __init__(self, secrets: Iterable[str]) -> None:
        # Longest first: a secret that contains another is replaced whole, not around the shorter one.
        found = sorted({s for s in secrets if len(s) >= MIN_SECRET_CHARS}, key=len, reverse=True)
        self._text = re.compile("|".join(map(re.escape, found))) if found else None
        self._bytes = re.compile(b"|".join(re.escape(s.encode()) for s in found)) if found else None

    def text(self, text: str) -> str:
        return self._text.sub(REDACTED, text) if self._text is not None and text else text

    def body(self, body: bytes) -> bytes:
        """An upstream error body, before it is parsed: a message cut to a length for the client
        cannot end in the first half of a secret."""
        return self._bytes.sub(REDACTED.encode(), body) if self._bytes is not None and body else body

    def error(self, error: GatewayError) -> GatewayError:
        """The error with every upstream-derived text field cleaned (the same object)."""
        if self._text is None:
            return error
        error.message = self.text(error.message)
        error.args = (error.message,)
        if error.param:
            error.param = self.text(error.param)
        if error.code:
            error.code = self.text(error.code)
        return error


def config_secrets(config: GatewayConfig) -> list[str]:
    """Every secret the config holds."""
    found: list[str] = []
    for provider in config.providers.values():
        for name in type(provider).model_fields:
            value = getattr(provider, name)
            if isinstance(value, SecretStr):
                found.append(value.get_secret_value())
        for value in provider.headers.values():
            found.append(value)
            found.extend(value.split())  # "Bearer <token>" is also echoed as the bare token
        if provider.base_url:
            found.extend(_url_secrets(provider.base_url))
    found.extend(_url_secrets(config.store.redis_url))
    auth = config.auth
    if auth.master_key is not None:
        found.append(auth.master_key.get_secret_value())
    found.extend(key.key.get_secret_value() for key in auth.keys if key.key is not None)
    return [s for s in found if s]


def _url_secrets(url: str) -> list[str]:
    """The password of a URL's user info and its query's password-like values (Sentinel's
    `sentinel_password=`, a `key=` some servers take), raw and percent-decoded."""
    if not url:
        return []
    parts = urlsplit(url)
    out: list[str] = []
    password = parts.netloc.rpartition("@")[0].partition(":")[2] if "@" in parts.netloc else ""
    if password:
        out += [password, unquote(password)]
    for name, value in parse_qsl(parts.query):
        if "password" in name.lower() or name.lower() in ("key", "api_key", "token"):
            out.append(value)
    return out


def build_redactor(config: GatewayConfig) -> Redactor:
    return Redactor(config_secrets(config))
