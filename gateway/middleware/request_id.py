"""Request ids: the client's `x-request-id` when it is sane, else a new one.

Minted ids are a per-process random prefix and a counter: unique across replicas and restarts
without a system call per request (they need to be unique, not secret)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable

REQUEST_ID = "gateway.request_id"
_HEADER = b"x-request-id"
_MAX_LEN = 128
_prefix = ""
_counter = itertools.count(1)


def mint_request_id() -> str:
    global _prefix
    if not _prefix or _prefix_pid != os.getpid():
        _reseed()
    return f"{_prefix}{next(_counter):010x}"


_prefix_pid = 0


def _reseed() -> None:
    """A fresh prefix per process (workers fork from one parent)."""
    global _prefix, _prefix_pid
    _prefix = "req_" + os.urandom(7).hex()
    _prefix_pid = os.getpid()


def _acceptable(value: bytes) -> bool:
    return 0 < len(value) <= _MAX_LEN and all(33 <= b < 127 for b in value)


def request_id_from(headers: Iterable[tuple[bytes, bytes]]) -> str:
    for name, value in headers:
        if name == _HEADER:
            return value.decode("ascii") if _acceptable(value) else mint_request_id()
    return mint_request_id()
