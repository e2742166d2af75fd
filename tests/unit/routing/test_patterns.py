"""resolve_alias: exact alias names first, then glob patterns in config order."""

from __future__ import annotations

import pytest

from gateway.routing.patterns import resolve_alias

EXACT = {"claude", "claude-sonnet-4-5"}
PATTERNS = [("claude-sonnet-*", "claude"), ("claude-haiku-*", "fast"), ("claude-*", "fallback")]


@pytest.mark.parametrize(("name", "alias"), [
    ("claude-sonnet-4-5", "claude-sonnet-4-5"),  # an exact name wins over a pattern that also matches
    ("claude-sonnet-5", "claude"),  # what Claude Code sends for --model sonnet
    ("claude-haiku-4-5-20251001", "fast"),  # Claude Code's haiku
    ("claude-opus-4-8", "fallback"),  # the first matching pattern in config order
    ("gpt-4o", None),
    ("Claude-Sonnet-5", None),  # case-sensitive, as alias names are
])
def test_resolve(name: str, alias: str | None) -> None:
    assert resolve_alias(name, EXACT, PATTERNS) == alias


def test_the_order_of_patterns_decides() -> None:
    assert resolve_alias("claude-haiku-4-5", set(), [("claude-*", "a"), ("claude-haiku-*", "b")]) == "a"


def test_character_classes_and_single_characters() -> None:
    patterns = [("claude-[sh]*-4-?", "four")]
    assert resolve_alias("claude-sonnet-4-5", (), patterns) == "four"
    assert resolve_alias("claude-opus-4-5", (), patterns) is None
