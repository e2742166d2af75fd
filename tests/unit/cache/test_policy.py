"""Cache config: the top-level defaults, an alias's overrides, and validation."""

from __future__ import annotations

import pytest

from gateway.cache.policy import policies
from gateway.config import ConfigError, parse_config

BASE = """
providers: {up: {type: mock}}
models:
  a: {deployments: [{provider: up, model: echo}]}
  b: {deployments: [{provider: up, model: echo}], cache: {ttl: 5m}}
  c: {deployments: [{provider: up, model: echo}], cache: {enabled: false}}
"""


def test_no_cache_section_caches_only_aliases_that_ask() -> None:
    found = policies(parse_config(BASE))
    assert set(found) == {"b"}
    assert found["b"].ttl == 300 and found["b"].scope == "key" and found["b"].max_entry_bytes == 1024 * 1024


def test_alias_fields_override_the_defaults() -> None:
    found = policies(parse_config(BASE + "cache: {ttl: 1h, scope: team, lock_wait: 2s}\n"))
    assert set(found) == {"a", "b"}
    assert (found["a"].ttl, found["a"].scope, found["a"].lock_ms) == (3600, "team", 2000)
    assert (found["b"].ttl, found["b"].scope) == (300, "team")


@pytest.mark.parametrize(("section", "problem"), [
    ("cache: {ttl: 0}", "cache.ttl"),
    ("cache: {scope: world}", "cache.scope"),
    ("cache: {max_entry_bytes: 0}", "cache.max_entry_bytes"),
    ("cache: {ttls: 1h}", "cache.ttls: unknown field"),
])
def test_bad_cache_config_is_refused_with_its_path(section: str, problem: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(BASE + section + "\n")
    assert any(p.startswith(problem) for p in raised.value.problems), raised.value.problems
