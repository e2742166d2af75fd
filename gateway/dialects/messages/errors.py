"""Errors in Anthropic's shape: `{"type": "error", "error": {"type", "message"}}`.

Statuses and types follow Anthropic's table: 400 invalid_request_error, 401 authentication_error,
402 billing_error, 403 permission_error, 404 not_found_error, 413 request_too_large, 429
rate_limit_error (with `retry-after`), 500 api_error, 529 overloaded_error. The gateway's own 5xx keep
their status, which every Anthropic client retries: 502 api_error, 503 overloaded_error, 504
timeout_error. Two gateway errors change status: a spent budget is 402 billing_error (Anthropic's
type for money; a 429 would make Claude Code retry for nothing), and a context overflow from any
provider reads `prompt is too long: …`, the words Claude Code's automatic compaction looks for.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.errors import BudgetExceededError, GatewayError

CONTEXT_PREFIX = "prompt is too long: "

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
          403: "permission_error", 404: "not_found_error", 413: "request_too_large",
          429: "rate_limit_error", 500: "api_error", 502: "api_error", 503: "overloaded_error",
          504: "timeout_error", 529: "overloaded_error"}
# OpenAI-shaped error types (a canonical stream's error event) → Anthropic's.
_FROM_OPENAI = {"invalid_request_error": "invalid_request_error", "authentication_error": "authentication_error",
                "permission_error": "permission_error", "not_found_error": "not_found_error",
                "rate_limit_error": "rate_limit_error", "insufficient_quota": "billing_error",
                "billing_error": "billing_error", "request_too_large": "request_too_large",
                "overloaded_error": "overloaded_error", "timeout_error": "timeout_error"}
_TIMEOUT_CODES = {"upstream_timeout", "ttft_timeout"}


def encode_error(error: GatewayError) -> tuple[int, bytes, dict[str, str]]:
    """Status, body and extra headers of an error answer."""
    status = 402 if _budget(error) else error.http_status
    headers = dict(error.headers)
    retry_after = getattr(error, "retry_after", None)
    if status == 429 and isinstance(retry_after, int | float) and not any(k.lower() == "retry-after" for k in headers):
        headers["retry-after"] = str(max(1, round(retry_after)))
    return status, orjson.dumps(error_body(type_for(status), _message(error.message, error.code))), headers


def error_event(error_type: str, message: str) -> bytes:
    """The `error` event that ends a Messages stream."""
    return b"event: error\ndata: " + orjson.dumps(error_body(error_type, message)) + b"\n\n"


def stream_error_event(error: GatewayError) -> bytes:
    status = 402 if _budget(error) else error.http_status
    return error_event(type_for(status), _message(error.message, error.code))


def canonical_error_event(payload: object) -> bytes:
    """A canonical stream's `{"error": {...}}` (OpenAI-shaped, no status) as a Messages error event."""
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict):
        return error_event("api_error", "The provider failed while streaming the answer.")
    code = error.get("code") if isinstance(error.get("code"), str) else None
    kind = "timeout_error" if code in _TIMEOUT_CODES else _FROM_OPENAI.get(str(error.get("type")), "api_error")
    message = error.get("message")
    if not isinstance(message, str):
        message = "The provider failed while streaming the answer."
    return error_event(kind, _message(message, code))


def error_body(error_type: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type, "message": message}}


def type_for(status: int) -> str:
    known = _TYPES.get(status)
    if known is not None:
        return known
    return "invalid_request_error" if 400 <= status < 500 else "api_error"


def _budget(error: GatewayError) -> bool:
    return isinstance(getattr(error, "last", error), BudgetExceededError)


def _message(message: str, code: str | None) -> str:
    if code == "context_length_exceeded" and not message.startswith(CONTEXT_PREFIX):
        return CONTEXT_PREFIX + message
    return message
