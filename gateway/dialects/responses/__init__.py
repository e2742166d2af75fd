"""The OpenAI Responses API dialect (`/v1/responses`: Codex CLI, the OpenAI Agents SDK,
`client.responses`): pure codecs between its wire shapes and the canonical Chat Completions form.
See request.py for where each request field goes, stream.py for the event sequence, reasoning.py for
how signed reasoning survives a round trip through a client."""

from gateway.dialects.responses.dialect import ResponsesDialect
from gateway.dialects.responses.errors import encode_error
from gateway.dialects.responses.request import parse_request, translate
from gateway.dialects.responses.response import encode_response
from gateway.dialects.responses.stream import StreamEncoder, new_response_id
from gateway.dialects.responses.usage import UsageReader, usage_from_body

__all__ = ["ResponsesDialect", "StreamEncoder", "UsageReader", "encode_error", "encode_response",
           "new_response_id", "parse_request", "translate", "usage_from_body"]
