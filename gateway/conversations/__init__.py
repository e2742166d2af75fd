"""Stored responses of the Responses API: what `store: true` (the API's default) keeps, so a later
request can continue with `previous_response_id`, and `GET /v1/responses/{id}` (+ `/input_items`) and
`DELETE` can read and remove it.

Each record belongs to an owner (the gateway key's identity, as the caller passes it): another owner
can neither read, chain to nor delete it (records are keyed under the owner's tag, so another owner's
lookup simply finds nothing). Records live `ttl` seconds; a new turn refreshes the TTL of the chain it
continues, so a conversation in use does not lose its first turns. A record over `max_response_bytes`
(its response and input items as stored) is refused when it is put; a chain longer than `max_chain`
turns or `max_history_bytes` in all is refused when it is rebuilt. Both stores implement the same
operations (store_redis.py, store_memory.py) in one round trip each; the pipeline stage is stage.py."""

from __future__ import annotations

from typing import Any

from gateway.config import ResponsesConfig
from gateway.conversations import records
from gateway.conversations.store import ConversationStore
from gateway.errors import (
    InvalidRequestError,
    PreviousResponseNotFoundError,
    ResponseNotFoundError,
    StoredResponseTooLargeError,
)


class Conversations:
    def __init__(self, store: ConversationStore, *, ttl: float, max_response_bytes: int, max_chain: int,
                 max_history_bytes: int) -> None:
        self.store = store
        self.ttl_ms = max(1, int(ttl * 1000))
        self.max_response_bytes = max_response_bytes
        self.max_chain = max_chain
        self.max_history_bytes = max_history_bytes

    @classmethod
    def from_config(cls, store: ConversationStore, config: ResponsesConfig) -> Conversations:
        return cls(store, ttl=config.ttl, max_response_bytes=config.max_response_bytes, max_chain=config.max_chain,
                   max_history_bytes=config.max_history_bytes)

    async def put(self, owner: str, response: dict[str, Any], input_value: object) -> None:
        """Store `response` with the request's `input` (as sent: a string or items). Raises
        StoredResponseTooLargeError over `max_response_bytes`."""
        response_id = str(response["id"])
        value = records.encode(response, records.input_items(input_value, response_id))
        if len(value) > self.max_response_bytes:
            raise StoredResponseTooLargeError(
                f"The response and its input take {len(value)} bytes; the gateway stores at most "
                f"{self.max_response_bytes} bytes per response. Send the request with store=false and "
                "the whole conversation as input instead of previous_response_id.", param="store")
        await self.store.conversation_put(records.owner_tag(owner), response_id,
                                          str(response.get("previous_response_id") or ""), value,
                                          self.ttl_ms, self.max_chain)

    async def get(self, response_id: str, owner: str) -> dict[str, Any] | None:
        value = await self.store.conversation_get(records.owner_tag(owner), response_id)
        if value is None:
            return None
        response: dict[str, Any] = records.decode(value)["response"]
        return response

    async def delete(self, response_id: str, owner: str) -> bool:
        return await self.store.conversation_delete(records.owner_tag(owner), response_id)

    async def history(self, response_id: str, owner: str) -> list[dict[str, Any]]:
        """The conversation up to and including `response_id`: each turn's input then output items,
        oldest first. Raises PreviousResponseNotFoundError when it, or a turn it links to, is gone."""
        status, values = await self.store.conversation_chain(records.owner_tag(owner), response_id,
                                                             self.max_chain, self.max_history_bytes)
        if status == 1:
            raise PreviousResponseNotFoundError(values[0].decode())
        if status == 2:
            raise InvalidRequestError(
                f"The conversation ending at '{response_id}' is longer than {self.max_chain} stored "
                "responses, the most the gateway rebuilds; start a new one with the whole context as input.",
                code="conversation_too_long", param="previous_response_id")
        if status == 3:
            raise InvalidRequestError(
                f"The conversation ending at '{response_id}' takes more than {self.max_history_bytes} "
                "bytes, the most the gateway rebuilds; start a new one with the context it needs as input.",
                code="conversation_too_long", param="previous_response_id")
        items: list[dict[str, Any]] = []
        for value in reversed(values):
            items += records.turn_items(records.decode(value))
        return items

    async def input_items(self, response_id: str, owner: str, *, after: str | None = None, limit: int = 20,
                          order: str = "desc") -> dict[str, Any]:
        """The page `GET /v1/responses/{id}/input_items` answers (`order`: asc or desc, else a 400).
        Raises ResponseNotFoundError."""
        if not 1 <= limit <= 100:
            raise InvalidRequestError("Invalid value for 'limit': expected an integer from 1 to 100.",
                                      code="invalid_value", param="limit")
        if order not in ("asc", "desc"):
            raise InvalidRequestError("Invalid value for 'order': expected 'asc' or 'desc'.",
                                      code="invalid_value", param="order")
        value = await self.store.conversation_get(records.owner_tag(owner), response_id)
        if value is None:
            raise ResponseNotFoundError(response_id)
        items = records.decode(value)["input_items"]
        if order == "desc":
            items.reverse()
        if after is not None:
            ids = [item.get("id") for item in items]
            if after not in ids:
                raise InvalidRequestError(f"Invalid value for 'after': no input item '{after}' in this response.",
                                          code="invalid_value", param="after")
            items = items[ids.index(after) + 1:]
        page = items[:limit]
        return {"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None, "has_more": len(items) > limit}
