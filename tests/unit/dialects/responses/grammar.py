"""The grammar of a Responses event stream, as the SDK accumulators read it: checked event by event."""

from __future__ import annotations

from typing import Any

TERMINAL = ("response.completed", "response.incomplete", "response.failed")
_PART_EVENTS = {
    "response.output_text.delta": "output_text", "response.output_text.done": "output_text",
    "response.refusal.delta": "refusal", "response.refusal.done": "refusal",
}


def check_stream(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Assert `events` is one well-formed Responses stream; return its final response object."""
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert [e["type"] for e in events[:2]] == ["response.created", "response.in_progress"]
    for event in events[:2]:
        assert event["response"]["status"] == "in_progress" and event["response"]["output"] == []
    assert events[-1]["type"] in TERMINAL
    response_id = events[0]["response"]["id"]
    open_items: dict[int, dict[str, Any]] = {}
    done_items: dict[int, dict[str, Any]] = {}
    parts: dict[int, list[dict[str, Any]]] = {}
    open_part: dict[int, tuple[str, int, str]] = {}  # output index → (kind, index, text so far)
    for event in events[2:-1]:
        kind = event["type"]
        assert kind not in TERMINAL and kind not in ("response.created", "response.in_progress")
        index = event["output_index"]
        if kind == "response.output_item.added":
            assert index == len(open_items) + len(done_items), "items open in output order"
            open_items[index] = event["item"]
            parts[index] = []
            continue
        item = open_items[index]
        if kind == "response.output_item.done":
            assert index not in open_part
            assert event["item"]["id"] == item["id"] and event["item"]["type"] == item["type"]
            done_items[index] = event["item"]
            del open_items[index]
            continue
        assert event["item_id"] == item["id"]
        _part_event(event, item, parts[index], open_part)
    assert not open_items, "every item is closed before the terminal event"
    final: dict[str, Any] = events[-1]["response"]
    assert final["id"] == response_id
    assert final["output"] == [done_items[i] for i in range(len(done_items))]
    for index, item in done_items.items():
        if item["type"] == "message":
            assert item["content"] == parts[index]
        elif item["type"] == "reasoning":
            assert item["summary"] == parts[index]
    return final


def _part_event(event: dict[str, Any], item: dict[str, Any], parts: list[dict[str, Any]],
                open_part: dict[int, tuple[str, int, str]]) -> None:
    kind, index = event["type"], event["output_index"]
    if kind in ("response.content_part.added", "response.reasoning_summary_part.added"):
        assert index not in open_part
        position = event["content_index"] if kind == "response.content_part.added" else event["summary_index"]
        assert position == len(parts)
        assert item["type"] == ("message" if kind == "response.content_part.added" else "reasoning")
        open_part[index] = (event["part"]["type"], position, "")
    elif kind in _PART_EVENTS:
        part_kind, position, text = open_part[index]
        assert part_kind == _PART_EVENTS[kind] and event["content_index"] == position
        if kind.endswith(".delta"):
            open_part[index] = (part_kind, position, text + event["delta"])
        else:
            assert event["text" if part_kind == "output_text" else "refusal"] == text
    elif kind in ("response.reasoning_summary_text.delta", "response.reasoning_summary_text.done"):
        part_kind, position, text = open_part[index]
        assert part_kind == "summary_text" and event["summary_index"] == position
        if kind.endswith(".delta"):
            open_part[index] = (part_kind, position, text + event["delta"])
        else:
            assert event["text"] == text
    elif kind in ("response.content_part.done", "response.reasoning_summary_part.done"):
        part_kind, position, text = open_part.pop(index)
        field = {"output_text": "text", "refusal": "refusal", "summary_text": "text"}[part_kind]
        assert event["part"]["type"] == part_kind and event["part"][field] == text
        parts.append(event["part"])
    elif kind.startswith("response.function_call_arguments."):
        assert item["type"] == "function_call"
    elif kind.startswith("response.custom_tool_call_input."):
        assert item["type"] == "custom_tool_call"
    else:
        raise AssertionError(f"unexpected event {kind}")
