"""The naive deterministic rule, the floor any model must beat.

Persons: same valid resident ID, or same hanzi name and same stated date of birth.
Businesses: same valid USCC, or same name. Rules are applied as a union (two
mentions linked by any rule are one entity) and closed transitively. Each rule is
turned into edges from every mention of a key group to the group's first mention
(a star, linear in the group size), then connected components.
"""

from __future__ import annotations

import polars as pl

from connectors import lake
from linkage.clusters import connected_components
from tessera.config import Home

RULES: dict[str, list[list[str]]] = {
    "person": [["id_number"], ["name_native", "dob"]],
    "business": [["uscc"], ["name"]],
}


def key_edges(mentions: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """Edges (``mention_id_l, mention_id_r``) joining mentions that agree on every
    column of ``keys`` (nulls never agree)."""
    m = mentions.drop_nulls(keys).filter(
        pl.all_horizontal(pl.col(k).cast(pl.String) != "" for k in keys)
    )
    return m.select(
        pl.col("mention_id").min().over(keys).alias("mention_id_l"),
        pl.col("mention_id").alias("mention_id_r"),
    ).filter(pl.col("mention_id_l") != pl.col("mention_id_r"))


def baseline_clusters(home: Home, entity_type: str = "person") -> pl.DataFrame:
    """Clusters (``mention_id, cluster_id``) of every ``entity_type`` mention by the naive rule."""
    keys = sorted({k for rule in RULES[entity_type] for k in rule})
    m = (
        lake.mentions(home)
        .filter(pl.col("entity_type") == entity_type)
        .select("mention_id", *keys)
        .collect()
    )
    edges = pl.concat([key_edges(m, keys) for keys in RULES[entity_type]])
    return connected_components(m["mention_id"], edges)
