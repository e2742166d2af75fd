"""Model names that are no alias, routed by `model_patterns` (Claude Code sends provider model names)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.config import ConfigError, parse_config
from gateway.routing.table import RESOLVED_NAMES, RouteTable

CONFIG = """
providers: {mock: {type: mock}}
models:
  claude: {deployments: [{provider: mock, model: echo}]}
  claude-fast: {deployments: [{provider: mock, model: echo}]}
  claude-haiku-4-5: {deployments: [{provider: mock, model: echo}]}
model_patterns:
  "claude-haiku-*": claude-fast
  "claude-*": claude
"""


def table() -> RouteTable:
    return RouteTable(parse_config(CONFIG, env={}))


def test_patterns_apply_in_order_after_exact_names() -> None:
    t = table()
    assert t.get("claude-haiku-4-5") is not None  # an exact alias is never a pattern's
    assert t.resolve("claude-haiku-4-5") == "claude-haiku-4-5"
    assert t.resolve("claude-haiku-3-5-20241022") == "claude-fast"
    assert t.resolve("claude-sonnet-4-5-20250929") == "claude"
    assert t.resolve("gpt-4o") is None


def test_matching_is_case_sensitive_and_whole_name() -> None:
    t = table()
    assert t.resolve("CLAUDE-sonnet") is None
    assert t.resolve("x-claude-sonnet") is None


@given(st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=50))
def test_remembered_names_stay_bounded_and_answers_stay_right(names: list[str]) -> None:
    t = table()
    for name in names * 2:
        assert t.resolve(name) == ("claude-fast" if name.startswith("claude-haiku-") else
                                   "claude" if name.startswith("claude-") else None)
    assert len(t._resolved) <= RESOLVED_NAMES


def test_a_pattern_to_an_unknown_alias_is_refused_with_its_path() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(CONFIG + '  "gpt-*": nope\n', env={})
    assert any("model_patterns.gpt-*: unknown model alias 'nope'" in p for p in info.value.problems)
