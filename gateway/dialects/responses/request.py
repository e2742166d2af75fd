"""A Responses request → the canonical Chat Completions request.

Where each field goes:
- `model`, `stream`: kept as sent; a streamed request also gets `stream_options.include_usage`.
- `instructions` → a leading system message; `input` (and `history`, the stored conversation a
  `previous_response_id` names, rebuilt by the caller) → messages (see items.py).
- `tools`, `tool_choice` → function tools (see tools.py); `parallel_tool_calls`, `temperature`,
  `top_p`, `user`, `safety_identifier`, `service_tier`, `prompt_cache_key`, `top_logprobs` → the
  same Chat fields; `max_output_tokens` → `max_completion_tokens`; `reasoning.effort` →
  `reasoning_effort`; `text.format` → `response_format`; `text.verbosity` → `verbosity`.
- `store`, `metadata`, `include`, `previous_response_id`, `truncation`, `reasoning.summary` shape the
  gateway's answer and what it stores, not the provider call: checked here, and the encoders read
  them from the body.
- `background`, `conversation` and `prompt` need OpenAI-side state: a 400. Other fields are not
  carried (they pass through only when the deployment speaks Responses itself).
"""

from __future__ import annotations

from typing import Any

from gateway.dialects.responses.items import convert_items
from gateway.dialects.responses.tools import convert_tool_choice, convert_tools
from gateway.errors import InvalidRequestError

EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
_STATEFUL = {
    "background": "background responses",
    "conversation": "OpenAI-hosted conversations (use previous_response_id)",
    "prompt": "stored prompt templates",
}
_PASSED = ("user", "safety_identifier", "service_tier", "prompt_cache_key")
_METADATA_PAIRS, _METADATA_KEY, _METADATA_VALUE = 16, 64, 512  # OpenAI's bounds
_SUMMARIES = ("auto", "concise", "detailed")


# The refusals that only matter when the request is translated: a deployment that speaks Responses
# takes the body as sent.
UNTRANSLATABLE = frozenset({"unsupported_tool_type", "unsupported_input_item", "unsupported_value",
                            "unsupported_parameter"})


def translate(body: object, history: list[dict[str, Any]] | None = None) -> tuple[dict[str, Any],
                                                                                    InvalidRequestError | None]:
    """The canonical request, and the 400 a translating deployment must answer when the body holds
    something the canonical form cannot carry (the canonical request then leaves it out, so the call
    can still be routed, counted and passed through to a deployment that speaks Responses)."""
    try:
        return parse_request(body, history), None
    except InvalidRequestError as error:
        if error.code not in UNTRANSLATABLE:
            raise
        return parse_request(body, history, drop_builtin_tools=True), error


def parse_request(body: object, history: list[dict[str, Any]] | None = None, *,
                  drop_builtin_tools: bool = False) -> dict[str, Any]:
    """`history`: the items of the conversation so far (each stored turn's input then output items,
    oldest first), prepended to `input`. `drop_builtin_tools`: leave out what only OpenAI's platform
    can run or resolve (hosted tools such as Codex's default `web_search`, their call items, file ids
    and URLs, OpenAI-side state options) instead of refusing it."""
    if not isinstance(body, dict):
        raise InvalidRequestError("The request body must be a JSON object.", code="invalid_body")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _missing("model") if model is None else _invalid("model", "expected a non-empty string")
    for name, what in _STATEFUL.items():
        if body.get(name) not in (None, False) and not drop_builtin_tools:
            raise InvalidRequestError(f"The gateway does not support {what} ('{name}').",
                                      code="unsupported_parameter", param=name)
    tools, names = convert_tools(body.get("tools"), drop_builtin=drop_builtin_tools)
    messages: list[dict[str, Any]] = []
    instructions = body.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise _invalid("instructions", "expected a string")
        if instructions:
            messages.append({"role": "system", "content": instructions})
    if history:
        messages += convert_items(history, where="previous_response_id", lenient=drop_builtin_tools)
    messages += _input(body.get("input"), drop_builtin_tools)
    if not any(message["role"] != "system" for message in messages):
        raise _missing("input")
    out: dict[str, Any] = {"model": model, "messages": messages}
    stream = body.get("stream")
    if stream is not None:
        if not isinstance(stream, bool):
            raise _invalid("stream", "expected a boolean")
        out["stream"] = stream
        if stream:
            out["stream_options"] = {"include_usage": True}
    # The choice is checked with tools or without (the response object echoes it); without tools only
    # `none` means something to the provider.
    try:
        choice = convert_tool_choice(body.get("tool_choice"), names)
    except InvalidRequestError as error:
        if not (drop_builtin_tools and error.code in UNTRANSLATABLE):
            raise
        choice = None
    if tools:
        out["tools"] = tools
        if choice is not None:
            out["tool_choice"] = choice
    elif choice == "none":
        out["tool_choice"] = "none"
    _sampling(body, out)
    _reasoning(body.get("reasoning"), out)
    _text(body.get("text"), out)
    for name in _PASSED:
        if body.get(name) is not None:
            out[name] = _str(body, name)
    _answer_fields(body)
    # Every field of `out` was checked above, in the client's own terms (a 400 names the Responses
    # field, not the canonical one it became), so the canonical schema is not run again: a property
    # test holds that whatever this accepts, the canonical schema accepts (as for Messages).
    return out


def _answer_fields(body: dict[str, Any]) -> None:
    """The fields that shape the gateway's answer and what it stores, not the provider call: echoed in
    the response object (which the SDKs type), so checked here as OpenAI checks them."""
    store = body.get("store")
    if store is not None and not isinstance(store, bool):
        raise _invalid("store", "expected a boolean")
    include = body.get("include")
    if include is not None and not (isinstance(include, list) and all(isinstance(x, str) for x in include)):
        raise _invalid("include", "expected an array of strings")
    metadata = body.get("metadata")
    if metadata is not None and not (isinstance(metadata, dict) and len(metadata) <= _METADATA_PAIRS and all(
            len(key) <= _METADATA_KEY and isinstance(value, str) and len(value) <= _METADATA_VALUE
            for key, value in metadata.items())):
        raise _invalid("metadata", f"expected an object of at most {_METADATA_PAIRS} string values (keys up to "
                                   f"{_METADATA_KEY} characters, values up to {_METADATA_VALUE})")
    truncation = body.get("truncation")
    if truncation is not None and truncation not in ("auto", "disabled"):
        raise _invalid("truncation", "expected 'auto' or 'disabled'")
    if body.get("stream_options") is not None and not isinstance(body["stream_options"], dict):
        raise _invalid("stream_options", "expected an object")
    calls = body.get("max_tool_calls")
    if calls is not None and (isinstance(calls, bool) or not isinstance(calls, int) or calls < 1):
        raise _invalid("max_tool_calls", "expected a positive integer")


def _input(value: object, lenient: bool) -> list[dict[str, Any]]:
    if value is None:
        return []
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if not isinstance(value, list):
        raise _invalid("input", "expected a string or an array of input items")
    return convert_items(value, where="input", lenient=lenient)


def _sampling(body: dict[str, Any], out: dict[str, Any]) -> None:
    for name, high in (("temperature", 2.0), ("top_p", 1.0)):
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= high:
            raise _invalid(name, f"expected a number from 0 to {high:g}")
        out[name] = value
    limit = body.get("max_output_tokens")
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise _invalid("max_output_tokens", "expected a positive integer")
        out["max_completion_tokens"] = limit
    parallel = body.get("parallel_tool_calls")
    if parallel is not None:
        if not isinstance(parallel, bool):
            raise _invalid("parallel_tool_calls", "expected a boolean")
        if "tools" in out:
            out["parallel_tool_calls"] = parallel
    top = body.get("top_logprobs")
    if top is not None:
        if isinstance(top, bool) or not isinstance(top, int) or not 0 <= top <= 20:
            raise _invalid("top_logprobs", "expected an integer from 0 to 20")
        out["logprobs"] = True
        out["top_logprobs"] = top


def _reasoning(reasoning: object, out: dict[str, Any]) -> None:
    if reasoning is None:
        return
    if not isinstance(reasoning, dict):
        raise _invalid("reasoning", "expected an object")
    effort = reasoning.get("effort")
    if effort is not None:
        if effort not in EFFORTS:
            raise _invalid("reasoning.effort", "expected one of " + ", ".join(f"'{e}'" for e in EFFORTS))
        out["reasoning_effort"] = effort
    summary = reasoning.get("summary")
    if summary is not None and summary not in _SUMMARIES:
        raise _invalid("reasoning.summary", "expected 'auto', 'concise' or 'detailed'")


def _text(text: object, out: dict[str, Any]) -> None:
    if text is None:
        return
    if not isinstance(text, dict):
        raise _invalid("text", "expected an object")
    verbosity = text.get("verbosity")
    if verbosity is not None:
        if verbosity not in ("low", "medium", "high"):
            raise _invalid("text.verbosity", "expected 'low', 'medium' or 'high'")
        out["verbosity"] = verbosity
    spec = text.get("format")
    if spec is None:
        return
    kind = spec.get("type") if isinstance(spec, dict) else None
    if kind == "text":
        return
    if kind == "json_object":
        out["response_format"] = {"type": "json_object"}
        return
    if kind != "json_schema":
        raise _invalid("text.format.type", "expected 'text', 'json_object' or 'json_schema'")
    assert isinstance(spec, dict)
    name, schema = spec.get("name"), spec.get("schema")
    if not isinstance(name, str) or not name:
        raise _missing("text.format.name")
    if not isinstance(schema, dict):
        raise _missing("text.format.schema") if schema is None else _invalid("text.format.schema", "expected an object")
    json_schema: dict[str, Any] = {"name": name, "schema": schema}
    for key in ("strict", "description"):
        if spec.get(key) is not None:
            json_schema[key] = spec[key]
    out["response_format"] = {"type": "json_schema", "json_schema": json_schema}


def _str(body: dict[str, Any], name: str) -> str:
    value = body[name]
    if not isinstance(value, str):
        raise _invalid(name, "expected a string")
    return value


def _missing(param: str) -> InvalidRequestError:
    return InvalidRequestError(f"Missing required parameter: '{param}'.", code="missing_required_parameter",
                               param=param)


def _invalid(param: str, why: str) -> InvalidRequestError:
    return InvalidRequestError(f"Invalid value for '{param}': {why}.", code="invalid_value", param=param)
