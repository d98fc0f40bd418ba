"""Read the lake: staged mentions, records and quarantine across deliveries.

Later stages (linkage, warehouse) read the silver layer only through here.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from connectors.canonical import (
    MENTION_SCHEMA,
    QUARANTINE_SCHEMA,
    RECORD_SCHEMA,
    RELATIONSHIP_SCHEMA,
)
from tessera.config import Home


def _scan(paths: list[Path], schema: dict) -> pl.LazyFrame:
    if not paths:
        return pl.LazyFrame(schema=schema)
    # Files staged before a column was added to the canonical schema get it as nulls.
    return pl.scan_parquet(paths, schema=schema, missing_columns="insert")


def staged_files(home: Home, kind: str) -> list[Path]:
    """``kind`` is ``mentions``, ``records`` or ``relationships``."""
    return sorted((home.lake / "staged").glob(f"*/*/*.{kind}.parquet"))


def records(home: Home, sources: list[str] | None = None) -> pl.LazyFrame:
    """Every staged record; only those of ``sources`` (their files alone are read)
    when given."""
    paths = staged_files(home, "records")
    if sources is not None:
        paths = [p for p in paths if p.parent.parent.name in sources]
    return _scan(paths, RECORD_SCHEMA)


def mention_rows(home: Home) -> pl.LazyFrame:
    """Every staged mention row in file order: a mention staged by several files (the
    same identity delivered again) appears once per file."""
    return scan_mentions(staged_files(home, "mentions"))


def scan_mentions(paths: list[Path]) -> pl.LazyFrame:
    """The mention rows of the staged mention files ``paths``, in file order."""
    return _scan(paths, MENTION_SCHEMA)


def mentions(home: Home) -> pl.LazyFrame:
    """Every distinct staged mention (one per identity per source): the first of its
    rows (:func:`mention_rows`)."""
    return mention_rows(home).unique(subset=["mention_id"], keep="first", maintain_order=True)


def relationships(home: Home) -> pl.LazyFrame:
    return scan_relationships(staged_files(home, "relationships"))


def scan_relationships(paths: list[Path]) -> pl.LazyFrame:
    """The relationship rows of the staged relationship files ``paths``, in file order."""
    return _scan(paths, RELATIONSHIP_SCHEMA)


def quarantine(home: Home) -> pl.LazyFrame:
    return _scan(sorted((home.lake / "quarantine").glob("*/*/*.parquet")), QUARANTINE_SCHEMA)


def quarantine_summary(home: Home) -> list[dict]:
    """Quarantined rows grouped by file and reason (reasons shortened to their kind)."""
    q = quarantine(home).with_columns(
        pl.col("reason").str.replace(r"'[^']*'", "'…'").str.slice(0, 160).alias("reason")
    )
    df = q.group_by("file", "reason").agg(pl.len().alias("rows")).sort("file", "reason").collect()
    return df.to_dicts()


def deletions(home: Home) -> pl.LazyFrame:
    """Records a source database deleted (hard) or flagged deleted (soft)."""
    from connectors.database_ingest import DELETION_SCHEMA

    return _scan(sorted((home.lake / "staged").glob("*/*/*.deletions.parquet")), DELETION_SCHEMA)


def current_records(home: Home) -> pl.LazyFrame:
    """What each source says now: snapshots by their latest delivery, databases by
    the newest version of each record minus deletions, deltas by everything."""
    from connectors.catalog import load_specs

    specs = {s.id: s for s in load_specs(home.sources_dir)}
    rec = records(home)
    snapshot_ids = [i for i, s in specs.items() if s.cadence == "snapshot" and s.database is None]
    latest = rec.filter(pl.col("source_id").is_in(snapshot_ids)).filter(
        pl.col("delivered") == pl.col("delivered").max().over("source_id")
    )
    db_ids = [i for i, s in specs.items() if s.database is not None]
    newest = (
        rec.filter(pl.col("source_id").is_in(db_ids))
        .sort("ingested_at", "line")
        .group_by("source_id", "record_key")
        .last()
    )
    gone = deletions(home).group_by("source_id", "record_key").agg(pl.col("detected_at").max())
    newest = (
        newest.join(gone, on=["source_id", "record_key"], how="left")
        .filter(pl.col("detected_at").is_null() | (pl.col("detected_at") < pl.col("ingested_at")))
        .drop("detected_at")
    )
    rest = rec.filter(~pl.col("source_id").is_in(snapshot_ids + db_ids))
    return pl.concat([latest, newest.select(rec.collect_schema().names()), rest])
