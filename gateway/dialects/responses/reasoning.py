"""Reasoning blocks carried through a client that speaks Responses.

Providers that sign their reasoning (Anthropic thinking blocks, Bedrock reasoningContent) need the
blocks back on the next turn. Responses clients keep only opaque `encrypted_content` on reasoning
items (Codex sends `include: ["reasoning.encrypted_content"]` with `store: false` and replays the
items), so the gateway packs the canonical `thinking_blocks` there: `gwr1.` + unpadded base64url of
their JSON. The prefix tells the gateway's own content from a provider's (OpenAI's is an encrypted
blob the gateway cannot read, and is dropped on the way to another provider). The blocks are not
encrypted: the provider checks their signatures, so a forged block is refused there."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson

from gateway.errors import InvalidRequestError

PREFIX = "gwr1."
_KINDS = {"thinking": ("thinking", "signature"), "redacted_thinking": ("data",)}


def encode_blocks(blocks: list[dict[str, Any]]) -> str:
    packed = base64.urlsafe_b64encode(orjson.dumps(blocks)).rstrip(b"=")
    return PREFIX + packed.decode("ascii")


def decode_blocks(value: object, param: str) -> list[dict[str, Any]] | None:
    """The blocks packed by `encode_blocks`; None for content the gateway did not produce."""
    if not isinstance(value, str) or not value.startswith(PREFIX):
        return None
    packed = value[len(PREFIX):]
    try:
        blocks = orjson.loads(base64.urlsafe_b64decode(packed + "=" * (-len(packed) % 4)))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        blocks = None
    if not isinstance(blocks, list) or not all(_valid_block(block) for block in blocks):
        raise InvalidRequestError(f"Invalid value for '{param}': the reasoning content is corrupted; send "
                                  "the reasoning item back exactly as it was received.",
                                  code="invalid_encrypted_content", param=param)
    return blocks


def _valid_block(block: object) -> bool:
    if not isinstance(block, dict):
        return False
    fields = _KINDS.get(block.get("type"))  # type: ignore[arg-type]
    return fields is not None and all(isinstance(block.get(name), str) for name in fields)
