"""Incremental linking: a day's new mentions join the existing entities, without
retraining and without re-scoring the pairs of the existing mentions.

:func:`link_incremental` (one entity type):

1. *features* of every mention (existing and new), derived as the full link
   derives them, so the per-name statistic ``name_py_persons`` and the
   term-frequency tables are those a full relink would use today;
2. *score* with the saved model (``lake/linkage/<type>_model.json``, never
   retrained): new × existing with Splink's ``predict_between`` and new × new with
   ``predict_within``. ``predict_between`` joins the two roles in whatever order
   they are given, while the full (``dedupe_only``) prediction generates a pair
   ``a < b`` only when a rule holds with ``a`` on the left; a rule that is not
   symmetric (``l.name_py = r.name_py_rev``) would then find other pairs. So each
   such rule is given twice, once per orientation, with the mention-ID order
   that the full path implies: the same candidate pairs as the full prediction
   restricted to pairs with a new mention;
3. *cluster* only the affected region: the existing entities a new edge (≥ the
   model's threshold) touches, those named in a human decision, and those an old
   edge ties to either (closure), plus the new mentions. The region is
   re-clustered exactly as :func:`linkage.report.settle` does it (connected
   components over the old edges inside it and the new edges, the
   duplicate-free guard, the human decisions), so a new mention joins the entity
   of its linked mentions and a new mention linking two entities merges them,
   unless a cannot-link decision or the guard refuses;
4. *stable IDs* (:mod:`linkage.stable_ids`) for the region (untouched entities
   keep theirs without being looked at; every ID ever issued or current is
   reserved), events appended to ``decisions.duckdb``;
5. *write* the files :func:`linkage.report.settle` writes: entities and clusters
   (whole map rewritten), edges (new edges appended), evidence (the region's
   entities re-explained: old contributions kept, new edges' contributions from
   this scoring), review (the region's candidates replaced).

What it cannot do that a full relink does (:func:`compare_with_full` measures it):
existing × existing pairs keep the score of the run that made them, although
the new mentions change ``name_py_persons`` and term frequencies for their
names; an entity no new mention touches is never split; the review queue's
"large entity" cut (99.9th percentile of sizes) is not re-evaluated.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
from splink import DuckDBAPI, Linker

from connectors import lake
from connectors.catalog import load_specs
from linkage.clusters import connected_components, guard_keys, split_offending
from linkage.decisions import (
    LARGE_ENTITY,
    REVIEW_BAND,
    active_decisions,
    apply_decisions,
    event_reasons,
    issued_ids,
    record_id_events,
    review_candidates,
)
from linkage.explain import _features, contributions, kept_edges, model_evidence
from linkage.model import BusinessModelConfig, PersonModelConfig
from linkage.stable_ids import assign_entity_ids
from tessera.config import Home

ENTITY_TYPES = ("person", "business")
EDGE_COLUMNS = ["mention_id_l", "mention_id_r", "match_weight", "match_probability"]


def _threshold(entity_type: str) -> float:
    cfg = PersonModelConfig() if entity_type == "person" else BusinessModelConfig()
    return float(cfg.threshold_match_probability)


def _previous(home: Home, entity_type: str) -> tuple[Path, Path]:
    """The linkage folder and the saved model; raise when there was no full link."""
    target = home.lake / "linkage"
    model = target / f"{entity_type}_model.json"
    missing = [
        p
        for p in (model, *(target / f"{entity_type}_{k}.parquet" for k in ("entities", "edges")))
        if not p.exists()
    ]
    if missing:
        raise FileNotFoundError(
            f"incremental {entity_type} linking needs a previous full link and its model: "
            f"missing {', '.join(str(p) for p in missing)} (run `tessera link` first)"
        )
    return target, model


# ------------------------------------------------------------------ scoring

_SIDE = re.compile(r"(?<![\w.\"])([lr])\.")
_EQ = re.compile(r"([lr]\.(?:\"[^\"]+\"|\w+))\s*=\s*([lr]\.(?:\"[^\"]+\"|\w+))")


def _swap_sides(sql: str) -> str:
    return _SIDE.sub(lambda m: ("r" if m.group(1) == "l" else "l") + ".", sql)


def _symmetric(sql: str) -> bool:
    """A conjunction of column equalities whose swap is the same set of equalities."""
    if _EQ.sub("", sql).replace("AND", "").strip("() \n\t"):
        return False
    eqs = {tuple(sorted(p)) for p in _EQ.findall(sql)}
    return eqs == {tuple(sorted(p)) for p in _EQ.findall(_swap_sides(sql))}


def oriented_rules(rules: list[str], uid: str = "mention_id") -> list[dict[str, Any]]:
    """Blocking rules for ``predict_between(new, existing)`` that yield exactly the
    pairs the ``dedupe_only`` prediction yields (``l.uid < r.uid`` and the rule with
    the smaller ID on the left): a symmetric rule as is, any other rule twice."""
    out: list[dict[str, Any]] = []
    for sql in rules:
        if _symmetric(sql):
            out.append({"blocking_rule": sql, "sql_dialect": "duckdb"})
            continue
        out.append({"blocking_rule": f"({sql}) AND l.{uid} < r.{uid}", "sql_dialect": "duckdb"})
        out.append(
            {
                "blocking_rule": f"({_swap_sides(sql)}) AND r.{uid} < l.{uid}",
                "sql_dialect": "duckdb",
            }
        )
    return out


def _tf_columns(settings: dict[str, Any]) -> list[str]:
    return sorted(
        {
            lv["tf_adjustment_column"]
            for c in settings["comparisons"]
            for lv in c["comparison_levels"]
            if lv.get("tf_adjustment_column")
        }
    )


def score_new(
    features: pl.DataFrame,
    new_ids: pl.Series,
    model_path: Path,
    timings: dict[str, float] | None = None,
) -> tuple[pl.DataFrame, int]:
    """Score every candidate pair that holds a new mention (new × existing and new ×
    new) with the saved model; term frequencies over all mentions, as the full
    prediction computes them. Returns the pairs at or above the review band's
    floor (``mention_id_l < mention_id_r``, with the evidence columns) and the
    number of candidate pairs scored; seconds per part go to ``timings``."""
    timings = timings if timings is not None else {}
    t = time.perf_counter()
    settings = json.loads(model_path.read_text(encoding="utf-8"))
    settings["retain_intermediate_calculation_columns"] = True
    uid = settings.get("unique_id_column_name", "mention_id")
    # The features as one table (term frequencies over all of it) and the two
    # roles as tables (each is read once per blocking rule).
    con = duckdb.connect()
    con.register("features_all", features.to_arrow())
    con.register("new_ids", pl.DataFrame({"new_id": new_ids}).to_arrow())
    for name, join in (("features_new", "SEMI"), ("features_existing", "ANTI")):
        con.execute(
            f"CREATE TABLE {name} AS SELECT f.* FROM features_all f "
            f"{join} JOIN new_ids n ON f.mention_id = n.new_id"
        )
    db_api = DuckDBAPI(connection=con)
    everyone = db_api.register("features_all", dataset_display_name="all_mentions")
    existing = db_api.register("features_existing", dataset_display_name="existing")
    new = db_api.register("features_new", dataset_display_name="new")
    linker = Linker(everyone, settings, log_level="WARNING")
    for col in _tf_columns(settings):
        linker.table_management.compute_tf_table(col)
    timings["predict_prepare"] = time.perf_counter() - t
    t = time.perf_counter()
    rules = [r["blocking_rule"] for r in settings["blocking_rules_to_generate_predictions"]]
    between_rules: list[Any] = oriented_rules(rules, uid)
    between = linker.inference.predict_between(
        new,
        existing,
        blocking_rules_to_generate_predictions=between_rules,
        warning_mode="never",
    )
    timings["predict_between"] = time.perf_counter() - t
    t = time.perf_counter()
    within = linker.inference.predict_within(new, link_type="dedupe_only", warning_mode="never")
    timings["predict_within"] = time.perf_counter() - t
    t = time.perf_counter()
    frames = []
    n_pairs = 0
    floor = float(REVIEW_BAND[0])
    for pred in (between, within):
        rel = pred.as_duckdbpyrelation()
        n_pairs += int(rel.aggregate("count(*)").fetchall()[0][0])
        frames.append(
            contributions(rel.filter(f"match_probability >= {floor!r}"), linker, features)
        )
    scored = pl.concat(frames)
    timings["predict_collect"] = time.perf_counter() - t
    # The full prediction's orientation: the smaller mention ID on the left.
    swap = pl.col("mention_id_l") > pl.col("mention_id_r")
    return scored.with_columns(
        pl.when(swap)
        .then(pl.col("mention_id_r"))
        .otherwise(pl.col("mention_id_l"))
        .alias("mention_id_l"),
        pl.when(swap)
        .then(pl.col("mention_id_l"))
        .otherwise(pl.col("mention_id_r"))
        .alias("mention_id_r"),
    ), n_pairs


# ------------------------------------------------------------------ the region


def _region(
    prev: pl.DataFrame, seeds: pl.Series, old_edges: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The existing entities to re-cluster: those holding a ``seeds`` mention, closed
    over old edges that cross entities (an edge refused by the guard or a decision
    ties two entities a full relink would reconsider together). Returns the region's
    old map (``mention_id, entity_id``) and its old edges (both ends inside)."""
    ents = prev.filter(pl.col("mention_id").is_in(seeds.implode()))["entity_id"].unique()
    while True:
        members = prev.filter(pl.col("entity_id").is_in(ents.implode()))
        ids = members["mention_id"].implode()
        touching = old_edges.filter(
            pl.col("mention_id_l").is_in(ids) | pl.col("mention_id_r").is_in(ids)
        )
        ends = pl.concat([touching["mention_id_l"], touching["mention_id_r"]]).unique()
        more = prev.filter(pl.col("mention_id").is_in(ends.implode()))["entity_id"].unique()
        grown = pl.concat([ents, more]).unique()
        if grown.len() == ents.len():
            inside = touching.filter(
                pl.col("mention_id_l").is_in(ids) & pl.col("mention_id_r").is_in(ids)
            )
            return members, inside
        ents = grown


def _guard_keys(home: Home, entity_type: str, mention_ids: pl.Series) -> pl.DataFrame:
    """The duplicate-free guard's keys for the region's mentions only."""
    ids = mention_ids.implode()
    mentions = (
        lake.mentions(home)
        .filter((pl.col("entity_type") == entity_type) & pl.col("mention_id").is_in(ids))
        .collect()
    )
    recs = (
        lake.records(home)
        .filter(pl.col("mention_id").is_in(ids))
        .select("source_id", "record_key", "mention_id")
        .unique()
        .collect()
    )
    dup_free = [s.id for s in load_specs(home.sources_dir) if s.duplicate_free]
    return guard_keys(mentions, recs, dup_free)


def _review(
    old_review: pl.DataFrame,
    entities: pl.DataFrame,
    region: pl.DataFrame,
    scored: pl.DataFrame,
    kept: pl.DataFrame,
) -> pl.DataFrame:
    """The old queue without the region's rows, plus the region's candidates (its
    uncertain pairs: the new ones and the old ones inside it)."""
    ids = region["mention_id"].implode()
    touches = pl.col("mention_id_l").is_in(ids) | pl.col("mention_id_r").is_in(ids)
    old_inside = old_review.filter(
        (pl.col("kind") == "uncertain")
        & pl.col("mention_id_l").is_in(ids)
        & pl.col("mention_id_r").is_in(ids)
    ).select(EDGE_COLUMNS)
    pairs = pl.concat([scored.select(EDGE_COLUMNS), old_inside]).unique(
        subset=["mention_id_l", "mention_id_r"], keep="first"
    )
    fresh = review_candidates(region, pairs, kept).filter(
        (pl.col("kind") != "large_entity") | (pl.col("size") > LARGE_ENTITY)
    )
    # Uncertain pairs reaching out of the region: same pair, current entity IDs.
    ent = entities.select("mention_id", "entity_id")
    across = (
        old_review.filter(touches & (pl.col("kind") == "uncertain"))
        .drop("entity_id_l", "entity_id_r")
        .join(
            ent.rename({"mention_id": "mention_id_l", "entity_id": "entity_id_l"}),
            on="mention_id_l",
        )
        .join(
            ent.rename({"mention_id": "mention_id_r", "entity_id": "entity_id_r"}),
            on="mention_id_r",
        )
        .filter(
            ~(pl.col("mention_id_l").is_in(ids) & pl.col("mention_id_r").is_in(ids))
            & (pl.col("entity_id_l") != pl.col("entity_id_r"))
        )
        .select(old_review.columns)
    )
    return pl.concat([old_review.filter(~touches), across, fresh.select(old_review.columns)])


# ------------------------------------------------------------------ the increment


def link_incremental(home: Home, entity_type: str) -> dict[str, Any]:
    """Link the ``entity_type`` mentions of ``home`` that the last run has not seen
    (in the lake, not in ``<type>_entities.parquet``) into the existing entities,
    with the saved model and without re-scoring existing pairs; honour the human
    decisions, keep entity IDs stable (events recorded) and rewrite the files
    :func:`linkage.report.settle` writes. Returns: new mentions, candidate pairs,
    edges, new mentions that joined an existing entity, new entities, merges,
    splits, region size, ID events and seconds per step. Raises
    :class:`FileNotFoundError` when there is no previous full link or model."""
    if entity_type not in ENTITY_TYPES:
        raise ValueError(f"unknown entity type {entity_type!r}")
    target, model_path = _previous(home, entity_type)
    timings: dict[str, float] = {}
    t0 = t = time.perf_counter()
    ent_path = target / f"{entity_type}_entities.parquet"
    prev = pl.read_parquet(ent_path).select("mention_id", "entity_id")
    features = _features(home, entity_type)
    new_ids = features.join(prev, on="mention_id", how="anti")["mention_id"]
    timings["features"] = time.perf_counter() - t
    stats: dict[str, Any] = {"entity_type": entity_type, "new_mentions": new_ids.len()}
    if new_ids.len() == 0:
        return stats | {
            "candidate_pairs": 0,
            "seconds": {k: round(v, 2) for k, v in timings.items()},
        }

    t = time.perf_counter()
    scored, n_pairs = score_new(features, new_ids, model_path, timings)
    edges = scored.filter(pl.col("match_probability") >= _threshold(entity_type)).select(
        EDGE_COLUMNS
    )

    t = time.perf_counter()
    active = active_decisions(home, entity_type)
    seeds = pl.concat([edges["mention_id_l"], edges["mention_id_r"], active["mention_id"]])
    edges_path = target / f"{entity_type}_edges.parquet"
    all_old_edges = pl.read_parquet(edges_path).select(EDGE_COLUMNS)
    region_old, old_edges = _region(prev, seeds, all_old_edges)
    nodes = pl.concat([region_old["mention_id"], new_ids]).unique()
    region_edges = pl.concat([old_edges, edges])
    timings["region"] = time.perf_counter() - t
    t = time.perf_counter()
    clusters = connected_components(nodes, region_edges)
    timings["components"] = time.perf_counter() - t
    t = time.perf_counter()
    keys = _guard_keys(home, entity_type, nodes)
    clusters, refused = split_offending(clusters, region_edges, keys)
    timings["guard"] = time.perf_counter() - t
    t = time.perf_counter()
    clusters, drep = apply_decisions(
        clusters, region_edges, active, keys if active.height else None
    )
    timings["decisions"] = time.perf_counter() - t

    t = time.perf_counter()
    issued = issued_ids(home, entity_type) | set(prev["entity_id"].unique().to_list())
    ids = assign_entity_ids(entity_type, clusters, region_old, issued)
    n_events = record_id_events(home, entity_type, event_reasons(ids.events, ids.entities, active))
    region_ids = region_old["entity_id"].unique().implode()
    entities = pl.concat([prev.filter(~pl.col("entity_id").is_in(region_ids)), ids.entities]).sort(
        "mention_id"
    )
    timings["stable_ids"] = time.perf_counter() - t

    t = time.perf_counter()
    ev_path = target / f"{entity_type}_evidence.parquet"
    old_ev = pl.read_parquet(ev_path)
    in_region = pl.col("entity_id").is_in(region_ids)
    old_contrib = (
        old_ev.filter(in_region & (pl.col("source") == "model"))
        .drop("entity_id", "source", "decision_id")
        .unique(subset=["mention_id_l", "mention_id_r"], keep="first")
    )
    contrib = pl.concat([old_contrib, scored.select(old_contrib.columns)])
    kept = kept_edges(ids.entities, region_edges, drep.must_edges)
    # The untouched entities' rows stay in their order (no global re-sort); the
    # region's rows follow, sorted as settle sorts them.
    evidence = pl.concat(
        [old_ev.filter(~in_region), model_evidence(kept, contrib).select(old_ev.columns)]
    )
    rv_path = target / f"{entity_type}_review.parquet"
    review = _review(pl.read_parquet(rv_path), entities, ids.entities, scored, kept)
    timings["explain"] = time.perf_counter() - t

    t = time.perf_counter()
    entities.write_parquet(ent_path)
    entities.select("mention_id", pl.col("entity_id").alias("cluster_id")).write_parquet(
        target / f"{entity_type}_clusters.parquet"
    )
    pl.concat([all_old_edges, edges]).write_parquet(edges_path)
    evidence.write_parquet(ev_path)
    review.write_parquet(rv_path)
    timings["write"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0

    # What happened to the new mentions: joined an old entity, or made new ones.
    old_ent = set(prev["entity_id"].unique().to_list())
    new_rows = ids.entities.filter(pl.col("mention_id").is_in(new_ids.implode()))
    with_old = ids.entities.join(region_old.select("mention_id"), on="mention_id")["entity_id"]
    joined = new_rows.filter(pl.col("entity_id").is_in(with_old.unique().implode()))
    events = ids.events.group_by("kind").len()
    return stats | {
        "candidate_pairs": n_pairs,
        "pairs_per_new_mention": round(n_pairs / new_ids.len(), 2),
        "edges": edges.height,
        "joined_existing": joined.height,
        "joined_existing_entities": joined["entity_id"].n_unique(),
        "new_entities": new_rows.join(joined, on="mention_id", how="anti")["entity_id"].n_unique(),
        "merges": int(ids.events.filter(pl.col("kind") == "merge").height),
        "splits": int(ids.events.filter(pl.col("kind") == "split").height),
        "region_entities": region_old["entity_id"].n_unique(),
        "region_mentions": nodes.len(),
        "guard_refused_edges": refused,
        "decisions": drep.as_dict(),
        "entity_ids": {
            "kept_untouched": prev.filter(~pl.col("entity_id").is_in(region_ids))[
                "entity_id"
            ].n_unique(),
            "kept_in_region": ids.kept,
            "issued": ids.issued,
            "retired": len(old_ent - set(entities["entity_id"].unique().to_list())),
            "events": dict(zip(events["kind"].to_list(), events["len"].to_list(), strict=True)),
            "events_recorded": n_events,
        },
        "entities": entities["entity_id"].n_unique(),
        "evidence_edges": evidence.height,
        "review_candidates": review.height,
        "seconds": {k: round(v, 2) for k, v in timings.items()},
    }


# ------------------------------------------------------------------ against a full relink


def _shadow_home(home: Home, root: Path) -> Home:
    """A home at ``root`` that reads ``home``'s staged lake, specs and truth (links)
    and holds copies of its linkage state and decisions, so a full relink there
    leaves ``home`` as it is."""
    shadow = Home(root)
    (root / "lake").mkdir(parents=True)
    for sub in ("staged", "raw", "quarantine"):
        if (home.lake / sub).exists():
            (root / "lake" / sub).symlink_to(home.lake / sub)
    for p in (home.sources_dir, home.truth, home.state, home.landing):
        if p.exists():
            (root / p.name).symlink_to(p)
    shutil.copytree(home.lake / "linkage", root / "lake" / "linkage")
    if home.decisions.exists():
        shutil.copyfile(home.decisions, shadow.decisions)
    return shadow


def _pairs(sizes: pl.Expr) -> pl.Expr:
    return (sizes * (sizes - 1) // 2).cast(pl.Int64).sum()


def compare_partitions(inc: pl.DataFrame, full: pl.DataFrame) -> dict[str, Any]:
    """Two partitions of the same mentions (``mention_id, entity_id`` each): pairs
    together in one and not the other (both ways), entities that are not exactly
    an entity of the other, mentions in those, and mentions with the same ID."""
    both = inc.join(full, on="mention_id", suffix="_full", how="full", coalesce=True)
    if both["entity_id"].null_count() or both["entity_id_full"].null_count():
        raise ValueError("the two partitions do not hold the same mentions")
    cells = both.group_by("entity_id", "entity_id_full").len()
    p_inc = inc.group_by("entity_id").len().select(_pairs(pl.col("len"))).item()
    p_full = full.group_by("entity_id").len().select(_pairs(pl.col("len"))).item()
    p_both = cells.select(_pairs(pl.col("len"))).item()
    size_inc = inc.group_by("entity_id").len().rename({"len": "n_inc"})
    size_full = (
        full.group_by("entity_id").len().rename({"len": "n_full", "entity_id": "entity_id_full"})
    )
    same = (
        cells.join(size_inc, on="entity_id")
        .join(size_full, on="entity_id_full")
        .filter((pl.col("len") == pl.col("n_inc")) & (pl.col("len") == pl.col("n_full")))
    )
    return {
        "mentions": both.height,
        "entities_incremental": size_inc.height,
        "entities_full": size_full.height,
        "pairs_incremental": int(p_inc),
        "pairs_full": int(p_full),
        "pairs_only_incremental": int(p_inc - p_both),
        "pairs_only_full": int(p_full - p_both),
        "entities_differing_incremental": size_inc.height - same.height,
        "entities_differing_full": size_full.height - same.height,
        "mentions_in_differing_entities": both.height - int(same["len"].sum()),
        "same_entity_id_mentions": int((both["entity_id"] == both["entity_id_full"]).sum()),
        "identical_entities_with_other_id": int(
            (same["entity_id"] != same["entity_id_full"]).sum()
        ),
    }


def _compare_edges(inc: pl.DataFrame, full: pl.DataFrame) -> dict[str, Any]:
    """Model edges (≥ threshold) of the two paths: only in one, and the score change
    of those in both (an existing pair keeps its old score in the incremental path)."""
    key = ["mention_id_l", "mention_id_r"]
    inc = inc.unique(subset=key)
    full = full.unique(subset=key)
    common = inc.join(full, on=key, suffix="_full")
    dw = (common["match_weight"] - common["match_weight_full"]).abs()
    return {
        "edges_incremental": inc.height,
        "edges_full": full.height,
        "edges_only_incremental": inc.join(full, on=key, how="anti").height,
        "edges_only_full": full.join(inc, on=key, how="anti").height,
        "common_edges_rescored": int((dw > 1e-9).sum()),
        "common_edges_max_weight_change": round(float(dw.fill_null(0.0).max() or 0.0), 6),  # type: ignore[arg-type]
    }


def compare_with_full(home: Home) -> dict[str, Any]:
    """Run a full relink (:func:`linkage.run.link` with the saved model, then
    :func:`linkage.report.settle`) on a copy of the linkage state and compare its
    partition of the mentions with the current (incremental) one, per entity type:
    pairs together in one path and not the other, entities that differ, edges
    that differ, and both paths' accuracy against the truth where there is one.
    ``home`` is left untouched (its files and decision store)."""
    from linkage.evaluate import evaluate
    from linkage.report import has_truth, settle
    from linkage.run import link

    out: dict[str, Any] = {}
    truth = has_truth(home)
    with tempfile.TemporaryDirectory(prefix="tessera-full-") as tmp:
        shadow = _shadow_home(home, Path(tmp) / "home")
        for etype in ENTITY_TYPES:
            _previous(home, etype)
            t = time.perf_counter()
            settle(shadow, link(shadow, entity_type=etype))
            secs = time.perf_counter() - t
            tgt, src = shadow.lake / "linkage", home.lake / "linkage"
            inc = pl.read_parquet(src / f"{etype}_entities.parquet")
            full = pl.read_parquet(tgt / f"{etype}_entities.parquet")
            th = pl.col("match_probability") >= _threshold(etype)
            res: dict[str, Any] = {
                "full_relink_seconds": round(secs, 2),
                **compare_partitions(inc, full),
                **_compare_edges(
                    pl.read_parquet(src / f"{etype}_edges.parquet").filter(th),
                    pl.read_parquet(tgt / f"{etype}_edges.parquet").filter(th),
                ),
            }
            if truth:
                acc = {}
                for name, part in (("incremental", inc), ("full", full)):
                    ev = evaluate(home, part.rename({"entity_id": "cluster_id"}), detail=False)
                    acc[name] = {k: ev[etype][k] for k in ("pairwise", "bcubed")}
                res["accuracy"] = acc
            out[etype] = res
    return out


def bench_increment(home: Home) -> dict[str, Any]:
    """Time :func:`link_incremental` over the staged mentions the last link has not
    seen, per entity type (this is the real increment: it writes the results)."""
    t = time.perf_counter()
    out: dict[str, Any] = {etype: link_incremental(home, etype) for etype in ENTITY_TYPES}
    out["seconds"] = round(time.perf_counter() - t, 2)
    out["new_mentions"] = sum(out[e]["new_mentions"] for e in ENTITY_TYPES)
    return out
