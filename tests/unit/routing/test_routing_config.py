from __future__ import annotations

import pytest

from gateway.config import ConfigError, parse_config

BASE = """
providers: {p: {type: mock}}
models:
  small:
    strategy: latency
    deployments: [{provider: p, model: s, cost_per_mtok: 0.3}]
    context_window_fallbacks: [big]
    cooldown: {failures: 2, window: 30s, base: 500ms, max: 1m}
    hedge: {enabled: true, after: HEDGE}
    wait_for_recovery: 2s
  big:
    deployments: [{provider: p, model: b}]
"""


def test_routing_fields_parse() -> None:
    config = parse_config(BASE.replace("HEDGE", "p95"))
    small = config.models["small"]
    assert small.strategy == "latency" and small.hedge.after == "p95"
    assert (small.cooldown.failures, small.cooldown.window, small.cooldown.base, small.cooldown.max) == (2, 30, 0.5, 60)
    assert small.wait_for_recovery == 2.0 and small.deployments[0].cost_per_mtok == 0.3
    assert parse_config(BASE.replace("HEDGE", "250ms")).models["small"].hedge.after == 0.25


def test_bad_routing_fields_are_refused_with_their_path() -> None:
    with pytest.raises(ConfigError) as bad:
        parse_config(BASE.replace("HEDGE", "p95").replace("[big]", "[nowhere]").replace("latency", "fastest"))
    text = "\n".join(bad.value.problems)
    assert "models.small.strategy" in text
    with pytest.raises(ConfigError) as unknown:
        parse_config(BASE.replace("HEDGE", "p95").replace("[big]", "[nowhere]"))
    assert unknown.value.problems == ["models.small.context_window_fallbacks[0]: unknown model alias 'nowhere'"]
