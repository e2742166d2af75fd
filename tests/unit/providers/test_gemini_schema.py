"""JSON schemas to Gemini: the OpenAPI subset when it can hold the schema, JSON Schema as sent when the
schema refers to itself (a recursive `$ref`), for tool parameters and structured output alike."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.providers.gemini import GeminiAdapter
from gateway.providers.gemini_schema import schema_fields
from gateway.schemas import Operation, validate_request

TREE = {"$defs": {"Node": {"type": "object", "properties": {
    "label": {"type": "string"}, "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}}}}},
    "type": "object", "properties": {"root": {"$ref": "#/$defs/Node"}}}
# A cycle through two definitions, and the root referring to itself.
MUTUAL = {"definitions": {"A": {"type": "object", "properties": {"b": {"$ref": "#/definitions/B"}}},
                          "B": {"type": "object", "properties": {"a": {"$ref": "#/definitions/A"}}}},
          "type": "object", "properties": {"a": {"$ref": "#/definitions/A"}}}
SELF = {"type": "object", "properties": {"name": {"type": "string"}, "next": {"$ref": "#"}}}
# References, but no cycle: inlined into the OpenAPI subset.
CHAIN = {"$defs": {"Leaf": {"type": "string"}, "Pair": {"type": "object", "properties": {
    "left": {"$ref": "#/$defs/Leaf"}, "right": {"$ref": "#/$defs/Leaf"}}}},
    "type": "object", "properties": {"pair": {"$ref": "#/$defs/Pair"}}}


@pytest.mark.parametrize("schema", [TREE, MUTUAL, SELF], ids=["tree", "mutual", "self"])
def test_recursive_schemas_go_as_json_schema(schema: dict[str, Any]) -> None:
    assert schema_fields(schema, "p", openapi="parameters", json_schema="parametersJsonSchema") == {
        "parametersJsonSchema": schema}


def test_references_without_a_cycle_are_inlined() -> None:
    fields = schema_fields(CHAIN, "p", openapi="parameters", json_schema="parametersJsonSchema")
    assert fields == {"parameters": {"type": "OBJECT", "properties": {"pair": {"type": "OBJECT", "properties": {
        "left": {"type": "STRING"}, "right": {"type": "STRING"}}}}}}


def wire(body: dict[str, Any]) -> dict[str, Any]:
    body = {"model": "g", "messages": [{"role": "user", "content": "Hi"}], **body}
    validate_request(Operation.CHAT, body)
    request = GeminiAdapter().build_request(Operation.CHAT, body, "gemini-2.5-flash", stream=False)
    result: dict[str, Any] = orjson.loads(request.body)
    return result


def test_a_tool_with_a_recursive_schema_is_relayed() -> None:
    tools = [{"type": "function", "function": {"name": "record", "parameters": TREE}},
             {"type": "function", "function": {"name": "pair", "parameters": CHAIN}}]
    declarations = wire({"tools": tools})["tools"][0]["functionDeclarations"]
    assert declarations[0] == {"name": "record", "parametersJsonSchema": TREE}
    assert set(declarations[1]) == {"name", "parameters"}


def test_a_recursive_response_format_is_relayed() -> None:
    config = wire({"response_format": {"type": "json_schema", "json_schema": {"name": "t", "schema": TREE}}})[
        "generationConfig"]
    assert config == {"responseMimeType": "application/json", "responseJsonSchema": TREE}
