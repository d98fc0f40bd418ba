"""Measurements behind the linkage and warehouse checks, and what a publish changed.

Plain functions over the linkage outputs (``lake/linkage/``) and warehouse files;
the Dagster asset checks in ``orchestration/`` call them and decide what blocks.

- :func:`oversized_entities` and :func:`duplicate_free_violations`: the over-merge
  guards (an entity far larger than a person or business can be; two records of a
  register that never holds one entity twice, in one entity).
- :func:`warehouse_smoke`: invariants of a built warehouse file before it is swapped in.
- :func:`entity_changes` / :func:`warehouse_changes`: new, merged, split and retired entities between two
  mention → entity maps (the last published warehouse and the candidate).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from tessera.config import Home

ENTITY_TYPES = ("person", "business")


@dataclass(frozen=True)
class LinkageThresholds:
    """Limits for the over-merge guards and the accuracy floors (when truth exists).

    ``max_entity_mentions``: a person is known to ~48 systems, a few mentions each;
    hundreds of mentions in one entity is a merge gone wrong. The floors are below
    what the model measures on small worlds (see docs/linkage.md), so they catch a
    broken model, not the last decimal."""

    max_entity_mentions: int = 400
    min_pairwise_precision: float = 0.99
    min_pairwise_recall: float = 0.95
    max_entity_drop: float = 0.20


def clusters(home: Home, entity_type: str) -> pl.DataFrame:
    """``mention_id, cluster_id`` of the last link (empty if none)."""
    path = home.lake / "linkage" / f"{entity_type}_clusters.parquet"
    if not path.exists():
        return pl.DataFrame(schema={"mention_id": pl.String, "cluster_id": pl.String})
    return pl.read_parquet(path)


def oversized_entities(
    home: Home,
    entity_type: str,
    limit: int,
    found: pl.DataFrame | None = None,
    sizes: pl.DataFrame | None = None,
) -> dict[str, Any]:
    """The largest entity and the entities with more than ``limit`` mentions (of the
    map ``found`` when the caller has read it, else :func:`clusters`; ``sizes``: its
    :func:`linkage.sizes.count`, when computed already)."""
    if sizes is None:
        from linkage.sizes import count

        sizes = count(clusters(home, entity_type) if found is None else found)
    sizes = sizes.sort("len", descending=True)
    over = sizes.filter(pl.col("len") > limit)
    return {
        "largest": int(sizes["len"].max() or 0),
        "over_limit": over.height,
        "examples": over.head(5).rows(),
    }


def duplicate_free_violations(
    home: Home,
    entity_type: str,
    entity_ids: pl.Series | None = None,
    found: pl.DataFrame | None = None,
) -> dict[str, Any]:
    """Entities holding two different records of one duplicate-free source; of
    ``entity_ids`` only when given (a daily run: the entities it changed). ``found``:
    the map when the caller has read it (else :func:`clusters`)."""
    from linkage.clusters import offending_clusters
    from linkage.report import duplicate_free_keys

    found = clusters(home, entity_type) if found is None else found
    if entity_ids is None:
        keys = duplicate_free_keys(home, entity_type)
    else:
        from connectors import lake
        from linkage.run import duplicate_free_keys as keys_of

        found = found.filter(pl.col("cluster_id").is_in(entity_ids.implode()))
        ids = found["mention_id"].implode()
        mentions = (
            lake.mention_rows(home)
            .filter(pl.col("mention_id").is_in(ids))
            .select("mention_id", "source_id", "role")
            .unique(subset=["mention_id"], keep="first", maintain_order=True)
            .collect()
        )
        keys = keys_of(home, mentions, found["mention_id"])
    bad = offending_clusters(found, keys)
    return {
        "entities": bad.height,
        "examples": bad["cluster_id"].sort().head(5).to_list(),
        "entities_checked": found["cluster_id"].n_unique(),
    }


def membership_map(path: Path) -> pl.DataFrame | None:
    """``mention_id, entity_id`` of a warehouse file (None if there is none)."""
    if not path.exists():
        return None
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.sql("SELECT mention_id, entity_id FROM memberships").pl()
    finally:
        con.close()


def entity_changes(old: pl.DataFrame | None, new: pl.DataFrame) -> dict[str, Any]:
    """What changed from map ``old`` to map ``new`` (both ``mention_id, entity_id``):
    entities before and after; ``new`` (IDs that did not exist, made of new
    mentions only), ``grown`` (kept IDs with new mentions), ``merged`` (an entity
    now holding mentions of several old ones), ``split`` (an old entity whose
    mentions are now in several), ``retired`` (old IDs no longer in use)."""
    after = new["entity_id"].n_unique()
    if old is None:
        return {
            "entities_before": 0,
            "entities_after": after,
            "new": after,
            "grown": 0,
            "merged": 0,
            "split": 0,
            "retired": 0,
            "new_mentions": new.height,
        }
    pairs = (
        new.join(old.rename({"entity_id": "old_id"}), on="mention_id", how="left")
        .group_by("entity_id", "old_id")
        .len()
    )
    known = pairs.filter(pl.col("old_id").is_not_null())
    per_new = known.group_by("entity_id").agg(pl.col("old_id").n_unique().alias("n"))
    per_old = known.group_by("old_id").agg(pl.col("entity_id").n_unique().alias("n"))
    old_ids = set(old["entity_id"].unique().to_list())
    new_ids = set(new["entity_id"].unique().to_list())
    touched = set(known["entity_id"].to_list())
    grown = pairs.filter(pl.col("old_id").is_null() & pl.col("entity_id").is_in(list(touched)))
    return {
        "entities_before": len(old_ids),
        "entities_after": after,
        "new": len(new_ids - touched),
        "grown": grown["entity_id"].n_unique(),
        "merged": int((per_new["n"] > 1).sum()),
        "split": int((per_old["n"] > 1).sum()),
        "retired": len(old_ids - new_ids),
        "new_mentions": new.join(old, on="mention_id", how="anti").height,
    }


SMOKE_SQL: dict[str, str] = {
    # each returns the number of violations
    "entities without an id": "SELECT count(*) FROM entities WHERE entity_id IS NULL",
    "entity ids not unique": "SELECT count(*) - count(DISTINCT entity_id) FROM entities",
    "membership of an unknown entity": (
        "SELECT count(*) FROM memberships WHERE entity_id NOT IN (SELECT entity_id FROM entities)"
    ),
    "mention in several entities": (
        "SELECT count(*) FROM (SELECT mention_id FROM memberships GROUP BY 1 HAVING count(*) > 1)"
    ),
    "entity without a member": (
        "SELECT count(*) FROM entities WHERE entity_id NOT IN (SELECT entity_id FROM memberships)"
    ),
}
# The same invariants over the entities an incremental build rebuilt
# (``publish_touched``; see :func:`built_from`): every other row is its base's,
# which passed them. "entities without an id" stays whole (a scan of one column).
_TOUCHED = "SELECT entity_id FROM publish_touched"
SMOKE_SQL_TOUCHED: dict[str, str] = {
    "entities without an id": SMOKE_SQL["entities without an id"],
    "entity ids not unique": (
        f"SELECT count(*) - count(DISTINCT entity_id) FROM entities WHERE entity_id IN ({_TOUCHED})"
    ),
    "membership of an unknown entity": (
        f"SELECT count(*) FROM memberships WHERE entity_id IN ({_TOUCHED}) "
        "AND entity_id NOT IN (SELECT entity_id FROM entities)"
    ),
    "mention in several entities": (
        "SELECT count(*) FROM (SELECT mention_id FROM memberships WHERE mention_id IN "
        f"(SELECT mention_id FROM memberships WHERE entity_id IN ({_TOUCHED})) "
        "GROUP BY 1 HAVING count(*) > 1)"
    ),
    "entity without a member": (
        f"SELECT count(*) FROM entities WHERE entity_id IN ({_TOUCHED}) AND entity_id NOT IN "
        f"(SELECT entity_id FROM memberships WHERE entity_id IN ({_TOUCHED}))"
    ),
}
CORE_TABLES = ("entities", "memberships", "entity_names", "facts")


def built_from(con: duckdb.DuckDBPyConnection, new: str, old: str) -> bool:
    """Whether the warehouse attached as ``new`` was built incrementally from the one
    attached as ``old`` (its ``base_run`` stamp names ``old``'s last run,
    :mod:`warehouse.incremental`): then only the entities in its ``publish_touched``
    differ between the two."""
    try:
        row = con.execute(
            f"""SELECT (SELECT stamp FROM {new}.publish_inputs WHERE kind = 'base_run'),
                       (SELECT CAST(epoch_us(max(published_at)) AS VARCHAR) FROM {old}.runs),
                       (SELECT count(*) FROM {new}.publish_touched)"""
        ).fetchone()
    except duckdb.Error:  # a warehouse from before incremental publishes
        return False
    return row is not None and row[0] is not None and row[0] == row[1] and row[2] > 0


def warehouse_changes(old: Path, new: Path) -> dict[str, Any]:
    """:func:`entity_changes` between the memberships of two warehouse files (``old``
    may not exist), computed by DuckDB inside the files: at 1,000,000 persons the two
    7.9M-row maps no longer go through polars (10 s of a daily publish)."""
    if not old.exists():
        return entity_changes(None, membership_map(new))
    con = duckdb.connect()
    try:
        con.execute("SET enable_progress_bar = false")
        con.execute("ATTACH ? AS o (READ_ONLY)", [str(old)])
        con.execute("ATTACH ? AS n (READ_ONLY)", [str(new)])
        if built_from(con, "n", "o"):
            # Only the rebuilt entities' memberships differ (their old and new IDs are
            # all in publish_touched): the maps restricted to them give the same
            # changes; the entity counts are the entities tables' (the smoke checks
            # hold every entity to at least one membership and back).
            touched = "(SELECT entity_id FROM n.publish_touched)"
            o_map = f"(SELECT * FROM o.memberships WHERE entity_id IN {touched})"
            n_map = f"(SELECT * FROM n.memberships WHERE entity_id IN {touched})"
            before, after = "(SELECT count(*) FROM o.entities)", "(SELECT count(*) FROM n.entities)"
        else:
            o_map, n_map = "o.memberships", "n.memberships"
            before, after = "(SELECT count(*) FROM old_ids)", "(SELECT count(*) FROM new_ids)"
        row = con.execute(
            f"""
            WITH om AS (SELECT mention_id, entity_id FROM {o_map}),
            nm AS (SELECT mention_id, entity_id FROM {n_map}),
            pairs AS (
                SELECT nm.entity_id, om.entity_id AS old_id
                FROM nm LEFT JOIN om USING (mention_id)
                GROUP BY ALL),
            known AS (SELECT * FROM pairs WHERE old_id IS NOT NULL),
            touched AS (SELECT DISTINCT entity_id FROM known),
            old_ids AS (SELECT DISTINCT entity_id FROM om),
            new_ids AS (SELECT DISTINCT entity_id FROM nm)
            SELECT
                {before},
                {after},
                (SELECT count(*) FROM new_ids ANTI JOIN touched USING (entity_id)),
                (SELECT count(DISTINCT entity_id) FROM pairs
                 WHERE old_id IS NULL AND entity_id IN (SELECT entity_id FROM touched)),
                (SELECT count(*) FROM (SELECT entity_id FROM known GROUP BY 1
                                       HAVING count(DISTINCT old_id) > 1)),
                (SELECT count(*) FROM (SELECT old_id FROM known GROUP BY 1
                                       HAVING count(DISTINCT entity_id) > 1)),
                (SELECT count(*) FROM old_ids ANTI JOIN new_ids USING (entity_id)),
                (SELECT count(*) FROM nm ANTI JOIN om USING (mention_id))
            """
        ).fetchone()
    finally:
        con.close()
    keys = ("entities_before", "entities_after", "new", "grown", "merged", "split", "retired",
            "new_mentions")  # fmt: skip
    return {k: int(v) for k, v in zip(keys, row, strict=True)}


def warehouse_smoke(candidate: Path, live: Path | None, max_entity_drop: float) -> dict[str, Any]:
    """Invariants of the ``candidate`` warehouse file: no violation of
    :data:`SMOKE_SQL`, core tables not empty, and not fewer entities than
    ``(1 - max_entity_drop)`` × the ``live`` warehouse's (a sudden drop means
    entities were merged wholesale or sources went missing). ``ok`` says all hold.
    A candidate built incrementally from ``live`` (:func:`built_from`) is checked on
    the entities it rebuilt (:data:`SMOKE_SQL_TOUCHED`; ``scope`` says which)."""
    con = duckdb.connect()
    try:
        con.execute("SET enable_progress_bar = false")
        con.execute("ATTACH ? AS c (READ_ONLY)", [str(candidate)])
        before = None
        incremental = False
        if live is not None and live.exists():
            con.execute("ATTACH ? AS l (READ_ONLY)", [str(live)])
            before = int(con.execute("SELECT count(*) FROM l.entities").fetchone()[0])  # type: ignore[index]
            incremental = built_from(con, "c", "l")
        con.execute("USE c")
        checks = SMOKE_SQL_TOUCHED if incremental else SMOKE_SQL
        violations = {k: int(con.execute(q).fetchone()[0]) for k, q in checks.items()}  # type: ignore[index]
        counts = {
            t: int(con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]) for t in CORE_TABLES
        }  # type: ignore[index]
        rebuilt = (
            int(con.execute("SELECT count(*) FROM publish_touched").fetchone()[0])  # type: ignore[index]
            if incremental
            else None
        )
    finally:
        con.close()
    dropped = before is not None and counts["entities"] < (1 - max_entity_drop) * before
    empty = [t for t, n in counts.items() if n == 0]
    return {
        "ok": not any(violations.values()) and not empty and not dropped,
        "violations": violations,
        "counts": counts,
        "empty_tables": empty,
        "entities_live": before,
        "entity_drop_too_large": dropped,
        "scope": "every entity"
        if rebuilt is None
        else f"the {rebuilt:,} entities rebuilt from the live warehouse",
    }
