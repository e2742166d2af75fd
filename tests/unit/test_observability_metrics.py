from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram

from gateway.cli import _multiprocess_metrics_dir
from gateway.metrics import OVERHEAD_BUCKETS, Metrics


def test_deployment_info_follows_the_config_and_starts_circuits_closed() -> None:
    m = Metrics()
    m.set_deployments({("gpt", "openai/gpt", "openai"), ("gpt", "azure/gpt", "azure")})
    m.set_circuit("azure/gpt", 2)
    m.set_deployments({("gpt", "azure/gpt", "azure"), ("claude", "anthropic/c", "anthropic")})
    get = m.registry.get_sample_value
    assert get("gateway_deployment_info", {"alias": "gpt", "deployment": "openai/gpt", "provider": "openai"}) is None
    assert get("gateway_deployment_info", {"alias": "claude", "deployment": "anthropic/c",
                                           "provider": "anthropic"}) == 1
    assert get("gateway_routing_circuit_state", {"deployment": "anthropic/c"}) == 0
    assert get("gateway_routing_circuit_state", {"deployment": "azure/gpt"}) == 2  # a reload keeps the state


def test_team_series_name_keys_only_when_opted_in() -> None:
    m = Metrics()
    get = m.registry.get_sample_value
    m.team_series("app", "search").prompt_tokens.inc(3)
    m.team_series("solo", None).cost.inc(0.5)
    assert get("gateway_team_tokens_total", {"team": "search", "key": "", "direction": "prompt"}) == 3
    assert get("gateway_team_cost_usd_total", {"team": "", "key": ""}) == 0.5
    m.set_key_labels(True)
    m.team_series("app", "search").prompt_tokens.inc(2)
    assert get("gateway_team_tokens_total", {"team": "search", "key": "app", "direction": "prompt"}) == 2
    assert get("gateway_team_tokens_total", {"team": "search", "key": "", "direction": "prompt"}) == 3


def test_a_call_series_exists_once_a_call_updates_it() -> None:
    m = Metrics()
    get = m.registry.get_sample_value
    series = m.call_series("gpt", "openai/gpt", False)
    assert series is m.call_series("gpt", "openai/gpt", False)
    series.duration.observe(0.2)
    series.prompt_tokens.inc(7)
    series.prompt_tokens.inc(1)
    assert get("gateway_request_duration_seconds_count", {"alias": "gpt", "stream": "false"}) == 1
    assert get("gateway_tokens_total", {"alias": "gpt", "deployment": "openai/gpt", "direction": "prompt"}) == 8
    # Series no call has updated are not exported (as with Metrics.child).
    assert get("gateway_time_to_first_token_seconds_count", {"alias": "gpt", "deployment": "openai/gpt"}) is None
    assert get("gateway_tokens_total", {"alias": "gpt", "deployment": "openai/gpt", "direction": "completion"}) is None
    assert not hasattr(series, "no_such_series")


def test_series_exist_before_the_first_event() -> None:
    text = Metrics().exposition().decode()
    assert 'gateway_store_errors_total{operation="settle"} 0.0' in text
    assert 'gateway_config_reloads_total{result="failure"} 0.0' in text


def test_serve_makes_a_fresh_multiprocess_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")  # restored (unset) after the test
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    made = _multiprocess_metrics_dir()
    try:
        assert made is not None and os.path.isdir(made) and not os.listdir(made)
        assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == made
    finally:
        if made:
            os.rmdir(made)


def test_serve_empties_an_operator_chosen_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "counter_1.db").write_bytes(b"old")
    (tmp_path / "keep.txt").write_text("not ours")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    assert _multiprocess_metrics_dir() is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]



# --- tallies: the request path's updates, added to their series whenever the registry is read ---

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _samples(registry: CollectorRegistry, name: str) -> Samples:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in registry.collect() if family.name == name
            for s in family.samples if not s.name.endswith("_created")}


amounts = st.one_of(st.sampled_from([*OVERHEAD_BUCKETS, 0.0, -1.0, 1e9]),
                    st.floats(min_value=-10, max_value=10, allow_nan=False))


@given(st.lists(amounts, max_size=40), st.integers(min_value=0, max_value=40))
def test_a_histogram_tally_reads_as_observing_each_value(values: list[float], read_at: int) -> None:
    m = Metrics()
    reference = CollectorRegistry()
    direct = Histogram("gateway_overhead_seconds", "", ["alias"], buckets=OVERHEAD_BUCKETS, registry=reference)
    for i, value in enumerate(values):
        if i == read_at:  # a scrape in between: it reads the tallies and leaves them counting
            _samples(m.registry, "gateway_overhead_seconds")
        m.child(m.overhead_seconds, "a").observe(value)
        direct.labels("a").observe(value)
    got, want = _samples(m.registry, "gateway_overhead_seconds"), _samples(reference, "gateway_overhead_seconds")
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert got[key] == pytest.approx(value), key


@given(st.lists(st.tuples(st.sampled_from(["inc", "dec", "set", "read"]),
                          st.floats(min_value=0, max_value=1e6, allow_nan=False)), max_size=30))
def test_counter_and_gauge_tallies_read_as_direct_updates(steps: list[tuple[str, float]]) -> None:
    m = Metrics()
    counter, gauge = m.child(m.tokens, "a", "d", "prompt"), m.child(m.in_flight)
    total, level = 0.0, 0.0
    for op, amount in steps:
        if op == "read":  # a scrape in between: it reads the tallies and leaves them counting
            _samples(m.registry, "gateway_in_flight_requests")
            continue
        if op == "inc":
            counter.inc(amount)
            total += amount
        getattr(gauge, op)(amount)
        level = amount if op == "set" else level + amount if op == "inc" else level - amount
    get = m.registry.get_sample_value
    assert get("gateway_tokens_total", {"alias": "a", "deployment": "d", "direction": "prompt"}) == \
        pytest.approx(total)
    assert get("gateway_in_flight_requests") == pytest.approx(level)


def test_a_counter_refuses_a_negative_amount_when_it_is_given() -> None:
    m = Metrics()
    with pytest.raises(ValueError):
        m.child(m.tokens, "a", "d", "prompt").inc(-1)
    assert m.registry.get_sample_value("gateway_tokens_total",
                                       {"alias": "a", "deployment": "d", "direction": "prompt"}) == 0


def test_the_exposition_shows_every_update_made_before_it() -> None:
    m = Metrics()
    m.count_request("gpt", "openai", "openai/gpt", 200)
    m.count_request("gpt", "openai", "openai/gpt", 503)
    m.child(m.request_seconds, "gpt", "false").observe(0.3)
    text = m.exposition().decode()
    assert 'gateway_requests_total{alias="gpt",deployment="openai/gpt",provider="openai",status_class="2xx"} 1.0' \
        in text
    assert 'status_class="5xx"} 1.0' in text
    assert 'gateway_request_duration_seconds_bucket{alias="gpt",le="0.5",stream="false"} 1.0' in text
    assert 'gateway_request_duration_seconds_count{alias="gpt",stream="false"} 1.0' in text


def test_with_several_workers_updates_go_straight_to_the_children(monkeypatch: pytest.MonkeyPatch,
                                                                     tmp_path: Path) -> None:
    # Another worker reads this one's files whenever it is scraped: nothing may wait in a tally.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    m = Metrics()
    m.count_request("gpt", "openai", "openai/gpt", 200)
    m.child(m.request_seconds, "gpt", "false").observe(0.3)
    m.child(m.in_flight).inc()
    # Read from the metrics themselves, not through the registry (whose read would add tallies).
    values = {s.name: s.value for metric in (m.requests, m.request_seconds, m.in_flight)
              for family in metric.collect() for s in family.samples}
    assert values["gateway_requests_total"] == 1
    assert values["gateway_request_duration_seconds_count"] == 1
    assert values["gateway_in_flight_requests"] == 1


def test_the_whole_exposition_reads_as_updating_prometheus_client_directly() -> None:
    """Every family, in the same order with the same help, type and samples (creation times aside)."""
    tallied, direct = Metrics(), Metrics()
    for m, tally in ((tallied, True), (direct, False)):
        def update(metric: Any, *labels: str, m: Metrics = m, tally: bool = tally) -> Any:
            if tally:
                return m.child(metric, *labels)
            return metric.labels(*labels) if labels else metric

        update(m.requests, "gpt", "openai", "openai/gpt", "2xx").inc(3)
        update(m.request_seconds, "gpt", "true").observe(0.3)
        update(m.request_seconds, "gpt", "true").observe(700)
        update(m.overhead_seconds, "gpt").observe(0.0002)
        update(m.in_flight).inc(2)
        update(m.in_flight).dec()
        update(m.circuit_state, "openai/gpt").set(2)
        update(m.store_errors, "settle").inc()

    def lines(m: Metrics) -> list[str]:
        return [line for line in m.exposition().decode().splitlines() if "_created" not in line]

    assert lines(tallied) == lines(direct)
    assert 'gateway_request_duration_seconds_bucket{alias="gpt",le="+Inf",stream="true"} 2.0' in lines(tallied)
