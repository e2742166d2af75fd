from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.cli import _multiprocess_metrics_dir
from gateway.metrics import Metrics


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


def test_principal_labels_name_keys_only_when_opted_in() -> None:
    m = Metrics()
    assert m.principal_labels("app", "search") == ("search", "")
    assert m.principal_labels("solo", None) == ("", "")
    m.set_key_labels(True)
    assert m.principal_labels("app", "search") == ("search", "app")


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
