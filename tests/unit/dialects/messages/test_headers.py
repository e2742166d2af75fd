"""forwarded_headers: what a passthrough carries of Claude Code's headers."""

from __future__ import annotations

from gateway.dialects.messages import forwarded_headers
from tests.support.messages import claude_code


def test_claude_codes_anthropic_headers_pass_and_its_key_does_not() -> None:
    headers = claude_code("tool_result_turn")["headers"]
    forwarded = dict(forwarded_headers({k.title(): v for k, v in headers.items()}))
    assert forwarded == {"anthropic-beta": headers["anthropic-beta"], "anthropic-version": "2023-06-01",
                         "anthropic-dangerous-direct-browser-access": "true"}
    assert "context-management-2025-06-27" in forwarded["anthropic-beta"]
