"""Run linkage for every entity type and score it: what ``tessera link`` and
``tessera eval`` print (and later the Dagster assets' metadata).

Per entity type, after the model (:func:`linkage.run.link`), :func:`settle` runs
the rest (the Dagster assets should call it too): the human decisions
are applied (:mod:`linkage.decisions`), every cluster gets its stable entity ID
(:mod:`linkage.stable_ids`, events appended to ``decisions.duckdb``), and the
edges that hold each entity together are explained (:mod:`linkage.explain`).
Written to ``lake/linkage/``:

- ``<type>_clusters.parquet``: ``mention_id, cluster_id`` (the cluster ID is the entity ID)
- ``<type>_entities.parquet``: ``mention_id, entity_id`` (the current map, read by the next run)
- ``<type>_edges.parquet``: the model's scored pairs at or above its threshold
- ``<type>_evidence.parquet``: the kept edges with per-comparison contributions
- ``<type>_review.parquet``: candidates for the review queue
- ``<type>_features.parquet``: the model's input, one row per mention
  (:mod:`linkage.features`; written by :func:`linkage.run.link`)

An incremental link (:mod:`linkage.incremental`) does not rewrite the edges,
evidence and features files: it appends parts next to them
(``<type>_<kind>_delta/``), so read those three through :func:`read_linkage`,
which returns the base file and its parts as one frame.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Literal

import polars as pl

from connectors import lake
from linkage import block_keys, name_state, term_counts
from linkage import cross as cross_edges
from linkage import sizes as entity_sizes
from linkage.decisions import (
    REVIEW_BAND,
    WEAK_WEIGHT,
    active_decisions,
    apply_decisions,
    event_reasons,
    issued_ids,
    record_id_events,
    review_candidates,
)
from linkage.evaluate import evaluate
from linkage.explain import weak_entity_edges, write_evidence
from linkage.features import write_features
from linkage.parts import DELTA_KEYS, _delta_dir, _stamp, linkage_parts, void_files
from linkage.run import LinkResult, link, linkage_duckdb
from linkage.run import duplicate_free_keys as mention_guard_keys
from linkage.stable_ids import assign_entity_ids
from tessera.config import Home

ENTITY_TYPES = ("person", "business")


def read_linkage(home: Home, entity_type: str, kind: str) -> pl.LazyFrame:
    """``<type>_<kind>`` (``edges``, ``evidence`` or ``features``) as it stands: the base
    file written by the last full link and the parts each incremental link appended
    (:func:`append_linkage`), later parts replacing what :data:`DELTA_KEYS` says.
    Raises :class:`FileNotFoundError` when there is no base file."""
    paths = linkage_parts(home, entity_type, kind)
    if not paths:
        raise FileNotFoundError(
            f"no {entity_type} {kind} in {home.lake / 'linkage'}: run `tessera link` first"
        )
    key = DELTA_KEYS[kind]
    frames = [pl.scan_parquet(p) for p in paths]
    if key is None or len(frames) == 1:
        return pl.concat(frames, how="diagonal_relaxed")
    if kind == "features" and all("uid" in f.collect_schema().names() for f in frames):
        # A mention keeps its ``uid`` in every part (a restated row keeps it, a new
        # mention gets one above every stored uid): the same rows replaced, matched on
        # an integer instead of the 21-character ID (each read of the 7.2M stored rows
        # paid ~0.3 s for the string matches with five parts).
        key = "uid"
    voids = [pl.scan_parquet(v).select(key) for v in void_files(paths)]
    out = []
    for i, f in enumerate(frames):
        later = voids[i:]
        if later:
            f = f.join(pl.concat(later).select(key).unique(), on=key, how="anti")
        out.append(f)
    return pl.concat(out, how="diagonal_relaxed")


def append_linkage(
    home: Home,
    entity_type: str,
    kind: str,
    rows: pl.DataFrame,
    void: pl.Series | None = None,
) -> Path:
    """Append ``rows`` to ``<type>_<kind>`` as a delta part (see :func:`read_linkage`);
    for ``evidence``, ``void`` names the entity IDs whose earlier rows the part
    replaces. Parts of an older base are removed. Returns the part's path."""
    paths = linkage_parts(home, entity_type, kind)
    if not paths:
        raise FileNotFoundError(f"no base {entity_type} {kind} to append to")
    stamp = _stamp(paths[0])
    d = _delta_dir(home, entity_type, kind)
    d.mkdir(exist_ok=True)
    for stale in d.glob("*.parquet"):
        if not stale.name.startswith(stamp + "-"):
            stale.unlink()
    part = d / f"{stamp}-{len(paths):06d}.parquet"
    if void is not None:
        key = DELTA_KEYS[kind]
        if key is None:
            raise ValueError(f"{kind} parts only add rows: no void list")
        void_path = part.with_name(part.stem + ".void.parquet")
        pl.DataFrame({key: void.unique()}).cast(pl.String).write_parquet(void_path)
    tmp = part.with_name(part.name + ".tmp")
    if kind == "features":
        write_features(rows, tmp)
    else:
        rows.write_parquet(tmp)
    os.replace(tmp, part)
    return part


# The codec of the entity maps (``<type>_entities`` and ``<type>_clusters``), which each
# increment rewrites whole: for both 7.2M-row maps zstd took 3 s each, lz4 1.15 s for
# the two, none 0.84 s (303 MB a file instead of 229; read as fast).
MAP_COMPRESSION = "uncompressed"


def write_entity_maps(target: Path, entity_type: str, entities: pl.DataFrame) -> None:
    """Write the entity map ``entities`` (``mention_id, entity_id``, in mention order) to
    ``target`` as ``<type>_entities.parquet`` and, with the entity as ``cluster_id``,
    ``<type>_clusters.parquet`` (what the evaluation and the publish read)."""
    entities.write_parquet(target / f"{entity_type}_entities.parquet", compression=MAP_COMPRESSION)
    entities.select("mention_id", pl.col("entity_id").alias("cluster_id")).write_parquet(
        target / f"{entity_type}_clusters.parquet", compression=MAP_COMPRESSION
    )


def duplicate_free_keys(home: Home, entity_type: str) -> pl.DataFrame:
    """The duplicate-free guard's keys (``mention_id, source_id, guard_key``) of every
    ``entity_type`` mention, so a cluster rebuilt for a cannot-link keeps the guard's
    rule too (:func:`linkage.run.duplicate_free_keys`)."""
    mentions = lake.mentions(home).filter(pl.col("entity_type") == entity_type).collect()
    return mention_guard_keys(home, mentions)


def link_all(home: Home) -> dict[str, Any]:
    """Link persons and businesses and settle each (:func:`settle`); returns per
    type what :func:`settle` returns."""
    return {etype: settle(home, link(home, entity_type=etype)) for etype in ENTITY_TYPES}


def settle(home: Home, res: LinkResult) -> dict[str, Any]:
    """Everything after the model for one entity type: honour the human decisions,
    keep entity IDs stable (events to ``decisions.duckdb``), explain every kept
    edge, collect review candidates, and write ``lake/linkage/<type>_*.parquet``.
    Returns: mentions, candidate pairs, pairs per mention, clusters, guard and
    decision actions, ID events, evidence and review counts, seconds per step."""
    etype = res.entity_type
    target = home.lake / "linkage"
    target.mkdir(parents=True, exist_ok=True)
    timings = dict(res.timings)

    t = time.perf_counter()
    active = active_decisions(home, etype)
    clusters, drep = apply_decisions(
        res.clusters, res.edges, active, duplicate_free_keys(home, etype) if active.height else None
    )
    timings["decisions"] = time.perf_counter() - t

    t = time.perf_counter()
    ent_path = target / f"{etype}_entities.parquet"
    previous = pl.read_parquet(ent_path) if ent_path.exists() else None
    ids = assign_entity_ids(etype, clusters, previous, issued_ids(home, etype))
    n_events = record_id_events(home, etype, event_reasons(ids.events, ids.entities, active))
    entities = ids.entities
    timings["stable_ids"] = time.perf_counter() - t

    # Evidence (the kept edges with their contributions) is joined, sorted and
    # written by DuckDB from the scored pairs on disk; the review queue takes the
    # scored pairs in its band and the kept edges of the entities with a weak link
    # only (what review_candidates looks at; the same rows as from all of them).
    t = time.perf_counter()
    ev_path = target / f"{etype}_evidence.parquet"
    with linkage_duckdb() as con:
        n_evidence = write_evidence(
            con, res.scored_pairs.path, entities, res.threshold, drep.must_edges, ev_path
        )
        timings["explain_evidence"] = time.perf_counter() - t
        kept = weak_entity_edges(con, ev_path, WEAK_WEIGHT)
    lo, hi = REVIEW_BAND
    band = (
        res.scan_scored()
        .filter(pl.col("match_probability").is_between(lo, hi, closed="left"))
        .select("mention_id_l", "mention_id_r", "match_weight", "match_probability")
        .collect()
    )
    review = review_candidates(entities, band, kept)
    timings["explain"] = time.perf_counter() - t
    timings["explain_review"] = timings["explain"] - timings["explain_evidence"]

    t = time.perf_counter()

    write_entity_maps(target, etype, entities)
    res.edges.write_parquet(target / f"{etype}_edges.parquet")
    review.write_parquet(target / f"{etype}_review.parquet")
    timings["write"] = time.perf_counter() - t
    # What the daily increments start from: the edges between entities (refused by the
    # guard or a decision) and the entity sizes, recorded with this map.
    t = time.perf_counter()
    cross_edges.record(home, etype, cross_edges.compute(res.edges, entities))
    entity_sizes.record(
        home, etype, entity_sizes.count(entities.rename({"entity_id": "cluster_id"}))
    )
    term_counts.record_full(home, etype)
    block_keys.record_full(home, etype)
    if etype == "person":
        name_state.record_full(home)
    timings["record"] = time.perf_counter() - t
    events = ids.events.group_by("kind").len()
    return {
        "mentions": res.mentions,
        "candidate_pairs": res.candidate_pairs,
        "pairs_per_mention": round(res.pairs_per_mention, 2),
        "clusters": entities["entity_id"].n_unique(),
        "guard_split_clusters": res.guard_split_clusters,
        "guard_refused_edges": res.guard_refused_edges,
        "decisions": drep.as_dict(),
        "entity_ids": {
            "kept": ids.kept,
            "issued": ids.issued,
            "events": dict(zip(events["kind"].to_list(), events["len"].to_list(), strict=True)),
            "events_recorded": n_events,
        },
        "evidence_edges": n_evidence,
        "review_candidates": review.height,
        "seconds": {k: round(v, 2) for k, v in timings.items()},
        "model": str(res.model_path) if res.model_path else None,
    }


def has_truth(home: Home) -> bool:
    """Whether ``home`` holds the simulated truth (``truth/<source>/<day>.parquet``)."""
    return any(home.truth.glob("*/*.parquet"))


def evaluate_all(
    home: Home, *, detail: bool = True, naive: bool | Literal["cached"] = True
) -> dict[str, Any]:
    """Score the saved clusters against the truth, with the naive rule for contrast:
    per entity type ``model`` and ``naive_rule`` (the scores of
    :func:`linkage.evaluate.evaluate`), ``naive_rule_source`` (where the naive rule's
    scores come from, see :func:`linkage.baseline.naive_rule_scores`), ``scored``
    (how the model's scores were computed: ``incremental`` or ``full``) and
    ``scoring`` (that, with the ``reason`` and, incremental, what was rescored).

    The truth comes from the store in ``lake/linkage/mention_truth/``, brought up to
    date first (:func:`linkage.truth.update_truth_store`: only the files added since
    are read). Without ``detail`` the model's scores come from the sums kept in
    ``lake/linkage/cluster_scores/``, carried forward by the last incremental link's
    changes and the truth's when that is exact, else scored in full by DuckDB from the
    Parquet files (:func:`linkage.score_store.score_saved_clusters`); with it the
    model's scores carry the recall per source pair and examples of false merges and
    missed links. ``naive``: True computes the naive rule and stores its scores,
    ``"cached"`` reuses the stored ones (a daily run: the rule depends on the staged
    mentions only), False skips it (``naive_rule`` None)."""
    from linkage.baseline import naive_inputs_fingerprint, naive_rule_scores
    from linkage.evaluate import score_clusters, scoring_duckdb
    from linkage.score_store import score_saved_clusters
    from linkage.truth import stored_truth_views

    paths = {etype: home.lake / "linkage" / f"{etype}_clusters.parquet" for etype in ENTITY_TYPES}
    for etype, path in paths.items():
        if not path.exists():
            raise FileNotFoundError(
                f"no {etype} clusters in {path.parent}: run `tessera link` first"
            )
    out: dict[str, Any] = {}
    fingerprint = naive_inputs_fingerprint(home) if naive is not False else None
    with scoring_duckdb(home) as con:
        # The truth mapping and the labelled mentions are kept between runs and
        # extended by the files added since (linkage.truth.update_truth_store).
        truth_manifest = stored_truth_views(con, home)
        truth: pl.DataFrame | None = None
        for etype, path in paths.items():
            if detail:
                if truth is None:
                    truth = con.sql("SELECT * FROM mention_truth").pl()
                model = evaluate(home, pl.read_parquet(path), detail=True, truth=truth).get(etype)
                how = {"scored": "full", "reason": "with the detail (polars)"}
            else:
                model, how = score_saved_clusters(con, home, etype, truth_manifest)
            scores, source = naive_rule_scores(
                home,
                etype,
                naive,
                lambda clusters, etype=etype: score_clusters(con, home, clusters, etype),
                fingerprint,
            )
            out[etype] = {
                "model": model,
                "naive_rule": scores,
                "naive_rule_source": source,
                "scored": how["scored"],
                "scoring": how,
            }
    return out
