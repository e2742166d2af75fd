"""Watching the config file: a cheap poll (one `stat` per file per interval, the contents hashed only
when the stat changed), so it works everywhere without new dependencies: plain files edited in
place or replaced by rename, and Kubernetes ConfigMap volumes, where an update swaps a symlink
(`..data`) and the file's path never changes: `os.stat` follows the links, so the resolved target's
inode, size and mtime change, and the hash of the contents decides whether anything really did.

A change counts once the file has held still for one interval (the same stat on two polls in a row):
an editor or a tool that writes the file in place is not read halfway through, when it may be empty
or a valid prefix of the new config (no models, no master key)."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Awaitable, Callable, Sequence

from gateway.background import Background
from gateway.logs import get_logger

log = get_logger("reload")

Signature = tuple[str, int, int, int, int]  # resolved path, device, inode, size, mtime_ns


def signature(path: str) -> Signature | None:
    try:
        st = os.stat(path)
        return os.path.realpath(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns
    except OSError:
        return None


def content_hash(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return None


class FileWatcher:
    """Calls `on_change` when any watched file's contents change (checked every `interval` s, a file
    that is still changing looked at again at the next poll)."""

    def __init__(self, paths: Callable[[], Sequence[str]], on_change: Callable[[], Awaitable[object]],
                 interval: float) -> None:
        self.paths = paths
        self.on_change = on_change
        self.interval = interval
        self._seen: dict[str, tuple[Signature | None, str | None]] = {}
        self._moving: dict[str, Signature | None] = {}  # the stat a poll saw change, until it holds still
        self._task = Background("config-watcher")

    def snapshot(self) -> None:
        """Remember the files as they are now (the loaded config's files)."""
        self._seen = {p: (signature(p), content_hash(p)) for p in self.paths()}
        self._moving = {}

    def changed(self) -> list[str]:
        """One poll: the files whose contents differ from the snapshot, once every file that changed
        has the stat the poll before saw (a reload reads them all: the config and the price table it
        names may be written one after the other). The snapshot follows them."""
        paths = list(self.paths())
        for gone in (self._seen, self._moving):
            for path in set(gone) - set(paths):
                del gone[path]
        still = True
        for path in paths:
            sig = signature(path)
            old = self._seen.get(path)
            if old is not None and old[0] == sig:
                self._moving.pop(path, None)
            elif path not in self._moving or self._moving[path] != sig:
                self._moving[path] = sig  # changed since the last poll: maybe still being written
                still = False
        if not still:
            return []
        changed: list[str] = []
        for path, sig in self._moving.items():
            old = self._seen.get(path)
            digest = content_hash(path) if sig is not None else None
            if old is None or old[1] != digest:
                changed.append(path)
            self._seen[path] = (sig, digest)
        self._moving = {}
        return changed

    def track_new(self) -> None:
        """Remember files the watched list gained (a reload that named a new price table): they are
        what was just loaded, not a change."""
        for path in self.paths():
            if path not in self._seen:
                self._seen[path] = (signature(path), content_hash(path))

    def start(self) -> None:
        if not self._task.running and self.interval > 0:
            self.snapshot()
            self._task.start(self._run)

    async def stop(self) -> None:
        await self._task.stop()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                changed = self.changed()
                if changed:
                    log.info("config file changed: reloading", extra={"fields": {"files": changed}})
                    await self.on_change()
            except asyncio.CancelledError:
                raise
            except Exception:  # the watcher must outlive any one failed reload
                log.exception("config watcher failed")
