"""MkDocs hook: the configuration field reference, generated from the pydantic models in
gateway/config.py at build time, so the page cannot drift from the code.

A field's description is its `Field(description=...)`, else the comment lines right above it in the
model's source (the style config.py uses); a model's docstring introduces its table.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, SecretStr
from pydantic_core import PydanticUndefined

from gateway import config as config_module

MARKER = "<!-- config-reference -->"
# Meanings for fields whose model gives none (no description, no comment), as `Model.field`.
NOTES: dict[str, str] = yaml.safe_load((Path(__file__).parent / "config-notes.yaml").read_text(encoding="utf-8"))
# Each top-level section's concept page (relative to configuration-reference.md).
SECTION_PAGES = {
    "server": "deployment.md", "store": "deployment.md#redis-topology", "auth": "keys-and-limits.md",
    "providers": "providers.md", "models": "routing.md", "model_patterns": "routing.md",
    "accounting": "accounting.md", "cache": "cache.md",
    "limits_defaults": "keys-and-limits.md", "logging": "observability.md", "metrics": "observability.md",
    "reload": "configuration.md#hot-reload",
}


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if MARKER in markdown:
        return markdown.replace(MARKER, render())
    return markdown


def render() -> str:
    """The whole reference: one table per top-level section of the routing YAML."""
    out: list[str] = []
    for name, field in config_module.GatewayConfig.model_fields.items():
        page = SECTION_PAGES.get(name)
        out.append(f"## `{name}`\n")
        if page:
            out.append(f"Explained in [{page.split('#')[0].removesuffix('.md').replace('-', ' ')}]({page}).\n")
        comment = _comments(config_module.GatewayConfig).get(name) or _note(config_module.GatewayConfig, name)
        rows = list(_rows(name, field.annotation, field, comment))
        out.append("| field | type | default | meaning |\n|---|---|---|---|")
        out.extend(f"| `{path}` | {kind} | {default} | {text} |" for path, kind, default, text in rows)
        out.append("")
    return "\n".join(out)


def _rows(path: str, annotation: Any, field: Any, comment: str = "") -> Iterator[tuple[str, str, str, str]]:
    models = _models_in(annotation)
    text = _describe(field) or comment
    if not models:
        kind = "duration" if _is_duration(field.metadata) else _type_name(annotation)
        yield path, kind, _default(field, seconds=kind == "duration"), text
        return
    container = _container_suffix(annotation)
    if len(models) > 1:  # the providers union: the fields they share, then each `type`'s own
        shared = set.intersection(*(set(m.model_fields) for m in models)) - {"type"}
        first = models[0]
        yield path, _type_name(annotation), _default(field), text
        yield from _model_rows(f"{path}{container}", first, keep=shared)
        for model in models:
            tag = typing.get_args(model.model_fields["type"].annotation)[0]
            yield f"{path}{container}.type", f"`{tag}`", "required", _docstring(model) or _note(model, "type")
            yield from _model_rows(f"{path}{container}", model, keep=set(model.model_fields) - shared - {"type"},
                                   label=f" (type: {tag})")
        return
    (model,) = models
    intro = text or _docstring(model)
    if container or intro:
        yield path, _type_name(annotation), _default(field), intro
    yield from _model_rows(f"{path}{container}", model)


def _model_rows(prefix: str, model: type[BaseModel], keep: set[str] | None = None,
                label: str = "") -> Iterator[tuple[str, str, str, str]]:
    comments: dict[str, str] = {}
    for cls in reversed(model.__mro__):
        if isinstance(cls, type) and issubclass(cls, BaseModel) and cls.__module__ == config_module.__name__:
            comments.update(_comments(cls))
    for name, field in model.model_fields.items():
        if keep is not None and name not in keep:
            continue
        comment = comments.get(name) or _note(model, name)
        for path, kind, default, text in _rows(f"{prefix}.{name}", field.annotation, field, comment):
            yield path + label, kind, default, text


def _note(model: type[BaseModel], name: str) -> str:
    for cls in model.__mro__:
        note = NOTES.get(f"{cls.__name__}.{name}")
        if note:
            return note
    return ""


def _is_duration(metadata: list[Any]) -> bool:
    return any(getattr(m, "func", None) is config_module.parse_duration for m in metadata)


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = []
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _models_in(args[0])
    if origin is dict:
        return _models_in(args[1])
    if origin is list:
        return _models_in(args[0])
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            found += _models_in(arg)
    return found


def _container_suffix(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is dict:
        value = typing.get_args(annotation)[1]
        return ".<name>" if _models_in(value) else ""
    if origin is list:
        return "[]"
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            suffix = _container_suffix(arg)
            if suffix:
                return suffix
    return ""


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return "duration" if _is_duration(list(args[1:])) else _type_name(args[0])
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args if a is not type(None))
    if origin is list:
        return f"list of {_type_name(args[0])}"
    if origin is dict:
        return f"map of {_type_name(args[1])}"
    if annotation is SecretStr:
        return "secret string"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "section"
    return getattr(annotation, "__name__", str(annotation))


def _default(field: Any, *, seconds: bool = False) -> str:
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        value = field.default_factory()
        if isinstance(value, BaseModel):
            return ""
        return f"`{value!r}`" if value not in ({}, []) else "empty"
    value = field.default
    if value is None or value is PydanticUndefined:
        return "none"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str):
        return f"`{value}`" if value else '`""`'
    return f"`{value}s`" if seconds else f"`{value}`"


def _describe(field: Any) -> str:
    return " ".join((field.description or "").split()).replace("|", "\\|")


def _docstring(model: type[BaseModel]) -> str:
    doc = model.__doc__ or ""
    if doc.startswith(("Usage docs", "!!!")) or model.__doc__ == BaseModel.__doc__:
        return ""
    return " ".join(doc.split()).replace("|", "\\|")


_FIELD_LINE = re.compile(r"^\s+(\w+)\s*:")


def _comments(model: type[BaseModel]) -> dict[str, str]:
    """The comment lines right above each field in the class body (section markers skipped)."""
    try:
        lines = inspect.getsource(model).splitlines()
    except (OSError, TypeError):
        return {}
    found: dict[str, str] = {}
    pending: list[str] = []
    for line in lines[1:]:
        stripped = line.strip()
        if stripped.startswith("#"):
            text = stripped.lstrip("#").strip()
            if not text.startswith("---"):
                pending.append(text)
            continue
        match = _FIELD_LINE.match(line)
        if match and pending:
            found[match.group(1)] = " ".join(pending).replace("|", "\\|")
        pending = []
    return found
