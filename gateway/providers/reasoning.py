"""Reasoning in the canonical form, shared by the translating providers.

Requests carry OpenAI's `reasoning_effort` (none, minimal, low, medium, high, xhigh); each provider
maps it to its own control. Providers that take a token budget (Anthropic and Claude on Bedrock
`thinking.budget_tokens`, Gemini 2.5 `thinkingBudget`) get the budget of the table below; the
budget is always kept below the answer's token limit, since thinking counts against it (as
OpenAI's `max_completion_tokens` counts reasoning tokens).

Answers carry the reasoning text as `reasoning_content` and the blocks a provider needs back on the
next turn as `thinking_blocks` (`{"type": "thinking", "thinking", "signature"}` or
`{"type": "redacted_thinking", "data"}`); Gemini's thought signatures ride on tool calls as
`extra_content.google.thought_signature`.
"""

from __future__ import annotations

from typing import Any

from gateway.errors import InvalidRequestError

EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")

# Anthropic's smallest accepted budget; the others grow about fourfold per step.
MIN_BUDGET = 1024
BUDGETS = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 16384, "xhigh": 32768}


def effort_of(body: dict[str, Any]) -> str | None:
    """The request's reasoning effort, checked; None when the client did not ask."""
    effort = body.get("reasoning_effort")
    if effort is None:
        return None
    if effort not in EFFORTS:
        raise InvalidRequestError(
            f"Invalid value for 'reasoning_effort': expected one of {', '.join(EFFORTS)}, got {effort!r}.",
            code="invalid_value", param="reasoning_effort")
    return str(effort)


def budget_within(effort: str, max_tokens: int, param: str) -> int:
    """The thinking budget for `effort`, below `max_tokens` (the answer's limit, thinking included).
    A limit that leaves no room for the smallest budget is a 400 naming the limit."""
    budget = min(BUDGETS[effort], max_tokens - 1)
    if budget < MIN_BUDGET:
        raise InvalidRequestError(
            f"'{param}' must be above {MIN_BUDGET} for reasoning_effort '{effort}': this provider thinks "
            f"with at least {MIN_BUDGET} tokens, counted within the limit.",
            code="invalid_value", param=param)
    return budget


def fits_claude_thinking(name: str, value: Any) -> bool:
    """Whether a sampling setting may stay with Claude's extended thinking: temperature only at 1,
    top_p only from 0.95 up, top_k never."""
    if name == "temperature":
        return bool(value == 1)
    if name == "top_p":
        return bool(value >= 0.95)
    return False


def thinking_blocks(message: dict[str, Any], where: str) -> list[dict[str, Any]]:
    """The well-formed `thinking_blocks` an assistant message sent back, in order."""
    raw = message.get("thinking_blocks")
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise InvalidRequestError("thinking_blocks must be a list.", param=f"{where}.thinking_blocks")
    blocks: list[dict[str, Any]] = []
    for k, block in enumerate(raw):
        at = f"{where}.thinking_blocks[{k}]"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "thinking" and isinstance(block.get("thinking"), str) and isinstance(block.get("signature"), str):
            blocks.append({"type": "thinking", "thinking": block["thinking"], "signature": block["signature"]})
        elif kind == "redacted_thinking" and isinstance(block.get("data"), str):
            blocks.append({"type": "redacted_thinking", "data": block["data"]})
        else:
            raise InvalidRequestError(
                "A thinking block is {\"type\": \"thinking\", \"thinking\", \"signature\"} or "
                "{\"type\": \"redacted_thinking\", \"data\"}.", param=at)
    return blocks


def reasoning_fields(texts: list[str], blocks: list[dict[str, Any]]) -> dict[str, Any]:
    """The canonical message fields for a complete answer's reasoning (none when there was none)."""
    out: dict[str, Any] = {}
    if texts:
        out["reasoning_content"] = "".join(texts)
    if blocks:
        out["thinking_blocks"] = blocks
    return out
