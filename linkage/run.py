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
    save_model,
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
    # Every scored pair at or above the score floor, with its evidence columns
    # (linkage.explain.contributions).
    scored: pl.DataFrame
    candidate_pairs: int
    mentions: int
    timings: dict[str, float] = field(default_factory=dict)
    blocking: list[dict[str, Any]] = field(default_factory=list)
    guard_refused_edges: int = 0
    guard_split_clusters: int = 0
    model_path: Path | None = None

    @property
    def pairs_per_mention(self) -> float:
        return self.candidate_pairs / self.mentions if self.mentions else 0.0


def duplicate_free_keys(
    home: Home, mentions: pl.DataFrame, mention_ids: pl.Series | None = None
) -> pl.DataFrame:
    """The duplicate-free guard's keys (``mention_id, source_id, guard_key``) of
    ``mentions`` (``mention_id, source_id, role``; of ``mention_ids`` only, when
    given): the records of the duplicate-free registers, read from their own staged
    files alone."""
    dup_free = [s.id for s in load_specs(home.sources_dir) if s.duplicate_free]
    recs = lake.records(home, sources=dup_free)
    if mention_ids is not None:
        mentions = mentions.filter(pl.col("mention_id").is_in(mention_ids.implode()))
        recs = recs.filter(pl.col("mention_id").is_in(mention_ids.implode()))
    recs = recs.select("source_id", "record_key", "mention_id").unique().collect()
    return guard_keys(mentions, recs, dup_free)


def _guard(
    home: Home, mentions: pl.DataFrame, clusters: pl.DataFrame, edges: pl.DataFrame
) -> tuple[pl.DataFrame, int, int]:
    keys = duplicate_free_keys(home, mentions)
    n_bad = offending_clusters(clusters, keys).height
    clusters, refused = split_offending(clusters, edges, keys)
    return clusters, refused, n_bad


@dataclass
class Prediction:
    """One Splink prediction of one entity type: every candidate pair scored once,
    those at or above the score floor kept with their evidence (``scored``); the
    ones at or above the model's ``threshold`` are the edges to cluster."""

    entity_type: str
    features: pl.DataFrame
    scored: pl.DataFrame
    candidate_pairs: int
    threshold: float
    model_path: Path
    timings: dict[str, float] = field(default_factory=dict)
    blocking: list[dict[str, Any]] = field(default_factory=list)

    @property
    def edges(self) -> pl.DataFrame:
        return self.scored.filter(pl.col("match_probability") >= self.threshold).select(
            "mention_id_l", "mention_id_r", "match_weight", "match_probability"
        )


def entity_features(home: Home, entity_type: str) -> pl.DataFrame:
    """The model's input for ``entity_type``: every staged mention with the derived
    comparison columns (:mod:`linkage.features`)."""
    all_mentions = lake.mentions(home)
    mentions = all_mentions.filter(pl.col("entity_type") == entity_type).collect()
    if entity_type == "person":
        return person_features(mentions)
    if entity_type == "business":
        return business_features(mentions, legal_rep_names(lake.relationships(home), all_mentions))
    raise ValueError(f"unknown entity type {entity_type!r}")


def predict(
    home: Home,
    *,
    entity_type: str = "person",
    model_path: Path | None = None,
    config: PersonModelConfig | BusinessModelConfig | None = None,
    count_blocking: bool = False,
    score_floor: float = REVIEW_BAND[0],
    features: pl.DataFrame | None = None,
) -> Prediction:
    """Score every candidate pair of ``entity_type`` mentions once. A saved model at
    ``model_path`` is used if it exists; else a model is trained (seeded) and saved
    there (default ``lake/linkage/<entity_type>_model.json``). ``features`` (else
    derived from the lake) are written to ``lake/linkage/<type>_features.parquet``.
    ``count_blocking`` adds the exact candidate pairs per blocking rule (slower)."""
    if entity_type not in ("person", "business"):
        raise ValueError(f"unknown entity type {entity_type!r}")
    person = entity_type == "person"
    if config is None:
        config = PersonModelConfig() if person else BusinessModelConfig()
    timings: dict[str, float] = {}
    t = time.perf_counter()
    target = home.lake / "linkage"
    target.mkdir(parents=True, exist_ok=True)
    if features is None:
        features = entity_features(home, entity_type)
        # Kept for the incremental path and for search by example at publish.
        features.write_parquet(target / f"{entity_type}_features.parquet")
    settings: Any = person_settings(config) if person else business_settings(config)  # type: ignore[arg-type]
    rules = person_blocking_rules() if person else business_blocking_rules()
    timings["features"] = time.perf_counter() - t
    model_path = model_path or target / f"{entity_type}_model.json"
    trained = model_path.exists()
    if trained:
        saved = json.loads(model_path.read_text(encoding="utf-8"))
        # A model saved before the evidence columns were kept in the prediction.
        saved["retain_intermediate_calculation_columns"] = True
    # Training runs on one DuckDB thread (deterministic sums); prediction on all.
    linker, db_api = make_linker(
        features,
        saved if trained else settings,
        name=f"{entity_type}_mentions",
        threads=None if trained else 1,
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
        save_model(trained_settings, model_path)
        timings["train"] = time.perf_counter() - t

    t = time.perf_counter()
    # The blocked pairs are materialised (and counted) first; predict reuses them and
    # keeps only the pairs at or above the floor.
    blocked = linker.inference.compute_blocked_pairs_for_predict()
    candidate_pairs = int(blocked.as_duckdbpyrelation().aggregate("count(*)").fetchall()[0][0])
    timings["blocking"] = time.perf_counter() - t
    t = time.perf_counter()
    pred = linker.inference.predict(threshold_match_probability=score_floor)
    timings["scoring"] = time.perf_counter() - t
    t = time.perf_counter()
    scored = contributions(pred.as_duckdbpyrelation(), linker, features)
    timings["evidence"] = time.perf_counter() - t
    return Prediction(
        entity_type,
        features,
        scored,
        candidate_pairs,
        float(config.threshold_match_probability),
        model_path,
        timings,
        blocking,
    )


def cluster(home: Home, prediction: Prediction) -> LinkResult:
    """Connected components of the prediction's edges, then the duplicate-free guard."""
    t = time.perf_counter()
    features, edges = prediction.features, prediction.edges
    clusters = connected_components(features["mention_id"], edges)
    clusters, refused, n_bad = _guard(home, features, clusters, edges)
    timings = {**prediction.timings, "cluster": time.perf_counter() - t}
    return LinkResult(
        entity_type=prediction.entity_type,
        clusters=clusters,
        edges=edges,
        scored=prediction.scored,
        candidate_pairs=prediction.candidate_pairs,
        mentions=features.height,
        timings=timings,
        blocking=prediction.blocking,
        guard_refused_edges=refused,
        guard_split_clusters=n_bad,
        model_path=prediction.model_path,
    )


def link(home: Home, **kwargs: Any) -> LinkResult:
    """Cluster every mention of one entity type: :func:`predict` (train if there is no
    saved model, score every candidate pair once), then :func:`cluster`. Takes
    :func:`predict`'s keyword arguments."""
    return cluster(home, predict(home, **kwargs))


def _mentions_hash(features: pl.DataFrame) -> str:
    """A fingerprint of the mention set (polars' hash: stable within one install)."""
    return str(int(features["mention_id"].hash(seed=0).sum()))


def save_prediction(home: Home, prediction: Prediction) -> Path:
    """Write the scored pairs to ``lake/linkage/<type>_scored.parquet`` with a sidecar
    saying which features and model they came from (see :func:`load_prediction`)."""
    target = home.lake / "linkage"
    path = target / f"{prediction.entity_type}_scored.parquet"
    prediction.scored.write_parquet(path)
    (target / f"{prediction.entity_type}_scored.json").write_text(
        json.dumps(
            {
                "candidate_pairs": prediction.candidate_pairs,
                "threshold": prediction.threshold,
                "model": str(prediction.model_path),
                "model_mtime_ns": prediction.model_path.stat().st_mtime_ns,
                "mentions": prediction.features.height,
                "mentions_hash": _mentions_hash(prediction.features),
                "timings": prediction.timings,
            },
            indent=2,
        ),
        encoding="utf-8",
    )
    return path


def load_prediction(home: Home, entity_type: str, features: pl.DataFrame) -> Prediction | None:
    """The saved prediction of ``entity_type`` if it was made from these
    ``features`` (same mentions) and the model file as it is now; else None."""
    target = home.lake / "linkage"
    side = target / f"{entity_type}_scored.json"
    path = target / f"{entity_type}_scored.parquet"
    if not (side.exists() and path.exists()):
        return None
    meta = json.loads(side.read_text(encoding="utf-8"))
    model = Path(meta["model"])
    if (
        not model.exists()
        or model.stat().st_mtime_ns != meta["model_mtime_ns"]
        or meta["mentions"] != features.height
        or meta.get("mentions_hash") != _mentions_hash(features)
    ):
        return None
    return Prediction(
        entity_type,
        features,
        pl.read_parquet(path),
        int(meta["candidate_pairs"]),
        float(meta["threshold"]),
        model,
        dict(meta.get("timings", {})),
    )
