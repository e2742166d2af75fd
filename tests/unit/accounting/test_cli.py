"""`gateway config check` validates the price table; `gateway usage export` refuses what it cannot do."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli import main

ROOT = Path(__file__).resolve().parents[3]


def test_config_check_reads_the_price_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(f"accounting: {{prices_file: {ROOT / 'config' / 'prices.yaml'}}}\n")
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
