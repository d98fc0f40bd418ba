"""Running statistics of one source's files, kept so the source's daily ingest and
checks read what a day changed rather than the source's whole history.

``state/lake_stats/<source>.json`` holds, per staged or quarantined Parquet file
of the source (its path under ``lake/``): the file's size and modification time
when it was counted, its row count and, for mention files, the valid and the
invalid (as delivered) values of each :data:`VALIDITY_FIELDS` field among the
subject mentions. Ingest records a file's statistics from the frame it has just
written; a file that was never recorded (staged before this file existed,
restored from a backup), whose size or modification time no longer match, or
whose record is unreadable, is recounted from the file itself and the statistics
are written back. So a statistic read from here is always the file's as it is now.

It also remembers the SHA-256 of each delivered file in ``landing/`` with the size
and modification time the file had when hashed, so landing does not hash every
file a source ever delivered on every run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import polars as pl

from tessera.config import Home

# field -> (valid column, invalid-as-delivered column) in the mention schema
VALIDITY_FIELDS: dict[str, tuple[str, str]] = {
    "id_number": ("id_number", "id_raw"),
    "phone": ("phone", "phone_raw"),
    "dob": ("dob", "dob_raw"),
}
VERSION = 1

Counts = dict[str, tuple[int, int]]


def validity_counts(frame: pl.LazyFrame | pl.DataFrame) -> Counts:
    """field -> (valid, invalid) values among the subject mentions (``role`` empty;
    every mention of a file written before related roles existed) of ``frame``."""
    lazy = frame.lazy()
    names = lazy.collect_schema().names()
    lazy = lazy.filter(pl.col("role") == "") if "role" in names else lazy
    exprs = []
    for f, (ok, bad) in VALIDITY_FIELDS.items():
        exprs.append(
            (pl.col(ok).is_not_null().sum() if ok in names else pl.lit(0)).alias(f"{f}_ok")
        )
        exprs.append(
            (pl.col(bad).is_not_null().sum() if bad in names else pl.lit(0)).alias(f"{f}_bad")
        )
    row = lazy.select(exprs).collect().row(0, named=True)
    return {f: (int(row[f"{f}_ok"]), int(row[f"{f}_bad"])) for f in VALIDITY_FIELDS}


def add(total: Counts, more: Counts) -> Counts:
    """The sum of two :func:`validity_counts`."""
    return {f: (total[f][0] + more[f][0], total[f][1] + more[f][1]) for f in VALIDITY_FIELDS}


def no_counts() -> Counts:
    return {f: (0, 0) for f in VALIDITY_FIELDS}


class LakeStats:
    """The recorded statistics of one source's lake files (see the module docstring).
    Reads recount what is stale; :meth:`save` writes the changes back (atomically)."""

    def __init__(self, home: Home, source_id: str):
        self.lake = home.lake
        self.path = home.state / "lake_stats" / f"{source_id}.json"
        self.files: dict[str, dict[str, Any]] = {}
        self.landing: dict[str, dict[str, Any]] = {}
        self.changed = False
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if data.get("version") == VERSION:
                self.files = data["files"] if isinstance(data.get("files"), dict) else {}
                self.landing = data["landing"] if isinstance(data.get("landing"), dict) else {}
        except (OSError, ValueError, AttributeError):
            pass  # missing or unreadable: every file is recounted once, then recorded

    def _key(self, path: Path) -> str:
        return path.relative_to(self.lake).as_posix()

    def _current(
        self, path: Path, want: str
    ) -> tuple[dict[str, Any] | None, os.stat_result | None]:
        """(the record of ``path`` if it is still the file's and holds ``want``, the
        file's stat or None when there is no such file)."""
        key = self._key(path)
        try:
            st = path.stat()
        except FileNotFoundError:
            if self.files.pop(key, None) is not None:
                self.changed = True
            return None, None
        rec = self.files.get(key)
        if (
            isinstance(rec, dict)
            and rec.get("size") == st.st_size
            and rec.get("mtime_ns") == st.st_mtime_ns
            and want in rec
        ):
            return rec, st
        return None, st

    def _store(self, path: Path, st: os.stat_result, **facts: Any) -> None:
        key = self._key(path)
        rec = self.files.get(key)
        if not (
            isinstance(rec, dict)
            and rec.get("size") == st.st_size
            and rec.get("mtime_ns") == st.st_mtime_ns
        ):
            rec = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
        rec.update(facts)
        self.files[key] = rec
        self.changed = True

    def rows(self, path: Path) -> int:
        """Rows of the Parquet file ``path`` (0 when there is no such file)."""
        rec, st = self._current(path, "rows")
        if rec is not None:
            try:
                return int(rec["rows"])
            except (TypeError, ValueError):
                pass  # a damaged record: recount
        if st is None:
            return 0
        n = int(pl.scan_parquet(path).select(pl.len()).collect().item())
        self._store(path, st, rows=n)
        return n

    def validity(self, path: Path) -> Counts:
        """:func:`validity_counts` of the mention file ``path`` (zeros when there is no
        such file)."""
        rec, st = self._current(path, "validity")
        if rec is not None:
            try:
                return {
                    f: (int(rec["validity"][f][0]), int(rec["validity"][f][1]))
                    for f in VALIDITY_FIELDS
                }
            except (KeyError, IndexError, TypeError, ValueError):
                pass  # a damaged record: recount
        if st is None:
            return no_counts()
        counts = validity_counts(pl.scan_parquet(path))
        self._store(path, st, validity={f: list(v) for f, v in counts.items()})
        return counts

    def record(self, path: Path, frame: pl.DataFrame, *, mentions: bool = False) -> None:
        """Record the statistics of ``frame``, just written to ``path``."""
        facts: dict[str, Any] = {"rows": frame.height}
        if mentions:
            facts["validity"] = {f: list(v) for f, v in validity_counts(frame).items()}
        self._store(path, path.stat(), **facts)

    def landed_digest(self, path: Path, rel: str) -> str | None:
        """The SHA-256 recorded for the delivered file ``path`` (``rel``: its path under
        the home) if its size and modification time are still those it had when
        hashed, else None."""
        rec = self.landing.get(rel)
        if not isinstance(rec, dict):
            return None
        st = path.stat()
        if rec.get("size") != st.st_size or rec.get("mtime_ns") != st.st_mtime_ns:
            return None
        digest = rec.get("sha256")
        return digest if isinstance(digest, str) else None

    def record_landed_digest(self, rel: str, st: os.stat_result, digest: str) -> None:
        """Remember ``digest``, computed from the delivered file ``rel`` as ``st`` shows it."""
        self.landing[rel] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
        self.changed = True

    def save(self) -> None:
        """Write the statistics back if anything changed (a temporary file, renamed)."""
        if not self.changed:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(
            json.dumps(
                {"version": VERSION, "files": self.files, "landing": self.landing},
                separators=(",", ":"),
            ),
            encoding="utf-8",
        )
        os.replace(tmp, self.path)
        self.changed = False
