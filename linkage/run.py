"""Link the staged mentions of one entity type into clusters.

Persons: derived features (:mod:`linkage.features`) → Splink model
(:mod:`linkage.model`, trained unless a saved model is given) → pairwise
predictions → connected components at the threshold → duplicate-free guard
(:mod:`linkage.clusters`). Businesses: the same steps with the business features
and model (name core, USCC, legal representative, address).
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import tempfile
import time
import uuid
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from connectors import lake
from connectors.catalog import load_specs
from linkage.clusters import connected_components, guard_keys, offending_clusters, split_offending
from linkage.decisions import REVIEW_BAND
from linkage.explain import contribution_sql
from linkage.features import (
    business_features,
    legal_rep_names,
    person_features,
    write_features,
)
from linkage.model import (
    BusinessModelConfig,
    PersonModelConfig,
    _duckdb_memory_limit,
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


class ScoredPairs:
    """The scored pairs of one prediction as a Parquet file (``mention_id_l,
    mention_id_r, match_weight, match_probability, prior_log2`` and per comparison
    ``<name>_level``, ``<name>_log2_bf``: :func:`linkage.explain.contributions`),
    written by DuckDB and read lazily, so the tens of millions of pairs of a large
    world never sit in Python memory whole. A file the prediction wrote to a scratch
    place (``owned``) is deleted with the last reference to this object."""

    def __init__(self, path: Path, *, owned: bool = False) -> None:
        self.path = Path(path)
        self.owned = owned
        if owned:
            weakref.finalize(self, self.path.unlink, missing_ok=True)

    def scan(self) -> pl.LazyFrame:
        return pl.scan_parquet(self.path)

    def read(self) -> pl.DataFrame:
        return pl.read_parquet(self.path)


def _scratch_scored(entity_type: str) -> Path:
    d = Path(tempfile.gettempdir()) / "tessera-scored"
    d.mkdir(parents=True, exist_ok=True)
    return d / f"{entity_type}-{os.getpid()}-{uuid.uuid4().hex[:12]}.parquet"


@contextmanager
def linkage_duckdb() -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB connection for linkage's set-based steps, with the memory
    limit and spill directory of the Splink connections (``TESSERA_DUCKDB_MEMORY``)."""
    con = duckdb.connect()
    try:
        con.execute(f"SET memory_limit = '{_duckdb_memory_limit()}'")
        con.execute(f"SET temp_directory = '{Path(tempfile.gettempdir()) / 'tessera-duckdb'}'")
        con.execute("SET enable_progress_bar = false")
        yield con
    finally:
        con.close()


def predict_chunks() -> int:
    """How many slices (of the left side, by Splink's uid hash) the prediction is
    scored in: ``TESSERA_PREDICT_CHUNKS``, else 1 (one pass is the fastest; DuckDB
    spills above its memory limit). More slices bound the blocked pairs held at once
    at the cost of one blocking join per slice."""
    env = os.environ.get("TESSERA_PREDICT_CHUNKS")
    return max(1, int(env)) if env else 1


class _HoldsScoredPairs:
    """``scored`` / ``scan_scored()`` over a ``scored_pairs`` field (:class:`ScoredPairs`)."""

    scored_pairs: ScoredPairs

    @property
    def scored(self) -> pl.DataFrame:
        """Every scored pair at or above the floor, read whole (small worlds, tests)."""
        return self.scored_pairs.read()

    def scan_scored(self) -> pl.LazyFrame:
        return self.scored_pairs.scan()


@dataclass
class LinkResult(_HoldsScoredPairs):
    """Clusters (``mention_id, cluster_id``) with what it took to make them."""

    entity_type: str
    clusters: pl.DataFrame
    edges: (
        pl.DataFrame
    )  # mention_id_l, mention_id_r, match_weight, match_probability (scored pairs)
    # Every scored pair at or above the score floor, with its evidence columns
    # (linkage.explain.contributions), on disk: read with .scored / .scan_scored().
    scored_pairs: ScoredPairs
    candidate_pairs: int
    mentions: int
    timings: dict[str, float] = field(default_factory=dict)
    blocking: list[dict[str, Any]] = field(default_factory=list)
    guard_refused_edges: int = 0
    guard_split_clusters: int = 0
    model_path: Path | None = None
    threshold: float = 0.0  # the model's: ``edges`` are the scored pairs at or above it

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
class Prediction(_HoldsScoredPairs):
    """One Splink prediction of one entity type: every candidate pair scored once,
    those at or above the score floor kept with their evidence (``scored``); the
    ones at or above the model's ``threshold`` are the edges to cluster."""

    entity_type: str
    features: pl.DataFrame
    scored_pairs: ScoredPairs
    candidate_pairs: int
    threshold: float
    model_path: Path
    timings: dict[str, float] = field(default_factory=dict)
    blocking: list[dict[str, Any]] = field(default_factory=list)

    @property
    def edges(self) -> pl.DataFrame:
        return (
            self.scan_scored()
            .filter(pl.col("match_probability") >= self.threshold)
            .select("mention_id_l", "mention_id_r", "match_weight", "match_probability")
            .collect()
        )


def entity_features(home: Home, entity_type: str) -> pl.DataFrame:
    """The model's input for ``entity_type``: every staged mention with the derived
    comparison columns (:mod:`linkage.features`)."""
    # Lazy: the features read only the columns they use (at 7.2M person mentions,
    # collecting every column first took 4.8 GB before any feature was derived).
    all_mentions = lake.mentions(home)
    mentions = all_mentions.filter(pl.col("entity_type") == entity_type)
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
        write_features(features, target / f"{entity_type}_features.parquet")
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
            features.to_arrow(compat_level=pl.CompatLevel.newest()),
            dataset_display_name=f"{entity_type}_mentions_blocking",
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
        # The training connection's tables (the prior's pairs over every mention) go
        # now, not whenever the garbage collector reaches the linker's cycles.
        db_api._con.close()
        del linker, db_api
        gc.collect()
        linker, db_api = make_linker(features, trained_settings, name=f"{entity_type}_mentions")
        save_model(trained_settings, model_path)
        timings["train"] = time.perf_counter() - t

    scored = _scratch_scored(entity_type)
    candidate_pairs = _score(linker, db_api, features, score_floor, scored, timings)
    return Prediction(
        entity_type,
        features,
        ScoredPairs(scored, owned=True),
        candidate_pairs,
        float(config.threshold_match_probability),
        model_path,
        timings,
        blocking,
    )


def _score(
    linker: Any,
    db_api: Any,
    features: pl.DataFrame,
    score_floor: float,
    path: Path,
    timings: dict[str, float],
) -> int:
    """Block and score every candidate pair (in :func:`predict_chunks` slices), and
    have DuckDB write the pairs at or above ``score_floor`` with their evidence
    columns (:func:`linkage.explain.contribution_sql`, mention IDs for the integer
    uids) to ``path``; returns the number of candidate pairs. The connection is
    closed afterwards, so its tables go with it."""
    con = db_api._con
    # Row order is Splink's arbitrary order anyway (the pairs are sorted where it
    # matters); not keeping it lets DuckDB materialise and write with less memory.
    con.execute("SET preserve_insertion_order = false")
    n = predict_chunks()
    timings["blocking"] = timings["scoring"] = 0.0
    candidate_pairs = 0
    parts = []
    try:
        for k in range(1, n + 1):
            t = time.perf_counter()
            # The blocked pairs are materialised (and counted) first; the prediction
            # reuses them and keeps only the pairs at or above the floor.
            left = (k, n)
            blocked = linker.inference.compute_blocked_pairs_for_predict_chunk(
                left_chunk=left, right_chunk=(1, 1)
            )
            candidate_pairs += int(
                blocked.as_duckdbpyrelation().aggregate("count(*)").fetchall()[0][0]
            )
            timings["blocking"] += time.perf_counter() - t
            t = time.perf_counter()
            parts.append(
                linker.inference.predict_chunk(
                    left_chunk=left,
                    right_chunk=(1, 1),
                    threshold_match_probability=score_floor,
                    warning_mode="never",
                )
            )
            blocked.drop_table_from_database_and_remove_from_cache()
            timings["scoring"] += time.perf_counter() - t
        t = time.perf_counter()
        cols = parts[0].as_duckdbpyrelation().columns
        union = " UNION ALL ".join(f"SELECT * FROM {p.physical_name}" for p in parts)
        items = contribution_sql(linker, cols, "p")
        if "mention_id_l" in cols:
            keys, joins = "p.mention_id_l, p.mention_id_r", ""
        else:
            uid = linker._settings_obj.column_info_settings.unique_id_column_name
            con.register(
                "__tessera_ids",
                features.select(uid, "mention_id").to_arrow(compat_level=pl.CompatLevel.newest()),
            )
            keys = "il.mention_id AS mention_id_l, ir.mention_id AS mention_id_r"
            joins = (
                f'JOIN __tessera_ids il ON p."{uid}_l" = il."{uid}" '
                f'JOIN __tessera_ids ir ON p."{uid}_r" = ir."{uid}"'
            )
        tmp = path.with_name(path.name + ".tmp")
        con.execute(
            f"COPY (SELECT {keys}, p.match_weight, p.match_probability, {', '.join(items)} "
            f"FROM ({union}) p {joins}) TO '{tmp}' (FORMAT parquet, COMPRESSION zstd)"
        )
        os.replace(tmp, path)
        timings["evidence"] = time.perf_counter() - t
    finally:
        con.close()
    return candidate_pairs


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
        scored_pairs=prediction.scored_pairs,
        candidate_pairs=prediction.candidate_pairs,
        mentions=features.height,
        timings=timings,
        blocking=prediction.blocking,
        guard_refused_edges=refused,
        guard_split_clusters=n_bad,
        model_path=prediction.model_path,
        threshold=prediction.threshold,
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
    src = prediction.scored_pairs.path
    if src.resolve() != path.resolve():
        tmp = path.with_name(path.name + ".tmp")
        tmp.unlink(missing_ok=True)
        try:
            os.link(src, tmp)  # the scratch file as it is, no copy
        except OSError:
            shutil.copyfile(src, tmp)
        os.replace(tmp, path)
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
        ScoredPairs(path),
        int(meta["candidate_pairs"]),
        float(meta["threshold"]),
        model,
        dict(meta.get("timings", {})),
    )
