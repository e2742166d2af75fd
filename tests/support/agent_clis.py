"""The real agent CLIs (Claude Code, Codex) for end-to-end tests: where to find them, an environment
that keeps them on loopback with telemetry off, and a recorder of what they send the gateway.

`.ci/run` installs both from npm into `.ci/npm`; a developer may point GATEWAY_TEST_CLAUDE /
GATEWAY_TEST_CODEX at other binaries. Without them the tests skip, except under CI (CI=true), where a
missing CLI is a failure: the install step broke."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
QUIET = {"DISABLE_TELEMETRY": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1",
         "DISABLE_ERROR_REPORTING": "1", "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}


def cli(name: str) -> str:
    """The path of an agent CLI (`claude`, `codex`), or skip (fail under CI)."""
    found = os.environ.get(f"GATEWAY_TEST_{name.upper()}") or str(ROOT / ".ci" / "npm" / "node_modules" / ".bin" / name)
    if not Path(found).exists():
        found = shutil.which(name) or ""
    if not found:
        message = f"the {name} CLI is not installed (bash .ci/run installs it into .ci/npm)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def codex_home(home: Path, base_url: str, key_variable: str) -> Path:
    """A CODEX_HOME whose config sends Codex to `base_url` (the Responses API) with the key in
    `key_variable`, analytics, feedback and telemetry off, no retries of its own."""
    home.mkdir()
    (home / "config.toml").write_text(f"""
model = "gpt-5-codex"
model_provider = "gateway"
check_for_update_on_startup = false

[model_providers.gateway]
name = "gateway"
base_url = "{base_url}/v1"
wire_api = "responses"
env_key = "{key_variable}"
stream_max_retries = 0
request_max_retries = 0

[analytics]
enabled = false

[feedback]
enabled = false

[otel]
exporter = "none"
""")
    return home


def environment(home: Path, **extra: str) -> dict[str, str]:
    """A clean environment: the CLI's own home, loopback only, telemetry and updates off."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8", **QUIET}
    env.update(extra)
    return env


@dataclass
class Exchange:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    answer: bytearray = field(default_factory=bytearray)


class Recorder:
    """ASGI middleware in front of the gateway app: each request as the client sent it, and the bytes
    the client received."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.exchanges: list[Exchange] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        exchange = Exchange(scope["method"], scope["path"],
                            {k.decode().lower(): v.decode() for k, v in scope["headers"]}, b"")
        self.exchanges.append(exchange)
        parts: list[bytes] = []

        async def recorded_receive() -> Any:
            message = await receive()
            if message["type"] == "http.request":
                parts.append(message.get("body", b""))
                exchange.body = b"".join(parts)
            return message

        async def recorded_send(message: Any) -> None:
            if message["type"] == "http.response.body":
                exchange.answer.extend(message.get("body", b""))
            await send(message)

        await self.app(scope, recorded_receive, recorded_send)
