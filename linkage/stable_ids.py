"""Stable entity IDs: a cluster keeps the ID of the previous run's entity it shares
the most mentions with, and every split, merge, new and retired ID is recorded.

Matching is one-to-one. Overlaps (new cluster × old entity → shared mentions) are
ranked by shared mentions (desc), then old ID, then the cluster's smallest mention
ID; each old ID goes to the first cluster that claims it and each cluster takes the
first old ID it can. The usual case (a cluster overlapping exactly one old entity,
which overlaps no other cluster) is settled set-based; only contested overlaps go
through the greedy loop. A cluster left without an old ID gets a new one derived
from its smallest mention ID (``E`` + 12 hex digits of a SHA-1), so the same input
twice gives the same IDs; a derived ID that was ever issued before is salted and
re-derived, so an ID never comes back to mean something else.

Events (``new``, ``merge``, ``split``, ``retired``) are appended to the
``id_events`` table of ``decisions.duckdb`` (see :mod:`linkage.decisions`), which
is never rebuilt; the current mention → entity map is
``lake/linkage/<type>_entities.parquet``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import polars as pl

ENTITIES_SCHEMA = {"mention_id": pl.String(), "entity_id": pl.String()}
EVENTS_SCHEMA = {
    "kind": pl.String(),
    "old_ids": pl.List(pl.String()),
    "new_ids": pl.List(pl.String()),
    "mentions": pl.Int64(),
}


def derive_id(entity_type: str, anchor_mention: str, salt: int = 0) -> str:
    """The ID a new cluster gets: ``E`` + 12 hex digits of SHA-1 over the entity
    type, the cluster's smallest mention ID and a salt (0 unless taken)."""
    text = f"{entity_type}:{anchor_mention}" + (f":{salt}" if salt else "")
    return "E" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]


@dataclass
class IdAssignment:
    """The mention → entity map of this run and what changed since the previous one."""

    entities: pl.DataFrame  # mention_id, entity_id
    events: pl.DataFrame  # kind, old_ids, new_ids, mentions
    kept: int  # clusters that kept a previous ID
    issued: int  # clusters that got a new ID


def assign_entity_ids(
    entity_type: str,
    clusters: pl.DataFrame,
    previous: pl.DataFrame | None,
    issued_before: set[str] | Callable[[list[str]], set[str]] | None = None,
) -> IdAssignment:
    """Give every cluster (``mention_id, cluster_id``) an entity ID, keeping the
    previous run's IDs (``previous``: ``mention_id, entity_id``) by mention overlap.
    ``issued_before`` holds every ID ever issued (from the event history), so a new
    ID never repeats a retired one; or says which of the IDs it is given were (a
    large world's history is not loaded whole)."""
    prev = (
        previous.select("mention_id", pl.col("entity_id").alias("old_id"))
        if previous is not None and previous.height
        else pl.DataFrame(schema={"mention_id": pl.String(), "old_id": pl.String()})
    )
    anchors = clusters.group_by("cluster_id").agg(
        pl.col("mention_id").min().alias("anchor"), pl.len().alias("size")
    )
    overlap = (
        clusters.join(prev, on="mention_id")
        .group_by("cluster_id", "old_id")
        .agg(pl.len().alias("shared"))
        .join(anchors.select("cluster_id", "anchor"), on="cluster_id")
    )
    n_old_per_cluster = overlap.group_by("cluster_id").agg(pl.len().alias("n_old"))
    n_cl_per_old = overlap.group_by("old_id").agg(pl.len().alias("n_cl"))
    ov = overlap.join(n_old_per_cluster, on="cluster_id").join(n_cl_per_old, on="old_id")
    simple = ov.filter((pl.col("n_old") == 1) & (pl.col("n_cl") == 1))
    contested = ov.filter((pl.col("n_old") > 1) | (pl.col("n_cl") > 1)).sort(
        ["shared", "old_id", "anchor"], descending=[True, False, False]
    )
    taken_old: set[str] = set()
    got: dict[str, str] = {}
    # Greedy over the contested overlaps only (a split or merge touches a handful).
    for cid, old in zip(
        contested["cluster_id"].to_list(), contested["old_id"].to_list(), strict=True
    ):
        if cid in got or old in taken_old:
            continue
        got[cid] = old
        taken_old.add(old)
    kept = pl.concat(
        [
            simple.select("cluster_id", pl.col("old_id").alias("entity_id")),
            pl.DataFrame(
                {"cluster_id": list(got), "entity_id": list(got.values())},
                schema={"cluster_id": pl.String(), "entity_id": pl.String()},
            ),
        ]
    )
    fresh = anchors.join(kept, on="cluster_id", how="anti").sort("anchor")
    used = set(prev["old_id"].unique().to_list())
    anchors_ = fresh["anchor"].to_list()
    derived = [derive_id(entity_type, a) for a in anchors_]
    if callable(issued_before):
        # Asked in one batch (a salted ID, rarely needed, one by one).
        used |= issued_before(derived)
    else:
        used |= set(issued_before or ())
    new_ids = []
    for anchor, eid in zip(anchors_, derived, strict=True):
        salt = 0
        while eid in used or (salt and callable(issued_before) and issued_before([eid])):
            salt += 1
            eid = derive_id(entity_type, anchor, salt)
        used.add(eid)
        new_ids.append(eid)
    fresh = fresh.select("cluster_id").with_columns(
        pl.Series("entity_id", new_ids, dtype=pl.String)
    )
    cluster_ids = pl.concat([kept, fresh])
    entities = (
        clusters.join(cluster_ids, on="cluster_id")
        .select("mention_id", "entity_id")
        .sort("mention_id")
    )
    events = _events(entities, prev, fresh["entity_id"])
    return IdAssignment(entities, events, kept.height, fresh.height)


def _events(entities: pl.DataFrame, prev: pl.DataFrame, fresh_ids: pl.Series) -> pl.DataFrame:
    """Merges (a new entity holding mentions of several old ones), splits (an old
    entity's mentions in several new ones), retirements (an old ID given to no one)
    and new entities made of new mentions only."""
    pairs = (
        entities.join(prev, on="mention_id")
        .group_by("old_id", "entity_id")
        .agg(pl.len().alias("shared"))
    )
    merges = (
        pairs.group_by("entity_id")
        .agg(pl.col("old_id").sort().alias("old_ids"), pl.col("shared").sum().alias("mentions"))
        .filter(pl.col("old_ids").list.len() > 1)
        .select(
            pl.lit("merge").alias("kind"),
            "old_ids",
            pl.concat_list(pl.col("entity_id")).alias("new_ids"),
            pl.col("mentions").cast(pl.Int64),
        )
    )
    splits = (
        pairs.group_by("old_id")
        .agg(pl.col("entity_id").sort().alias("new_ids"), pl.col("shared").sum().alias("mentions"))
        .filter(pl.col("new_ids").list.len() > 1)
        .select(
            pl.lit("split").alias("kind"),
            pl.concat_list(pl.col("old_id")).alias("old_ids"),
            "new_ids",
            pl.col("mentions").cast(pl.Int64),
        )
    )
    current = set(entities["entity_id"].unique().to_list())
    retired = (
        pairs.filter(~pl.col("old_id").is_in(list(current)))
        .group_by("old_id")
        .agg(pl.col("entity_id").sort().alias("new_ids"), pl.col("shared").sum().alias("mentions"))
        .select(
            pl.lit("retired").alias("kind"),
            pl.concat_list(pl.col("old_id")).alias("old_ids"),
            "new_ids",
            pl.col("mentions").cast(pl.Int64),
        )
    )
    vanished = (
        set(prev["old_id"].unique().to_list()) - current - set(retired["old_ids"].list.first())
    )
    gone = pl.DataFrame(
        {
            "kind": ["retired"] * len(vanished),
            "old_ids": [[v] for v in sorted(vanished)],
            "new_ids": [[] for _ in vanished],
            "mentions": [0] * len(vanished),
        },
        schema=EVENTS_SCHEMA,
    )
    touched_old = pairs.select("entity_id").unique()
    new = (
        entities.filter(pl.col("entity_id").is_in(fresh_ids.implode()))
        .join(touched_old, on="entity_id", how="anti")
        .group_by("entity_id")
        .agg(pl.len().cast(pl.Int64).alias("mentions"))
        .select(
            pl.lit("new").alias("kind"),
            pl.lit([], dtype=pl.List(pl.String())).alias("old_ids"),
            pl.concat_list(pl.col("entity_id")).alias("new_ids"),
            "mentions",
        )
    )
    out = pl.concat(
        [f.cast(pl.Schema(EVENTS_SCHEMA)) for f in (merges, splits, retired, gone, new)],
        how="vertical",
    )
    return out.sort("kind", pl.col("new_ids").list.first(), pl.col("old_ids").list.first())
