"""The ingest ledger (``state/ledger.jsonl``): one JSON line per delivery event, appended
last, after the files it describes are in place.

The ledger only grows (about seventy lines a day, tens of thousands in a year), and
every ``raw/<source>`` and ``staged/<source>`` step of a run opens it. So the lines
parsed from a ledger file are kept for the process, with the byte offset read up
to and the bytes just before it: the next :class:`Ledger` of that file parses only
what was appended since (by this process or another). A file that shrank, was
replaced (another inode) or no longer ends, at the offset, with the bytes read
there is read again from the start.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# How many bytes before the offset must be unchanged for the parsed lines to be reused.
_TAIL = 512


@dataclass
class _Parsed:
    """The entries of a ledger file up to ``offset`` (a line boundary)."""

    inode: int = -1
    offset: int = 0
    tail: bytes = b""
    by_path: dict[str, dict] = field(default_factory=dict)
    by_sha: dict[tuple[str, str], dict] = field(default_factory=dict)
    by_source: dict[str, dict[str, dict]] = field(default_factory=dict)


_PARSED: dict[Path, _Parsed] = {}
_LOCK = threading.Lock()


def _index(into: _Parsed | Ledger, entry: dict) -> None:
    into.by_path[entry["file"]] = entry
    into.by_source.setdefault(entry["source_id"], {})[entry["file"]] = entry
    # Only a delivery with records can be re-sent: two empty files are equal by nature.
    if entry["status"] in ("landed", "ingested") and entry["rows_read"] > 0:
        into.by_sha.setdefault((entry["source_id"], entry["sha256"]), entry)


def _parse(path: Path) -> _Parsed:
    """The parsed entries of ``path``, brought up to date with what was appended."""
    with _LOCK:
        return _parse_unlocked(path.absolute())


def _parse_unlocked(path: Path) -> _Parsed:
    try:
        st = path.stat()
    except FileNotFoundError:
        _PARSED.pop(path, None)
        return _Parsed()
    parsed = _PARSED.get(path)
    with path.open("rb") as fh:
        if parsed is not None and parsed.inode == st.st_ino and st.st_size >= parsed.offset:
            start = parsed.offset - len(parsed.tail)
            fh.seek(start)
            if fh.read(len(parsed.tail)) != parsed.tail:
                parsed = None
        else:
            parsed = None
        if parsed is None:
            parsed = _Parsed(inode=st.st_ino)
            fh.seek(0)
        data = fh.read()
    # Whole lines only; a last line without its newline (a writer mid-append) is
    # parsed now and again next time.
    end = data.rfind(b"\n") + 1
    for line in data.decode("utf-8").splitlines():
        if line.strip():
            _index(parsed, json.loads(line))
    if end:
        parsed.tail = (parsed.tail + data[:end])[-_TAIL:]
        parsed.offset += end
    _PARSED[path] = parsed
    return parsed


class Ledger:
    """Append-only record of every ingested delivery, keyed by path and content hash.

    ``by_path`` holds the latest entry of each delivered file, ``by_source`` the same
    per source id, ``by_sha`` the first landed entry of each (source, content hash).
    An instance sees the file as it was when created, plus its own appends."""

    def __init__(self, path: Path):
        self.path = path
        parsed = _parse(path)
        self.by_path: dict[str, dict] = dict(parsed.by_path)
        self.by_sha: dict[tuple[str, str], dict] = dict(parsed.by_sha)
        self.by_source: dict[str, dict[str, dict]] = {
            s: dict(files) for s, files in parsed.by_source.items()
        }

    def append(self, report: Any) -> None:
        """Record ``report`` (a :class:`connectors.ingest.FileReport`), synced to disk."""
        entry = asdict(report) | {"recorded_at": datetime.now(UTC).isoformat()}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry, ensure_ascii=False, default=str) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        _index(self, entry)

    def entries(self, source_id: str, day: str | None = None) -> list[dict]:
        """The latest entry of each delivery of ``source_id`` (of ``day`` if given),
        by day and file."""
        return sorted(
            (
                e
                for e in self.by_source.get(source_id, {}).values()
                if day is None or e["day"] == day
            ),
            key=lambda e: (e["day"], e["file"]),
        )
