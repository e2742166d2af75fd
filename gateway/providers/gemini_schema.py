"""JSON Schema → what Gemini takes for function parameters and structured output.

Gemini's `parameters` / `responseSchema` are an OpenAPI 3.0 subset: `type` upper-cased, `["x",
"null"]` → nullable, `const` → enum, local `$ref`s inlined, unsupported keywords
(`additionalProperties`, `$schema`, `strict`, …) dropped. A schema that subset cannot express (a
recursive `$ref`, as a self-referencing pydantic model produces) goes as JSON Schema instead, in
`parametersJsonSchema` / `responseJsonSchema`, which Gemini accepts as is.
"""

from __future__ import annotations

from typing import Any

from gateway.errors import InvalidRequestError

_SCHEMA_KEYS = frozenset({"title", "description", "nullable", "enum", "maxItems", "minItems", "required",
                          "minProperties", "maxProperties", "minLength", "maxLength", "pattern",
                          "example", "propertyOrdering", "default", "minimum", "maximum"})
_SCHEMA_FORMATS = frozenset({"enum", "date-time", "int32", "int64", "float", "double"})

# Beyond this depth a schema is taken as too deep for Gemini's own schema format.
_MAX_DEPTH = 24


def schema_fields(node: dict[str, Any], where: str, *, openapi: str, json_schema: str) -> dict[str, Any]:
    """`{openapi: <Gemini schema>}`, or `{json_schema: <the schema as sent>}` when the schema refers to
    itself (its `$ref`s form a cycle) and the OpenAPI subset cannot hold it."""
    if _recursive(node):
        return {json_schema: node}
    return {openapi: to_schema(node, where)}


def _recursive(node: dict[str, Any]) -> bool:
    if "#" in _refs(node):  # the root refers to itself
        return True
    defs = {**(node.get("definitions") or {}), **(node.get("$defs") or {})}
    edges = {name: _refs(target) for name, target in defs.items()}
    visiting: set[str] = set()
    done: set[str] = set()

    def cycles(name: str) -> bool:
        if name in done:
            return False
        if name in visiting:
            return True
        visiting.add(name)
        found = any(cycles(nxt) for nxt in edges.get(name, ()))
        visiting.discard(name)
        done.add(name)
        return found

    return any(cycles(name) for name in edges)


def _refs(node: object) -> set[str]:
    if isinstance(node, dict):
        found = {ref.rsplit("/", 1)[-1] for ref in [node.get("$ref")] if isinstance(ref, str)}
        for value in node.values():
            found |= _refs(value)
        return found
    if isinstance(node, list):
        return set().union(*(_refs(item) for item in node)) if node else set()
    return set()


def to_schema(node: dict[str, Any], where: str) -> dict[str, Any]:
    """A JSON Schema → Gemini's Schema object (OpenAPI 3.0 subset)."""
    defs = {**(node.get("definitions") or {}), **(node.get("$defs") or {})}
    return _schema(node, defs, where, 0)


def _schema(node: object, defs: dict[str, Any], where: str, depth: int) -> dict[str, Any]:
    if not isinstance(node, dict):
        return {}
    if depth > _MAX_DEPTH:
        raise InvalidRequestError("The schema nests too deeply (recursive $ref?) for Gemini.", param=where)
    ref = node.get("$ref")
    if isinstance(ref, str):
        target = defs.get(ref.rsplit("/", 1)[-1]) if ref.startswith(("#/$defs/", "#/definitions/")) else None
        if not isinstance(target, dict):
            raise InvalidRequestError(f"Cannot resolve '$ref': {ref}.", param=where)
        return _schema({**target, **{k: v for k, v in node.items() if k != "$ref"}}, defs, where, depth + 1)
    out: dict[str, Any] = {}
    kind = node.get("type")
    if isinstance(kind, list):
        types = [t for t in kind if t != "null"]
        if len(types) < len(kind):
            out["nullable"] = True
        if len(types) > 1:
            out["anyOf"] = [{"type": str(t).upper()} for t in types]
        kind = types[0] if len(types) == 1 else None
    if isinstance(kind, str):
        if kind == "null":
            out["nullable"] = True
        else:
            out["type"] = kind.upper()
    for key, value in node.items():
        if key in _SCHEMA_KEYS or (key == "format" and value in _SCHEMA_FORMATS):
            out[key] = value
        elif key == "const":
            out["enum"] = [value]
        elif key == "properties" and isinstance(value, dict):
            out[key] = {name: _schema(sub, defs, where, depth + 1) for name, sub in value.items()}
        elif key == "items":
            out[key] = _schema(value, defs, where, depth + 1)
        elif key in ("anyOf", "oneOf") and isinstance(value, list):
            variants = [v for v in value if v != {"type": "null"}]
            if len(variants) < len(value):
                out["nullable"] = True
            if len(variants) == 1:
                out.update({k: v for k, v in _schema(variants[0], defs, where, depth + 1).items()
                            if k not in out})
            else:
                out["anyOf"] = [_schema(v, defs, where, depth + 1) for v in variants]
    return out
