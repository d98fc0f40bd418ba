"""Day-by-day ingest: land and stage one delivery day of a file-drop source, and
find the deliveries in ``landing/`` that the ledger has not seen yet.

The day-partitioned ``raw/<source>`` and ``staged/<source>`` assets call
:func:`land_day` and :func:`stage_day`; the landing sensor and the daily schedule
call :func:`pending_days`. The per-file work is :mod:`connectors.ingest`'s, so a
day ingested here and a day ingested by ``tessera ingest`` leave the same lake
and the same ledger lines.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import date
from pathlib import Path

from connectors.ingest import FileReport, Ledger, deliveries, land_deliveries, stage_file
from connectors.spec import SourceSpec
from tessera.config import Home


def ledger(home: Home) -> Ledger:
    """The ingest ledger of ``home`` (``state/ledger.jsonl``)."""
    return Ledger(home.state / "ledger.jsonl")


def delivered_days(home: Home, spec: SourceSpec) -> list[str]:
    """The days (``YYYY-MM-DD``) on which a file-drop source delivered, oldest first."""
    return sorted({d.isoformat() for d, _ in deliveries(home.landing, spec)})


def land_day(
    home: Home, spec: SourceSpec, day: str, book: Ledger | None = None
) -> list[FileReport]:
    """Land the files ``spec`` delivered on ``day`` (``landing/<source>/<day>/``) into
    bronze; files already in the ledger with the same bytes are skipped."""
    found = deliveries(home.landing, spec, date.fromisoformat(day))
    return land_deliveries(home, spec, book or ledger(home), found)


def stage_day(
    home: Home, spec: SourceSpec, day: str, book: Ledger | None = None
) -> list[FileReport]:
    """Stage the landed, not yet staged deliveries of ``spec`` for ``day``."""
    book = book or ledger(home)
    pending = [e for e in book.entries(spec.id, day) if e["status"] == "landed"]
    reports = []
    for entry in pending:
        try:
            reports.append(stage_file(home, spec, entry, book))
        except Exception as exc:
            raise RuntimeError(f"{spec.id}: staging {entry['file']}: {exc}") from exc
    return reports


def pending_files(home: Home, specs: Iterable[SourceSpec]) -> dict[str, list[Path]]:
    """Delivered files of file-drop sources that the ledger does not hold yet (by
    path), grouped by delivery day, oldest day first. Database sources have no
    files: their changes are found by extraction."""
    known = ledger(home).by_path
    out: dict[str, list[Path]] = {}
    for spec in specs:
        if spec.database is not None:
            continue
        for d, path in deliveries(home.landing, spec):
            if str(path.relative_to(home.root)) not in known:
                out.setdefault(d.isoformat(), []).append(path)
    return {d: sorted(out[d]) for d in sorted(out)}


def fingerprint(home: Home, files: Iterable[Path]) -> str:
    """A short digest of a set of delivered files (relative path and size): a day
    whose files change (a late file, a re-sent file) gets a new fingerprint."""
    h = hashlib.sha256()
    for p in sorted(files):
        h.update(f"{p.relative_to(home.root)}\0{p.stat().st_size}\n".encode())
    return h.hexdigest()[:16]
