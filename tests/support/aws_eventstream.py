"""A test-only encoder for the AWS event-stream binary framing (botocore only decodes).

Frame layout (all integers big-endian):
  prelude:  total_length u32 | headers_length u32 | prelude_crc u32 (CRC32 of the first 8 bytes)
  headers:  repeated  name_length u8 | name utf-8 | value_type u8 | value
            (type 7 = string: value_length u16 | utf-8 bytes)
  payload:  bytes
  message_crc u32: CRC32 of everything before it (prelude included)
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

import orjson

_STRING = 7


def encode_headers(headers: dict[str, str]) -> bytes:
    out = b""
    for name, value in headers.items():
        raw_name, raw_value = name.encode(), value.encode()
        out += struct.pack(">B", len(raw_name)) + raw_name
        out += struct.pack(">BH", _STRING, len(raw_value)) + raw_value
    return out


def encode_frame(headers: dict[str, str], payload: bytes) -> bytes:
    raw_headers = encode_headers(headers)
    total = 12 + len(raw_headers) + len(payload) + 4
    prelude = struct.pack(">II", total, len(raw_headers))
    prelude += struct.pack(">I", zlib.crc32(prelude) & 0xFFFFFFFF)
    body = prelude + raw_headers + payload
    return body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def event(event_type: str, payload: dict[str, Any]) -> bytes:
    """A ConverseStream event frame, as Bedrock sends it."""
    return encode_frame({":event-type": event_type, ":content-type": "application/json",
                         ":message-type": "event"}, orjson.dumps(payload))


def exception(exception_type: str, message: str) -> bytes:
    return encode_frame({":exception-type": exception_type, ":content-type": "application/json",
                         ":message-type": "exception"}, orjson.dumps({"message": message}))


def stream(events: list[dict[str, Any]]) -> bytes:
    """Frames for a fixture list of {"event": type, "payload": {...}} or {"exception": type, "message": …}."""
    out = b""
    for item in events:
        if "exception" in item:
            out += exception(item["exception"], item["message"])
        else:
            out += event(item["event"], item["payload"])
    return out
