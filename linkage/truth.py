"""The simulated truth for staged mentions: which real entity each mention is about.

Read only by evaluation, never by the model. The simulator writes
``truth/<source>/<day>.parquet`` with one row per delivered record (``record_key``,
``entity_id``) and, for rows that carry a second mention, ``<role>_id``. A mention
is mapped through the records that stage it (``source_id``, ``record_key``); a
related mention through the relationship rows and the truth's ``<role>_id``.

A mention is one distinct identity tuple per source, so a thin source (a name
only) can collapse two people into one mention: such a mention gets its majority
entity and is counted as ambiguous.
"""

from __future__ import annotations

import polars as pl

from connectors import lake
from tessera.config import Home

ROLES = ("legal_rep", "employer", "household_head")


def truth_records(home: Home) -> pl.LazyFrame:
    """Every truth row over all sources and days (``source_id, record_key, entity_id,
    <role>_id``), one row per (source, record)."""
    files = sorted(p for p in home.truth.glob("*/*.parquet"))
    if not files:
        raise FileNotFoundError(f"no truth under {home.truth}")
    frames = [pl.scan_parquet(f) for f in files]
    t = pl.concat(frames, how="diagonal_relaxed")
    cols = t.collect_schema().names()
    role_cols = [f"{r}_id" for r in ROLES]
    return t.select(
        "source_id",
        "record_key",
        "entity_id",
        *[(pl.col(c) if c in cols else pl.lit(None, pl.String)).alias(c) for c in role_cols],
    ).unique(subset=["source_id", "record_key"], keep="first")


def mention_votes(home: Home) -> pl.DataFrame:
    """(mention_id, entity_id, n): how many records put each mention on each entity."""
    t = truth_records(home)
    subj = (
        lake.records(home)
        .select("source_id", "record_key", "mention_id")
        .unique()
        .join(t.select("source_id", "record_key", "entity_id"), on=["source_id", "record_key"])
    )
    rel = (
        lake.relationships(home)
        .select("source_id", "record_key", "role", pl.col("related_mention_id").alias("mention_id"))
        .unique()
        .join(t, on=["source_id", "record_key"])
    )
    rel = rel.with_columns(
        pl.coalesce(pl.when(pl.col("role") == r).then(pl.col(f"{r}_id")) for r in ROLES).alias(
            "entity_id"
        )
    ).filter(pl.col("entity_id").is_not_null())
    both = pl.concat(
        [subj.select("mention_id", "entity_id"), rel.select("mention_id", "entity_id")]
    )
    return both.group_by("mention_id", "entity_id").agg(pl.len().alias("n")).collect()


def mention_truth(home: Home) -> pl.DataFrame:
    """One row per mapped mention: ``mention_id, entity_id`` (the majority entity),
    ``n_entities`` (> 1 means the mention collapses several real entities)."""
    votes = mention_votes(home)
    return (
        votes.sort(["mention_id", "n", "entity_id"], descending=[False, True, False])
        .group_by("mention_id", maintain_order=True)
        .agg(pl.col("entity_id").first(), pl.len().alias("n_entities"))
    )
