"""Stored Responses conversations, one suite for every store: MemoryStore, RedisStore on fakeredis,
on the real Redis at 6379 (unique key prefix, its keys deleted after) and on a private Redis Cluster."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.conversations import Conversations
from gateway.conversations.records import owner_tag
from gateway.errors import (
    InvalidRequestError,
    PreviousResponseNotFoundError,
    ResponseNotFoundError,
    StoredResponseTooLargeError,
)
from gateway.store.memory import MemoryStore
from tests.contract.stores import StoreFactory

TTL = 3600.0


def response(response_id: str, previous: str | None = None, text: str = "ok") -> dict[str, Any]:
    return {"id": response_id, "object": "response", "status": "completed", "previous_response_id": previous,
            "output": [{"id": f"msg_{response_id}", "type": "message", "role": "assistant", "status": "completed",
                        "content": [{"type": "output_text", "text": text, "annotations": []}]}]}


def conversations(store: Any, **bounds: int) -> Conversations:
    settings: dict[str, Any] = {"ttl": TTL, "max_response_bytes": 64 * 1024, "max_chain": 100,
                                "max_history_bytes": 1024 * 1024, **bounds}
    return Conversations(store, **settings)


async def ttl_left(store: Any, owner: str, response_id: str) -> float:
    if isinstance(store, MemoryStore):
        _, expires = store.__dict__["_conversation_records"][(owner_tag(owner), response_id)]
        return float(expires - store.conversation_clock())
    return float(await store.client.pttl(store.conversation_key(owner_tag(owner), response_id))) / 1000


async def shorten(store: Any, owner: str, response_id: str) -> None:
    """Bring a record close to its expiry."""
    if isinstance(store, MemoryStore):
        records = store.__dict__["_conversation_records"]
        value, _ = records[(owner_tag(owner), response_id)]
        records[(owner_tag(owner), response_id)] = (value, store.conversation_clock() + 5)
    else:
        await store.client.pexpire(store.conversation_key(owner_tag(owner), response_id), 5000)


async def test_put_then_get_for_the_owner_only(store_factory: StoreFactory) -> None:
    async with store_factory() as store:
        convs = conversations(store)
        await convs.put("key-a", response("resp_1"), "Hello")
        assert await convs.get("resp_1", "key-a") == response("resp_1")
        assert await convs.get("resp_1", "key-b") is None
        assert await convs.get("resp_nope", "key-a") is None


async def test_history_follows_the_chain_oldest_first(store_factory: StoreFactory) -> None:
    async with store_factory() as store:
        convs = conversations(store)
        await convs.put("key-a", response("resp_1", text="one"), "first")
        await convs.put("key-a", response("resp_2", "resp_1", text="two"),
                        [{"type": "function_call_output", "call_id": "c1", "output": "42"}])
        await convs.put("key-a", response("resp_3", "resp_2", text="three"), "third")
        items = await convs.history("resp_3", "key-a")
        assert [(item["type"], item.get("role")) for item in items] == [
            ("message", "user"), ("message", "assistant"), ("function_call_output", None), ("message", "assistant"),
            ("message", "user"), ("message", "assistant")]
        assert items[0]["content"] == [{"type": "input_text", "text": "first"}]
        assert items[3]["content"][0]["text"] == "two"
        assert await convs.history("resp_1", "key-a") == items[:2]
        with pytest.raises(PreviousResponseNotFoundError) as other:
            await convs.history("resp_3", "key-b")
        assert other.value.param == "previous_response_id" and other.value.http_status == 400
        assert other.value.code == "previous_response_not_found"


async def test_a_broken_chain_names_the_missing_response(store_factory: StoreFactory) -> None:
    async with store_factory() as store:
        convs = conversations(store)
        await convs.put("key-a", response("resp_1"), "a")
        await convs.put("key-a", response("resp_2", "resp_1"), "b")
        await convs.put("key-a", response("resp_3", "resp_2"), "c")
        assert await convs.delete("resp_2", "key-a")
        with pytest.raises(PreviousResponseNotFoundError, match="resp_2"):
            await convs.history("resp_3", "key-a")


async def test_only_the_owner_deletes(store_factory: StoreFactory) -> None:
    async with store_factory() as store:
        convs = conversations(store)
        await convs.put("key-a", response("resp_1"), "a")
        assert not await convs.delete("resp_1", "key-b")
        assert await convs.get("resp_1", "key-a") is not None
        assert await convs.delete("resp_1", "key-a")
        assert not await convs.delete("resp_1", "key-a")
        assert await convs.get("resp_1", "key-a") is None


async def test_a_response_over_the_size_bound_is_refused(store_factory: StoreFactory) -> None:
    async with store_factory() as store:
        convs = conversations(store, max_response_bytes=2048)
        with pytest.raises(StoredResponseTooLargeError, match="at most 2048 bytes") as raised:
            await convs.put("key-a", response("resp_big"), "x" * 4096)
        assert raised.value.http_status == 413
        assert await convs.get("resp_big", "key-a") is None
        await convs.put("key-a", response("resp_small"), "x" * 512)


async def test_chains_past_their_bounds_are_refused(store_factory: StoreFactory) -> None:
    async with store_factory() as store:
        convs = conversations(store, max_chain=2)
        await convs.put("key-a", response("resp_1"), "a" * 500)
        await convs.put("key-a", response("resp_2", "resp_1"), "b" * 500)
        assert len(await convs.history("resp_2", "key-a")) == 4
        await convs.put("key-a", response("resp_3", "resp_2"), "c" * 500)
        with pytest.raises(InvalidRequestError, match="longer than 2 stored responses"):
            await convs.history("resp_3", "key-a")
        small = conversations(store, max_history_bytes=1200)
        with pytest.raises(InvalidRequestError, match="more than 1200 bytes"):
            await small.history("resp_3", "key-a")


async def test_a_new_turn_renews_the_chain_it_continues(store_factory: StoreFactory) -> None:
    async with store_factory() as store:
        convs = conversations(store)
        await convs.put("key-a", response("resp_1"), "a")
        await convs.put("key-a", response("resp_2", "resp_1"), "b")
        await shorten(store, "key-a", "resp_1")
        await shorten(store, "key-a", "resp_2")
        await convs.put("key-a", response("resp_3", "resp_2"), "c")
        for response_id in ("resp_1", "resp_2", "resp_3"):
            assert await ttl_left(store, "key-a", response_id) > TTL - 60


async def test_input_items_pages(store_factory: StoreFactory) -> None:
    async with store_factory() as store:
        convs = conversations(store)
        items = [{"type": "message", "role": "user", "content": f"m{i}", "id": f"msg_{i}"} for i in range(5)]
        await convs.put("key-a", response("resp_1"), items)
        first = await convs.input_items("resp_1", "key-a", limit=2)
        assert [item["id"] for item in first["data"]] == ["msg_4", "msg_3"]
        assert (first["object"], first["first_id"], first["last_id"], first["has_more"]) == ("list", "msg_4",
                                                                                             "msg_3", True)
        rest = await convs.input_items("resp_1", "key-a", limit=3, after="msg_3")
        assert [item["id"] for item in rest["data"]] == ["msg_2", "msg_1", "msg_0"] and not rest["has_more"]
        ascending = await convs.input_items("resp_1", "key-a", order="asc", limit=100)
        assert [item["id"] for item in ascending["data"]] == [f"msg_{i}" for i in range(5)]
        assert ascending["data"][0]["content"] == [{"type": "input_text", "text": "m0"}]
        with pytest.raises(ResponseNotFoundError) as missing:
            await convs.input_items("resp_1", "key-b")
        assert missing.value.http_status == 404
        with pytest.raises(InvalidRequestError) as bad:
            await convs.input_items("resp_1", "key-a", limit=0)
        assert bad.value.param == "limit"


async def test_string_input_is_stored_as_a_message_item(store_factory: StoreFactory) -> None:
    async with store_factory() as store:
        convs = conversations(store)
        await convs.put("key-a", response("resp_9"), "Hi there")
        page = await convs.input_items("resp_9", "key-a")
        (item,) = page["data"]
        assert item["type"] == "message" and item["role"] == "user" and item["id"].startswith("msg_")
        assert item["content"] == [{"type": "input_text", "text": "Hi there"}]


async def test_the_embedded_store_expires_records() -> None:
    store = MemoryStore()
    now = [1000.0]
    store.conversation_clock = lambda: now[0]
    convs = conversations(store)
    await convs.put("key-a", response("resp_1"), "a")
    now[0] += TTL + 1
    assert await convs.get("resp_1", "key-a") is None
    with pytest.raises(PreviousResponseNotFoundError):
        await convs.history("resp_1", "key-a")


async def test_the_embedded_store_evicts_the_oldest_unused_records_past_its_byte_bound() -> None:
    store = MemoryStore()
    store.conversation_max_bytes = 3000
    convs = conversations(store)
    await convs.put("key-a", response("resp_chain1"), "a" * 300)
    await convs.put("key-a", response("resp_idle"), "b" * 300)
    await convs.put("key-a", response("resp_chain2", "resp_chain1"), "c" * 300)
    await convs.put("key-a", response("resp_new"), "d" * 900)
    assert await convs.get("resp_idle", "key-a") is None  # the oldest not renewed by a later turn
    assert len(await convs.history("resp_chain2", "key-a")) == 4
    assert await convs.delete("resp_new", "key-a")
    assert store.__dict__["_conversation_total"] == sum(
        len(value) for value, _ in store.__dict__["_conversation_records"].values())
