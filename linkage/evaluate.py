"""Accuracy of a clustering against the simulated truth.

Pairs are counted from group sizes, never enumerated: the pairs a clustering
predicts are sum C(|cluster|, 2), the true pairs sum C(|entity|, 2), and the
correct ones sum C(|cluster ∩ entity|, 2). B-cubed averages, over mentions, the
share of the mention's cluster that is its entity (precision) and the share of
its entity that is in its cluster (recall).

Mentions of an evaluated entity type that the clustering does not list count as
singletons. A mention that collapses several real entities (a name-only source)
is scored on its majority entity and counted in ``ambiguous_mentions``.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from connectors import lake
from linkage.truth import mention_truth
from tessera.config import Home

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
    p, r = _ratio(tp, pred), _ratio(tp, true)
    return {
        "precision": p,
        "recall": r,
        "f1": _f1(p, r),
        "predicted_pairs": int(pred or 0),
        "true_pairs": int(true or 0),
        "true_positive_pairs": int(tp or 0),
    }


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


# A person mention that says none of these carries only a name (and perhaps sex,
# birth place or an address).
_DISTINGUISHING = (
    "dob", "dob_raw", "id_number", "id_raw", "id_masked", "id_dob",
    "phone", "phone_raw", "phone_masked", "email", "plate", "passport",
)  # fmt: skip


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


def evaluate(
    home: Home,
    clusters: pl.DataFrame,
    *,
    detail: bool = True,
    truth: pl.DataFrame | None = None,
) -> dict[str, Any]:
    """Score ``clusters`` (``mention_id, cluster_id``) against the truth, per entity
    type present in it: pairwise and B-cubed P/R/F1, recall per source pair, the worst
    false merges and missed links. ``truth``: :func:`linkage.truth.mention_truth`,
    when the caller scores several clusterings (read once here otherwise)."""
    m = lake.mentions(home).select("mention_id", "entity_type").collect()
    types = sorted(clusters.join(m, on="mention_id")["entity_type"].unique().to_list())
    if truth is None and types:
        truth = mention_truth(home)
    return {
        t: evaluate_labelled(label(home, clusters, t, truth=truth, detail=detail), detail=detail)
        for t in types
    }
