"""Gemini's thought signatures through a Messages client.

Gemini 3 refuses a conversation whose function calls come back without the `thoughtSignature` it
gave them (canonical: `tool_calls[i].extra_content.google.thought_signature`), and a Messages
`tool_use` block has no field for it. The one thing a Messages client always sends back unchanged is
the block's `id` (in the `tool_use` and in the `tool_result` that answers it), so the signature rides
there: `<call id>__ts__<signature in URL-safe base64 without padding>`, which keeps the id within
Anthropic's `^[a-zA-Z0-9_-]+$`. parse_request takes it apart again. A signature that is not base64
is not carried (the call then goes back without it, as from any client that drops it).
"""

from __future__ import annotations

import re
from typing import Any

MARK = "__ts__"
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_TO_URL = str.maketrans("+/", "-_")
_FROM_URL = str.maketrans("-_", "+/")


def tool_use_id(call: dict[str, Any], call_id: str) -> str:
    """The `tool_use` id of a canonical tool call: its id, with its Gemini thought signature if any."""
    extra = call.get("extra_content")
    google = extra.get("google") if isinstance(extra, dict) else None
    signature = google.get("thought_signature") if isinstance(google, dict) else None
    if not isinstance(signature, str) or not _BASE64.fullmatch(signature) or MARK in call_id:
        return call_id
    return call_id + MARK + signature.translate(_TO_URL).rstrip("=")


def split_tool_use_id(value: str) -> tuple[str, str | None]:
    """(the call id, the thought signature it carried or None)."""
    call_id, mark, carried = value.partition(MARK)
    if not mark or not carried:
        return value, None
    return call_id, carried.translate(_FROM_URL) + "=" * (-len(carried) % 4)
