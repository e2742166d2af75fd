"""encode_error: Anthropic's error shape, statuses and types."""

from __future__ import annotations

import orjson
import pytest

from gateway.dialects.messages import encode_error
from gateway.errors import (
    AllAttemptsFailedError,
    AttemptRecord,
    AuthenticationError,
    BudgetExceededError,
    ContextLengthExceededError,
    GatewayError,
    InternalError,
    InvalidRequestError,
    ModelNotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    StoreUnavailableError,
    UpstreamConnectError,
    UpstreamError,
    UpstreamTimeoutError,
)


@pytest.mark.parametrize(("error", "status", "kind"), [
    (InvalidRequestError("max_tokens: Field required", param="max_tokens"), 400, "invalid_request_error"),
    (AuthenticationError("Invalid API key."), 401, "authentication_error"),
    (PermissionDeniedError("Not for this key."), 403, "permission_error"),
    (ModelNotFoundError("No model 'x'."), 404, "not_found_error"),
    (PayloadTooLargeError("Too big."), 413, "request_too_large"),
    (RateLimitError("Slow down."), 429, "rate_limit_error"),
    (BudgetExceededError("Budget spent."), 402, "billing_error"),
    (InternalError("Oops."), 500, "api_error"),
    (UpstreamConnectError("Cannot reach the provider."), 502, "api_error"),
    (StoreUnavailableError("Store down."), 503, "overloaded_error"),
    (UpstreamTimeoutError("The provider timed out."), 504, "timeout_error"),
    (UpstreamError("Overloaded", status=529), 529, "overloaded_error"),
    (UpstreamError("Teapot", status=418), 418, "invalid_request_error"),
])
def test_status_and_type(error: GatewayError, status: int, kind: str) -> None:
    got_status, body, _ = encode_error(error)
    assert got_status == status
    assert orjson.loads(body) == {"type": "error", "error": {"type": kind, "message": error.message}}


def test_a_rate_limit_says_when_to_retry() -> None:
    assert encode_error(RateLimitError("x", headers={"retry-after": "3"}))[2] == {"retry-after": "3"}
    assert encode_error(UpstreamError("x", status=429, retry_after=2.4))[2] == {"retry-after": "2"}


def test_a_context_overflow_reads_as_anthropics_so_claude_code_compacts() -> None:
    _, body, _ = encode_error(ContextLengthExceededError("This model's maximum context length is 8192 tokens."))
    assert orjson.loads(body)["error"]["message"] == (
        "prompt is too long: This model's maximum context length is 8192 tokens.")


def test_a_failed_fallback_chain_reports_the_last_status_and_every_attempt() -> None:
    last = UpstreamError("Overloaded", status=529)
    error = AllAttemptsFailedError(last, [AttemptRecord("a", "overloaded_error", 529),
                                          AttemptRecord("b", "overloaded_error", 529)])
    status, body, _ = encode_error(error)
    assert status == 529
    assert orjson.loads(body)["error"] == {"type": "overloaded_error", "message": error.message}
    assert "a: overloaded_error (529)" in error.message
