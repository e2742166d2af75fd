"""Spend reports: a key's rows are filed by its identity and shown with its name."""

from __future__ import annotations

from gateway.accounting.queries import fold

DAY = {"20261122": {"key|aaaa|app|requests": 2, "key|aaaa|app|cost": 30, "key|bbbb|app|requests": 1,
                    "key|bbbb|app|cost": 7, "key|anonymous|requests": 4, "team|red|requests": 2}}


def test_two_keys_of_one_name_are_two_entries() -> None:
    spend = fold(DAY, "key", None)
    assert set(spend) == {"aaaa", "bbbb", "anonymous"}
    assert (spend["aaaa"]["name"], spend["aaaa"]["requests"], spend["aaaa"]["cost_micro_usd"]) == ("app", 2, 30)
    assert (spend["bbbb"]["name"], spend["bbbb"]["requests"], spend["bbbb"]["cost_micro_usd"]) == ("app", 1, 7)
    assert spend["anonymous"]["name"] == "anonymous"  # a row without an id (anonymous, or written earlier)


def test_a_key_is_selected_by_name_or_by_id() -> None:
    assert set(fold(DAY, "key", "app")) == {"aaaa", "bbbb"}
    assert set(fold(DAY, "key", "bbbb")) == {"bbbb"}
    assert set(fold(DAY, "team", None)) == {"red"} and "name" not in fold(DAY, "team", None)["red"]
