"""OpenAI request → Gemini `generateContent` / `batchEmbedContents` body (the request half of the
Gemini adapter; `gemini.py` holds the adapter, responses, streams and errors).

Translation rules worth knowing:
- system and developer messages, wherever they appear, are joined into `systemInstruction`.
- consecutive messages of one Gemini role are merged into one content (parallel tool results must
  arrive as one `user` content holding every `functionResponse`).
- a tool message's function name is taken from the assistant tool call it answers; its content
  becomes the `response` object: a JSON object is sent as is, anything else as `{"output": …}`.
- images: `data:` URLs become `inlineData`; http(s) and gs:// URLs become `fileData` whose mimeType is
  guessed from the file extension (or given as the non-standard `image_url.mime_type`). A URL whose
  type cannot be told is refused with 400: Gemini requires the mimeType and the gateway does no I/O.
- JSON schemas (tool parameters, `response_format.json_schema`) are reduced to Gemini's OpenAPI
  subset, or sent as JSON Schema when they refer to themselves (gemini_schema.py).
- `reasoning_effort` → `thinkingConfig`: `thinkingLevel` on Gemini 3, `thinkingBudget` (reasoning.py
  table) on 2.5, with thought summaries asked for; models before 2.5 do not think (400 naming it).
- assistant tool calls carry Gemini's thought signature back as
  `extra_content.google.thought_signature` (Gemini 3 refuses a function call turn without it).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import orjson

from gateway.errors import InvalidRequestError
from gateway.providers.gemini_schema import schema_fields
from gateway.providers.reasoning import BUDGETS, effort_of

Unsupported = Callable[[str, str], None]

# Fields read elsewhere or without effect on the answer.
_IGNORED = frozenset({"model", "messages", "stream", "stream_options", "user", "metadata", "store",
                      "service_tier"})
_CONFIG = {"temperature": "temperature", "top_p": "topP", "seed": "seed",
           "presence_penalty": "presencePenalty", "frequency_penalty": "frequencyPenalty"}
_HANDLED = frozenset({*_CONFIG, "max_tokens", "max_completion_tokens", "stop", "n", "response_format",
                      "tools", "tool_choice", "parallel_tool_calls", "logprobs", "reasoning_effort"})

_MIME_BY_EXT = {
    "png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "webp": "image/webp",
    "gif": "image/gif", "heic": "image/heic", "heif": "image/heif", "bmp": "image/bmp",
    "pdf": "application/pdf", "mp3": "audio/mp3", "wav": "audio/wav", "flac": "audio/flac",
    "ogg": "audio/ogg", "aac": "audio/aac", "mp4": "video/mp4", "mov": "video/mov",
    "webm": "video/webm", "txt": "text/plain",
}


def unsupported_handler(drop: bool) -> Unsupported:
    """What to do with a parameter Gemini cannot honour: 400 naming it, or silently drop it."""

    def handle(param: str, why: str) -> None:
        if not drop:
            raise InvalidRequestError(f"'{param}' is not supported by this model's provider (Gemini): {why}",
                                      code="unsupported_parameter", param=param)

    return handle


def chat_body(body: dict[str, Any], unsupported: Unsupported, model: str = "") -> dict[str, Any]:
    for key, value in body.items():
        if key in _IGNORED or value is None:
            continue
        if key not in _HANDLED:
            unsupported(key, "the Gemini API has no equivalent.")
    system, contents = _contents(body["messages"], unsupported)
    out: dict[str, Any] = {"contents": contents}
    if system:
        out["systemInstruction"] = {"parts": system}
    if body.get("logprobs"):
        unsupported("logprobs", "log probabilities are not translated.")
    if body.get("parallel_tool_calls") is False:
        unsupported("parallel_tool_calls", "Gemini cannot be told to make one call at a time.")
    if body.get("tools"):
        out["tools"] = [{"functionDeclarations": _functions(body["tools"], unsupported)}]
    tool_config = _tool_config(body.get("tool_choice"), unsupported)
    if tool_config and body.get("tools"):
        out["toolConfig"] = {"functionCallingConfig": tool_config}
    config = _generation_config(body, unsupported)
    thinking = _thinking_config(body, model, unsupported)
    if thinking:
        config["thinkingConfig"] = thinking
    if config:
        out["generationConfig"] = config
    return out


def _generation_config(body: dict[str, Any], unsupported: Unsupported) -> dict[str, Any]:
    config: dict[str, Any] = {openai_key: body[key] for key, openai_key in _CONFIG.items()
                              if body.get(key) is not None}
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if max_tokens is not None:
        config["maxOutputTokens"] = max_tokens
    stop = body.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    if body.get("n") is not None:
        config["candidateCount"] = body["n"]
    fmt = body.get("response_format")
    if isinstance(fmt, dict):
        kind = fmt.get("type")
        if kind == "json_object":
            config["responseMimeType"] = "application/json"
        elif kind == "json_schema":
            spec = fmt.get("json_schema")
            schema = spec.get("schema") if isinstance(spec, dict) else None
            config["responseMimeType"] = "application/json"
            if isinstance(schema, dict):
                config.update(schema_fields(schema, "response_format.json_schema.schema",
                                            openapi="responseSchema", json_schema="responseJsonSchema"))
        elif kind != "text":
            unsupported("response_format.type", f"'{kind}' has no Gemini equivalent.")
    return config


# Gemini 2.5 thinking budgets top out lower on Flash models than on Pro.
_FLASH_MAX_BUDGET = 24576
_PRO_MAX_BUDGET = 32768
_VERSION = re.compile(r"gemini-(\d+(?:\.\d+)?)")


def _thinking_config(body: dict[str, Any], model: str, unsupported: Unsupported) -> dict[str, Any] | None:
    effort = effort_of(body)
    if effort is None:
        return None
    name = model.rsplit("/", 1)[-1]
    flash = "flash" in name
    found = _VERSION.match(name)
    version = float(found.group(1)) if found else None
    if version is not None and version < 2.5:
        if effort != "none":
            unsupported("reasoning_effort", f"{name} does not think.")
        return None
    if version is not None and version >= 3:
        if flash:
            level = {"none": "minimal", "xhigh": "high"}.get(effort, effort)
        else:  # Gemini 3 Pro thinks at two levels and cannot stop
            level = "high" if effort in ("medium", "high", "xhigh") else "low"
        return {"thinkingLevel": level, **({"includeThoughts": True} if effort != "none" else {})}
    # Gemini 2.5, and names without a version (Gemini 3 takes a budget too, for compatibility).
    if effort == "none":
        # Pro cannot switch thinking off: its smallest budget is the nearest it gets.
        return {"thinkingBudget": 0 if flash else 128}
    budget = min(BUDGETS[effort], _FLASH_MAX_BUDGET if flash else _PRO_MAX_BUDGET)
    return {"thinkingBudget": budget, "includeThoughts": True}


# --- messages ------------------------------------------------------------------------------------


def _contents(messages: list[dict[str, Any]], unsupported: Unsupported
              ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    call_names: dict[str, str] = {}  # tool call id → function name, from earlier assistant turns
    for i, message in enumerate(messages):
        role, where = message.get("role"), f"messages[{i}]"
        content = message.get("content")
        if role in ("system", "developer"):
            system.extend(_text_parts(content, f"{where}.content"))
            continue
        if role == "user":
            parts, gemini_role = _user_parts(content, f"{where}.content", unsupported), "user"
        elif role == "assistant":
            parts, gemini_role = _text_parts(content, f"{where}.content"), "model"
            for j, call in enumerate(message.get("tool_calls") or ()):
                if call.get("type", "function") != "function":
                    unsupported(f"{where}.tool_calls[{j}].type",
                                f"tool calls of type '{call.get('type')}' are not translated (function calls only).")
                    continue
                parts.append(_function_call(call, f"{where}.tool_calls[{j}]"))
                call_names[call["id"]] = call["function"]["name"]
        elif role in ("tool", "function"):
            if role == "tool":
                name = call_names.get(str(message.get("tool_call_id")))
                if name is None:
                    raise InvalidRequestError(
                        f"{where} answers tool call '{message.get('tool_call_id')}', which no earlier "
                        "assistant message made.", param=f"{where}.tool_call_id")
            else:
                name = str(message.get("name") or "")
            text = "".join(p["text"] for p in _text_parts(content, f"{where}.content"))
            result = {"functionResponse": {"name": name, "response": _tool_result(text)}}
            parts, gemini_role = [result], "user"
        else:
            raise InvalidRequestError(f"Unknown message role '{role}'.", param=f"{where}.role")
        if not parts:
            continue  # Gemini refuses contents without parts (an empty assistant turn, say)
        if contents and contents[-1]["role"] == gemini_role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": gemini_role, "parts": parts})
    return system, contents


def _function_call(call: dict[str, Any], where: str) -> dict[str, Any]:
    function = call["function"]
    args = _arguments(function.get("arguments"), f"{where}.function.arguments")
    part: dict[str, Any] = {"functionCall": {"name": function["name"], "args": args}}
    extra = call.get("extra_content")
    google = extra.get("google") if isinstance(extra, dict) else None
    signature = google.get("thought_signature") if isinstance(google, dict) else None
    if isinstance(signature, str) and signature:
        part["thoughtSignature"] = signature
    return part


def _text_parts(content: object, where: str) -> list[dict[str, Any]]:
    if content is None or content == "":
        return []
    if isinstance(content, str):
        return [{"text": content}]
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content if isinstance(content, list) else ()):
        if part.get("type") in ("text", "refusal"):
            text = part.get("text") if part.get("type") == "text" else part.get("refusal")
            if text:
                parts.append({"text": text})
        else:
            raise InvalidRequestError(f"Only text parts are allowed here, not '{part.get('type')}'.",
                                      param=f"{where}[{j}].type")
    return parts


def _user_parts(content: object, where: str, unsupported: Unsupported) -> list[dict[str, Any]]:
    if not isinstance(content, list):
        return _text_parts(content, where)
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        kind, at = part.get("type"), f"{where}[{j}]"
        if kind == "text":
            if part.get("text"):
                parts.append({"text": part["text"]})
        elif kind == "image_url":
            image = part.get("image_url") or {}
            parts.append(_media(str(image.get("url", "")), image.get("mime_type"), f"{at}.image_url.url"))
        elif kind == "input_audio":
            audio = part.get("input_audio") or {}
            parts.append({"inlineData": {"mimeType": f"audio/{audio.get('format', 'wav')}",
                                         "data": audio.get("data", "")}})
        elif kind == "file" and isinstance(part.get("file"), dict) and part["file"].get("file_data"):
            parts.append(_media(str(part["file"]["file_data"]), None, f"{at}.file.file_data"))
        else:
            unsupported(f"{at}.type", f"content parts of type '{kind}' are not translated.")
    return parts


def _media(url: str, mime_hint: object, where: str) -> dict[str, Any]:
    hint = mime_hint if isinstance(mime_hint, str) and mime_hint else None
    if url.startswith("data:"):
        header, sep, data = url[5:].partition(",")
        if not sep or not header.endswith(";base64"):
            raise InvalidRequestError("A data: URL must be base64-encoded (data:<type>;base64,<data>).",
                                      param=where)
        mime = header[:-7].split(";")[0] or hint
        if not mime:
            raise InvalidRequestError("The data: URL names no media type.", param=where)
        return {"inlineData": {"mimeType": mime, "data": data}}
    parsed = urlsplit(url)
    if parsed.scheme not in ("http", "https", "gs"):
        raise InvalidRequestError("Media must be a data: URL or an http(s):// or gs:// URL.", param=where)
    name = parsed.path.rsplit("/", 1)[-1]
    mime = hint or (_MIME_BY_EXT.get(name.rsplit(".", 1)[-1].lower()) if "." in name else None)
    if mime is None:
        raise InvalidRequestError(
            "Gemini needs the media type of a URL and it cannot be told from this one's file extension; "
            "send the image as a data: URL, or use a URL ending in .png, .jpg, .webp, .gif, .heic or .pdf.",
            param=where)
    return {"fileData": {"mimeType": mime, "fileUri": url}}


def _arguments(raw: object, where: str) -> dict[str, Any]:
    if raw is None or raw == "":
        return {}
    try:
        args = orjson.loads(raw) if isinstance(raw, str | bytes) else raw
    except orjson.JSONDecodeError:
        raise InvalidRequestError("Tool call arguments must be a JSON object.", param=where) from None
    if not isinstance(args, dict):
        raise InvalidRequestError("Tool call arguments must be a JSON object.", param=where)
    return args


def _tool_result(text: str) -> dict[str, Any]:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {"output": text}
    return value if isinstance(value, dict) else {"output": value}


# --- tools ---------------------------------------------------------------------------------------


def _functions(tools: list[dict[str, Any]], unsupported: Unsupported) -> list[dict[str, Any]]:
    declarations = []
    for k, tool in enumerate(tools):
        if tool.get("type") != "function":
            unsupported(f"tools[{k}].type", f"tools of type '{tool.get('type')}' are not translated (function "
                                            "tools only).")
            continue
        function = tool["function"]
        declaration: dict[str, Any] = {"name": function["name"]}
        if function.get("description"):
            declaration["description"] = function["description"]
        params = function.get("parameters")
        # Gemini refuses an OBJECT schema without properties: a function without arguments has none.
        if isinstance(params, dict) and (params.get("properties")
                                         or params.get("type") not in ("object", None)):
            declaration.update(schema_fields(params, f"tools[{k}].function.parameters",
                                             openapi="parameters", json_schema="parametersJsonSchema"))
        declarations.append(declaration)
    return declarations


def _tool_config(choice: object, unsupported: Unsupported) -> dict[str, Any] | None:
    if choice is None:
        return None
    if choice in ("auto", "none", "required"):
        return {"mode": {"auto": "AUTO", "none": "NONE", "required": "ANY"}[str(choice)]}
    if isinstance(choice, dict) and choice.get("type") == "function":
        name = (choice.get("function") or {}).get("name")
        if isinstance(name, str) and name:
            return {"mode": "ANY", "allowedFunctionNames": [name]}
    if isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        allowed = choice.get("allowed_tools") or {}
        names = [t["function"]["name"] for t in allowed.get("tools") or ()
                 if isinstance(t.get("function"), dict)]
        if allowed.get("mode") == "required":
            return {"mode": "ANY", "allowedFunctionNames": names}
    unsupported("tool_choice", "use 'auto', 'none', 'required' or one named function.")
    return None


# --- embeddings ----------------------------------------------------------------------------------


def embedding_inputs(body: dict[str, Any]) -> list[str]:
    raw = body.get("input")
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list) and raw and all(isinstance(item, str) for item in raw):
        return list(raw)
    raise InvalidRequestError("Gemini embeds text only: 'input' must be a string or a list of strings "
                              "(token arrays are not supported).", param="input")


def embeddings_body(body: dict[str, Any], model: str, *, vertex: bool) -> dict[str, Any]:
    inputs = embedding_inputs(body)
    dims = body.get("dimensions")
    if vertex:  # Vertex AI text-embedding models: the `predict` method
        out: dict[str, Any] = {"instances": [{"content": text} for text in inputs]}
        if dims:
            out["parameters"] = {"outputDimensionality": dims}
        return out
    requests = []
    for text in inputs:
        request: dict[str, Any] = {"model": f"models/{model}", "content": {"parts": [{"text": text}]}}
        if dims:
            request["outputDimensionality"] = dims
        requests.append(request)
    return {"requests": requests}
