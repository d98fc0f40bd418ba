"""Data-quality measurements over the ledger and the lake, for the per-source checks.

Plain functions (no Dagster): the asset checks in ``orchestration/`` call them and
decide what blocks.

- :func:`file_accounting`: for each staged delivery, rows read against what the
  lake holds (staged records + quarantined rows), recounted from the Parquet files.
- :func:`drifted_files`: deliveries whose columns no longer match the spec.
- :func:`duplicate_files`: deliveries that repeat an earlier file byte for byte.
- :func:`validity_rates`: the share of valid resident IDs, phones and birth dates in
  a day's mentions against the source's own earlier deliveries.

What a day costs does not grow with the source's history: the ledger is parsed
once per process (:mod:`connectors.ledger`) and can be passed in as ``book``; row
and validity counts come from the source's running statistics
(:mod:`connectors.lake_stats`), which recount any file that changed since it was
counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connectors.daily import ledger
from connectors.ingest import lake_paths
from connectors.lake_stats import VALIDITY_FIELDS, Counts, LakeStats, add, no_counts
from connectors.ledger import Ledger
from connectors.spec import SourceSpec
from connectors.staging import schema_drift
from tessera.config import Home

__all__ = [
    "VALIDITY_FIELDS",
    "SourceThresholds",
    "drifted_files",
    "duplicate_files",
    "entries",
    "file_accounting",
    "validity_rates",
]


@dataclass(frozen=True)
class SourceThresholds:
    """How far a day's validity rate may fall below the source's history, and how
    many values a day needs before its rate is judged at all."""

    max_validity_drop: float = 0.10
    min_values: int = 20


def entries(
    home: Home, source_id: str, day: str | None = None, book: Ledger | None = None
) -> list[dict[str, Any]]:
    """The latest ledger entry of each delivery of ``source_id`` (of ``day`` if given),
    from ``book`` (default: the home's ledger as it is now)."""
    return (book or ledger(home)).entries(source_id, day)


def file_accounting(
    home: Home, source_id: str, day: str | None = None, book: Ledger | None = None
) -> list[dict[str, Any]]:
    """One row per delivery: ``file, status, read, staged, quarantined, ok``. Staged and
    quarantined are recounted from the lake files (records, read and stage
    quarantine), not taken from the ledger; ``ok`` is read = staged + quarantined.
    A delivery landed but not staged is not ok (nothing may wait half-way); a
    duplicate delivery is quarantined as a whole and is ok. (A file's count is
    taken from the source's :class:`LakeStats` while the file is unchanged.)"""
    stats = LakeStats(home, source_id)
    out = []
    for e in entries(home, source_id, day, book):
        if e["status"] in ("skipped", "duplicate"):
            continue
        stem = (e.get("detail") or {}).get("stem")
        if e["status"] != "ingested" or stem is None:
            out.append(
                {
                    "file": e["file"],
                    "status": e["status"],
                    "read": e["rows_read"],
                    "staged": 0,
                    "quarantined": 0,
                    "ok": False,
                }
            )
            continue
        p = lake_paths(home, source_id, e["day"], stem)
        staged = stats.rows(p["records"])
        quarantined = stats.rows(p["read_quarantine"]) + stats.rows(p["stage_quarantine"])
        out.append(
            {
                "file": e["file"],
                "status": e["status"],
                "read": int(e["rows_read"]),
                "staged": staged,
                "quarantined": quarantined,
                "ok": int(e["rows_read"]) == staged + quarantined
                and staged == int(e["rows_staged"]),
            }
        )
    stats.save()
    return out


def drifted_files(
    home: Home, spec: SourceSpec, day: str | None = None, book: Ledger | None = None
) -> list[dict[str, str]]:
    """Deliveries whose columns lack a required column of the spec (the whole file
    went to quarantine), with the reason, and deliveries with columns the spec
    does not know (kept as attributes)."""
    known = {c.name for c in spec.columns}
    if spec.database is not None:  # the extraction's own columns
        known |= {spec.database.key, spec.database.cursor, spec.database.deleted_flag or ""}
    out = []
    for e in entries(home, spec.id, day, book):
        cols = (e.get("detail") or {}).get("columns")
        if e["status"] not in ("landed", "ingested") or not cols or not e["rows_read"]:
            continue
        reason = schema_drift(spec, cols)
        extra = sorted(set(cols) - known - {c for c in cols if c.startswith("_")})
        if reason or extra:
            out.append(
                {
                    "file": e["file"],
                    "missing": reason or "",
                    "unexpected": ", ".join(extra),
                }
            )
    return out


def duplicate_files(
    home: Home, source_id: str, day: str | None = None, book: Ledger | None = None
) -> list[dict[str, str]]:
    """Deliveries recorded as byte-identical repeats of an earlier file."""
    return [
        {"file": e["file"], "duplicate_of": e.get("duplicate_of") or ""}
        for e in entries(home, source_id, day, book)
        if e["status"] == "duplicate"
    ]


def _mention_files(home: Home, source_id: str) -> dict[str, list[Path]]:
    root = home.lake / "staged" / source_id
    out: dict[str, list[Path]] = {}
    for p in sorted(root.glob("*/*.mentions.parquet")):
        out.setdefault(p.parent.name, []).append(p)
    return out


def validity_rates(
    home: Home,
    source_id: str,
    day: str | None = None,
    thresholds: SourceThresholds | None = None,
) -> dict[str, dict[str, Any]]:
    """Per field (``id_number``, ``phone``, ``dob``): the valid share of the values in
    ``day``'s mentions (default: the latest delivery day) and in the source's
    earlier days, and ``ok`` = the day's rate is at most ``max_validity_drop``
    below the history (always ok without history or with fewer than
    ``min_values`` values on either side)."""
    th = thresholds or SourceThresholds()
    files = _mention_files(home, source_id)
    if not files:
        return {}
    day = day or max(files)
    # Counts add up file by file: each file's come from the source's running statistics.
    stats = LakeStats(home, source_id)
    today: Counts = no_counts()
    before: Counts = no_counts()
    for d, paths in files.items():
        if d > day:
            continue  # later days are neither the day nor its history
        for p in paths:
            if d == day:
                today = add(today, stats.validity(p))
            else:
                before = add(before, stats.validity(p))
    stats.save()
    out: dict[str, dict[str, Any]] = {}
    for f in VALIDITY_FIELDS:
        (ok_t, bad_t), (ok_h, bad_h) = today[f], before[f]
        n_t, n_h = ok_t + bad_t, ok_h + bad_h
        if n_t == 0 and n_h == 0:
            continue
        rate_t = ok_t / n_t if n_t else None
        rate_h = ok_h / n_h if n_h else None
        judged = rate_t is not None and rate_h is not None and min(n_t, n_h) >= th.min_values
        out[f] = {
            "day": day,
            "rate": None if rate_t is None else round(rate_t, 4),
            "history_rate": None if rate_h is None else round(rate_h, 4),
            "values": n_t,
            "history_values": n_h,
            "ok": not judged or rate_t >= rate_h - th.max_validity_drop,  # type: ignore[operator]
        }
    return out
