"""The Anthropic Messages dialect (`/v1/messages`): Claude Code and the Anthropic SDKs.

Pure codecs between a Messages client and the canonical form (OpenAI Chat Completions with the
reasoning, cache and document extensions of DESIGN.md): parse a request, encode an answer, a stream
and an error, read usage from an Anthropic answer relayed untouched. No I/O.
"""

from gateway.dialects.messages.errors import encode_error, stream_error_event
from gateway.dialects.messages.headers import forwarded_headers
from gateway.dialects.messages.models import count_tokens, models_page
from gateway.dialects.messages.request import parse_request, parse_request_lenient
from gateway.dialects.messages.response import encode_response
from gateway.dialects.messages.stream import StreamEncoder
from gateway.dialects.messages.usage import UsageReader, usage_from_body

__all__ = ["StreamEncoder", "UsageReader", "count_tokens", "encode_error", "encode_response", "forwarded_headers",
           "models_page", "parse_request", "parse_request_lenient", "stream_error_event", "usage_from_body"]
