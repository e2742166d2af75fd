"""A burst of new connections is let in at once, however long a turn of the event loop lasts.

Under uvloop, libuv accepts one connection per turn of the loop; a gateway busy with a thousand
streams turns slowly, and new clients waited seconds in the listen queue (issue 19, defect 1). Here
each turn of the server's loop is made long on purpose (a callback that sleeps, rescheduled every
turn, counting turns), and a burst of clients must all be answered within a few turns: a count of
turns, not a measure of time."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn

from gateway.app import create_app
from gateway.config import parse_config
from gateway.server import LOOPS, AnnouncingServer, GatewayHttpProtocol, listen
from tests.support.servers import MOCK_CONFIG, read_answer

BURST = 120
TURN_SECONDS = 0.01


class SlowTurns:
    """Runs once in every turn of the loop it is started on, sleeping: a loop busy with other work."""

    def __init__(self) -> None:
        self.turns = 0
        self.stopped = False
        self.loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.loop.call_soon(self._turn)

    def _turn(self) -> None:
        if self.stopped:
            return
        time.sleep(TURN_SECONDS)
        self.turns += 1
        assert self.loop is not None
        self.loop.call_soon(self._turn)


@pytest.fixture(params=["uvloop", "asyncio"])
def served(request: pytest.FixtureRequest) -> Iterator[tuple[int, SlowTurns]]:
    sock = listen("127.0.0.1", 0)
    port = sock.getsockname()[1]
    slow = SlowTurns()
    started = threading.Event()
    config = uvicorn.Config(create_app(parse_config(MOCK_CONFIG, env={})), loop=LOOPS[request.param],
                            http=GatewayHttpProtocol, lifespan="on", log_level="warning", access_log=False,
                            timeout_graceful_shutdown=1)
    server = AnnouncingServer(config, on_listening=started.set, on_stopped=lambda: None)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)  # as `gateway serve`
    thread.start()
    assert started.wait(10), "the gateway did not start"
    assert slow.loop is None
    server.servers[0].get_loop().call_soon_threadsafe(slow.start)
    try:
        yield port, slow
    finally:
        slow.stopped = True
        server.should_exit = True
        thread.join(10)
        sock.close()


def test_a_burst_of_new_connections_is_answered_within_a_few_turns(served: tuple[int, SlowTurns]) -> None:
    port, slow = served
    while slow.turns < 2:  # the slow turns have begun
        time.sleep(TURN_SECONDS)
    clients = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(BURST)]
    try:
        begun = slow.turns
        for client in clients:
            client.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        for client in clients:
            head, body, _ = read_answer(client)
            assert head.startswith(b"HTTP/1.1 200") and body == b'{"status":"ok"}'
        turns = slow.turns - begun
    finally:
        for client in clients:
            client.close()
    # One connection per turn would take at least BURST turns.
    assert turns < BURST // 4, f"{BURST} new connections took {turns} turns of the loop to answer"
