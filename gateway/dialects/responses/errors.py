"""Errors in the Responses API's shapes: the HTTP error body is OpenAI's (`gateway/errors.py` renders
it), and a failure inside a stream is the `error` of a `response.failed` response object, whose `code`
the SDKs type as a closed set: the gateway's codes clients act on (Codex stops retrying on
`context_length_exceeded` and `insufficient_quota`) go through, the others are mapped onto that set."""

from __future__ import annotations

from typing import Any

from gateway.errors import GatewayError, UpstreamError

# Codes of `ResponseError.code` (and the Codex-handled ones) a failure may keep as they are.
_KEPT_CODES = frozenset({"server_error", "rate_limit_exceeded", "invalid_prompt", "context_length_exceeded",
                         "insufficient_quota"})
_STATUS_BY_TYPE = {"invalid_request_error": 400, "authentication_error": 401, "permission_error": 403,
                   "not_found_error": 404, "rate_limit_error": 429, "insufficient_quota": 429}


def encode_error(error: GatewayError) -> tuple[int, bytes, dict[str, str]]:
    return error.http_status, error.to_body(), dict(error.headers)


def failure_object(error: GatewayError) -> dict[str, Any]:
    """The `error` of a `response.failed` response."""
    if error.code in _KEPT_CODES:
        code = error.code
    elif error.http_status == 429:
        code = "rate_limit_exceeded"
    elif error.http_status in (400, 413, 422):
        code = "invalid_prompt"
    else:
        code = "server_error"
    return {"code": code, "message": error.message}


def gateway_error_of(body: object) -> GatewayError:
    """The error a canonical stream's `data: {"error": {...}}` event carries."""
    fields = body if isinstance(body, dict) else {}
    error_type = str(fields.get("type") or "api_error")
    code = fields.get("code")
    return UpstreamError(str(fields.get("message") or "The model's answer failed."),
                         status=_STATUS_BY_TYPE.get(error_type, 500), error_type=error_type,
                         code=code if isinstance(code, str) else None)

