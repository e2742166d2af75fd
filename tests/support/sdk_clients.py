"""Official SDK clients made by helper functions (not fixtures) in the dialect tests: each is closed
when its test ends (tests/conftest.py), so no open socket is collected, with a ResourceWarning, in
whichever test runs then."""

from __future__ import annotations

from typing import Protocol, TypeVar


class Closable(Protocol):
    def close(self) -> None: ...


C = TypeVar("C", bound=Closable)

OPENED: list[Closable] = []


def opened(client: C) -> C:
    OPENED.append(client)
    return client


def close_all() -> None:
    while OPENED:
        OPENED.pop().close()
