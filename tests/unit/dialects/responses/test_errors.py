from __future__ import annotations

import json

from gateway.dialects.responses import encode_error
from gateway.errors import PreviousResponseNotFoundError, RateLimitError, ResponseNotFoundError, UpstreamError


def test_previous_response_not_found_is_openais_400() -> None:
    status, body, headers = encode_error(PreviousResponseNotFoundError("resp_gone"))
    assert status == 400 and headers == {}
    assert json.loads(body) == {"error": {"message": "Previous response with id 'resp_gone' not found.",
                                          "type": "invalid_request_error", "param": "previous_response_id",
                                          "code": "previous_response_not_found"}}


def test_not_found_and_retry_after() -> None:
    status, body, _ = encode_error(ResponseNotFoundError("resp_x"))
    assert status == 404 and json.loads(body)["error"]["message"] == "Response with id 'resp_x' not found."
    status, body, headers = encode_error(RateLimitError("Slow down.", headers={"retry-after": "2"}))
    assert (status, headers) == (429, {"retry-after": "2"})
    assert json.loads(body)["error"]["type"] == "rate_limit_error"


def test_upstream_errors_keep_their_status_and_type() -> None:
    status, body, _ = encode_error(UpstreamError("overloaded", status=529, error_type="overloaded_error"))
    assert status == 529 and json.loads(body)["error"]["type"] == "overloaded_error"
