"""Responses tools ↔ canonical function tools.

- `function` tools map one to one.
- `custom` tools (free-form text input, optionally constrained by a grammar) become function tools
  with one string parameter, `input`; a call's `{"input": ...}` arguments become the custom call's
  `input` on the way back. A grammar is put in the description, since no canonical field carries it.
- `namespace` tools are flattened: each inner tool becomes `<namespace>__<name>`, and a call to that
  name comes back as a call carrying `namespace` and the inner name.
- Built-in tools (`web_search`, `file_search`, `computer_use_preview`, `local_shell`, …) run inside
  OpenAI's platform; a translated request cannot carry them: a 400 naming `tools[i].type`, unless the
  caller asks to drop them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.errors import InvalidRequestError

NAMESPACE_SEPARATOR = "__"
_CUSTOM_PARAMETERS = {
    "type": "object",
    "properties": {"input": {"type": "string", "description": "The tool's whole input, as free-form text."}},
    "required": ["input"],
    "additionalProperties": False,
}


@dataclass(slots=True)
class ToolMap:
    """How canonical function names map back to Responses calls."""

    custom: set[str] = field(default_factory=set)
    namespaced: dict[str, tuple[str, str]] = field(default_factory=dict)

    def call_item(self, canonical_name: str, arguments: str) -> dict[str, Any]:
        """The Responses call item fields (type, name, namespace, arguments or input) of a canonical call."""
        namespace, name = self.namespaced.get(canonical_name, (None, canonical_name))
        item: dict[str, Any]
        if canonical_name in self.custom:
            item = {"type": "custom_tool_call", "name": name, "input": custom_input(arguments)}
        else:
            item = {"type": "function_call", "name": name, "arguments": arguments}
        if namespace is not None:
            item["namespace"] = namespace
        return item


def canonical_name(name: str, namespace: object) -> str:
    return f"{namespace}{NAMESPACE_SEPARATOR}{name}" if isinstance(namespace, str) and namespace else name


def custom_input(arguments: str) -> str:
    """A custom tool's text from its canonical arguments (`{"input": ...}`); a model that answered
    something else gets its raw arguments through rather than nothing."""
    try:
        parsed = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return arguments
    text = parsed.get("input") if isinstance(parsed, dict) else None
    return text if isinstance(text, str) else arguments


def convert_tools(tools: object, *, drop_builtin: bool) -> tuple[list[dict[str, Any]], ToolMap]:
    if tools is None:
        return [], ToolMap()
    if not isinstance(tools, list):
        raise _invalid("tools", "expected an array of tools")
    out: list[dict[str, Any]] = []
    names = ToolMap()
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise _invalid(where, "expected an object")
        kind = tool.get("type")
        if kind == "namespace":
            namespace = _name(tool, where)
            inner = tool.get("tools")
            if not isinstance(inner, list):
                raise _invalid(f"{where}.tools", "expected an array of tools")
            for j, member in enumerate(inner):
                spot = f"{where}.tools[{j}]"
                if not isinstance(member, dict) or member.get("type") not in ("function", "custom"):
                    raise _invalid(f"{spot}.type", "a namespace holds only 'function' and 'custom' tools")
                out.append(_function(member, spot, names, namespace))
        elif kind in ("function", "custom"):
            out.append(_function(tool, where, names, None))
        elif drop_builtin:
            continue
        else:
            raise InvalidRequestError(
                f"Invalid value for '{where}.type': tools of type '{kind}' run inside the OpenAI platform and "
                "cannot be sent to this model; remove the tool or use a model that serves the Responses API.",
                code="unsupported_tool_type", param=f"{where}.type")
    return out, names


def _function(tool: dict[str, Any], where: str, names: ToolMap, namespace: str | None) -> dict[str, Any]:
    name = _name(tool, where)
    full = canonical_name(name, namespace)
    function: dict[str, Any] = {"name": full}
    description = tool.get("description")
    if description is not None and not isinstance(description, str):
        raise _invalid(f"{where}.description", "expected a string")
    if tool["type"] == "custom":
        names.custom.add(full)
        grammar = _grammar(tool.get("format"), where)
        if grammar:
            description = f"{description}\n\n{grammar}" if description else grammar
        function["parameters"] = _CUSTOM_PARAMETERS
    else:
        parameters = tool.get("parameters")
        if parameters is not None:
            if not isinstance(parameters, dict):
                raise _invalid(f"{where}.parameters", "expected a JSON schema object")
            function["parameters"] = parameters
        strict = tool.get("strict")
        if strict is not None:
            if not isinstance(strict, bool):
                raise _invalid(f"{where}.strict", "expected a boolean")
            function["strict"] = strict
    if description:
        function["description"] = description
    if namespace is not None:
        names.namespaced[full] = (namespace, name)
    return {"type": "function", "function": function}


def _grammar(spec: object, where: str) -> str:
    if spec is None or (isinstance(spec, dict) and spec.get("type") == "text"):
        return ""
    if not isinstance(spec, dict) or spec.get("type") != "grammar" or not isinstance(spec.get("definition"), str):
        raise _invalid(f"{where}.format", "expected {'type': 'text'} or {'type': 'grammar', 'syntax', 'definition'}")
    return f"The input must follow this {spec.get('syntax', 'lark')} grammar:\n{spec['definition']}"


def convert_tool_choice(choice: object, names: ToolMap) -> object:
    if choice is None or choice in ("auto", "none", "required"):
        return choice
    if not isinstance(choice, dict):
        raise _invalid("tool_choice", "expected 'auto', 'none', 'required' or an object")
    kind = choice.get("type")
    if kind in ("function", "custom"):
        return {"type": "function", "function": {"name": canonical_name(_name(choice, "tool_choice"),
                                                                        choice.get("namespace"))}}
    if kind == "allowed_tools":
        mode = choice.get("mode")
        tools = choice.get("tools")
        if mode not in ("auto", "required") or not isinstance(tools, list):
            raise _invalid("tool_choice", "allowed_tools needs mode 'auto' or 'required' and a tools array")
        allowed = []
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict) or tool.get("type") not in ("function", "custom"):
                raise _invalid(f"tool_choice.tools[{i}].type", "only function and custom tools can be allowed here")
            name = canonical_name(_name(tool, f"tool_choice.tools[{i}]"), tool.get("namespace"))
            allowed.append({"type": "function", "function": {"name": name}})
        return {"type": "allowed_tools", "allowed_tools": {"mode": mode, "tools": allowed}}
    raise InvalidRequestError(f"Invalid value for 'tool_choice.type': '{kind}' names a tool this model cannot run.",
                              code="unsupported_tool_type", param="tool_choice.type")


def _name(tool: dict[str, Any], where: str) -> str:
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidRequestError(f"Missing required parameter: '{where}.name'.",
                                  code="missing_required_parameter", param=f"{where}.name")
    return name


def _invalid(param: str, why: str) -> InvalidRequestError:
    return InvalidRequestError(f"Invalid value for '{param}': {why}.", code="invalid_value", param=param)
