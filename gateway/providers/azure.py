"""Azure OpenAI: the OpenAI wire format behind per-deployment URLs.

Requests and streams are the OpenAI translator's (`OpenAIAdapter`, `OpenAIStream`); what differs:
- URL: `{base_url}/openai/deployments/{deployment}/{chat/completions|completions|embeddings}
  ?api-version=…`; the upstream model name is the Azure deployment name. A `base_url` that already
  ends in `/openai` is accepted too.
- Auth (`credentials.azure`): `api-key`, or `Authorization: Bearer` with an Entra ID token.
- Content filtering: a 400 with `error.code == "content_filter"` (inner error
  `ResponsibleAIPolicyViolation`, `content_filter_result(s)`) becomes an OpenAI 400 with code
  `content_filter`, `param` "prompt" and a message naming the filtered categories. A completion cut
  by the output filter keeps `finish_reason: "content_filter"` (passed through as is), and the
  Azure-only `content_filter_results` fields on choices are forwarded untouched.
- Azure sends stream chunks with `choices: []` that only carry `prompt_filter_results` (the first
  chunk) or other filter annotations. They are DROPPED: OpenAI never sends an empty-choices chunk
  except the final usage chunk, and clients that read `chunk.choices[0]` would break on them.
  (The usage chunk, which also has `choices: []`, is handled as for OpenAI.)
- 429 answers carry `retry-after` and/or `retry-after-ms`; both are read, and a `retry-after` header
  (whole seconds, rounded up) is passed on to the client when Azure sent only `retry-after-ms`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import orjson

from gateway.errors import GatewayError, UpstreamError
from gateway.providers.base import UpstreamRequest
from gateway.providers.openai import OpenAIAdapter, OpenAIStream, is_error_event, openai_error
from gateway.providers.sse import event_data
from gateway.schemas import Operation

DEFAULT_API_VERSION = "2024-10-21"

_PATHS = {
    Operation.CHAT: "/chat/completions",
    Operation.COMPLETIONS: "/completions",
    Operation.EMBEDDINGS: "/embeddings",
}


class AzureOpenAIAdapter(OpenAIAdapter):
    def __init__(self, base_url: str, api_version: str = DEFAULT_API_VERSION,
                 headers: Mapping[str, str] | None = None, *, drop_unsupported_params: bool = False) -> None:
        super().__init__(base_url, headers)
        root = self.base_url
        if root.endswith("/openai"):
            root = root[: -len("/openai")]
        self._root = root + "/openai/deployments/"
        self._query = "?api-version=" + quote(api_version, safe="")
        self.api_version = api_version
        # Azure serves the OpenAI parameters itself: nothing is dropped (the flag is accepted so
        # every adapter takes the same arguments).
        self.drop_unsupported_params = drop_unsupported_params
        self._url_cache: dict[tuple[Operation, str], str] = {}

    def deployment_url(self, operation: Operation, deployment: str) -> str:
        key = (operation, deployment)
        url = self._url_cache.get(key)
        if url is None:
            url = self._root + quote(deployment, safe="") + _PATHS[operation] + self._query
            if len(self._url_cache) < 4096:  # deployment names come from config: few of them
                self._url_cache[key] = url
        return url

    def build_request(
        self, operation: Operation, body: dict[str, Any], model: str, *, stream: bool,
        drop_unsupported_params: bool | None = None,
    ) -> UpstreamRequest:
        request = super().build_request(operation, body, model, stream=stream)
        request.url = self.deployment_url(operation, model)
        return request

    def stream_translator(self, operation: Operation, *, client_wants_usage: bool,
                          model: str | None = None) -> AzureStream:
        return AzureStream(client_wants_usage)

    def parse_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
        return azure_error(status, body, headers)


class AzureStream(OpenAIStream):
    """OpenAI pass-through, minus Azure's empty-choices annotation chunks, with Azure error mapping."""

    __slots__ = ()
    markers = (*OpenAIStream.markers, b'"choices":[]', b'"choices": []')

    def _event(self, event: bytes) -> bytes:
        payload = event_data(event)
        if payload is not None and (b'"choices":[]' in payload or b'"choices": []' in payload):
            try:
                chunk = orjson.loads(payload)
            except orjson.JSONDecodeError:
                chunk = None
            if isinstance(chunk, dict) and not chunk.get("choices") and not chunk.get("usage"):
                return b""
        if payload is not None and b'"error"' in payload and is_error_event(payload):
            raise azure_error(502, payload, {})
        return super()._event(event)


def azure_error(status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
    """Azure error answer → gateway error: OpenAI mapping, plus content filtering and retry-after-ms."""
    error = openai_error(status, body, headers, provider="azure")
    if not isinstance(error, UpstreamError):
        return error  # context length: already the right class
    if error.code == "content_filter" or _inner_code(body) == "ResponsibleAIPolicyViolation":
        categories = _filtered_categories(body)
        which = f" (filtered: {', '.join(categories)})" if categories else ""
        message = ("The prompt was blocked by Azure OpenAI content filtering" + which
                   + ". Modify the prompt and retry. Azure said: " + error.message)
        return UpstreamError(message, status=status if status >= 400 else 400,
                             error_type="invalid_request_error", code="content_filter",
                             param=error.param or "prompt", provider="azure")
    if "retry-after" not in headers and error.retry_after is not None:
        error.headers["retry-after"] = str(max(1, math.ceil(error.retry_after)))
    return error


def _error_object(body: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return {}
    error = data.get("error") if isinstance(data, dict) else None
    return error if isinstance(error, dict) else {}


def _inner_code(body: bytes) -> str | None:
    inner = _error_object(body).get("innererror")
    code = inner.get("code") if isinstance(inner, dict) else None
    return code if isinstance(code, str) else None


def _filtered_categories(body: bytes) -> list[str]:
    """Names of the categories marked filtered in the inner content filter result."""
    inner = _error_object(body).get("innererror")
    if not isinstance(inner, dict):
        return []
    results = inner.get("content_filter_result") or inner.get("content_filter_results")
    if isinstance(results, list):  # per-prompt form: [{prompt_index, content_filter_results}]
        merged: dict[str, Any] = {}
        for item in results:
            if isinstance(item, dict) and isinstance(item.get("content_filter_results"), dict):
                merged.update(item["content_filter_results"])
        results = merged
    if not isinstance(results, dict):
        return []
    return [name for name, verdict in results.items()
            if isinstance(verdict, dict) and verdict.get("filtered") is True]
