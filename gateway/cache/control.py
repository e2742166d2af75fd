"""Per-request cache controls from the request headers.

`Cache-Control: no-cache` skips the read (the answer is fetched and the entry refreshed),
`no-store` skips the write, `max-age=N` accepts only an entry at most N seconds old.
`x-gateway-cache-ttl` (seconds or a duration: 90, 30s, 5m, 1h) shortens the entry's TTL; it can
never extend it past the alias's `ttl`, and 0 means "do not store"."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gateway.config import parse_duration


@dataclass(frozen=True, slots=True)
class Controls:
    read: bool = True
    write: bool = True
    max_age: float | None = None
    ttl: float | None = None


DEFAULT = Controls()


def parse_controls(headers: Mapping[str, str]) -> Controls:
    cache_control = headers.get("cache-control")
    ttl_header = headers.get("x-gateway-cache-ttl")
    if cache_control is None and ttl_header is None:
        return DEFAULT
    read = write = True
    max_age: float | None = None
    if cache_control:
        for part in cache_control.lower().split(","):
            directive, _, value = part.strip().partition("=")
            if directive == "no-cache":
                read = False
            elif directive == "no-store":
                write = False
            elif directive == "max-age":
                try:
                    max_age = max(0.0, float(value.strip().strip('"')))
                except ValueError:
                    continue  # a malformed directive is ignored, as HTTP caches do
    ttl: float | None = None
    if ttl_header is not None:
        try:
            ttl = parse_duration(ttl_header.strip())
        except ValueError:
            ttl = None
        if ttl is not None and ttl <= 0:
            write, ttl = False, None
    return Controls(read=read, write=write, max_age=max_age, ttl=ttl)
