"""Token counting offline: the shipped cl100k_base file counts exactly, an encoding without its file is
never downloaded (its models are counted with cl100k_base and flagged), and without any file the count
is the UTF-8 estimate."""

from __future__ import annotations

from pathlib import Path

import pytest
import tiktoken.load

from gateway.tokens import SHIPPED_ENCODINGS, TokenCounter, estimate


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(blobpath: str) -> bytes:
        raise AssertionError(f"tried to download {blobpath}")

    monkeypatch.setattr(tiktoken.load, "read_file", refuse)


def test_the_shipped_encoding_counts_exactly_and_stands_in_for_the_missing_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR", raising=False)
    estimated: list[str] = []
    counter = TokenCounter(on_estimate=estimated.append)
    assert counter.preload() == {"cl100k_base": True, "o200k_base": False}
    text = "The quick brown fox jumps over the lazy dog, naïvely 😀."
    exact = len(tiktoken.get_encoding("cl100k_base").encode(text))
    assert counter.count_text(text, "gpt-4") == (exact, True)
    assert counter.count_text(text, "gpt-4o-mini") == (exact, False)
    assert estimated == ["o200k_base"]
    assert counter.estimating(["gpt-4", "gpt-4o-mini", "o3"]) == ["gpt-4o-mini", "o3"]
    assert counter.how("gpt-4o-mini") == "cl100k_base"
    assert (SHIPPED_ENCODINGS / "9b5ad71b2ce5302211f9c61530b329a4922fc6a4").is_file()


def test_without_encoding_files_counts_are_estimates_and_nothing_is_fetched(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    estimated: list[str] = []
    counter = TokenCounter(on_estimate=estimated.append)
    assert counter.preload() == {"cl100k_base": False, "o200k_base": False}
    assert counter.count_text("hello world", "gpt-4") == (estimate("hello world"), False)
    assert counter.how("gpt-4") == "bytes/4"
    assert estimated == ["cl100k_base"]
