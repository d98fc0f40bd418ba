"""Link the staged mentions of one entity type into clusters.

Persons: derived features (:mod:`linkage.features`) → Splink model
(:mod:`linkage.model`, trained unless a saved model is given) → pairwise
predictions → connected components at the threshold → duplicate-free guard
(:mod:`linkage.clusters`). Businesses: the same steps with the business features
and model (name core, USCC, legal representative, address).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from connectors import lake
from connectors.catalog import load_specs
from linkage.clusters import connected_components, guard_keys, offending_clusters, split_offending
from linkage.decisions import REVIEW_BAND
from linkage.explain import contributions
from linkage.features import business_features, legal_rep_names, person_features
from linkage.model import (
    BusinessModelConfig,
    PersonModelConfig,
    business_blocking_rules,
    business_settings,
    count_candidate_pairs,
    make_linker,
    person_blocking_rules,
    person_settings,
    train,
    train_business,
)
from tessera.config import Home


@dataclass
class LinkResult:
    """Clusters (``mention_id, cluster_id``) with what it took to make them."""

    entity_type: str
    clusters: pl.DataFrame
    edges: (
        pl.DataFrame
    )  # mention_id_l, mention_id_r, match_weight, match_probability (scored pairs)
    candidate_pairs: int
    mentions: int
    timings: dict[str, float] = field(default_factory=dict)
    blocking: list[dict[str, Any]] = field(default_factory=list)
    guard_refused_edges: int = 0
    guard_split_clusters: int = 0
    model_path: Path | None = None
    # Every scored pair at or above the score floor, with its evidence columns
    # (linkage.explain.contributions); None for clusters made without a model.
    scored: pl.DataFrame | None = None

    @property
    def pairs_per_mention(self) -> float:
        return self.candidate_pairs / self.mentions if self.mentions else 0.0


def _duplicate_free(home: Home) -> list[str]:
    return [s.id for s in load_specs(home.sources_dir) if s.duplicate_free]


def _guard(
    home: Home, mentions: pl.DataFrame, clusters: pl.DataFrame, edges: pl.DataFrame
) -> tuple[pl.DataFrame, int, int]:
    recs = lake.records(home).select("source_id", "record_key", "mention_id").unique().collect()
    keys = guard_keys(mentions, recs, _duplicate_free(home))
    n_bad = offending_clusters(clusters, keys).height
    clusters, refused = split_offending(clusters, edges, keys)
    return clusters, refused, n_bad


def link(
    home: Home,
    *,
    entity_type: str = "person",
    model_path: Path | None = None,
    config: PersonModelConfig | BusinessModelConfig | None = None,
    count_blocking: bool = False,
    score_floor: float = REVIEW_BAND[0],
) -> LinkResult:
    """Cluster every ``entity_type`` mention of ``home`` (``person`` or ``business``).
    A saved model at ``model_path`` is used if it exists; else a model is trained
    (seeded) and saved there (default ``lake/linkage/<entity_type>_model.json``).
    ``count_blocking`` adds the exact candidate pairs per blocking rule (slower).

    Splink predicts once: every candidate pair is scored, the pairs at or above
    ``score_floor`` are kept with their per-comparison evidence
    (``LinkResult.scored``, for the evidence and the review queue) and those at
    or above the model's threshold are the edges that are clustered."""
    if entity_type not in ("person", "business"):
        raise ValueError(f"unknown entity type {entity_type!r}")
    person = entity_type == "person"
    if config is None:
        config = PersonModelConfig() if person else BusinessModelConfig()
    timings: dict[str, float] = {}
    t = time.perf_counter()
    all_mentions = lake.mentions(home)
    mentions = all_mentions.filter(pl.col("entity_type") == entity_type).collect()
    if person:
        features = person_features(mentions)
        settings: Any = person_settings(config)  # type: ignore[arg-type]
        rules = person_blocking_rules()
    else:
        reps = legal_rep_names(lake.relationships(home), all_mentions)
        features = business_features(mentions, reps)
        settings = business_settings(config)  # type: ignore[arg-type]
        rules = business_blocking_rules()
    target = home.lake / "linkage"
    target.mkdir(parents=True, exist_ok=True)
    # Kept for the incremental path and for search by example at publish.
    features.write_parquet(target / f"{entity_type}_features.parquet")
    timings["features"] = time.perf_counter() - t
    model_path = model_path or target / f"{entity_type}_model.json"
    trained = model_path.exists()
    if trained:
        saved = json.loads(model_path.read_text(encoding="utf-8"))
        # A model saved before the evidence columns were kept in the prediction.
        saved["retain_intermediate_calculation_columns"] = True
    linker, db_api = make_linker(
        features, saved if trained else settings, name=f"{entity_type}_mentions"
    )
    blocking: list[dict[str, Any]] = []
    if count_blocking:
        t = time.perf_counter()
        table = db_api.register(
            features.to_arrow(), dataset_display_name=f"{entity_type}_mentions_blocking"
        )
        blocking = count_candidate_pairs(table, rules)
        timings["blocking_analysis"] = time.perf_counter() - t
    if not trained:
        t = time.perf_counter()
        # Each trains on linkers of its own (a sample of names for persons, one
        # mention per USCC for business u); predict with the result.
        if person:
            trained_settings = train(linker, config, features)  # type: ignore[arg-type]
        else:
            trained_settings = train_business(linker, config, features)  # type: ignore[arg-type]
        linker, db_api = make_linker(features, trained_settings, name=f"{entity_type}_mentions")
        model_path.parent.mkdir(parents=True, exist_ok=True)
        linker.misc.save_model_to_json(str(model_path), overwrite=True)
        timings["train"] = time.perf_counter() - t

    # One prediction: the edges, the evidence and the review queue all come from it.
    t = time.perf_counter()
    # The blocked pairs are materialised (and counted) first; predict reuses them and
    # keeps only the pairs at or above the floor.
    blocked = linker.inference.compute_blocked_pairs_for_predict()
    candidate_pairs = int(blocked.as_duckdbpyrelation().aggregate("count(*)").fetchall()[0][0])
    pred = linker.inference.predict(threshold_match_probability=score_floor)
    scored = contributions(pred.as_duckdbpyrelation(), linker, features)
    edges = scored.filter(pl.col("match_probability") >= config.threshold_match_probability).select(
        "mention_id_l", "mention_id_r", "match_weight", "match_probability"
    )
    timings["predict"] = time.perf_counter() - t

    t = time.perf_counter()
    clusters = connected_components(features["mention_id"], edges)
    clusters, refused, n_bad = _guard(home, mentions, clusters, edges)
    timings["cluster"] = time.perf_counter() - t
    return LinkResult(
        entity_type,
        clusters,
        edges,
        candidate_pairs,
        mentions.height,
        timings,
        blocking,
        refused,
        n_bad,
        model_path,
        scored,
    )
