"""`gateway serve`'s logging: JSON or text lines, the access log's fast JSON path (same shape as the
formatter, no secret), and config reloads changing the level unless the command line pinned it."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import orjson
import pytest

import gateway.logs as gwlog
from gateway.context import Principal, RequestContext, Usage
from gateway.ops.access_log import AccessLog
from gateway.schemas import Operation


class Err:
    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def getvalue(self) -> str:
        return self.capsys.readouterr().err


@pytest.fixture
def stderr(capsys: pytest.CaptureFixture[str]) -> Iterator[Err]:
    root = logging.getLogger("gateway")
    saved = (root.handlers[:], root.level, root.propagate)
    yield Err(capsys)
    root.handlers[:], root.level, root.propagate = saved[0], saved[1], saved[2]
    gwlog._json_handler, gwlog._managed, gwlog._pinned = None, False, False


def context() -> RequestContext:
    ctx = RequestContext(request_id="req_1", operation=Operation.CHAT, alias="demo", stream=False, headers={},
                         body={"model": "demo", "messages": [{"role": "user", "content": "secret prompt"}]})
    ctx.usage, ctx.deployment, ctx.attempts, ctx.cost_micro_usd = Usage(3, 4), "dep", 1, 12
    ctx.principal = Principal(name="app", team="search", key_hash="f" * 64)
    return ctx


def test_access_fast_path_writes_the_formatters_shape(stderr: Err) -> None:
    gwlog.setup_logging("info", "json")
    access = AccessLog()
    assert access.active()
    access.write("req_1", "/v1/chat/completions", 200, 0.0, context())
    logging.getLogger("gateway.app").info("hello", extra={"fields": {"request_id": "req_2"}})
    written = stderr.getvalue()
    fast, slow = (orjson.loads(line) for line in written.splitlines())
    assert set(slow) == {"ts", "level", "logger", "msg", "request_id"}
    assert {k: fast[k] for k in ("level", "logger", "msg")} == {"level": "info", "logger": "gateway.access",
                                                                "msg": "request"}
    assert len(fast["ts"]) == len(slow["ts"]) and fast["ts"].endswith("Z")
    assert fast["request_id"] == "req_1" and fast["key"] == "app" and fast["cost_usd"] == 12e-6
    assert "secret prompt" not in written and "f" * 64 not in written


def test_text_format_and_level(stderr: Err) -> None:
    gwlog.setup_logging("warning", "text")
    access = AccessLog()
    assert not access.active()  # INFO is below the level: nothing is built
    gwlog.apply_level("info")  # a reload lowers it
    assert access.active()
    access.write("req_1", "/v1/chat/completions", 200, 0.0, context())
    line = stderr.getvalue().strip()
    assert " INFO gateway.access request request_id=req_1 " in line and "key=app" in line


def test_a_pinned_level_survives_reloads(stderr: Err) -> None:
    gwlog.setup_logging("error", "json", pinned=True)
    gwlog.apply_level("debug")
    assert logging.getLogger("gateway").level == logging.ERROR


def test_apply_level_leaves_unmanaged_logging_alone(stderr: Err) -> None:
    before = logging.getLogger("gateway").level
    gwlog.apply_level("debug")
    assert logging.getLogger("gateway").level == before


def test_text_lines_escape_control_characters() -> None:
    record = logging.LogRecord("gateway.access", logging.INFO, __file__, 1, "msg\rwith\nbreaks", None, None)
    record.fields = {"alias": "m\n2026-01-01 INFO forged", "tab": "a\tb", "back": "c\\d"}  # type: ignore[attr-defined]
    line = gwlog.TextFormatter("%(levelname)s %(message)s").format(record)
    assert line == "INFO msg\\rwith\\nbreaks alias=m\\n2026-01-01 INFO forged tab=a\\tb back=c\\\\d"
