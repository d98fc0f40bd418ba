"""The model's edges between two entities, kept beside the entity map.

An edge at or above the threshold normally lies inside one entity; it crosses two
when the duplicate-free guard or a human decision refused it. The incremental link
re-clusters at mention level a *region* of existing entities closed over such edges
(:func:`linkage.incremental._region`): finding them by scanning every edge (26M at
1,000,000 persons, base and parts) took about a second per step of the closure,
and a day's closure took up to five. ``<type>_cross_edges.parquet`` holds them
(``mention_id_l, mention_id_r`` and their weights, a few thousand) with the state of
the entity map they were computed on (:func:`record`); each increment updates them
from the edges it re-clustered and the edges it added (:func:`updated`), and any
reader whose map is not the recorded one computes them afresh from every edge
(:func:`compute`). With the weights, the region's old edges need no scan either:
those inside its entities are their evidence's model rows, those between them are
these (:func:`linkage.incremental._region_edges`).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from linkage import stamped
from tessera.config import Home

ENDS = ["mention_id_l", "mention_id_r"]
# What the record keeps of an edge (a record without the weights, written before
# they were kept, is computed afresh).
COLUMNS = [*ENDS, "match_weight", "match_probability"]


def cross_path(home: Home, entity_type: str) -> Path:
    return home.lake / "linkage" / f"{entity_type}_cross_edges.parquet"


def _state(home: Home, entity_type: str) -> str | None:
    return stamped.file_state(home.lake / "linkage" / f"{entity_type}_entities.parquet")


def with_entities(
    edges: pl.LazyFrame | pl.DataFrame, entity_map: pl.LazyFrame | pl.DataFrame
) -> pl.LazyFrame:
    """``edges`` (their two ends) with each end's entity in ``entity_map``
    (``mention_id, entity_id``) as ``e_l`` and ``e_r`` (null for a mention it lacks)."""
    m = entity_map.lazy().select("mention_id", "entity_id")
    lazy = edges.lazy()
    have = lazy.collect_schema().names()
    return (
        lazy.select(c for c in COLUMNS if c in have)
        .join(
            m.rename({"mention_id": "mention_id_l", "entity_id": "e_l"}),
            on="mention_id_l",
            how="left",
        )
        .join(
            m.rename({"mention_id": "mention_id_r", "entity_id": "e_r"}),
            on="mention_id_r",
            how="left",
        )
    )


def compute(edges: pl.LazyFrame | pl.DataFrame, entity_map: pl.DataFrame) -> pl.DataFrame:
    """The ``edges`` whose two mentions are in different entities of ``entity_map``
    (``mention_id, entity_id``), or one of them in none (with their weights when the
    edges have them)."""
    return (
        with_entities(edges, entity_map)
        .filter(pl.col("e_l").ne_missing(pl.col("e_r")) | pl.col("e_l").is_null())
        .drop("e_l", "e_r")
        .unique(subset=ENDS, keep="first")
        .collect()
    )


def stored(home: Home, entity_type: str) -> pl.DataFrame | None:
    """The recorded cross edges when they were computed on the current entity map (and
    keep their weights)."""
    frame = stamped.read(cross_path(home, entity_type), _state(home, entity_type))
    if frame is None or not set(COLUMNS) <= set(frame.columns):
        return None
    return frame


def record(home: Home, entity_type: str, cross: pl.DataFrame) -> None:
    """Write ``cross`` as the cross edges of the current entity map (atomically)."""
    state = _state(home, entity_type)
    if state is not None:
        stamped.write(cross_path(home, entity_type), cross.select(COLUMNS), state)


def updated(
    before: pl.DataFrame,
    region_mentions: pl.Series,
    reconsidered: pl.DataFrame,
    entities: pl.DataFrame,
) -> pl.DataFrame:
    """The cross edges after an increment: those of ``before`` with an end outside the
    re-clustered region (``region_mentions``: every old edge at a region mention lies
    inside it, and a mention outside kept its entity or only gained mentions), plus
    the ``reconsidered`` edges (the region's old edges and the increment's new ones)
    that cross in the new map ``entities``."""
    inside = pl.col("mention_id_l").is_in(region_mentions.implode()) & pl.col("mention_id_r").is_in(
        region_mentions.implode()
    )
    ends = pl.concat([reconsidered["mention_id_l"], reconsidered["mention_id_r"]]).unique()
    local = entities.filter(pl.col("mention_id").is_in(ends.implode()))
    return pl.concat(
        [before.filter(~inside).select(COLUMNS), compute(reconsidered, local).select(COLUMNS)]
    ).unique(subset=ENDS, keep="first")
