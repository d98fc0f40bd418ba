"""Accuracy of a clustering against the simulated truth.

Pairs are counted from group sizes, never enumerated: the pairs a clustering
predicts are sum C(|cluster|, 2), the true pairs sum C(|entity|, 2), and the
correct ones sum C(|cluster ∩ entity|, 2). B-cubed averages, over mentions, the
share of the mention's cluster that is its entity (precision) and the share of
its entity that is in its cluster (recall).

Mentions of an evaluated entity type that the clustering does not list count as
singletons. A mention that collapses several real entities (a name-only source)
is scored on its majority entity and counted in ``ambiguous_mentions``.

Two implementations give the same figures. Without the detail (the daily run),
:func:`score_clusters` has DuckDB read the clusters, the staged mentions and the
truth from Parquet and sum group sizes (``sum ce²/c`` over the (cluster, entity)
groups is the B-cubed precision times the mention count); nothing row-sized comes
into Python. A daily run (:func:`scoring_duckdb` with ``stored``) takes the labelled
mentions from the store :func:`linkage.truth.update_truth_store` keeps up to date, so
scoring a clustering is one scan of its Parquet file joined with the stored labels.
Every figure is a sum by cluster (:func:`cluster_totals`) or by entity
(:func:`entity_totals`) over the groups (:func:`create_groups`), the B-cubed terms
as exact decimals, so :mod:`linkage.score_store` keeps the groups of the saved
clusters and rescores only the clusters and entities a day changed.
With the detail (``tessera eval``: recall per source pair, examples of
false merges and missed links) :func:`label` builds the labelled polars frame and
:func:`evaluate_labelled` scores it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from connectors import lake
from linkage.truth import (
    DISTINGUISHING,
    ambiguous_keys_sql,
    create_labels,
    create_mention_truth,
    mention_truth,
    read_parquet_sql,
    run_sql,
    staged_mentions_sql,
    stored_truth_views,
)
from tessera.config import Home

# The columns a name-only person mention lacks (linkage.truth.DISTINGUISHING).
_DISTINGUISHING = DISTINGUISHING

EVIDENCE_COLUMNS = (
    "mention_id",
    "source_id",
    "entity_id",
    "cluster_id",
    "name_native",
    "name_latin",
    "dob",
    "id_number",
    "id_raw",
    "id_masked",
    "phone",
    "phone_masked",
    "name",
    "uscc",
    "uscc_raw",
)


def _pairs(n: pl.Expr) -> pl.Expr:
    return (n * (n - 1) // 2).cast(pl.Int64)


def _ratio(a: float, b: float) -> float:
    return float(a) / float(b) if b else 1.0


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 0.0


def pairwise_scores(labelled: pl.DataFrame) -> dict[str, float]:
    """Pairwise precision / recall / F1 of ``labelled`` (``cluster_id``, ``entity_id``)."""
    pred = labelled.group_by("cluster_id").len().select(_pairs(pl.col("len")).sum()).item()
    true = labelled.group_by("entity_id").len().select(_pairs(pl.col("len")).sum()).item()
    tp = (
        labelled.group_by("cluster_id", "entity_id")
        .len()
        .select(_pairs(pl.col("len")).sum())
        .item()
    )
    return _pairwise(pred, true, tp)


def bcubed_scores(labelled: pl.DataFrame) -> dict[str, float]:
    """B-cubed precision / recall / F1 of ``labelled`` (``cluster_id``, ``entity_id``)."""
    df = labelled.with_columns(
        pl.len().over("cluster_id").alias("c"),
        pl.len().over("entity_id").alias("e"),
        pl.len().over("cluster_id", "entity_id").alias("ce"),
    )
    p = df.select((pl.col("ce") / pl.col("c")).mean()).item() if df.height else 1.0
    r = df.select((pl.col("ce") / pl.col("e")).mean()).item() if df.height else 1.0
    return {"precision": p, "recall": r, "f1": _f1(p, r)}


def source_pair_recall(labelled: pl.DataFrame, top: int = 15) -> list[dict[str, Any]]:
    """Recall of true pairs between each pair of sources (``source_id`` needed), the
    pairs with most missed links first."""

    def counts(keys: list[str]) -> pl.DataFrame:
        per = labelled.group_by(*keys, "source_id").len("n")
        j = per.join(per, on=keys, suffix="_r").filter(pl.col("source_id") <= pl.col("source_id_r"))
        return (
            j.with_columns(
                pl.when(pl.col("source_id") == pl.col("source_id_r"))
                .then(_pairs(pl.col("n")))
                .otherwise(pl.col("n") * pl.col("n_r"))
                .alias("pairs")
            )
            .group_by("source_id", "source_id_r")
            .agg(pl.col("pairs").sum())
        )

    true = counts(["entity_id"])
    found = counts(["entity_id", "cluster_id"]).rename({"pairs": "found"})
    out = (
        true.join(found, on=["source_id", "source_id_r"], how="left")
        .with_columns(pl.col("found").fill_null(0))
        .filter(pl.col("pairs") > 0)
        .with_columns(
            (pl.col("found") / pl.col("pairs")).alias("recall"),
            (pl.col("pairs") - pl.col("found")).alias("missed"),
        )
        .sort(["missed", "pairs"], descending=True)
    )
    return out.head(top).to_dicts()


def worst_false_merges(labelled: pl.DataFrame, top: int = 5, rows: int = 4) -> list[dict[str, Any]]:
    """Predicted clusters that mix the most real entities, with a few mention rows from
    the minority entities and the majority one."""
    bad = (
        labelled.group_by("cluster_id")
        .agg(pl.col("entity_id").n_unique().alias("entities"), pl.len().alias("mentions"))
        .filter(pl.col("entities") > 1)
        .sort(["entities", "mentions", "cluster_id"], descending=True)
        .head(top)
    )
    return [
        _evidence(labelled.filter(pl.col("cluster_id") == c["cluster_id"]), c, "entity_id", rows)
        for c in bad.to_dicts()
    ]


def worst_missed_links(labelled: pl.DataFrame, top: int = 5, rows: int = 4) -> list[dict[str, Any]]:
    """Real entities split over the most predicted clusters, with one mention row from
    each of a few of the pieces."""
    bad = (
        labelled.group_by("entity_id")
        .agg(pl.col("cluster_id").n_unique().alias("clusters"), pl.len().alias("mentions"))
        .filter(pl.col("clusters") > 1)
        .sort(["clusters", "mentions", "entity_id"], descending=True)
        .head(top)
    )
    return [
        _evidence(labelled.filter(pl.col("entity_id") == c["entity_id"]), c, "cluster_id", rows)
        for c in bad.to_dicts()
    ]


def _evidence(group: pl.DataFrame, head: dict, by: str, rows: int) -> dict[str, Any]:
    cols = [c for c in EVIDENCE_COLUMNS if c in group.columns]
    sample = group.sort(by, "mention_id").unique(subset=[by], keep="first", maintain_order=True)
    return {**head, "evidence": sample.head(rows).select(cols).to_dicts()}


def label(
    home: Home,
    clusters: pl.DataFrame,
    entity_type: str,
    *,
    truth: pl.DataFrame | None = None,
    detail: bool = True,
) -> pl.DataFrame:
    """Mentions of ``entity_type`` with their cluster (singleton when unlisted) and truth
    (``truth``: :func:`linkage.truth.mention_truth`, read when not given). Only the
    columns the scores read (and, with ``detail``, the evidence rows show)."""
    scan = lake.mentions(home).filter(pl.col("entity_type") == entity_type)
    wanted = {"mention_id", "entity_type", "source_id", "name_latin", *_DISTINGUISHING}
    if detail:
        wanted |= set(EVIDENCE_COLUMNS)
    m = scan.select(c for c in scan.collect_schema().names() if c in wanted).collect()
    if truth is None:
        truth = mention_truth(home)
    out = m.join(
        clusters.select("mention_id", "cluster_id"), on="mention_id", how="left"
    ).with_columns(
        pl.col("cluster_id").cast(pl.String).fill_null(pl.lit("single:") + pl.col("mention_id"))
    )
    return out.join(truth, on="mention_id", how="left").with_columns(
        pl.col("entity_id").fill_null(pl.lit("unknown:") + pl.col("mention_id")),
        pl.col("n_entities").fill_null(1),
    )


def name_only_ceiling(labelled: pl.DataFrame) -> dict[str, Any] | None:
    """How much of the person recall no model can reach from the records alone.

    A *name-only* mention carries a name and nothing that tells people apart (no date
    of birth, ID, phone, e-mail, plate or passport, full or masked); it is
    *ambiguous* when the mentions of two or more real persons carry its pinyin name.
    Attaching one to an entity is a guess among those persons. Reported: how many
    there are, the true pairs that hold one, and pairwise P/R on the other mentions
    (every ambiguous name-only mention left out). None for business frames."""
    if not set(_DISTINGUISHING) <= set(labelled.columns) or "name_latin" not in labelled.columns:
        return None
    key = pl.col("name_latin").str.replace_all(r"[\s·\-]", "").str.to_lowercase()
    persons_per_name = pl.col("entity_id").n_unique().over("_name")
    flagged = labelled.with_columns(key.alias("_name")).with_columns(
        (
            pl.all_horizontal(pl.col(c).is_null() for c in _DISTINGUISHING)
            & pl.col("_name").is_not_null()
            & (persons_per_name > 1)
        ).alias("_ambiguous")
    )
    amb = flagged.filter(pl.col("_ambiguous"))
    sizes = flagged.group_by("entity_id").len()
    held = amb.join(sizes, on="entity_id")
    rest = flagged.filter(~pl.col("_ambiguous")).drop("_name", "_ambiguous")
    return {
        "ambiguous_name_only_mentions": amb.height,
        # Pairs with one such mention: its entity's other mentions (an upper bound
        # when two of them share an entity).
        "true_pairs_holding_one": int((held["len"] - 1).sum()),
        "pairwise_without_them": pairwise_scores(rest),
    }


def evaluate_labelled(labelled: pl.DataFrame, *, detail: bool = True) -> dict[str, Any]:
    """Every score for one labelled frame (``mention_id, cluster_id, entity_id`` and,
    for the detail, ``source_id`` and the evidence columns)."""
    out: dict[str, Any] = {
        "mentions": labelled.height,
        "entities": labelled["entity_id"].n_unique(),
        "clusters": labelled["cluster_id"].n_unique(),
        "pairwise": pairwise_scores(labelled),
        "bcubed": bcubed_scores(labelled),
    }
    if "n_entities" in labelled.columns:
        out["ambiguous_mentions"] = int((labelled["n_entities"] > 1).sum())
    ceiling = name_only_ceiling(labelled)
    if ceiling is not None and labelled["entity_type"].first() == "person":
        out["name_only_ceiling"] = ceiling
    if detail:
        out["source_pairs"] = source_pair_recall(labelled)
        out["false_merges"] = worst_false_merges(labelled)
        out["missed_links"] = worst_missed_links(labelled)
    return out


# -- the same scores from DuckDB over Parquet (no detail) --------------------------------


@contextmanager
def scoring_duckdb(
    home: Home, truth: pl.DataFrame | None = None, *, stored: bool = False
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A linkage DuckDB connection (:func:`linkage.run.linkage_duckdb`) for
    :func:`score_clusters`, with the view ``mentions`` over the staged mention files.
    ``truth`` (:func:`linkage.truth.mention_truth`) becomes its ``mention_truth``
    table; without it DuckDB builds that table when a score first needs it. With
    ``stored`` the truth and every mention's label come from the store kept between
    runs, brought up to date first (:func:`linkage.truth.stored_truth_views`): a score
    reads the clusters and the stored labels, not the staged files."""
    from linkage.run import linkage_duckdb

    if stored and truth is not None:
        raise ValueError("stored truth or a truth frame, not both")
    with linkage_duckdb() as con:
        files = lake.staged_files(home, "mentions")
        run_sql(
            con, f"CREATE TEMP VIEW mentions AS SELECT * FROM {staged_mentions_sql(con, files)}"
        )
        if stored:
            stored_truth_views(con, home)
        if truth is not None:
            con.register("_truth_frame", truth)
            run_sql(
                con,
                "CREATE TEMP TABLE mention_truth AS "
                "SELECT mention_id, entity_id, n_entities FROM _truth_frame",
            )
            con.unregister("_truth_frame")
        yield con


def _has_relation(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    q = """SELECT count(*) FROM (
        SELECT table_name AS name FROM duckdb_tables() WHERE temporary
        UNION ALL SELECT view_name FROM duckdb_views() WHERE temporary) WHERE name = ?"""
    return bool(con.execute(q, [name]).fetchall()[0][0])


def _base_table(con: duckdb.DuckDBPyConnection, home: Home, entity_type: str) -> str:
    """The relation of every ``entity_type`` mention with its truth (``mention_id,
    entity_id, collapsed, amb``; ``amb``: an ambiguous name-only person mention, see
    :func:`name_only_ceiling`): the stored labels (``labelled_<type>``, see
    :func:`scoring_duckdb`) or a temporary table built once per connection."""
    if not entity_type.isidentifier():
        raise ValueError(f"not an entity type: {entity_type!r}")
    if _has_relation(con, f"labelled_{entity_type}"):
        return f"labelled_{entity_type}"
    table = f"_scored_{entity_type}"
    if _has_relation(con, table):
        return table
    if not _has_relation(con, "mention_truth"):
        create_mention_truth(con, home)
    create_labels(con, "_labelled", "mentions", "mention_truth", entity_type)
    run_sql(
        con,
        f"""
        CREATE TEMP TABLE {table} AS
        SELECT l.mention_id, l.entity_id, l.collapsed, l.name_only AND s.shared IS TRUE AS amb
        FROM _labelled l LEFT JOIN ({ambiguous_keys_sql("_labelled")}) s USING (name_key)
        """,
    )
    run_sql(con, "DROP TABLE _labelled")
    return table


# The (cluster, entity) groups every score is a sum over: n mentions, r of them not
# ambiguous name-only, k collapsing several entities, ``listed`` in the clustering.
GROUP_COLUMNS = {
    "cluster_id": "VARCHAR", "entity_id": "VARCHAR",
    "n": "BIGINT", "r": "BIGINT", "k": "BIGINT", "listed": "BIGINT",
}  # fmt: skip
# B-cubed terms (ce²/c, ce²/e) are summed as decimals of this type: exact, so the
# same in any order and grouping (a parallel float sum differs in the last bits from
# run to run, and a sum kept by parts, linkage.score_store, equals the whole).
BCUBED_DECIMAL = "DECIMAL(38, 24)"


def create_groups(con: duckdb.DuckDBPyConnection, table: str, base: str, clusters: str) -> None:
    """Temporary ``table`` (:data:`GROUP_COLUMNS`): the labelled mentions ``base``
    (:func:`_base_table`: ``mention_id, entity_id, collapsed, amb``) grouped by their
    cluster in the query ``clusters`` (``mention_id, cluster_id``; an unlisted mention is
    the singleton ``single:<mention_id>``) and their entity."""
    run_sql(
        con,
        f"""
        CREATE OR REPLACE TEMP TABLE {table} AS
        SELECT cluster_id, entity_id, count(*) AS n,
               count(*) FILTER (WHERE NOT amb) AS r,
               count(*) FILTER (WHERE collapsed) AS k,
               count(listed) AS listed
        FROM (SELECT b.entity_id, b.amb, b.collapsed, c.mention_id AS listed,
                     coalesce(c.cluster_id::VARCHAR, 'single:' || b.mention_id) AS cluster_id
              FROM {base} b LEFT JOIN (SELECT mention_id, cluster_id FROM {clusters}) c
              ON c.mention_id = b.mention_id)
        GROUP BY cluster_id, entity_id
        """,
    )


def cluster_sums_sql(groups: str) -> str:
    """Per cluster of the relation ``groups`` (every group of each cluster in it): its
    mentions ``n`` (``r`` not ambiguous name-only), ``k``, ``listed``, the correct pairs
    ``tp`` (``tp_r`` without ambiguous name-only mentions) and the B-cubed precision
    sum ``bp`` (sum over its mentions of |cluster ∩ entity| / |cluster|)."""
    return f"""
        WITH c AS (SELECT cluster_id, sum(n)::BIGINT AS cn FROM {groups} GROUP BY cluster_id)
        SELECT g.cluster_id, sum(g.n)::BIGINT AS n, sum(g.r)::BIGINT AS r,
               sum(g.k)::BIGINT AS k, sum(g.listed)::BIGINT AS listed,
               sum(g.n * (g.n - 1) // 2)::BIGINT AS tp, sum(g.r * (g.r - 1) // 2)::BIGINT AS tp_r,
               sum((g.n * g.n / c.cn)::{BCUBED_DECIMAL}) AS bp
        FROM {groups} g JOIN c USING (cluster_id) GROUP BY g.cluster_id"""


def entity_sums_sql(groups: str) -> str:
    """Per entity of the relation ``groups`` (every group of each entity in it): its
    mentions ``n`` (``r`` not ambiguous name-only) and the B-cubed recall sum ``br``
    (sum over its mentions of |cluster ∩ entity| / |entity|)."""
    return f"""
        WITH e AS (SELECT entity_id, sum(n)::BIGINT AS en FROM {groups} GROUP BY entity_id)
        SELECT g.entity_id, sum(g.n)::BIGINT AS n, sum(g.r)::BIGINT AS r,
               sum((g.n * g.n / e.en)::{BCUBED_DECIMAL}) AS br
        FROM {groups} g JOIN e USING (entity_id) GROUP BY g.entity_id"""


CLUSTER_TOTALS = ("clusters", "mentions", "not_amb", "collapsed", "listed", "tp", "tp_r",
                  "pred", "pred_r", "bp")  # fmt: skip
ENTITY_TOTALS = ("entities", "true", "true_r", "held", "br")


def cluster_totals(con: duckdb.DuckDBPyConnection, groups: str) -> dict[str, Any]:
    """The sums over the clusters of ``groups`` (:func:`cluster_sums_sql`) the scores
    need (:data:`CLUSTER_TOTALS`): integers, ``bp`` a :class:`decimal.Decimal`."""
    row = con.execute(f"""
        SELECT count(*), sum(n), sum(r), sum(k), sum(listed), sum(tp), sum(tp_r),
               sum(n * (n - 1) // 2), sum(r * (r - 1) // 2), sum(bp)
        FROM ({cluster_sums_sql(groups)})
    """).fetchall()[0]
    return _totals(CLUSTER_TOTALS, row)


def entity_totals(con: duckdb.DuckDBPyConnection, groups: str) -> dict[str, Any]:
    """The sums over the entities of ``groups`` (:func:`entity_sums_sql`) the scores
    need (:data:`ENTITY_TOTALS`): true pairs (without ambiguous name-only mentions),
    the pairs holding one, ``br`` a :class:`decimal.Decimal`."""
    row = con.execute(f"""
        SELECT count(*), sum(n * (n - 1) // 2), sum(r * (r - 1) // 2),
               sum((n - r) * (n - 1)), sum(br)
        FROM ({entity_sums_sql(groups)})
    """).fetchall()[0]
    return _totals(ENTITY_TOTALS, row)


def _totals(names: tuple[str, ...], row: tuple[Any, ...]) -> dict[str, Any]:
    return {
        k: (Decimal(0) if v is None else v) if k in ("bp", "br") else int(v or 0)
        for k, v in zip(names, row, strict=True)
    }


def scores_from_totals(totals: dict[str, Any], entity_type: str) -> dict[str, Any] | None:
    """The scores of :func:`score_clusters` from the sums over its groups
    (:func:`cluster_totals` and :func:`entity_totals` of them, one dict); None when no
    mention is listed."""
    t = totals
    if not t["listed"]:
        return None
    out: dict[str, Any] = {
        "mentions": t["mentions"],
        "entities": t["entities"],
        "clusters": t["clusters"],
        "pairwise": _pairwise(t["pred"], t["true"], t["tp"]),
        "bcubed": _bcubed(t["bp"], t["br"], t["mentions"]),
        "ambiguous_mentions": t["collapsed"],
    }
    if entity_type == "person":
        out["name_only_ceiling"] = {
            "ambiguous_name_only_mentions": t["mentions"] - t["not_amb"],
            "true_pairs_holding_one": t["held"],
            "pairwise_without_them": _pairwise(t["pred_r"], t["true_r"], t["tp_r"]),
        }
    return out


def clusters_sql(clusters: Path) -> str:
    """A query over a Parquet file of ``mention_id, cluster_id``."""
    return read_parquet_sql([clusters]).replace(", union_by_name = true", "")


def score_clusters(
    con: duckdb.DuckDBPyConnection,
    home: Home,
    clusters: pl.DataFrame | Path,
    entity_type: str,
) -> dict[str, Any] | None:
    """The scores :func:`evaluate` gives without the detail (``mentions, entities,
    clusters, pairwise, bcubed, ambiguous_mentions`` and, for persons,
    ``name_only_ceiling``) for the ``entity_type`` mentions of ``clusters`` (a frame or
    a Parquet file of ``mention_id, cluster_id``), computed by DuckDB on ``con``
    (:func:`scoring_duckdb`); None when ``clusters`` holds no such mention. Each score
    is a sum over the (cluster, entity) groups (:func:`create_groups`), by cluster
    (:func:`cluster_totals`) or by entity (:func:`entity_totals`)."""
    base = _base_table(con, home, entity_type)
    if isinstance(clusters, Path):
        src = clusters_sql(clusters)
    else:
        con.register("_clusters_frame", clusters.select("mention_id", "cluster_id"))
        src = "_clusters_frame"
    try:
        create_groups(con, "_ce", base, src)
    finally:
        if src == "_clusters_frame":
            con.unregister("_clusters_frame")
    totals = cluster_totals(con, "_ce") | entity_totals(con, "_ce")
    run_sql(con, "DROP TABLE _ce")
    return scores_from_totals(totals, entity_type)


def _pairwise(pred: int | None, true: int | None, tp: int | None) -> dict[str, Any]:
    p, r = _ratio(tp or 0, pred or 0), _ratio(tp or 0, true or 0)
    return {
        "precision": p,
        "recall": r,
        "f1": _f1(p, r),
        "predicted_pairs": int(pred or 0),
        "true_pairs": int(true or 0),
        "true_positive_pairs": int(tp or 0),
    }


def _bcubed(bp: Decimal | float, br: Decimal | float, mentions: int) -> dict[str, float]:
    p = float(bp) / mentions if mentions else 1.0
    r = float(br) / mentions if mentions else 1.0
    return {"precision": p, "recall": r, "f1": _f1(p, r)}


def evaluate(
    home: Home,
    clusters: pl.DataFrame,
    *,
    detail: bool = True,
    truth: pl.DataFrame | None = None,
) -> dict[str, Any]:
    """Score ``clusters`` (``mention_id, cluster_id``) against the truth, per entity
    type present in it: pairwise and B-cubed P/R/F1 and, with ``detail``, recall per
    source pair, the worst false merges and missed links. ``truth``:
    :func:`linkage.truth.mention_truth`, when the caller scores several clusterings
    (read once here otherwise). Without ``detail`` DuckDB computes the scores
    (:func:`score_clusters`)."""
    if not detail:
        with scoring_duckdb(home, truth) as con:
            con.register("_types_frame", clusters.select("mention_id"))
            types = [
                r[0]
                for r in con.execute(
                    "SELECT DISTINCT m.entity_type FROM _types_frame c "
                    "JOIN mentions m ON m.mention_id = c.mention_id ORDER BY 1"
                ).fetchall()
            ]
            con.unregister("_types_frame")
            scores = {t: score_clusters(con, home, clusters, t) for t in types}
            return {t: s for t, s in scores.items() if s is not None}
    m = lake.mentions(home).select("mention_id", "entity_type").collect()
    types = sorted(clusters.join(m, on="mention_id")["entity_type"].unique().to_list())
    if truth is None and types:
        truth = mention_truth(home)
    return {
        t: evaluate_labelled(label(home, clusters, t, truth=truth, detail=detail), detail=detail)
        for t in types
    }
