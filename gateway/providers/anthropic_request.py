"""OpenAI chat request → Anthropic Messages request body (pure; see anthropic.py for the overview).

`max_tokens` is required by Anthropic. When the client sends neither `max_completion_tokens` nor
`max_tokens`, the gateway asks for the model family's maximum output, since an OpenAI client that
sets no limit expects an answer that is not cut short. The table (prefixes matched in order from
"claude-" on, so Bedrock/Vertex names such as `anthropic.claude-3-5-sonnet-…` match too):

| model family                                   | default max_tokens |
|------------------------------------------------|--------------------|
| claude-opus-4-0, claude-opus-4-1, claude-opus-4-2025… | 32000       |
| claude-opus-4-5 and later Opus 4.x             | 64000              |
| claude-sonnet-4*, claude-haiku-4*, claude-3-7-sonnet | 64000        |
| later families (claude-{opus,sonnet,haiku}-5+) | 64000              |
| claude-3-5-*                                   | 8192               |
| claude-3-* (haiku, sonnet, opus)               | 4096               |
| anything else                                  | 4096               |
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import orjson

from gateway.errors import InvalidRequestError
from gateway.providers.reasoning import budget_within, effort_of, fits_claude_thinking, thinking_blocks

# The forced tool that carries a `json_schema` answer; its input comes back as the message text.
# Reserved: a client tool of this name is refused (the answer could not tell the two apart).
JSON_TOOL = "json_response"

DEFAULT_MAX_TOKENS = 4096
MAX_TOKENS_BY_FAMILY: tuple[tuple[str, int], ...] = (
    ("claude-opus-4-0", 32000),
    ("claude-opus-4-1", 32000),
    ("claude-opus-4-2025", 32000),
    ("claude-opus-4", 64000),
    ("claude-sonnet-4", 64000),
    ("claude-haiku-4", 64000),
    ("claude-3-7-sonnet", 64000),
    ("claude-3-5", 8192),
    ("claude-3", 4096),
)
_LATER_FAMILY = re.compile(r"claude-(?:opus|sonnet|haiku)-(\d+)")

JSON_OBJECT_INSTRUCTION = (
    "Respond with a single valid JSON object and nothing else: no prose, no Markdown code fences."
)

# OpenAI parameters Anthropic cannot honour, with the test for "actually set" (defaults are fine).
_UNSUPPORTED: dict[str, Callable[[Any], bool]] = {
    "logprobs": lambda v: v is True,
    "top_logprobs": lambda v: bool(v),
    "n": lambda v: v != 1,
    "presence_penalty": lambda v: v != 0,
    "frequency_penalty": lambda v: v != 0,
    "logit_bias": lambda v: bool(v),
    "seed": lambda v: True,
    "functions": lambda v: bool(v),
    "function_call": lambda v: True,
    "audio": lambda v: True,
    "modalities": lambda v: v != ["text"],
    "prediction": lambda v: True,
    "web_search_options": lambda v: True,
    "verbosity": lambda v: True,
}


@lru_cache(maxsize=512)
def default_max_tokens(model: str) -> int:
    name = model[model.find("claude-"):] if "claude-" in model else model
    for prefix, tokens in MAX_TOKENS_BY_FAMILY:
        if name.startswith(prefix):
            return tokens
    later = _LATER_FAMILY.match(name)
    return 64000 if later and int(later.group(1)) >= 4 else DEFAULT_MAX_TOKENS


def _invalid(message: str, param: str, code: str = "invalid_value") -> InvalidRequestError:
    return InvalidRequestError(message, code=code, param=param)


def translate_request(
    body: dict[str, Any], model: str, *, stream: bool, drop_unsupported: bool = False
) -> dict[str, Any]:
    """A validated OpenAI chat request (never mutated) → the Anthropic request body."""
    if not drop_unsupported:
        for name, is_set in _UNSUPPORTED.items():
            if body.get(name) is not None and is_set(body[name]):
                raise _invalid(f"Anthropic models do not support '{name}'.", name, "unsupported_parameter")
    system, messages = _messages(body["messages"])
    out: dict[str, Any] = {"model": model, "messages": messages}
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    out["max_tokens"] = limit if limit else default_max_tokens(model)
    effort = effort_of(body)
    if effort is not None and effort != "none":
        param = "max_completion_tokens" if body.get("max_completion_tokens") else "max_tokens"
        out["thinking"] = {"type": "enabled", "budget_tokens": budget_within(effort, out["max_tokens"], param)}

    response_format = body.get("response_format") or {}
    schema: dict[str, Any] | None = None
    if response_format.get("type") == "json_object":
        system.append({"type": "text", "text": JSON_OBJECT_INSTRUCTION})
    elif response_format.get("type") == "json_schema":
        schema = response_format.get("json_schema")
        if not isinstance(schema, dict) or not isinstance(schema.get("schema"), dict):
            raise _invalid("response_format.json_schema.schema must be a JSON schema object.",
                           "response_format.json_schema.schema")
    if system:
        plain = len(system) == 1 and set(system[0]) == {"type", "text"}
        out["system"] = system[0]["text"] if plain else system

    tools, tool_choice = _tools(body, schema, drop_unsupported)
    if tools:
        out["tools"] = tools
        if tool_choice:
            out["tool_choice"] = tool_choice
    if "thinking" in out:
        _fit_thinking(out, drop_unsupported)

    stop = body.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if body.get("temperature") is not None:
        out["temperature"] = min(float(body["temperature"]), 1.0)  # OpenAI 0..2, Anthropic 0..1
    if body.get("top_p") is not None:
        out["top_p"] = body["top_p"]
    if isinstance(body.get("top_k"), int):  # an extension some OpenAI-compatible servers accept
        out["top_k"] = body["top_k"]
    if "thinking" in out:  # still on: a forced tool may have dropped it
        _sampling_for_thinking(out, drop_unsupported)
    user = body.get("safety_identifier") or body.get("user")
    if isinstance(user, str) and user:
        out["metadata"] = {"user_id": user}
    if stream:
        out["stream"] = True
    return out


def _fit_thinking(out: dict[str, Any], drop: bool) -> None:
    """Extended thinking cannot be combined with a forced tool (Anthropic answers 400)."""
    choice = out.get("tool_choice")
    if choice is None or choice["type"] not in ("any", "tool"):
        return
    if not drop:
        param = "response_format" if choice.get("name") == JSON_TOOL else "tool_choice"
        raise _invalid(f"Anthropic models cannot think (reasoning_effort) while a tool is forced by '{param}'.",
                       param, "unsupported_parameter")
    del out["thinking"]


def _sampling_for_thinking(out: dict[str, Any], drop: bool) -> None:
    for name in ("temperature", "top_k", "top_p"):
        if name in out and not fits_claude_thinking(name, out[name]):
            if not drop:
                raise _invalid(f"Anthropic models do not accept '{name}' = {out[name]} with reasoning_effort "
                               "(extended thinking).", name, "unsupported_parameter")
            del out[name]


# ---------------------------------------------------------------------------------------------
# Messages
# ---------------------------------------------------------------------------------------------


def _messages(raw: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(system text blocks, alternating Anthropic messages with list content)."""
    system: list[dict[str, Any]] = []
    out: list[dict[str, Any]] = []
    for i, message in enumerate(raw):
        role, where = message.get("role"), f"messages[{i}]"
        if role in ("system", "developer"):
            blocks = _blocks(message.get("content"), where, images=False)
            if blocks and "cache_control" in message:
                blocks[-1]["cache_control"] = message["cache_control"]
            system.extend(blocks)
            continue
        if role == "user":
            api_role, blocks = "user", _blocks(message.get("content"), where, images=True)
        elif role == "assistant":
            api_role, blocks = "assistant", _assistant_blocks(message, where)
        elif role == "tool":
            api_role, blocks = "user", [_tool_result(message, where)]
        else:
            raise _invalid("The legacy 'function' role is not supported by Anthropic models; use tools.",
                           f"{where}.role")
        if not blocks:
            continue  # Anthropic refuses empty turns; an empty message carries nothing
        if "cache_control" in message:  # a message-wide hint marks the message's last block
            blocks[-1] = {**blocks[-1], "cache_control": message["cache_control"]}
        if out and out[-1]["role"] == api_role:
            out[-1]["content"].extend(blocks)  # Anthropic requires alternating roles
        else:
            out.append({"role": api_role, "content": blocks})
    if out and out[-1]["role"] == "assistant":
        _strip_prefill(out)
    for message in out:
        content = message["content"]
        if message["role"] == "user" and len(content) > 1:
            # tool_result blocks must open the user turn that answers the tool calls.
            content.sort(key=lambda block: block["type"] != "tool_result")
        if len(content) == 1 and set(content[0]) == {"type", "text"}:
            message["content"] = content[0]["text"]
    return system, out


def _strip_prefill(out: list[dict[str, Any]]) -> None:
    """A final assistant message is a prefill, which Anthropic refuses with trailing whitespace."""
    content = out[-1]["content"]
    if content[-1]["type"] == "text":
        text = content[-1]["text"].rstrip()
        if text:
            content[-1] = {**content[-1], "text": text}
        else:
            content.pop()
            if not content:
                out.pop()


def _blocks(content: object, where: str, *, images: bool) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for k, part in enumerate(content if isinstance(content, list) else ()):
        kind = part.get("type")
        if kind in ("text", "refusal"):
            text = part.get(kind) or ""
            if not text:
                continue
            block: dict[str, Any] = {"type": "text", "text": text}
        elif kind == "image_url" and images:
            block = _image(part.get("image_url"), f"{where}.content[{k}].image_url")
        elif kind == "file" and images:
            block = _document(part.get("file"), f"{where}.content[{k}].file")
        else:
            raise _invalid(f"Content parts of type '{kind}' are not supported here by Anthropic models.",
                           f"{where}.content[{k}].type")
        if "cache_control" in part:  # prompt caching hint, passed through as given
            block["cache_control"] = part["cache_control"]
        blocks.append(block)
    return blocks


def _image(image: object, where: str) -> dict[str, Any]:
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str) or not url:
        raise _invalid("An image part needs image_url.url.", f"{where}.url")
    if not url.startswith("data:"):
        return {"type": "image", "source": {"type": "url", "url": url}}
    header, comma, data = url[5:].partition(",")
    media_type, *params = header.split(";")
    if not comma or "base64" not in params or not media_type:
        raise _invalid("Image data URLs must look like data:image/png;base64,<data>.", f"{where}.url")
    return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}


def _document(file: object, where: str) -> dict[str, Any]:
    """An OpenAI `file` part (a base64 data URL) → an Anthropic `document` block."""
    data_url = file.get("file_data") if isinstance(file, dict) else None
    if not isinstance(data_url, str) or not data_url.startswith("data:"):
        raise _invalid("Anthropic models take files as file.file_data, a base64 data URL "
                       "(data:application/pdf;base64,...); uploaded file ids are not supported.", where)
    header, comma, data = data_url[5:].partition(",")
    media_type, *params = header.split(";")
    if not comma or "base64" not in params or media_type not in ("application/pdf", "text/plain"):
        raise _invalid("Anthropic documents must be data:application/pdf;base64,... or data:text/plain;base64,...",
                       f"{where}.file_data")
    block: dict[str, Any] = {"type": "document",
                             "source": {"type": "base64", "media_type": media_type, "data": data}}
    if isinstance(file, dict) and isinstance(file.get("filename"), str) and file["filename"]:
        block["title"] = file["filename"]
    return block


def _assistant_blocks(message: dict[str, Any], where: str) -> list[dict[str, Any]]:
    # Thinking blocks sent back open the turn, as Anthropic produced them; reasoning_content is only
    # their readable copy (unsigned, so Anthropic would refuse it).
    blocks = thinking_blocks(message, where)
    blocks.extend(_blocks(message.get("content"), where, images=False))
    for j, call in enumerate(message.get("tool_calls") or ()):
        if call.get("type", "function") != "function":
            raise _invalid(f"Tool calls of type '{call.get('type')}' cannot be sent to Anthropic models.",
                           f"{where}.tool_calls[{j}].type", "unsupported_value")
        function = call.get("function") or {}
        param = f"{where}.tool_calls[{j}].function.arguments"
        try:
            arguments = orjson.loads(function.get("arguments") or "{}")
        except orjson.JSONDecodeError:
            raise _invalid("Tool call arguments must be a JSON object.", param) from None
        if not isinstance(arguments, dict):
            raise _invalid("Tool call arguments must be a JSON object.", param)
        blocks.append({"type": "tool_use", "id": call.get("id"), "name": function.get("name"),
                       "input": arguments})
    return blocks


def _tool_result(message: dict[str, Any], where: str) -> dict[str, Any]:
    call_id = message.get("tool_call_id")
    if not call_id:
        raise _invalid("A tool message needs the tool_call_id it answers.", f"{where}.tool_call_id")
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id}
    content = message.get("content")
    if isinstance(content, str):
        if content:
            block["content"] = content
    elif content:
        parts = _blocks(content, where, images=True)
        if parts:
            block["content"] = parts
    return block


# ---------------------------------------------------------------------------------------------
# Tools
# ---------------------------------------------------------------------------------------------


def _tools(
    body: dict[str, Any], schema: dict[str, Any] | None, drop: bool
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    tools: list[dict[str, Any]] = []
    for i, tool in enumerate(body.get("tools") or ()):
        if tool.get("type") != "function":
            if drop:
                continue
            raise _invalid(f"Anthropic models take function tools only, not '{tool.get('type')}'.",
                           f"tools[{i}].type", "unsupported_value")
        function = tool.get("function") or {}
        if function.get("name") == JSON_TOOL and schema is not None:
            raise _invalid(f"The tool name '{JSON_TOOL}' is reserved when response_format is json_schema.",
                           f"tools[{i}].function.name")
        spec: dict[str, Any] = {"name": function.get("name")}
        if function.get("description"):
            spec["description"] = function["description"]
        spec["input_schema"] = function.get("parameters") or {"type": "object", "properties": {}}
        tools.append(spec)

    choice = _tool_choice(body.get("tool_choice"))
    if schema is not None:
        description = schema.get("description") or "Give the final answer as this tool's input."
        name = schema.get("name")
        tools.append({"name": JSON_TOOL,
                      "description": f"{description} (response format: {name})" if name else description,
                      "input_schema": schema["schema"]})
        if choice is None or choice["type"] in ("auto", "any"):
            # With client tools the model may call one of them or answer through json_response.
            choice = {"type": "any"} if len(tools) > 1 else {"type": "tool", "name": JSON_TOOL}
        elif choice["type"] == "none":
            choice = {"type": "tool", "name": JSON_TOOL}
    if body.get("parallel_tool_calls") is False and tools:
        choice = choice or {"type": "auto"}
        if choice["type"] != "none":
            choice["disable_parallel_tool_use"] = True
    return tools, choice


def _tool_choice(choice: object) -> dict[str, Any] | None:
    if choice is None:
        return None
    if choice == "auto":
        return {"type": "auto"}
    if choice == "required":
        return {"type": "any"}
    if choice == "none":
        return {"type": "none"}
    if isinstance(choice, dict) and choice.get("type") == "function":
        name = (choice.get("function") or {}).get("name")
        if isinstance(name, str) and name:
            return {"type": "tool", "name": name}
    raise _invalid("tool_choice must be 'auto', 'required', 'none' or a function.", "tool_choice")
