"""The stored form of a cached answer, and building it from what the client was sent.

An entry is `MAGIC | u32 header length | header JSON | body`. The header holds the form
(`json`: the exact response bytes, served again without re-encoding; `sse`: the stream's OpenAI
SSE events without `[DONE]` and without the usage-only chunk), when it was stored, when it expires,
the usage, and for streams the usage chunk as a separate tail of the body (`tail` bytes), so a hit
sends it only to a client that asked for usage.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from gateway.context import Usage
from gateway.providers.openai import usage_from
from gateway.providers.sse import event_data, sse

MAGIC = b"GWC1"
_LEN = struct.Struct(">I")
DONE = b"data: [DONE]\n\n"

Form = Literal["json", "sse"]


@dataclass(frozen=True, slots=True)
class Entry:
    form: Form
    stored_at: float
    expires_at: float
    usage: Usage | None
    # json: the response body; sse: the events, then `tail` bytes of usage chunk event.
    body: bytes
    tail: int = 0

    @property
    def events(self) -> bytes:
        return self.body[:len(self.body) - self.tail] if self.tail else self.body

    @property
    def usage_event(self) -> bytes:
        return self.body[len(self.body) - self.tail:] if self.tail else b""


def encode(entry: Entry) -> bytes:
    u = entry.usage
    header = orjson.dumps({
        "f": entry.form, "t": entry.stored_at, "x": entry.expires_at, "n": entry.tail,
        "u": [u.prompt_tokens, u.completion_tokens, u.cached_tokens] if u is not None else None,
    })
    return b"".join((MAGIC, _LEN.pack(len(header)), header, entry.body))


def decode(raw: bytes) -> Entry | None:
    """The entry, or None for bytes that are not one (another version, corruption)."""
    if not raw.startswith(MAGIC) or len(raw) < 8:
        return None
    (size,) = _LEN.unpack_from(raw, 4)
    try:
        header = orjson.loads(raw[8:8 + size])
        u = header["u"]
        usage = Usage(prompt_tokens=u[0], completion_tokens=u[1], cached_tokens=u[2]) if u else None
        form = header["f"]
        if form not in ("json", "sse"):
            return None
        return Entry(form=form, stored_at=float(header["t"]), expires_at=float(header["x"]), usage=usage,
                     body=raw[8 + size:], tail=int(header["n"]))
    except (orjson.JSONDecodeError, KeyError, TypeError, IndexError, ValueError):
        return None


def finish_reasons_json(data: dict[str, Any]) -> list[str]:
    return [str(c.get("finish_reason")) for c in data.get("choices") or () if isinstance(c, dict)]


@dataclass(frozen=True, slots=True)
class CapturedStream:
    """A complete stream, normalised for storage."""

    events: bytes
    usage_event: bytes
    finish_reasons: tuple[str, ...]


def normalise_stream(pieces: Sequence[bytes], usage: Usage | None) -> CapturedStream | None:
    """The SSE bytes a client was sent → the stored form; None when the stream is not complete
    (no `[DONE]` at its end) or carried an error event."""
    raw = b"".join(pieces)
    if not raw.endswith(DONE):
        return None
    events: list[bytes] = []
    usage_event = b""
    reasons: list[str] = []
    first: dict[str, Any] | None = None
    for event in raw.split(b"\n\n"):
        payload = event_data(event) if event else None
        if payload is None or payload == b"[DONE]":
            continue
        if payload.startswith(b'{"error"'):
            return None
        if b'"usage":null' in payload:
            payload = payload.replace(b',"usage":null', b"").replace(b'"usage":null,', b"")
        has_usage = b'"usage":{' in payload or b'"usage": {' in payload
        if has_usage or first is None or b'"finish_reason":"' in payload or b'"finish_reason": "' in payload:
            chunk = orjson.loads(payload)
            if first is None:
                first = chunk
            for choice in chunk.get("choices") or ():
                if choice.get("finish_reason"):
                    reasons.append(str(choice["finish_reason"]))
            if has_usage:
                usage_event = sse(orjson.dumps({**_base(chunk), "choices": [], "usage": chunk["usage"]}))
                if not chunk.get("choices"):
                    continue
                chunk.pop("usage", None)
                payload = orjson.dumps(chunk)
        events.append(sse(payload))
    if first is None:
        return None
    if not usage_event and usage is not None:
        usage_json = usage.to_openai(details=bool(usage.cached_tokens))
        usage_event = sse(orjson.dumps({**_base(first), "choices": [], "usage": usage_json}))
    return CapturedStream(b"".join(events), usage_event, tuple(reasons))


def _base(chunk: dict[str, Any]) -> dict[str, Any]:
    return {k: chunk[k] for k in ("id", "object", "created", "model", "system_fingerprint") if k in chunk}



def usage_of_json(body: bytes) -> tuple[Usage | None, list[str]]:
    data = orjson.loads(body)
    if not isinstance(data, dict):
        return None, []
    return usage_from(data.get("usage")), finish_reasons_json(data)
