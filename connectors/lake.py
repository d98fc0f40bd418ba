"""Read the lake: staged mentions, records and quarantine across deliveries.

Later stages (linkage, warehouse) read the silver layer only through here.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from connectors.canonical import MENTION_SCHEMA, QUARANTINE_SCHEMA, RECORD_SCHEMA, RELATIONSHIP_SCHEMA
from tessera.config import Home


def _scan(paths: list[Path], schema: dict) -> pl.LazyFrame:
    if not paths:
        return pl.LazyFrame(schema=schema)
    return pl.scan_parquet(paths, schema=schema)


def staged_files(home: Home, kind: str) -> list[Path]:
    """``kind`` is ``mentions``, ``records`` or ``relationships``."""
    return sorted((home.lake / "staged").glob(f"*/*/*.{kind}.parquet"))


def records(home: Home) -> pl.LazyFrame:
    return _scan(staged_files(home, "records"), RECORD_SCHEMA)


def mentions(home: Home) -> pl.LazyFrame:
    """Every distinct staged mention (one per identity per source)."""
    return _scan(staged_files(home, "mentions"), MENTION_SCHEMA).unique(
        subset=["mention_id"], keep="first", maintain_order=True)


def relationships(home: Home) -> pl.LazyFrame:
    return _scan(staged_files(home, "relationships"), RELATIONSHIP_SCHEMA)


def quarantine(home: Home) -> pl.LazyFrame:
    return _scan(sorted((home.lake / "quarantine").glob("*/*/*.parquet")), QUARANTINE_SCHEMA)


def quarantine_summary(home: Home) -> list[dict]:
    """Quarantined rows grouped by file and reason (reasons shortened to their kind)."""
    q = quarantine(home).with_columns(
        pl.col("reason").str.replace(r"'[^']*'", "'…'").str.slice(0, 90).alias("reason")
    )
    df = q.group_by("file", "reason").agg(pl.len().alias("rows")).sort("file", "reason").collect()
    return df.to_dicts()
