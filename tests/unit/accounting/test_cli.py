"""`gateway config check` validates the price table; `gateway usage export` refuses what it cannot do."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli import main

ROOT = Path(__file__).resolve().parents[3]


def test_config_check_reads_the_price_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(f"accounting: {{prices_file: {ROOT / 'gateway' / 'data' / 'prices.yaml'}}}\n")
    assert main(["config", "check", str(good)]) == 0
    assert "prices" in capsys.readouterr().out
    prices = tmp_path / "prices.yaml"
    prices.write_text("openai:\n  gpt-x: {input: 1}\n  gpt-y: {input: 0.0000001, output: 1}\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"accounting: {{prices_file: {prices}}}\n")
    assert main(["config", "check", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "openai.gpt-x" in err and "openai.gpt-y" in err


def test_usage_export_needs_redis(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("store: {redis_url: ''}\n")
    assert main(["usage", "export", "--since", "2026-11-01", "--config", str(config)]) == 2
    assert "store.redis_url" in capsys.readouterr().err
    assert main(["usage", "export", "--since", "yesterday", "--redis-url", "redis://127.0.0.1:1/0"]) == 2
    assert main(["usage", "export", "--since", "0", "--redis-url", "redis://127.0.0.1:1/0", "--key-prefix", "x"]) == 1
    assert "Cannot read the usage log" in capsys.readouterr().err


CHECK_WITH_BUDGETS = """
accounting: {{prices_file: {prices}}}
auth: {{keys: [{{name: app, key: k, budget: {{usd: 5, period: day}}}}]}}
providers: {{openai: {{type: openai, api_key: x}}}}
models: {{gpt: {{deployments: [{{provider: openai, model: gpt-4o-mini}}]}}}}
"""


def test_config_check_refuses_budgets_without_their_price_table(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "conf" / "gateway.yaml"
    config.parent.mkdir()
    config.write_text(CHECK_WITH_BUDGETS.format(prices="prices.yaml"))
    assert main(["config", "check", str(config)]) == 1
    err = capsys.readouterr().err
    looked_at = tmp_path / "conf" / "prices.yaml"  # relative to the config file, not the working directory
    assert f"the price table {looked_at} does not exist" in err and "openai/gpt-4o-mini" in err
    # The same file next to the config is found wherever the command runs from.
    looked_at.write_text("openai:\n  gpt-4o-mini: {input: 0.15, output: 0.6}\n")
    assert main(["config", "check", str(config)]) == 0
    assert "1 price," in capsys.readouterr().out


def test_config_check_uses_the_shipped_price_table_by_default(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(CHECK_WITH_BUDGETS.format(prices="unused").replace("accounting: {prices_file: unused}\n", ""))
    monkeypatch.chdir(tmp_path)  # nowhere near the repository's files
    assert main(["config", "check", str(config)]) == 0
    out = capsys.readouterr().out
    assert "ok (1 provider, 1 model alias, 1 key," in out
    assert int(out.split(" key, ")[1].split(" prices")[0]) > 20
