"""gateway/ids.py: the shapes the gateway's ids keep, and a forked worker never repeating its parent."""

from __future__ import annotations

import os
import re

from gateway.ids import UniqueIds
from gateway.middleware.request_id import mint_request_id


def test_shapes_and_counting() -> None:
    assert re.fullmatch(r"req_[0-9a-f]{14}[0-9a-f]{10}", mint_request_id())
    ids = UniqueIds(random_bytes=6, start=0)
    first, second = ids(), ids()
    assert first[:12] == second[:12] and (first[12:], second[12:]) == ("0", "1")


def test_a_forked_child_draws_its_own_prefix() -> None:
    ids = UniqueIds(random_bytes=8)
    parent = ids()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next id and leave at once
        os.write(write, ids().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 100).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert child[:16] != parent[:16]
