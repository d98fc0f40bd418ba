"""Land a live source database's changes into bronze, exactly once.

The extraction (``connectors.database.extract``) reads rows changed since the
stored cursor. Its bronze file is named after the cursor it *started* from, so
if the process dies after writing but before the cursor is committed, the rerun
starts from the same cursor, overwrites the same file and the ledger keeps one
entry for it: nothing is missed and nothing is doubled. The cursor is committed
last. Deleted keys are written next to the rows and staged as deletions.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime

import polars as pl

from connectors.canonical import conform
from connectors.database import CursorStore, database_url, extract
from connectors.ingest import (
    FileReport,
    Ledger,
    bronze,
    lake_paths,
    with_lineage,
    write_parquet_atomic,
)
from connectors.lake_stats import LakeStats
from connectors.spec import SourceSpec
from tessera.config import DatabaseServers, Home

DELETION_SCHEMA: dict[str, pl.DataType] = {
    "source_id": pl.String(),
    "record_key": pl.String(),
    "how": pl.String(),
    "file": pl.String(),
    "detected_at": pl.Datetime("us", "UTC"),
}


def _folder(high_water: str | None) -> tuple[str, str]:
    """(folder, stem) for an extraction starting at ``high_water``."""
    if not high_water:
        return "db-initial", "extract_initial"
    slug = hashlib.sha1(high_water.encode()).hexdigest()[:10]
    return f"db-{high_water[:10]}", f"extract_from_{slug}"


def land_database(
    home: Home, spec: SourceSpec, ledger: Ledger, servers: DatabaseServers | None = None
) -> list[FileReport]:
    """Extract what changed in one source database since its cursor and land it."""
    url = database_url(spec, servers or DatabaseServers.from_env(), home)
    store = CursorStore(home.state / "cursors")
    state = store.load(spec.id)
    ext = extract(spec, url, state)
    folder, stem = _folder(state.high_water if state else None)
    rel = f"db/{spec.id}/{folder}/{stem}"
    if ext.rows_read == 0 and ext.deleted.height == 0:
        store.commit(ext.new_state)
        return [FileReport(spec.id, rel, folder, "skipped")]
    now = datetime.now(UTC)
    paths = lake_paths(home, spec.id, folder, stem)
    raw = bronze(ext.rows, spec.id, rel, now)
    read_q = with_lineage(ext.quarantine, spec.id, rel, now)
    deletions = conform(
        ext.deleted.rename({"key": "record_key"}).with_columns(
            pl.lit(spec.id).alias("source_id"),
            pl.lit(rel).alias("file"),
            pl.lit(now).alias("detected_at"),
        ),
        DELETION_SCHEMA,
    )
    write_parquet_atomic(raw, paths["raw"])
    stats = LakeStats(home, spec.id)
    write_parquet_atomic(read_q, paths["read_quarantine"], stats)
    stats.save()
    write_parquet_atomic(
        deletions, home.lake / "staged" / spec.id / folder / f"{stem}.deletions.parquet"
    )
    ops = ext.rows["_op"].value_counts() if "_op" in ext.rows.columns and ext.rows.height else None
    counts = {r["_op"]: r["count"] for r in ops.to_dicts()} if ops is not None else {}
    hw = ext.new_state.high_water or ""
    delivered = hw[:10] if len(hw) >= 10 and _is_date(hw[:10]) else now.date().isoformat()
    report = FileReport(
        spec.id,
        rel,
        folder,
        "landed",
        rows_read=ext.rows_read,
        rows_quarantined=read_q.height,
        sha256=hashlib.sha256(rel.encode()).hexdigest(),
        detail={
            "columns": [c for c in ext.rows.columns if not c.startswith("_")],
            "stem": stem,
            "delivered": delivered,
            "inserted": counts.get("insert", 0),
            "updated": counts.get("update", 0),
            "deleted": ext.deleted.height,
            "engine": spec.engine,
        },
    )
    ledger.append(report)
    store.commit(ext.new_state)
    return [report]


def _is_date(s: str) -> bool:
    try:
        date.fromisoformat(s)
        return True
    except ValueError:
        return False
