"""An app embedded in another process (tests, another server) leaves its host's process-wide state
alone; only `gateway serve`, which owns its process, tunes the garbage collector."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import httpx
import pytest

from gateway.app import tune_collector
from tests.support.servers import MOCK_CONFIG, GatewayServer


@pytest.fixture
def collector_state() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.set_threshold(*threshold)
    gc.unfreeze()


def test_an_embedded_app_does_not_touch_the_collector(collector_state: None) -> None:
    threshold, frozen = gc.get_threshold(), gc.get_freeze_count()
    with GatewayServer(MOCK_CONFIG) as gw:
        assert httpx.get(f"{gw.url}/healthz", timeout=10).status_code == 200
        assert gc.get_threshold() == threshold
        assert gc.get_freeze_count() == frozen


def test_serve_tunes_its_own_collector(collector_state: None) -> None:
    tune_collector()
    assert gc.get_threshold()[0] == 20_000
    assert gc.get_freeze_count() > 0
