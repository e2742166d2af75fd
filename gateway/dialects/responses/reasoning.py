"""Reasoning blocks carried through a client that speaks Responses.

Providers that sign their reasoning (Anthropic thinking blocks, Bedrock reasoningContent) need the
blocks back on the next turn. Responses clients keep only opaque `encrypted_content` on reasoning
items (Codex sends `include: ["reasoning.encrypted_content"]` with `store: false` and replays the
items), so the gateway packs the canonical `thinking_blocks` there, and Gemini's thought signatures
of the turn's tool calls (which clients drop from the call items they send back): `gwr1.` + unpadded
base64url of `{"blocks": [...], "calls": {call id: signature}}`. The prefix tells the gateway's own
content from a provider's (OpenAI's is an encrypted blob the gateway cannot read, and is dropped on
the way to another provider). Nothing is encrypted: the provider checks its signatures, so a forged
block or signature is refused there."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson

from gateway.errors import InvalidRequestError

PREFIX = "gwr1."
_KINDS = {"thinking": ("thinking", "signature"), "redacted_thinking": ("data",)}


def encode_reasoning(blocks: list[dict[str, Any]], signatures: dict[str, str] | None = None) -> str:
    """`signatures`: Gemini thought signatures by tool call id (canonical `tool_calls[i].extra_content`),
    which clients drop from the calls themselves but keep on reasoning items."""
    payload: dict[str, Any] = {"blocks": blocks}
    if signatures:
        payload["calls"] = signatures
    return PREFIX + base64.urlsafe_b64encode(orjson.dumps(payload)).rstrip(b"=").decode("ascii")


def decode_reasoning(value: object, param: str) -> tuple[list[dict[str, Any]], dict[str, str]] | None:
    """(blocks, signatures by call id) packed by `encode_reasoning`; None for content the gateway did
    not produce."""
    if not isinstance(value, str) or not value.startswith(PREFIX):
        return None
    packed = value[len(PREFIX):]
    try:
        payload = orjson.loads(base64.urlsafe_b64decode(packed + "=" * (-len(packed) % 4)))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        payload = None
    blocks = payload.get("blocks") if isinstance(payload, dict) else None
    signatures = payload.get("calls", {}) if isinstance(payload, dict) else None
    if (not isinstance(blocks, list) or not all(_valid_block(block) for block in blocks)
            or not isinstance(signatures, dict) or not all(isinstance(v, str) for v in signatures.values())):
        raise InvalidRequestError(f"Invalid value for '{param}': the reasoning content is corrupted; send "
                                  "the reasoning item back exactly as it was received.",
                                  code="invalid_encrypted_content", param=param)
    return blocks, signatures


def _valid_block(block: object) -> bool:
    if not isinstance(block, dict):
        return False
    fields = _KINDS.get(block.get("type"))  # type: ignore[arg-type]
    return fields is not None and all(isinstance(block.get(name), str) for name in fields)
