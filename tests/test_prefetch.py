"""The copy of the live warehouse made ahead of the build (``warehouse.prefetch``): the
build takes it only when it is a finished copy of the current live file; a running
copy is waited for, anything else is discarded and the build copies itself."""

from __future__ import annotations

import os
import time
from pathlib import Path

from warehouse import prefetch


def _live(tmp_path: Path, size: int = 3_000_000) -> Path:
    live = tmp_path / "warehouse.duckdb"
    live.write_bytes(os.urandom(size))
    return live


def test_the_build_takes_a_finished_copy_of_the_live_file(tmp_path: Path) -> None:
    live = _live(tmp_path)
    assert prefetch.start(live) == "started"
    dest = tmp_path / "building"
    assert prefetch.take(live, dest, wait=60)  # waits for the detached copier
    assert dest.read_bytes() == live.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["building", "warehouse.duckdb"]
    # Nothing prepared any more: the next build copies itself.
    assert not prefetch.take(live, tmp_path / "again", wait=1)


def test_a_copy_of_an_older_live_file_is_discarded(tmp_path: Path) -> None:
    live = _live(tmp_path)
    assert prefetch.copy(live)  # what the detached process runs
    assert prefetch.start(live) == "ready"
    live.write_bytes(os.urandom(1000))  # the live file was replaced since
    assert not prefetch.take(live, tmp_path / "building", wait=1)
    assert not prefetch.prepared_path(live).exists()
    assert not (tmp_path / "building").exists()


def test_a_dead_copier_leaves_nothing_to_take(tmp_path: Path) -> None:
    live = _live(tmp_path)
    lock = live.with_name(live.name + ".prepared.lock")
    tmp = live.with_name(live.name + ".prepared.tmp")
    lock.write_text("999999999", encoding="utf-8")  # no such process
    tmp.write_bytes(live.read_bytes()[:1000])  # cut short
    t = time.monotonic()
    assert not prefetch.take(live, tmp_path / "building", wait=30)
    assert time.monotonic() - t < 5, "a dead copier is not waited for"
    assert not tmp.exists() and not lock.exists()
    # A second copier while one runs does nothing.
    lock.write_text(str(os.getpid()), encoding="utf-8")
    assert prefetch.start(live) == "running"
    assert not prefetch.copy(live)
    lock.unlink()


def test_no_live_warehouse_no_copy(tmp_path: Path) -> None:
    assert prefetch.start(tmp_path / "warehouse.duckdb") == "no live warehouse"
