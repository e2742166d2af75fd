"""The Responses API's stored conversations as a pipeline stage.

admit: a turn that names a `previous_response_id` gets the conversation so far from the store (one
round trip; only the key that stored it can read it) and its canonical request rebuilt with that
history, and then goes to the provider translated (the provider knows nothing of the gateway's ids).
A turn with `store` not false gets a keeper: its response is written before the client sees the
terminal event, so the next turn finds it at once on any replica.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import orjson

from gateway.context import JSONReply, Principal, Reply, RequestContext
from gateway.conversations import Conversations
from gateway.dialects.passthrough import PassthroughStream
from gateway.dialects.responses.request import translate
from gateway.dialects.responses.stream import StreamEncoder
from gateway.dialects.responses.usage import UsageReader
from gateway.errors import GatewayError, InvalidRequestError
from gateway.logs import get_logger
from gateway.store import StoreOp

log = get_logger("conversations")


def owner_of(principal: Principal) -> str:
    """Whose conversations these are: the key's identity (its hash), never its display name."""
    return principal.key_hash or f"name:{principal.name}"


class ConversationStage:
    name = "conversations"
    dialects: frozenset[str] | None = frozenset({"responses"})

    def __init__(self, conversations: Conversations) -> None:
        self.conversations = conversations

    async def admit(self, ctx: RequestContext) -> Reply | None:
        native = ctx.native
        if native is None:
            return None
        body = native.body
        owner = owner_of(ctx.principal)
        previous = body.get("previous_response_id")
        if previous is not None:
            if not isinstance(previous, str) or not previous:
                raise InvalidRequestError("Invalid value for 'previous_response_id': expected a response id.",
                                          code="invalid_value", param="previous_response_id")
            history = await self.conversations.history(previous, owner)
            # (What the canonical form cannot carry, in the history too, fails only a translation.)
            ctx.body, ctx.untranslatable = translate(body, history)
            ctx.native = dataclasses.replace(native, passthrough=False)
        if body.get("store") is not False:
            ctx.keeper = Keeper(self.conversations, owner, body)
        return None

    def settle(self, ctx: RequestContext, reply: Reply | None, error: GatewayError | None) -> Sequence[StoreOp]:
        return ()

    def annotate(self, ctx: RequestContext, reply: JSONReply | None, error: GatewayError | None) -> None:
        """Nothing of this stage's settle is needed by the answer itself."""

    def settle_failed(self, ctx: RequestContext, ops: Sequence[StoreOp], error: Exception) -> None:
        return None


class Keeper:
    """Stores one call's response once, when its end is known (see AnswerKeeper)."""

    __slots__ = ("conversations", "kept", "owner", "request")

    def __init__(self, conversations: Conversations, owner: str, request: dict[str, Any]) -> None:
        self.conversations = conversations
        self.owner = owner
        self.request = request
        self.kept = False

    async def keep_json(self, body: bytes) -> None:
        response = orjson.loads(body)
        if isinstance(response, dict):
            await self._put(response)

    async def keep_stream(self, source: object) -> None:
        if self.kept:
            return
        final = _final(source)
        if final is not None:
            await self._put(final)

    async def _put(self, response: dict[str, Any]) -> None:
        self.kept = True
        if response.get("status") == "failed" or not response.get("id"):
            return
        try:
            await self.conversations.put(self.owner, response, self.request.get("input"))
        except GatewayError as exc:  # the answer stands; a later turn that names it gets a clear 404
            log.warning("response not stored", extra={"fields": {"response_id": response.get("id"),
                                                                 "error": exc.message}})


def _final(source: object) -> dict[str, Any] | None:
    """The terminal response object of a stream that has ended, else None."""
    if isinstance(source, StreamEncoder):
        return source.final_response() if source.ended else None
    if isinstance(source, PassthroughStream) and isinstance(source.reader, UsageReader) and source.reader.done:
        return source.reader.response
    return None
