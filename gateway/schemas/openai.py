"""Validation of OpenAI request bodies.

The request stays a plain dict after validation: unknown fields pass through to OpenAI-compatible
upstreams untouched, and translators read the dict directly. The pydantic models here only check
types and ranges, so a bad request is a 400 naming the field rather than a provider error later.
"""

from __future__ import annotations

import enum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from gateway.errors import InvalidRequestError


class Operation(enum.Enum):
    CHAT = "chat"
    COMPLETIONS = "completions"
    EMBEDDINGS = "embeddings"


class _Open(BaseModel):
    # Unknown fields are allowed (and forwarded); known ones are type-checked.
    model_config = ConfigDict(extra="allow")


class ImageURL(_Open):
    url: str
    detail: str | None = None


class ContentPart(_Open):
    type: str
    text: str | None = None
    image_url: ImageURL | None = None


class FunctionCall(_Open):
    name: str
    arguments: str


class ToolCall(_Open):
    id: str
    # Other call types (GPT-5 `custom` calls, a server's own kinds) pass through to servers that made them.
    type: str = "function"
    function: FunctionCall | None = None


class Message(_Open):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None


class FunctionDef(_Open):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None


class Tool(_Open):
    # Only function tools are read by the gateway; other types (GPT-5 `custom`, `openrouter:web_search`,
    # …) go to OpenAI-compatible servers as sent, and translating providers refuse them by name.
    type: str
    function: FunctionDef | None = None


class StreamOptions(_Open):
    include_usage: StrictBool | None = None


Temperature = Annotated[float, Field(ge=0, le=2)]
Unit = Annotated[float, Field(ge=0, le=1)]
Penalty = Annotated[float, Field(ge=-2, le=2)]
PositiveInt = Annotated[StrictInt, Field(ge=1)]
MAX_STOP_SEQUENCES = 4


class _Sampling(_Open):
    model: Annotated[str, Field(min_length=1)]
    stream: StrictBool | None = False
    stream_options: StreamOptions | None = None
    max_tokens: PositiveInt | None = None
    temperature: Temperature | None = None
    top_p: Unit | None = None
    n: PositiveInt | None = None
    stop: str | list[str] | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    seed: StrictInt | None = None
    user: str | None = None

    @field_validator("stop")
    @classmethod
    def _at_most_four_stops(cls, stop: str | list[str] | None) -> str | list[str] | None:
        if isinstance(stop, list) and len(stop) > MAX_STOP_SEQUENCES:
            raise PydanticCustomError(
                "too_many_stop_sequences", "at most {limit} stop sequences are allowed, got {count}",
                {"limit": MAX_STOP_SEQUENCES, "count": len(stop)})
        return stop


class ChatRequest(_Sampling):
    messages: Annotated[list[Message], Field(min_length=1)]
    max_completion_tokens: PositiveInt | None = None
    tools: list[Tool] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: StrictBool | None = None
    response_format: dict[str, Any] | None = None
    logprobs: StrictBool | None = None
    top_logprobs: Annotated[StrictInt, Field(ge=0, le=20)] | None = None


TokenIds = Annotated[list[StrictInt], Field(min_length=1)]


class CompletionRequest(_Sampling):
    prompt: str | Annotated[list[str], Field(min_length=1)] | TokenIds | Annotated[list[TokenIds], Field(min_length=1)]
    echo: StrictBool | None = None
    suffix: str | None = None


class EmbeddingRequest(_Open):
    model: Annotated[str, Field(min_length=1)]
    input: str | Annotated[list[str], Field(min_length=1)] | TokenIds | Annotated[list[TokenIds], Field(min_length=1)]
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: PositiveInt | None = None
    # Embeddings do not stream (OpenAI refuses `stream: true` too).
    stream: Literal[False] | None = None
    user: str | None = None


_MODELS: dict[Operation, type[BaseModel]] = {
    Operation.CHAT: ChatRequest,
    Operation.COMPLETIONS: CompletionRequest,
    Operation.EMBEDDINGS: EmbeddingRequest,
}


def validate_request(operation: Operation, body: object) -> dict[str, Any]:
    """Check `body` against the operation's schema; return it unchanged, or raise a 400 naming the
    first offending field (as the OpenAI API does, `param` holds its dotted path)."""
    if not isinstance(body, dict):
        raise InvalidRequestError("The request body must be a JSON object.", code="invalid_body")
    try:
        _MODELS[operation].model_validate(body)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        param = _dotted(first["loc"])
        if first["type"] == "missing":
            message = f"Missing required parameter: '{param}'."
            code = "missing_required_parameter"
        else:
            message = f"Invalid value for '{param}': {first['msg']}."
            code = "invalid_value"
        raise InvalidRequestError(message, code=code, param=param) from None
    if operation is not Operation.EMBEDDINGS:
        _check_combinations(body)
    return body


def _check_combinations(body: dict[str, Any]) -> None:
    """Rules across fields, which the per-field models cannot state with the field's own path."""
    if body.get("stream_options") is not None and body.get("stream") is not True:
        # OpenAI refuses this combination too; accepting it would hide a client bug.
        raise InvalidRequestError("The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                                  code="invalid_value", param="stream_options")
    for i, tool in enumerate(body.get("tools") or ()):
        if tool["type"] == "function" and tool.get("function") is None:
            raise InvalidRequestError(f"Missing required parameter: 'tools[{i}].function'.",
                                      code="missing_required_parameter", param=f"tools[{i}].function")
    for i, message in enumerate(body.get("messages") or ()):
        calls = message.get("tool_calls")
        if not calls:  # most messages: no loop to set up
            continue
        for j, call in enumerate(calls):
            if call.get("type", "function") == "function" and call.get("function") is None:
                param = f"messages[{i}].tool_calls[{j}].function"
                raise InvalidRequestError(f"Missing required parameter: '{param}'.",
                                          code="missing_required_parameter", param=param)


def _dotted(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("str", "list[str]", "list[int]", "list[ContentPart]", "function-after"):
            # pydantic names union members in the location; they mean nothing to a client.
            continue
        elif part.startswith(("list[", "tagged-union", "function-", "constrained-")):
            continue
        else:
            out += f".{part}" if out else part
    return out or "body"
