from __future__ import annotations

from gateway.config import GatewayConfig, parse_config
from gateway.metrics import Metrics
from gateway.ops.monitor import Monitor
from gateway.store import build_store

CONFIG = """
auth:
  keys:
    - {name: app, team: search, key: sk-a, budget: {usd: 10, period: day}}
  teams:
    search: {budget: {usd: 100}}
"""


def sample(m: Metrics, metric: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(metric, labels)


async def test_budget_gauges_and_store_up() -> None:
    store = build_store("", timeout=0.25, key_prefix="t")
    m = Metrics()
    config = parse_config(CONFIG)
    current: list[GatewayConfig] = [config]
    monitor = Monitor(store, m, lambda: current[0])
    await store.budget_reserve("team:search", ["team:search:" + _month(), "key:app:" + _day()],  # type: ignore[attr-defined]
                               [100_000_000, 10_000_000], 2_500_000, 3600)
    await monitor.check()
    assert sample(m, "gateway_store_up") == 1
    assert sample(m, "gateway_budget_used_ratio", scope="team", name="search", period="month") == 0.025
    assert sample(m, "gateway_budget_limit_usd", scope="team", name="search", period="month") == 100
    # key budgets carry the key's name only when the config opts in
    assert sample(m, "gateway_budget_used_ratio", scope="key", name="app", period="day") is None
    m.set_key_labels(True)
    await monitor.check()
    assert sample(m, "gateway_budget_used_ratio", scope="key", name="app", period="day") == 0.25
    # a reload that drops the team budget drops its series
    current[0] = parse_config(CONFIG.replace("search: {budget: {usd: 100}}", "search: {}"))
    await monitor.check()
    assert sample(m, "gateway_budget_used_ratio", scope="team", name="search", period="month") is None
    assert sample(m, "gateway_store_duration_seconds_count", operation="ping") == 3


async def test_store_down_sets_the_gauge_to_zero() -> None:
    class Down:
        async def ping(self) -> bool:
            raise ConnectionError("down")

    m = Metrics()
    monitor = Monitor(Down(), m, lambda: parse_config(CONFIG))  # type: ignore[arg-type]
    await monitor.check()
    assert sample(m, "gateway_store_up") == 0


def _day() -> str:
    import time

    return time.strftime("%Y%m%d", time.gmtime())


def _month() -> str:
    import time

    return time.strftime("%Y%m", time.gmtime())


