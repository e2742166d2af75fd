"""A Messages request body → the canonical request (OpenAI Chat Completions form, see DESIGN.md).

Field by field:
- `model`, `stream` as sent; a streamed request also gets `stream_options.include_usage` (the
  encoder needs the usage for `message_delta`). `max_tokens` → `max_tokens`; `temperature`, `top_p`
  as they are; `top_k` is kept as the extension the Anthropic adapter and vLLM-style servers read.
- `stop_sequences` → `stop`; `metadata.user_id` → `user`.
- `system` (a string or text blocks, `cache_control` kept) → a leading `system` message.
- `tools` (custom tools) → function tools; `tool_choice` auto/any/tool/none → auto/required/
  function/none, `disable_parallel_tool_use` → `parallel_tool_calls: false`.
- `thinking` / `output_config.effort` → `reasoning_effort` (`effort_of`).
- `output_config.format` (structured output) → `response_format` `json_schema`.
- Unknown fields are ignored here: a deployment that speaks Messages gets the body as sent.

What the canonical form cannot carry (server tools, MCP servers, file ids, documents by URL, more
than four stop sequences) is not an error of the body: `parse_request_lenient` returns it beside
the canonical form, so the request can still go to an Anthropic deployment by passthrough, and
`parse_request` raises it.
"""

from __future__ import annotations

import math
from typing import Any

from gateway.dialects.messages.checks import (
    Untranslatable,
    array,
    integer,
    invalid,
    missing,
    number,
    obj,
    string,
)
from gateway.dialects.messages.content import convert_messages, system_message
from gateway.errors import InvalidRequestError

# The thinking budget each canonical effort stands for, as the translating providers spend it
# (gateway/providers/reasoning.py): a client's budget maps to the effort whose budget is nearest on
# a log scale, so a budget survives a round trip through the canonical form to within a step.
EFFORT_BUDGETS = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 16384, "xhigh": 32768}
# Anthropic's `output_config.effort` levels; `max` is its top level, the canonical `xhigh`.
_EFFORT_LEVELS = {"low": "low", "medium": "medium", "high": "high", "xhigh": "xhigh", "max": "xhigh"}
# Adaptive thinking without an effort thinks at Anthropic's default effort, which is `high`.
ADAPTIVE_DEFAULT_EFFORT = "high"
# The canonical `stop` holds at most this many sequences (OpenAI's limit).
MAX_STOP_SEQUENCES = 4


def parse_request(body: object) -> dict[str, Any]:
    """The canonical request, or a 400 naming the first field that is wrong or cannot be translated."""
    canonical, untranslatable = parse_request_lenient(body)
    if untranslatable is not None:
        raise untranslatable
    return canonical


def parse_request_lenient(body: object, *, counting: bool = False) -> tuple[dict[str, Any], InvalidRequestError | None]:
    """(canonical request, the first field it could not carry or None). A body Anthropic would refuse
    raises. `counting`: a `count_tokens` body, which has no `max_tokens`."""
    if not isinstance(body, dict):
        raise InvalidRequestError("The request body must be a JSON object.", code="invalid_body")
    for field in ("model", "messages") if counting else ("model", "max_tokens", "messages"):
        if field not in body:
            raise missing(field)
    notes = Untranslatable()
    model = string(body["model"], "model")
    if not model:
        raise invalid("model", "String should have at least 1 character")
    messages = convert_messages(body["messages"], notes)
    if not messages:
        raise invalid("messages", "List should have at least 1 item after validation, not 0")
    system = system_message(body.get("system"), notes)
    out: dict[str, Any] = {"model": model, "messages": [system, *messages] if system else messages}
    if not counting:
        out["max_tokens"] = integer(body["max_tokens"], "max_tokens", minimum=1)
    _sampling(body, out, notes)
    _tools(body, out, notes)
    effort = effort_of(body)
    if effort is not None:
        out["reasoning_effort"] = effort
    _output_format(body, out)
    if "stream" in body:
        if not isinstance(body["stream"], bool):
            raise invalid("stream", "Input should be a valid boolean")
        out["stream"] = body["stream"]
        if body["stream"]:
            out["stream_options"] = {"include_usage": True}
    if body.get("mcp_servers"):
        notes.note("mcp_servers", "MCP servers")
    return out, notes.error


def _sampling(body: dict[str, Any], out: dict[str, Any], notes: Untranslatable) -> None:
    if body.get("temperature") is not None:
        out["temperature"] = number(body["temperature"], "temperature", 0, 1)
    if body.get("top_p") is not None:
        out["top_p"] = number(body["top_p"], "top_p", 0, 1)
    if body.get("top_k") is not None:
        out["top_k"] = integer(body["top_k"], "top_k", minimum=0)
    if body.get("stop_sequences") is not None:
        given = array(body["stop_sequences"], "stop_sequences")
        stops = [string(s, f"stop_sequences[{k}]") for k, s in enumerate(given)]
        if len(stops) > MAX_STOP_SEQUENCES:
            notes.note("stop_sequences", f"more than {MAX_STOP_SEQUENCES} stop sequences")
            stops = stops[:MAX_STOP_SEQUENCES]
        if stops:
            out["stop"] = stops
    metadata = body.get("metadata")
    if metadata is not None:
        user = obj(metadata, "metadata").get("user_id")
        if user is not None:
            out["user"] = string(user, "metadata.user_id")


def _tools(body: dict[str, Any], out: dict[str, Any], notes: Untranslatable) -> None:
    tools: list[dict[str, Any]] = []
    given = body.get("tools")
    for i, tool in enumerate(array(given, "tools") if given is not None else ()):
        at = f"tools[{i}]"
        tool = obj(tool, at)
        kind = tool.get("type", "custom")
        if kind != "custom":
            notes.note(f"{at}.type", f"the server tool '{kind}'")
            continue
        for field in ("name", "input_schema"):
            if field not in tool:
                raise missing(f"{at}.{field}")
        function: dict[str, Any] = {"name": string(tool["name"], f"{at}.name"),
                                    "parameters": obj(tool["input_schema"], f"{at}.input_schema")}
        if tool.get("description") is not None:
            function["description"] = string(tool["description"], f"{at}.description")
        if isinstance(tool.get("strict"), bool):
            function["strict"] = tool["strict"]
        tools.append({"type": "function", "function": function})
    choice = body.get("tool_choice")
    if choice is None:
        if tools:
            out["tools"] = tools
        return
    choice = obj(choice, "tool_choice")
    kind = choice.get("type")
    if kind == "auto":
        mapped: str | dict[str, Any] = "auto"
    elif kind == "any":
        mapped = "required"
    elif kind == "none":
        mapped = "none"
    elif kind == "tool":
        if "name" not in choice:
            raise missing("tool_choice.name")
        mapped = {"type": "function", "function": {"name": string(choice["name"], "tool_choice.name")}}
    else:
        raise invalid("tool_choice.type", "Input should be 'auto', 'any', 'tool' or 'none'")
    # OpenAI refuses tool_choice and parallel_tool_calls without tools: without tools they mean nothing.
    if tools:
        out["tools"] = tools
        out["tool_choice"] = mapped
        if choice.get("disable_parallel_tool_use") is True:
            out["parallel_tool_calls"] = False


def effort_of(body: dict[str, Any]) -> str | None:
    """The canonical `reasoning_effort` of a Messages request: `thinking` disabled → none; enabled with
    `budget_tokens` → the effort whose budget is nearest; adaptive (or no `thinking`) → the
    `output_config.effort` level if given (`max` → `xhigh`), adaptive alone → high; None when the
    client said nothing about reasoning."""
    config = body.get("output_config")
    level = obj(config, "output_config").get("effort") if config is not None else None
    if level is not None and level not in _EFFORT_LEVELS:
        raise invalid("output_config.effort", "Input should be 'low', 'medium', 'high', 'xhigh' or 'max'")
    thinking = body.get("thinking")
    if thinking is None:
        return _EFFORT_LEVELS[level] if level is not None else None
    kind = obj(thinking, "thinking").get("type")
    if kind == "disabled":
        return "none"
    if kind == "adaptive":
        return _EFFORT_LEVELS[level] if level is not None else ADAPTIVE_DEFAULT_EFFORT
    if kind == "enabled":
        if "budget_tokens" not in thinking:
            raise missing("thinking.budget_tokens")
        budget = integer(thinking["budget_tokens"], "thinking.budget_tokens", minimum=1024)
        return min(EFFORT_BUDGETS, key=lambda e: abs(math.log(EFFORT_BUDGETS[e] / budget)))
    raise invalid("thinking.type", "Input should be 'enabled', 'disabled' or 'adaptive'")


def _output_format(body: dict[str, Any], out: dict[str, Any]) -> None:
    config = body.get("output_config")
    output_format = obj(config, "output_config").get("format") if config is not None else None
    if output_format is None:
        return
    output_format = obj(output_format, "output_config.format")
    if output_format.get("type") != "json_schema":
        raise invalid("output_config.format.type", "Input should be 'json_schema'")
    if "schema" not in output_format:
        raise missing("output_config.format.schema")
    schema = obj(output_format["schema"], "output_config.format.schema")
    out["response_format"] = {"type": "json_schema",
                              "json_schema": {"name": "output", "schema": schema, "strict": True}}
