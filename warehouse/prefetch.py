"""The copy of the live warehouse an incremental publish starts from, made ahead.

An incremental publish (:mod:`warehouse.incremental`) updates a copy of the live
warehouse and never the live file. On ext4 that copy moves every byte: 6.8 s for the
4.3 GB warehouse of a 1,000,000-person world, up to 17 s when the file has left the
page cache, all inside the build step. The copy does not depend on the day's
linkage, so a daily run starts it when its linkage begins (:func:`start`, from the
``linkage/person_mentions`` asset) in a detached process that outlives the step, and
the build takes the finished copy (:func:`take`) instead of copying. The analyst
export (:mod:`warehouse.export`) starts from a copy of the previous export the same
way, started when the warehouse build begins. Both copies are started again at the
end of a daily run (the ``warehouse/analyst_export`` asset), for the next day: made
between runs, they no longer share the two cores with the next run's ingest and
linkage, and that run's own starts find them ready.

The copy is ``<live>.prepared`` with ``<live>.prepared.json`` holding the live file's
size, modification time and inode when the copy started; the copying process writes
both only once the whole file is copied and the live file has not changed meanwhile,
so a copy that :func:`take` accepts is a complete copy of the current live file. A
copy still running (``<live>.prepared.lock`` names its process) is waited for; a
stale or broken one is removed and the build copies as before.

Light on purpose: the copying process imports nothing but the standard library.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path


def clone_file(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst`` in the kernel (``copy_file_range``: a reflink, no data
    copied, on filesystems that share extents such as XFS and Btrfs; an in-kernel copy
    elsewhere), or with :func:`shutil.copyfile` where that is not available."""
    if not hasattr(os, "copy_file_range"):
        shutil.copyfile(src, dst)
        return
    with src.open("rb") as fin, dst.open("wb") as fout:
        size = os.fstat(fin.fileno()).st_size
        done = 0
        try:
            while done < size:
                n = os.copy_file_range(fin.fileno(), fout.fileno(), size - done)
                if n == 0:
                    break
                done += n
        except OSError:  # e.g. across filesystems on an old kernel
            done = -1
    if done != size:
        shutil.copyfile(src, dst)


def prepared_path(live: Path) -> Path:
    return live.with_name(live.name + ".prepared")


def _side(live: Path, suffix: str) -> Path:
    return live.with_name(live.name + ".prepared" + suffix)


def _stamp(path: Path) -> list[int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def _running(live: Path) -> bool:
    """Whether a copying process named by the lock file is alive."""
    lock = _side(live, ".lock")
    try:
        pid = int(lock.read_text(encoding="utf-8").strip())
    except (FileNotFoundError, ValueError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        lock.unlink(missing_ok=True)  # its process died mid-copy
        return False
    except PermissionError:
        return True
    return True


def _valid(live: Path) -> bool:
    """A finished copy of the current live file exists."""
    try:
        recorded = json.loads(_side(live, ".json").read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return False
    return prepared_path(live).exists() and recorded == _stamp(live)


def _discard(live: Path) -> None:
    for p in (prepared_path(live), _side(live, ".json"), _side(live, ".tmp")):
        p.unlink(missing_ok=True)


def start(live: Path) -> str:
    """Start copying ``live`` in a detached process unless a finished copy of it exists
    or a copy is running; returns what it did (``started``, ``ready``, ``running``,
    ``no live warehouse``)."""
    if not live.exists():
        return "no live warehouse"
    if _running(live):
        return "running"
    if _valid(live):
        return "ready"
    _discard(live)
    proc = subprocess.Popen(
        [sys.executable, "-m", "warehouse.prefetch", str(live)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # not killed with the step's process
        close_fds=True,
    )
    # Return once the copier holds its lock, so a build right after waits for it.
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        if _side(live, ".lock").exists() or _valid(live):
            return "started"
        if proc.poll() is not None:
            return "failed to start"
        time.sleep(0.01)
    return "failed to start"


def copy(live: Path) -> bool:
    """The copying process: copy ``live`` to its prepared path; True when the copy was
    recorded (the live file did not change while it ran)."""
    lock = _side(live, ".lock")
    # The lock appears with its content (a hard link is atomic and fails if it exists).
    mine = _side(live, f".lock.{os.getpid()}")
    mine.write_text(str(os.getpid()), encoding="utf-8")
    try:
        os.link(mine, lock)
    except FileExistsError:
        return False  # another copier holds it
    finally:
        mine.unlink()
    try:
        before = _stamp(live)
        tmp = _side(live, ".tmp")
        clone_file(live, tmp)
        if before is None or _stamp(live) != before:
            tmp.unlink(missing_ok=True)
            return False
        os.replace(tmp, prepared_path(live))
        stamp = _side(live, ".json")
        stamp.with_name(stamp.name + ".tmp").write_text(json.dumps(before), encoding="utf-8")
        stamp.with_name(stamp.name + ".tmp").replace(stamp)
        return True
    finally:
        lock.unlink(missing_ok=True)


def take(live: Path, dest: Path, wait: float = 600.0) -> bool:
    """Move the finished copy of ``live`` to ``dest`` (waiting up to ``wait`` seconds
    for a running copy); False when there is none of the current live file (the
    caller copies)."""
    deadline = time.monotonic() + wait
    while _running(live) and time.monotonic() < deadline:
        time.sleep(0.05)
    if not _valid(live):
        if not _running(live):
            _discard(live)
        return False
    os.replace(prepared_path(live), dest)
    _side(live, ".json").unlink(missing_ok=True)
    return True


if __name__ == "__main__":
    sys.exit(0 if copy(Path(sys.argv[1])) else 1)
