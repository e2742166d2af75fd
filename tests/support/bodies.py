"""Hypothesis strategies for client bodies of every shape, right and wrong: mostly right values, and
now and then any JSON value in a field's place, at every level (items, parts, tools, options). A
body is refused at its first wrong field, so wrong values are rare enough for many bodies to get
through whole."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

scalar = st.one_of(st.none(), st.booleans(), st.integers(-3, 70), st.floats(-1, 3), st.text(max_size=6))
json_value = st.recursive(scalar, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                          st.dictionaries(st.text(max_size=4), inner, max_size=3)),
                          max_leaves=6)



def either(right: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A right value, mostly (a body is refused at its first wrong field); now and then any JSON value."""
    return st.integers(0, 11).flatmap(lambda draw: json_value if draw == 0 else right)


name = st.text("abc_", min_size=1, max_size=5)
part = either(st.one_of(
    st.fixed_dictionaries({"type": st.sampled_from(["input_text", "output_text", "text"]), "text": either(st.text())},
                          optional={"cache_control": either(st.just({"type": "ephemeral"}))}),
    st.fixed_dictionaries({"type": st.just("refusal"), "refusal": either(st.text())}),
    st.fixed_dictionaries({"type": st.just("input_image"), "image_url": either(st.just("data:image/png;base64,AA=="))},
                          optional={"detail": either(st.sampled_from(["auto", "low", "high"]))}),
    st.fixed_dictionaries({"type": st.just("input_file"), "file_data": either(st.just("JVBERi0x"))},
                          optional={"filename": either(st.just("a.pdf"))}),
))
content = either(st.one_of(st.text(), st.lists(part, max_size=3)))
item = either(st.one_of(
    st.fixed_dictionaries({"role": either(st.sampled_from(["user", "assistant", "system", "developer"])),
                           "content": content}, optional={"type": st.just("message")}),
    st.fixed_dictionaries({"type": st.sampled_from(["function_call", "custom_tool_call"]), "call_id": either(name),
                           "name": either(name), "arguments": either(st.just("{}")), "input": either(st.text())},
                          optional={"namespace": either(name)}),
    st.fixed_dictionaries({"type": st.sampled_from(["function_call_output", "custom_tool_call_output"]),
                           "call_id": either(name), "output": content}),
    st.fixed_dictionaries({"type": st.just("reasoning"),
                           "summary": either(st.lists(st.builds(lambda t: {"type": "summary_text", "text": t},
                                                                st.text()), max_size=2))},
                          optional={"content": either(st.lists(st.builds(
                              lambda t: {"type": "reasoning_text", "text": t}, st.text()), max_size=2))}),
))
tool = either(st.one_of(
    st.fixed_dictionaries({"type": st.just("function"), "name": either(name)},
                          optional={"description": either(st.text()), "strict": either(st.booleans()),
                                    "parameters": either(st.just({"type": "object", "properties": {}}))}),
    st.fixed_dictionaries({"type": st.just("custom"), "name": either(name)},
                          optional={"format": either(st.just({"type": "grammar", "syntax": "lark",
                                                              "definition": "start: /.+/"}))}),
    st.fixed_dictionaries({"type": st.just("namespace"), "name": either(name),
                           "tools": either(st.lists(st.fixed_dictionaries({"type": st.just("function"),
                                                                           "name": name}), max_size=2))}),
))
responses_body = st.fixed_dictionaries(
    {"model": either(name), "input": either(st.one_of(st.text(max_size=8), st.lists(item, max_size=4)))},
    optional={
        "instructions": either(st.text(max_size=8)), "stream": either(st.booleans()),
        "temperature": either(st.floats(0, 2)), "top_p": either(st.floats(0, 1)),
        "max_output_tokens": either(st.integers(1, 10**6)), "parallel_tool_calls": either(st.booleans()),
        "top_logprobs": either(st.integers(0, 20)), "tools": either(st.lists(tool, max_size=3)),
        "tool_choice": either(st.one_of(st.sampled_from(["auto", "none", "required"]),
                                        st.builds(lambda n: {"type": "function", "name": n}, name))),
        "reasoning": either(st.fixed_dictionaries({}, optional={
            "effort": either(st.sampled_from(["low", "high"])),
            "summary": either(st.sampled_from(["auto", "concise", "detailed"]))})),
        "text": either(st.fixed_dictionaries({}, optional={
            "verbosity": either(st.sampled_from(["low", "medium", "high"])),
            "format": either(st.one_of(st.just({"type": "text"}), st.just({"type": "json_object"}),
                                       st.builds(lambda n: {"type": "json_schema", "name": n, "schema": {}},
                                                 either(name))))})),
        "user": either(st.text(max_size=4)), "prompt_cache_key": either(st.text(max_size=4)),
        "store": either(st.booleans()), "include": either(st.lists(st.just("reasoning.encrypted_content"), max_size=1)),
        "metadata": either(st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=4)),
        "truncation": either(st.sampled_from(["auto", "disabled"])), "stream_options": either(st.just({})),
        "max_tool_calls": either(st.integers(1, 5)),
    })



# --- Messages -------------------------------------------------------------------------------------
_BLOCK_FIELDS = ("text", "source", "id", "name", "input", "content", "tool_use_id", "is_error", "thinking",
                 "signature", "data", "cache_control")
block = either(st.one_of(*[
    st.fixed_dictionaries({"type": st.just(kind)}, optional=dict.fromkeys(_BLOCK_FIELDS, json_value))
    for kind in ("text", "image", "document", "tool_use", "tool_result", "thinking", "redacted_thinking")]))
turn = st.fixed_dictionaries({"role": either(st.sampled_from(["user", "assistant"])),
                              "content": either(st.one_of(st.text(), st.lists(block, max_size=3)))})
messages_body = st.fixed_dictionaries(
    {"model": either(name), "max_tokens": either(st.integers(1, 100)),
     "messages": either(st.lists(turn, min_size=1, max_size=3))},
    optional=dict.fromkeys(("system", "stream", "temperature", "top_k", "top_p", "stop_sequences", "thinking",
                            "tool_choice", "tools", "metadata", "output_config", "service_tier"), json_value))

# --- Chat Completions -----------------------------------------------------------------------------
chat_message = st.fixed_dictionaries(
    {"role": either(st.sampled_from(["user", "assistant", "system", "tool"])), "content": either(st.text())},
    optional=dict.fromkeys(("tool_calls", "name", "tool_call_id"), json_value))
chat_body = st.fixed_dictionaries(
    {"model": either(name), "messages": either(st.lists(chat_message, min_size=1, max_size=3))},
    optional=dict.fromkeys(("stream", "stream_options", "tools", "tool_choice", "max_tokens", "n", "stop",
                            "response_format", "logprobs", "top_logprobs", "temperature"), json_value))


def with_model(bodies: st.SearchStrategy[dict[str, Any]], model: str) -> st.SearchStrategy[dict[str, Any]]:
    return bodies.map(lambda body: {**body, "model": model})
