"""Structured JSON logs. Secrets and prompts are never passed to the logger."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info and record.exc_info[0] is not None:
            entry["exc_type"] = record.exc_info[0].__name__
        return orjson.dumps(entry, default=str).decode()


# Control characters as escapes: a value a client chose (a model name with a newline) cannot start a
# line of its own and pass for another record.
_ESCAPES = {c: f"\\x{c:02x}" for c in range(32)} | {ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t",
                                                   ord("\\"): "\\\\", 127: "\\x7f"}


def escape(text: str) -> str:
    return text.translate(_ESCAPES)


class TextFormatter(logging.Formatter):
    """Plain lines for a terminal: the message, then the structured fields as key=value. One record is
    one line (a traceback follows on lines of its own); control characters in the message and the
    fields are escaped."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape(super().formatMessage(record))

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict) and fields:
            line += " " + " ".join(f"{escape(str(k))}={escape(str(v))}" for k, v in fields.items() if v is not None)
        return line


def setup_logging(level: str = "info", fmt: str = "json", *, pinned: bool = False) -> None:
    """Handlers and level for the `gateway` loggers (done by `gateway serve`, not by tests). `pinned`:
    the level came from the command line or the environment, so config reloads leave it alone."""
    global _managed, _pinned
    _managed, _pinned = True, pinned
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    global _json_handler
    _json_handler = handler if fmt == "json" else None
    root = logging.getLogger("gateway")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


# --- observability ---
_managed = False
_pinned = False
_json_handler: logging.StreamHandler | None = None  # type: ignore[type-arg]
_ts_second = -1
_ts_prefix = ""


def write_json_line(logger: str, msg: str, fields: dict[str, Any]) -> bool:
    """The access log's fast path: one INFO line straight to the JSON handler `setup_logging` installed
    (the same shape JsonFormatter writes, without a LogRecord). False when logging is set up some
    other way (text format, tests): the caller then goes through the logging module."""
    global _ts_second, _ts_prefix
    handler = _json_handler
    if handler is None:
        return False
    now = time.time()
    second = int(now)
    if second != _ts_second:
        _ts_second, _ts_prefix = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
    entry: dict[str, Any] = {"ts": f"{_ts_prefix}.{int((now - second) * 1000):03d}Z", "level": "info",
                             "logger": logger, "msg": msg}
    entry.update(fields)
    line = orjson.dumps(entry, default=str).decode() + "\n"
    with handler.lock:  # type: ignore[union-attr]
        handler.stream.write(line)
    return True


def apply_level(level: str) -> None:
    """A reloaded config's `logging.level`, when the process's logging is ours and not pinned."""
    if _managed and not _pinned:
        logging.getLogger("gateway").setLevel(level.upper())
# --- end observability ---


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(f"gateway.{name}")
