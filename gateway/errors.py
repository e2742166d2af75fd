"""The gateway's closed error hierarchy.

Every failure a client can see is one of these. Each class knows its HTTP status and the OpenAI
error `type`/`code`, so the OpenAI SDKs raise their usual exception classes (401 →
AuthenticationError, 429 → RateLimitError, …). Foreign exceptions are mapped to these where they
enter the gateway; nothing else reaches the client.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar

import orjson


class GatewayError(Exception):
    """Base class: an error with an HTTP status and an OpenAI-shaped body."""

    status: ClassVar[int] = 500
    error_type: ClassVar[str] = "api_error"
    default_code: ClassVar[str | None] = None
    # Whether the router may try another attempt (same or other deployment) after this error.
    retryable_default: ClassVar[bool] = False
    # (dialect, status, body) of a provider's error answer to a request sent in the client's own
    # dialect: the client gets it as the provider wrote it (gateway.dialects.base.passthrough_error).
    native_answer: tuple[str, int, bytes] | None = None

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code if code is not None else self.default_code
        self.param = param
        self.headers: dict[str, str] = dict(headers) if headers else {}
        self._status = status

    @property
    def retryable(self) -> bool:
        return self.retryable_default

    @property
    def http_status(self) -> int:
        return self._status if self._status is not None else self.status

    def to_dict(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }

    def to_body(self) -> bytes:
        return orjson.dumps(self.to_dict())


class InvalidRequestError(GatewayError):
    status = 400
    error_type = "invalid_request_error"


class ContextLengthExceededError(InvalidRequestError):
    default_code = "context_length_exceeded"


class AuthenticationError(GatewayError):
    status = 401
    error_type = "invalid_request_error"
    default_code = "invalid_api_key"


class PermissionDeniedError(GatewayError):
    status = 403
    error_type = "permission_error"
    default_code = "model_not_allowed"


class NotFoundError(GatewayError):
    status = 404
    error_type = "invalid_request_error"
    default_code = "not_found"


class ModelNotFoundError(NotFoundError):
    default_code = "model_not_found"


class MethodNotAllowedError(GatewayError):
    status = 405
    error_type = "invalid_request_error"
    default_code = "method_not_allowed"


class ConflictError(GatewayError):
    status = 409
    error_type = "invalid_request_error"
    default_code = "conflict"


class PayloadTooLargeError(GatewayError):
    status = 413
    error_type = "invalid_request_error"
    default_code = "request_too_large"


class UnsupportedMediaTypeError(GatewayError):
    status = 415
    error_type = "invalid_request_error"
    default_code = "unsupported_content_encoding"


class RequestTimeoutError(GatewayError):
    """The client did not send its whole request in time."""

    status = 408
    error_type = "invalid_request_error"
    default_code = "request_timeout"


class HeadersTooLargeError(GatewayError):
    status = 431
    error_type = "invalid_request_error"
    default_code = "request_header_fields_too_large"


class ClientClosedRequestError(GatewayError):
    """The client went away before its request was read whole: nobody reads the answer (499, as
    nginx logs it)."""

    status = 499
    error_type = "invalid_request_error"
    default_code = "client_closed_request"


# --- responses: stored responses (gateway/conversations) ---
class PreviousResponseNotFoundError(InvalidRequestError):
    """A `previous_response_id` (or a response its chain links to) that is not stored for this key:
    never stored, expired, deleted, or another key's."""

    default_code = "previous_response_not_found"

    def __init__(self, response_id: str) -> None:
        super().__init__(f"Previous response with id '{response_id}' not found.", param="previous_response_id")


class ResponseNotFoundError(NotFoundError):
    """A stored response asked for by id (retrieve, delete, input items) that this key cannot see."""

    def __init__(self, response_id: str) -> None:
        super().__init__(f"Response with id '{response_id}' not found.", param="response_id")


class StoredResponseTooLargeError(PayloadTooLargeError):
    default_code = "stored_response_too_large"
# --- end responses ---


class RateLimitError(GatewayError):
    status = 429
    error_type = "rate_limit_error"
    default_code = "rate_limit_exceeded"


class BudgetExceededError(GatewayError):
    status = 429
    error_type = "insufficient_quota"
    default_code = "insufficient_quota"


class InternalError(GatewayError):
    status = 500
    error_type = "api_error"
    default_code = "internal_error"


class TooManyConnectionsError(GatewayError):
    status = 503
    error_type = "api_error"
    default_code = "too_many_connections"


class OverloadedError(GatewayError):
    """Load shedding: the worker or the alias is at its bound of calls in flight."""

    status = 503
    error_type = "api_error"
    default_code = "gateway_overloaded"


class StreamCutError(GatewayError):
    """A stream still running when the shutdown grace ran out: ended with the dialect's error event."""

    status = 503
    error_type = "api_error"
    default_code = "stream_cut_by_shutdown"


class StoreUnavailableError(GatewayError):
    status = 503
    error_type = "api_error"
    default_code = "store_unavailable"


class UpstreamError(GatewayError):
    """An error answered by a provider, carried with the provider's own status and message.

    `retryable` is decided per instance: 408/409/429/5xx may go to another attempt, other 4xx never.
    """

    error_type = "api_error"

    def __init__(
        self,
        message: str,
        *,
        status: int,
        error_type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
        retry_after: float | None = None,
        provider: str | None = None,
    ) -> None:
        super().__init__(message, code=code, param=param, headers=headers, status=status)
        self._error_type = error_type or _type_for_status(status)
        if retry_after is not None:
            retry_after = min(MAX_RETRY_AFTER, max(0.0, retry_after))
        raw = self.headers.get("retry-after")
        if raw is not None and not (raw.isascii() and raw.isdigit() and int(raw) <= MAX_RETRY_AFTER):
            # Passed on to the client as clamped whole seconds, never as the provider's odd text.
            if retry_after is None:
                del self.headers["retry-after"]
            else:
                self.headers["retry-after"] = str(math.ceil(retry_after))
        self.retry_after = retry_after
        self.provider = provider

    @property
    def retryable(self) -> bool:
        return self.http_status in (408, 409, 429) or self.http_status >= 500

    def to_dict(self) -> dict[str, Any]:
        body = super().to_dict()
        body["error"]["type"] = self._error_type
        return body


class UpstreamConnectError(GatewayError):
    status = 502
    error_type = "api_error"
    default_code = "upstream_connect_error"
    retryable_default = True


class UpstreamAuthError(GatewayError):
    """A provider refused the gateway's own credentials: a gateway-side fault, so another deployment
    may well work."""

    status = 502
    error_type = "api_error"
    default_code = "upstream_auth_error"
    retryable_default = True


class UpstreamTimeoutError(GatewayError):
    status = 504
    error_type = "api_error"
    default_code = "upstream_timeout"
    retryable_default = True


class UpstreamPoolTimeoutError(GatewayError):
    """The deadline passed while the attempt waited for a free connection to the provider (its
    `pool_size` was reached): the gateway's own congestion, so no mark against the provider."""

    status = 503
    error_type = "api_error"
    default_code = "upstream_pool_exhausted"
    retryable_default = True


class UpstreamProtocolError(GatewayError):
    """The provider answered something the gateway cannot read (bad JSON, broken stream)."""

    status = 502
    error_type = "api_error"
    default_code = "bad_upstream_response"
    retryable_default = True


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    deployment: str
    error_type: str
    status: int


class AllAttemptsFailedError(GatewayError):
    """Every attempt of the fallback chain failed: reported with the last error's status and type,
    listing each attempt (deployment, error type, status), never credentials."""

    def __init__(self, last: GatewayError, attempts: Sequence[AttemptRecord]) -> None:
        summary = "; ".join(f"{a.deployment}: {a.error_type} ({a.status})" for a in attempts)
        message = last.message if len(attempts) <= 1 else f"{last.message} [attempts: {summary}]"
        super().__init__(message, code=last.code, param=last.param, headers=last.headers,
                         status=last.http_status)
        self.last = last
        self.attempts = list(attempts)

    def to_dict(self) -> dict[str, Any]:
        body = self.last.to_dict()
        body["error"]["message"] = self.message
        if len(self.attempts) > 1:
            body["error"]["attempts"] = [
                {"deployment": a.deployment, "type": a.error_type, "status": a.status}
                for a in self.attempts
            ]
        return body


def _type_for_status(status: int) -> str:
    if status == 401:
        return "authentication_error"
    if status == 403:
        return "permission_error"
    if status == 404:
        return "not_found_error"
    if status == 429:
        return "rate_limit_error"
    if 400 <= status < 500:
        return "invalid_request_error"
    return "api_error"


# The longest wait an upstream's Retry-After may ask of the gateway or, passed on, of a client.
MAX_RETRY_AFTER = 3600.0


def parse_retry_after(value: str | None, *, unit: float = 1.0) -> float | None:
    """Seconds from a `Retry-After` header value (seconds, or an HTTP date) or, with `unit=0.001`, a
    `retry-after-ms` one; clamped to 0..MAX_RETRY_AFTER (`inf`, `1e308` and negative values
    included); None if unreadable (`nan`, garbage)."""
    if not value:
        return None
    try:
        seconds = float(value) * unit
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    if math.isnan(seconds):
        return None
    return min(MAX_RETRY_AFTER, max(0.0, seconds))
