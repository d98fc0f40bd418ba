"""Run linkage for every entity type and score it: what ``tessera link`` and
``tessera eval`` print (and later the Dagster assets' metadata).

Clusters are written to ``lake/linkage/<type>_clusters.parquet`` and the scored
pairs that hold them to ``lake/linkage/<type>_edges.parquet``.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from linkage.baseline import baseline_clusters
from linkage.evaluate import evaluate
from linkage.run import link
from tessera.config import Home

ENTITY_TYPES = ("person", "business")


def link_all(home: Home) -> dict[str, Any]:
    """Link persons and businesses; returns per type: mentions, candidate pairs,
    pairs per mention, clusters, guard actions and seconds per step."""
    out: dict[str, Any] = {}
    target = home.lake / "linkage"
    target.mkdir(parents=True, exist_ok=True)
    for etype in ENTITY_TYPES:
        res = link(home, entity_type=etype)
        res.clusters.write_parquet(target / f"{etype}_clusters.parquet")
        res.edges.write_parquet(target / f"{etype}_edges.parquet")
        out[etype] = {
            "mentions": res.mentions,
            "candidate_pairs": res.candidate_pairs,
            "pairs_per_mention": round(res.pairs_per_mention, 2),
            "clusters": res.clusters["cluster_id"].n_unique(),
            "guard_split_clusters": res.guard_split_clusters,
            "guard_refused_edges": res.guard_refused_edges,
            "seconds": {k: round(v, 2) for k, v in res.timings.items()},
            "model": str(res.model_path) if res.model_path else None,
        }
    return out


def has_truth(home: Home) -> bool:
    return any(home.truth.glob("*/*.parquet"))


def evaluate_all(home: Home, *, detail: bool = True) -> dict[str, Any]:
    """Score the saved clusters against the truth, with the naive rule for contrast."""
    out: dict[str, Any] = {}
    for etype in ENTITY_TYPES:
        path = home.lake / "linkage" / f"{etype}_clusters.parquet"
        if not path.exists():
            raise FileNotFoundError(
                f"no {etype} clusters in {path.parent}: run `tessera link` first"
            )
        model = evaluate(home, pl.read_parquet(path), detail=detail).get(etype)
        naive = evaluate(home, baseline_clusters(home, etype), detail=False).get(etype)
        out[etype] = {"model": model, "naive_rule": naive}
    return out
