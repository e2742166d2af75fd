"""`gateway usage export`: the usage log from the Redis Stream as JSON lines or CSV."""

from __future__ import annotations

from typing import TextIO

from gateway.accounting.records import csv_header, to_csv, to_jsonl
from gateway.accounting.store_redis import read_usage_stream


def export(url: str, prefix: str, start_ms: int, end_ms: int | None, fmt: str, out: TextIO) -> int:
    """Write the records to `out`; returns how many. Raises StoreUnavailableError."""
    rows = read_usage_stream(url, prefix, start_ms, end_ms)
    count = 0
    if fmt == "csv":
        out.write(csv_header())
        lines = to_csv(rows)
    else:
        lines = to_jsonl(rows)
    for line in lines:
        out.write(line)
        count += 1
    return count
