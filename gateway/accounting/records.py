"""The usage log record (one per call) and its export formats."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from typing import NamedTuple

import orjson

UNKNOWN = "unknown"

FIELDS = ("ts", "request_id", "key", "team", "alias", "deployment", "provider", "stream", "status",
          "prompt_tokens", "completion_tokens", "cached_tokens", "cache_write_tokens", "cost_micro_usd",
          "saved_micro_usd", "estimated", "cache_hit", "latency_ms", "hedge", "key_id")

_INTS = frozenset(("ts", "status", "prompt_tokens", "completion_tokens", "cached_tokens", "cache_write_tokens",
                   "saved_micro_usd", "latency_ms"))
_BOOLS = frozenset(("stream", "estimated", "cache_hit", "hedge"))


class UsageRecord(NamedTuple):  # built on every call's settle: a tuple is quicker to make than a frozen dataclass
    ts: int  # milliseconds since the epoch, UTC
    request_id: str
    key: str
    team: str
    alias: str
    deployment: str
    provider: str
    stream: bool
    status: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cache_write_tokens: int
    cost_micro_usd: int | None  # None: the price is unknown
    saved_micro_usd: int
    estimated: bool
    cache_hit: bool
    latency_ms: int
    # A hedged attempt that lost (cancelled, status 499): billed for the prompt it read, estimated.
    hedge: bool = False
    # The key's identity (Principal.key_id): `key` is only its name, which two keys may share.
    key_id: str = ""

    def fields(self) -> dict[str, str]:
        """Flat string fields, as stored in the Redis Stream."""
        return {
            "ts": str(self.ts), "request_id": self.request_id, "key": self.key, "team": self.team,
            "alias": self.alias, "deployment": self.deployment, "provider": self.provider,
            "stream": "1" if self.stream else "0", "status": str(self.status),
            "prompt_tokens": str(self.prompt_tokens), "completion_tokens": str(self.completion_tokens),
            "cached_tokens": str(self.cached_tokens), "cache_write_tokens": str(self.cache_write_tokens),
            "cost_micro_usd": UNKNOWN if self.cost_micro_usd is None else str(self.cost_micro_usd),
            "saved_micro_usd": str(self.saved_micro_usd), "estimated": "1" if self.estimated else "0",
            "cache_hit": "1" if self.cache_hit else "0", "latency_ms": str(self.latency_ms),
            "hedge": "1" if self.hedge else "0", "key_id": self.key_id,
        }


def _integer(value: str) -> bool:
    digits = value.removeprefix("-")
    return digits.isascii() and digits.isdigit()  # isdigit alone accepts '²', which int() refuses


def typed(fields: Mapping[str, str]) -> dict[str, object]:
    """Stream fields → JSON-friendly values (ints, bools; an unknown cost stays "unknown")."""
    out: dict[str, object] = {}
    for name in FIELDS:
        value = fields.get(name, "")
        if name in _INTS:
            out[name] = int(value) if _integer(value) else None
        elif name in _BOOLS:
            out[name] = value == "1"
        elif name == "cost_micro_usd":
            out[name] = int(value) if _integer(value) else UNKNOWN
        else:
            out[name] = value
    return out


def to_jsonl(records: Iterable[Mapping[str, str]]) -> Iterable[str]:
    for fields in records:
        yield orjson.dumps(typed(fields)).decode() + "\n"


def csv_header() -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(FIELDS)
    return buffer.getvalue()


def to_csv(records: Iterable[Mapping[str, str]]) -> Iterable[str]:
    for fields in records:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerow([fields.get(name, "") for name in FIELDS])
        yield buffer.getvalue()
