"""Canonical cache keys: key order and whitespace never matter; any semantic change always does."""

from __future__ import annotations

import json
import random
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.cache.keys import (
    canonical,
    digest,
    entry_key,
    key_scope_id,
    lock_key,
    purge_pattern,
    scope_id,
    team_scope_id,
)
from gateway.context import Principal

text = st.text(max_size=20)
scalars = st.none() | st.booleans() | st.integers(-1000, 1000) | text | \
    st.floats(allow_nan=False, allow_infinity=False, width=32)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4), max_leaves=12)
messages = st.lists(st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant"]),
                                           "content": text}), min_size=1, max_size=4)
requests = st.fixed_dictionaries(
    {"model": st.just("gpt"), "messages": messages},
    optional={"temperature": st.floats(0, 2, allow_nan=False), "top_p": st.floats(0, 1, allow_nan=False),
              "max_tokens": st.integers(1, 4096), "seed": st.integers(), "n": st.integers(1, 4),
              "stop": st.lists(text, max_size=4), "tools": st.lists(st.dictionaries(text, json_values), max_size=2),
              "response_format": st.dictionaries(text, json_values, max_size=3)},
)


def shuffled(value: Any, rng: random.Random) -> Any:
    """The same JSON value with every object's keys in another order."""
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {k: shuffled(v, rng) for k, v in items}
    if isinstance(value, list):
        return [shuffled(v, rng) for v in value]
    return value


@settings(max_examples=100)
@given(requests, st.randoms(use_true_random=False), st.integers(0, 4))
def test_key_order_and_whitespace_never_matter(body: dict[str, Any], rng: random.Random, indent: int) -> None:
    reordered = shuffled(body, rng)
    # Through the wire and back, with arbitrary whitespace: what the gateway sees after parsing.
    respaced = orjson.loads(json.dumps(reordered, indent=indent or None, separators=(" , ", " :  ")))
    compact = orjson.loads(json.dumps(body, separators=(",", ":")))
    assert canonical(respaced) == canonical(compact)


def _mutations(body: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    first = dict(body["messages"][0])
    out.append({**body, "messages": [{**first, "content": first["content"] + "x"}, *body["messages"][1:]]})
    out.append({**body, "messages": [*body["messages"], {"role": "user", "content": ""}]})
    out.append({**body, "messages": list(reversed(body["messages"]))} if len(body["messages"]) > 1
               and body["messages"][0] != body["messages"][-1] else {**body, "n": (body.get("n") or 1) + 7})
    out.append({**body, "temperature": (body.get("temperature") or 0) + 0.5})
    out.append({**body, "max_tokens": (body.get("max_tokens") or 1) + 1})
    out.append({**body, "seed": (body.get("seed") or 0) + 1})
    out.append({**body, "stop": [*body.get("stop", []), "END"]})
    out.append({**body, "tools": [*body.get("tools", []), {"type": "function"}]})
    out.append({**body, "response_format": {"type": "json_object", "x": len(str(body.get("response_format")))}})
    out.append({**body, "unknown_provider_param": True})
    return out


@settings(max_examples=100)
@given(requests)
def test_any_semantic_change_changes_the_key(body: dict[str, Any]) -> None:
    base = canonical(body)
    for changed in _mutations(body):
        assert canonical(changed) != base, changed


@given(requests, st.booleans(), st.text(max_size=8), st.dictionaries(text, text, max_size=2))
def test_fields_that_do_not_change_the_answer_are_left_out(body: dict[str, Any], stream: bool, user: str,
                                                           metadata: dict[str, str]) -> None:
    variant = {**body, "stream": stream, "stream_options": {"include_usage": True}, "user": user,
               "metadata": metadata, "model": "another-alias"}
    assert canonical(variant) == canonical(body)


def test_null_and_integral_floats_mean_the_same() -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], "temperature": 1}
    assert canonical({**body, "temperature": 1.0, "top_p": None}) == canonical(body)
    assert canonical({**body, "temperature": 1.5}) != canonical(body)
    # Strings are never normalised: "1" is not 1.
    assert canonical({**body, "temperature": "1"}) != canonical(body)


def test_scope_alias_and_operation_are_part_of_the_digest() -> None:
    body = canonical({"messages": [{"role": "user", "content": "hi"}]})
    base = digest("k1", "gpt", "chat", body)
    assert digest("k2", "gpt", "chat", body) != base
    assert digest("k1", "gpt2", "chat", body) != base
    assert digest("k1", "gpt", "completions", body) != base
    # The separators keep the parts apart.
    assert digest("k1g", "pt", "chat", body) != base


def test_scopes() -> None:
    alice = Principal(name="alice", team="search")
    bob = Principal(name="bob", team="search")
    carol = Principal(name="carol")
    assert scope_id("key", alice) != scope_id("key", bob)
    assert scope_id("team", alice) == scope_id("team", bob) == team_scope_id("search")
    # No team: team scope falls back to the key, never to a shared bucket.
    assert scope_id("team", carol) == key_scope_id("carol") != scope_id("team", Principal(name="dave"))
    assert scope_id("global", alice) == scope_id("global", carol) == "g"


def test_key_scope_is_the_keys_identity_not_its_name() -> None:
    red = Principal(name="app", team="red", key_hash="a" * 64)
    blue = Principal(name="app", team="blue", key_hash="b" * 64)
    assert scope_id("key", red) != scope_id("key", blue)
    renamed = Principal(name="renamed", key_hash="a" * 64)
    assert scope_id("key", red) == key_scope_id("a" * 64) == scope_id("key", renamed)


def test_store_keys_share_a_hash_tag_and_purge_patterns_match_them() -> None:
    import fnmatch

    entry = entry_key("gw", "abc", "a1", "k2")
    assert entry == "gw:{abc}:cache:a1:k2" and lock_key("gw", "abc") == "gw:{abc}:lock"
    assert fnmatch.fnmatchcase(entry, purge_pattern("gw", "a1", None))
    assert fnmatch.fnmatchcase(entry, purge_pattern("gw", None, "k2"))
    assert not fnmatch.fnmatchcase(entry, purge_pattern("gw", "a2", None))
    assert not fnmatch.fnmatchcase(lock_key("gw", "abc"), purge_pattern("gw", None, None))
    assert purge_pattern("g*w", None, None).startswith("g\\*w:")
