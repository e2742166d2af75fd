"""Cache keys: a hash of the scope, the alias, the operation and a canonical form of every request
field that can change the answer.

Canonical form: the request body without the fields that cannot change the output (`user`,
`stream`, `stream_options`, `metadata`, `store`, and `model`, which is the alias, hashed apart),
top-level `null`s dropped (they mean "the default", as an absent field does), integral floats of
top-level parameters written as integers (`temperature: 1` ≡ `1.0`), and every object's keys sorted
at every depth. Key order and whitespace of the client's JSON therefore never matter; any other
change to a field that is kept changes the key. A streamed and a non-streamed request share a key.

Store keys: `prefix:{digest}:cache:<alias id>:<scope id>` for the entry and `prefix:{digest}:lock`
for the stampede lock. Both share the `{digest}` hash tag (one Cluster slot), and the alias and scope
ids are short hex hashes, so purge patterns need no escaping beyond the prefix.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

import orjson

from gateway.context import Principal

Scope = Literal["key", "team", "global"]

IGNORED_FIELDS = frozenset({"model", "user", "stream", "stream_options", "metadata", "store"})

_SORT = orjson.OPT_SORT_KEYS


def canonical(body: dict[str, Any]) -> bytes:
    """The bytes that identify the answer a request asks for (see the module docstring)."""
    kept: dict[str, Any] = {}
    for name, value in body.items():
        if name in IGNORED_FIELDS or value is None:
            continue
        if value.__class__ is float and value.is_integer() and abs(value) < 2**53:
            value = int(value)
        kept[name] = value
    try:
        return orjson.dumps(kept, option=_SORT)
    except TypeError:  # an integer past 64 bits: the slower encoder, just as canonical
        return json.dumps(kept, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def short_id(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()


def scope_id(scope: Scope, principal: Principal) -> str:
    """Whose entries these are. Key scope is the key's identity (its hash), never its name, which two
    keys may share. Team scope falls back to the key for a key without a team, so team-less keys never
    share entries."""
    if scope == "global":
        return "g"
    if scope == "team" and principal.team is not None:
        return team_scope_id(principal.team)
    return key_scope_id(principal.key_hash or principal.name)


def key_scope_id(identity: str) -> str:
    """`identity`: the key's SHA-256 (hex), or the anonymous caller's name."""
    return "k" + short_id(identity)


def team_scope_id(team: str) -> str:
    return "t" + short_id(team)


GLOBAL_SCOPE_ID = "g"


def digest(scope: str, alias: str, operation: str, canonical_body: bytes) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(scope.encode())
    h.update(b"\0")
    h.update(alias.encode())
    h.update(b"\0")
    h.update(operation.encode())
    h.update(b"\0")
    h.update(canonical_body)
    return h.hexdigest()


def entry_key(prefix: str, digest_hex: str, alias_id: str, scope: str) -> str:
    return f"{prefix}:{{{digest_hex}}}:cache:{alias_id}:{scope}"


def lock_key(prefix: str, digest_hex: str) -> str:
    return f"{prefix}:{{{digest_hex}}}:lock"


def purge_pattern(prefix: str, alias_id: str | None, scope: str | None) -> str:
    """A glob (Redis MATCH syntax) for the entries of an alias and/or a scope; None means any."""
    return f"{glob_escape(prefix)}:{{*}}:cache:{alias_id or '*'}:{scope or '*'}"


def glob_escape(text: str) -> str:
    out = []
    for ch in text:
        if ch in "*?[]\\":
            out.append("\\")
        out.append(ch)
    return "".join(out)
