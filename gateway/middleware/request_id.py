"""Request ids: the client's `x-request-id` when it is sane, else a new one.

Minted ids are a per-process random prefix and a counter: unique across replicas and restarts
without a system call per request (they need to be unique, not secret)."""

from __future__ import annotations

from collections.abc import Iterable

from gateway.ids import UniqueIds

REQUEST_ID = "gateway.request_id"
_HEADER = b"x-request-id"
_MAX_LEN = 128
# Minted: "req_" + 14 random hex digits per process + a 10-digit hex counter (see gateway/ids.py).
mint_request_id = UniqueIds("req_", random_bytes=7, width=10)


def _acceptable(value: bytes) -> bool:
    return 0 < len(value) <= _MAX_LEN and all(33 <= b < 127 for b in value)


def request_id_from(headers: Iterable[tuple[bytes, bytes]]) -> str:
    for name, value in headers:
        if name == _HEADER:
            return value.decode("ascii") if _acceptable(value) else mint_request_id()
    return mint_request_id()
