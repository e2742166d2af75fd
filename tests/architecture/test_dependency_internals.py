"""The private parts of dependencies the gateway leans on, each checked on its own so an upgrade that
moves one fails here, by name, before it fails somewhere obscure. pyproject.toml caps these packages
below their next minor version; raise a cap only with this file green."""

from __future__ import annotations

import asyncio
import inspect

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState


def test_uvicorn_httptools_protocol_takes_its_transport_in_connection_made() -> None:
    """gateway/server.py subclasses HttpToolsProtocol and counts the connection it is given."""
    assert "transport" in inspect.signature(HttpToolsProtocol.connection_made).parameters
    loop = asyncio.new_event_loop()
    try:
        config = Config(app=lambda scope, receive, send: None, loop="asyncio", http="httptools")
        config.load()
        protocol = HttpToolsProtocol(config=config, server_state=ServerState(), app_state={}, _loop=loop)
        assert protocol.loop is loop  # the connection bounds arm their deadlines on it
    finally:
        loop.close()
