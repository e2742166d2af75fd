"""Model names an alias answers to besides its own: glob patterns such as `claude-sonnet-*`, so a
client that sends provider model names (Claude Code sends `claude-sonnet-…` and `claude-haiku-…`)
reaches an alias without any change on its side."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from fnmatch import fnmatchcase


def resolve_alias(name: str, exact: Collection[str], patterns: Sequence[tuple[str, str]]) -> str | None:
    """The alias for a requested model name: the name itself when it is an alias, else the alias of
    the first `(glob pattern, alias)` that matches, in config order; None when nothing does.
    Matching is case-sensitive, as alias names are; `*`, `?` and `[...]` are fnmatch's."""
    if name in exact:
        return name
    for pattern, alias in patterns:
        if fnmatchcase(name, pattern):
            return alias
    return None
