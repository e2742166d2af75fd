from __future__ import annotations

import asyncio
import os
from pathlib import Path

from gateway.ops.watch import FileWatcher


async def _noop() -> None:
    return None


def watcher(*paths: Path) -> FileWatcher:
    w = FileWatcher(lambda: [str(p) for p in paths], _noop, interval=0.01)
    w.snapshot()
    return w


def test_unchanged_and_touched_files_are_not_a_change(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text("x: 1\n")
    w = watcher(path)
    assert not w.changed()
    os.utime(path, ns=(1, 1))  # the stat differs, the contents do not
    assert not w.changed()


def settled(w: FileWatcher) -> list[str]:
    """The poll that sees a change, then the one after it, which reports it once the file held still."""
    assert not w.changed()
    return w.changed()


def test_an_edit_in_place_is_a_change_once_the_file_holds_still(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text("x: 1\n")
    w = watcher(path)
    path.write_text("x: 22\n")
    assert settled(w) == [str(path)]
    assert not w.changed()


def test_a_file_still_being_written_is_read_once_it_holds_still(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text("models: {a: 1}\n")
    w = watcher(path)
    with path.open("w") as f:  # an editor writing in place: truncated, then written in pieces
        f.flush()
        assert not w.changed()  # empty: not read
        f.write("models:\n")
        f.flush()
        os.utime(path, ns=(5, 5))  # (a stat that differs even within the clock's resolution)
        assert not w.changed()  # a valid prefix: not read either
        f.write("  b: 2\n")
    os.utime(path, ns=(6, 6))
    assert not w.changed()
    assert w.changed() == [str(path)]  # whole, and the same on two polls
    assert not w.changed()


def test_same_size_same_mtime_rewrite_is_seen_through_the_inode(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text("x: 1\n")
    st = path.stat()
    w = watcher(path)
    replacement = tmp_path / "b.yaml"
    replacement.write_text("x: 2\n")
    os.utime(replacement, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(replacement, path)
    assert settled(w)


def test_a_symlink_swap_is_a_change(tmp_path: Path) -> None:
    (tmp_path / "v1").mkdir()
    (tmp_path / "v2").mkdir()
    (tmp_path / "v1" / "g.yaml").write_text("x: 1\n")
    (tmp_path / "v2" / "g.yaml").write_text("x: 2\n")
    os.symlink("v1", tmp_path / "data")
    link = tmp_path / "g.yaml"
    os.symlink("data/g.yaml", link)
    w = watcher(link)
    os.symlink("v2", tmp_path / "data.tmp")
    os.replace(tmp_path / "data.tmp", tmp_path / "data")
    assert settled(w)


def test_a_deleted_then_restored_file_is_a_change_each_time(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text("x: 1\n")
    w = watcher(path)
    path.unlink()
    assert settled(w)
    path.write_text("x: 1\n")
    assert settled(w)


async def test_the_task_calls_back_on_change_and_survives_a_failing_callback(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text("x: 1\n")
    calls: list[int] = []

    async def on_change() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a reload failed badly")

    w = FileWatcher(lambda: [str(path)], on_change, interval=0.01)
    w.start()
    try:
        for text in ("x: 2\n", "x: 3\n"):
            before = len(calls)
            path.write_text(text)
            for _ in range(200):
                if len(calls) > before:
                    break
                await asyncio.sleep(0.01)
        assert len(calls) == 2
    finally:
        await w.stop()


async def test_interval_zero_never_starts(tmp_path: Path) -> None:
    w = FileWatcher(lambda: [str(tmp_path / "a")], _noop, interval=0)
    w.start()
    assert not w._task.running
    await w.stop()


def test_nothing_is_reported_while_any_watched_file_is_still_changing(tmp_path: Path) -> None:
    config, prices = tmp_path / "gateway.yaml", tmp_path / "prices.yaml"
    config.write_text("x: 1\n")
    prices.write_text("p: 1\n")
    w = watcher(config, prices)
    config.write_text("x: 22\n")  # (each edit changes the size: the stat differs within the clock's tick)
    assert not w.changed()
    prices.write_text("p: 2, q: 3\n")  # the price table written after the config: a reload reads both
    assert not w.changed()  # the config held still, the prices did not
    assert sorted(w.changed()) == sorted([str(config), str(prices)])
    assert not w.changed()


def test_a_file_the_list_gains_is_tracked_not_reported(tmp_path: Path) -> None:
    config, prices = tmp_path / "gateway.yaml", tmp_path / "prices.yaml"
    config.write_text("x: 1\n")
    prices.write_text("p: 1\n")
    watched = [str(config)]
    w = FileWatcher(lambda: watched, _noop, interval=0.01)
    w.snapshot()
    watched.append(str(prices))  # a reload loaded a config that names a price table
    w.track_new()
    assert not w.changed() and not w.changed()
    prices.write_text("p: 22\n")
    assert settled(w) == [str(prices)]
