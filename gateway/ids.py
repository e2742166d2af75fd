"""Ids that must be unique across replicas, workers and restarts but need not be secret: a random
prefix drawn per process and a counter, so minting one costs no system call. A forked worker draws
a prefix of its own (os.register_at_fork), so it never repeats its parent's ids."""

from __future__ import annotations

import itertools
import os


class UniqueIds:
    """`ids()` → `<head><random hex><counter in hex, zero-padded to width>`. Make one per kind of id,
    at import time: each registers a fork hook for the life of the process."""

    __slots__ = ("_counter", "_head", "_prefix", "_random_bytes", "_width")

    def __init__(self, head: str = "", *, random_bytes: int = 8, width: int = 0, start: int = 1) -> None:
        self._head = head
        self._random_bytes = random_bytes
        self._width = width
        self._counter = itertools.count(start)
        self._prefix = ""
        self._reseed()
        os.register_at_fork(after_in_child=self._reseed)

    def _reseed(self) -> None:
        self._prefix = self._head + os.urandom(self._random_bytes).hex()

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._counter):0{self._width}x}"
