"""Incremental linking: a day's new mentions join the existing entities, without
retraining and without re-scoring the pairs of the existing mentions.

:func:`link_incremental` (one entity type):

1. *features*: the stored model input (``<type>_features.parquet`` and its delta
   parts, :func:`linkage.report.read_linkage`), the features of the new mentions
   only (``uid`` above the stored maximum), and the per-name statistics (persons
   ``name_py_persons`` / ``name_py_thin``, businesses ``name_core_firms``)
   recomputed over every mention of the names the new mentions carry
   (:func:`linkage.features.name_statistics`, ``business_name_statistics``): the
   values a full derivation gives today (a settled person name's stored rows are
   not read: :mod:`linkage.name_state`). The new rows and the stored rows whose
   statistic moved are appended as a delta part;
2. *score* with the saved model (``lake/linkage/<type>_model.json``, never
   retrained): new × existing with Splink's ``predict_between`` and new × new with
   ``predict_within``; the existing side is cut to the mentions sharing a blocking
   key with a new one, term frequencies come from every mention.
   ``predict_between`` joins the two roles in whatever order they are given, while
   the full (``dedupe_only``) prediction generates a pair ``a < b`` only when a
   rule holds with ``a`` on the left; a rule that is not symmetric
   (``l.name_py = r.name_py_rev``) would then find other pairs. So each such rule
   is given twice, once per orientation, with the mention-ID order that the full
   path implies: the same candidate pairs as the full prediction restricted to
   pairs with a new mention;
3. *cluster at entity level*: components over the new edges (≥ the model's
   threshold) with each existing entity as one node. A component holding one
   existing entity and new mentions (the usual case) makes that entity grow; one of
   new mentions only is a new entity. A component that merges existing entities,
   holds a mention of an active human decision, or would break the duplicate-free
   guard is re-clustered at mention level exactly as :func:`linkage.report.settle`
   does it (connected components over its old edges and the new edges, the guard,
   the human decisions), closed over old edges that cross entities (an edge once
   refused by the guard or a decision);
4. *stable IDs*: a grown entity keeps its ID; the mention-level clusters and the
   new entities go through :mod:`linkage.stable_ids` (every ID ever issued or
   current is reserved), events appended to ``decisions.duckdb``;
5. *write*: entities and clusters (whole map rewritten); edges, evidence and
   features as delta parts (:func:`linkage.report.append_linkage`): the new edges;
   the new edges of grown and new entities (their earlier evidence rows stay
   valid) plus the mention-level region re-explained in full (its old entities'
   earlier rows voided); review (the region's candidates replaced, the new pairs'
   candidates added).

What it cannot do that a full relink does (:func:`compare_with_full` measures it):
existing × existing pairs keep the score of the run that made them, although
the new mentions change ``name_py_persons`` and term frequencies for their
names; an entity no new mention touches is never split; a grown entity is not
re-clustered with an entity its old refused edges reach; the review queue's
"large entity" cut (99.9th percentile of sizes) is not re-evaluated, and a grown
entity's weak links are looked for among its new edges only (its old part taken
as one).
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl
from splink import DuckDBAPI, Linker

from connectors import lake
from linkage import block_keys, name_state, term_counts
from linkage import cross as cross_edges
from linkage import sizes as entity_sizes
from linkage.block_keys import key_conditions
from linkage.clusters import (
    connected_components,
    offending_clusters,
    split_offending,
)
from linkage.decisions import (
    LARGE_ENTITY,
    REVIEW_BAND,
    WEAK_WEIGHT,
    active_decisions,
    apply_decisions,
    event_reasons,
    issued_ids,
    lone_weak_edges,
    record_id_events,
    review_candidates,
)
from linkage.explain import contributions, kept_edges, model_evidence
from linkage.features import STAT_CAPS, legal_rep_names, write_features
from linkage.model import BusinessModelConfig, PersonModelConfig
from linkage.parts import (
    linkage_parts,
    mention_file_states,
    record_linked_files,
    unlinked_files,
)
from linkage.report import ENTITY_TYPES, append_linkage, read_linkage, write_entity_maps
from linkage.run import duplicate_free_keys, entity_features
from linkage.score_store import map_state, members_file, record_increment
from linkage.stable_ids import assign_entity_ids
from tessera.config import Home
from tessera.timing import Laps

EDGE_COLUMNS = ["mention_id_l", "mention_id_r", "match_weight", "match_probability"]
# Frames handed to DuckDB keep polars' string views (no copy): at 7.2M mentions the
# default conversion to Arrow's large strings took 8 s, this 0.03 s.
ARROW = pl.CompatLevel.newest()
# What the duplicate-free guard reads of a mention (linkage.clusters.guard_keys).
GUARD_COLUMNS = ["mention_id", "source_id", "role"]


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


# ------------------------------------------------------------------ the map, in mention order


def _sorted_map(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` (an entity map: ``mention_id`` and more) in mention ID order, flagged so
    for :func:`_map_rows`. The maps are written in that order, so for a map read from
    its file this is a check (0.03 s at 7.2M rows)."""
    if not frame["mention_id"].is_sorted():
        frame = frame.sort("mention_id")
    return frame.with_columns(pl.col("mention_id").set_sorted())


def _map_rows(sorted_map: pl.DataFrame, ids: pl.Series) -> pl.DataFrame:
    """The rows of ``sorted_map`` (:func:`_sorted_map`) whose mention ID is among ``ids``,
    in mention order, found by binary search: filtering the 7.2M rows of a
    1,000,000-person world's map took 0.1-0.4 s a lookup, the search of 10k IDs 0.02 s."""
    if not sorted_map["mention_id"].flags["SORTED_ASC"]:  # not from _sorted_map: a pass
        return sorted_map.filter(pl.col("mention_id").is_in(ids.implode()))
    ids = ids.drop_nulls().unique().sort()
    if sorted_map.is_empty() or ids.is_empty():
        return sorted_map.clear()
    col = sorted_map["mention_id"]
    at = col.search_sorted(ids.cast(col.dtype), side="left").clip(upper_bound=col.len() - 1)
    rows = sorted_map.select(pl.all().gather(at))
    return rows.filter(rows["mention_id"] == ids.cast(col.dtype))


def _ends_rows(sorted_map: pl.DataFrame, edges: pl.DataFrame) -> pl.DataFrame:
    """The rows of ``sorted_map`` of the ``edges``' ends (``mention_id_l``,
    ``mention_id_r``), by :func:`_map_rows`: all a join of the edges with the map looks
    at, without a join with its 7.2M rows."""
    return _map_rows(sorted_map, pl.concat([edges["mention_id_l"], edges["mention_id_r"]]))


def _merged_map(kept: pl.DataFrame, added: pl.DataFrame) -> pl.DataFrame:
    """The sorted map ``kept`` (:func:`_sorted_map`) with the rows ``added`` put in
    mention order, flagged sorted: each added row goes where a binary search of
    ``kept`` puts it, and the rows are gathered once (at 7.2M rows, medians of six
    timings alone: 0.22 s against 0.47 s to sort the whole map again; inside the link
    ~0.4 s against 0.5-0.6 s). Equal mention IDs keep ``kept``'s rows first, as a
    stable sort of ``kept`` then ``added`` would."""
    if not kept["mention_id"].flags["SORTED_ASC"]:
        return pl.concat([kept, added]).sort("mention_id", maintain_order=True)
    added = added.select(kept.columns).cast(kept.schema).sort("mention_id", maintain_order=True)
    col = kept["mention_id"]
    at = col.search_sorted(added["mention_id"], side="right").to_numpy().astype(np.int64)
    n = kept.height
    order = np.insert(np.arange(n, dtype=np.int64), at, np.arange(n, n + added.height))
    merged = pl.concat([kept, added]).select(pl.all().gather(pl.Series(order)))
    return merged.with_columns(pl.col("mention_id").set_sorted())


# ------------------------------------------------------------------ features


@dataclass
class FeatureView:
    """The model input of every mention without holding it: the ``stored`` rows (the
    features file and its parts, lazily; None when there is no file) and the rows
    that replace or extend them (``over``: every new mention and every stored row
    whose per-name statistics were recomputed). ``part``: the rows to append to the
    stored features (None: no file, ``over`` is the whole frame to write as the
    base). Splink needs only the rows that can pair with a new mention, and term
    frequencies only value counts, so the 7.2M stored rows of a 1,000,000-person
    world are read by column, never collected whole."""

    stored: pl.LazyFrame | None
    stored_files: list[Path]
    over: pl.DataFrame
    new_ids: pl.Series
    part: pl.DataFrame | None
    seconds: dict[str, float] = field(default_factory=dict)
    # The columns an increment may change in a stored row (the per-name statistics).
    restated: tuple[str, ...] = ()
    # The term-frequency counts score_new took (column → ``<column>, len``).
    tf_counts: dict[str, pl.DataFrame] = field(default_factory=dict)
    # Counts the last increment recorded for the stored files as they are
    # (linkage.term_counts; column → file), and the largest stored ``uid``.
    recorded: dict[str, Path] = field(default_factory=dict)
    stored_top: int = 0
    # The settled person names once the part is written (linkage.name_state).
    names_settled: pl.DataFrame | None = None
    # How many of the new mentions' names were settled (their stored rows not read).
    names_skipped: int = 0

    def rows_where(self, predicate: pl.Expr, columns: list[str] | None = None) -> pl.DataFrame:
        """The current rows that satisfy ``predicate`` (``columns`` only, when given):
        a stored row replaced by one of ``over`` never comes back, whatever its old
        values were."""
        cols = columns or self.over.columns
        over = self.over.filter(predicate).select(cols)
        if self.stored is None:
            return over
        rest = (
            self.stored.filter(predicate)
            .join(self.over.lazy().select("mention_id"), on="mention_id", how="anti")
            .select(cols)
            .collect()
        )
        return pl.concat([rest.cast(over.schema), over])

    def rows(self, ids: pl.Series, columns: list[str] | None = None) -> pl.DataFrame:
        """The current rows of the mentions ``ids``."""
        return self.rows_where(pl.col("mention_id").is_in(ids.implode()), columns)

    def columns(self, columns: list[str]) -> pl.DataFrame:
        """``columns`` of every current row (read narrowly: term frequencies)."""
        if self.stored is None:
            return self.over.select(columns)
        rest = (
            self.stored.join(self.over.lazy().select("mention_id"), on="mention_id", how="anti")
            .select(columns)
            .collect()
        )
        return pl.concat([rest.cast(self.over.select(columns).schema), self.over.select(columns)])

    def value_counts(self, column: str) -> pl.DataFrame:
        """``column, len``: the rows per non-null value of ``column`` over every current
        row. For a column no increment changes (not in ``restated``): the base file's
        counts plus those of the rows added since (``uid`` above the base's: an
        increment's new mentions), so only the base's column is scanned."""
        if self.stored is None or column in self.restated:
            return self.columns([column]).drop_nulls().group_by(column).len()
        if column in self.recorded:
            # The counts of the stored rows as recorded, plus this increment's new rows
            # (uid above every stored one): no stored column is read.
            dtype = self.over.schema[column]
            return (
                pl.concat(
                    [
                        pl.read_parquet(self.recorded[column]).select(
                            pl.col(column).cast(dtype), pl.col("n").cast(pl.UInt32).alias("len")
                        ),
                        self.over.filter(pl.col("uid") > self.stored_top)
                        .select(column)
                        .drop_nulls()
                        .group_by(column)
                        .len(),
                    ]
                )
                .group_by(column)
                .agg(pl.col("len").sum())
            )
        base, parts = self.stored_files[0], self.stored_files[1:]
        top = pl.scan_parquet(base).select(pl.col("uid").max()).collect().item() or 0
        frames = [pl.scan_parquet(p).select("uid", column) for p in parts]
        newer = (
            pl.concat([*(f.collect() for f in frames), self.over.select("uid", column)])
            .filter(pl.col("uid") > top)
            .unique("uid", keep="last")
        )
        counts = (
            pl.concat(
                [
                    pl.scan_parquet(base).select(column).collect(),
                    newer.select(pl.col(column).cast(self.over.schema[column])),
                ],
                how="vertical_relaxed",
            )
            .drop_nulls()
            .group_by(column)
            .len()
        )
        return counts

    def frame(self) -> pl.DataFrame:
        """Every row (the whole model input; tests and the no-file case)."""
        if self.stored is None:
            return self.over
        rest = self.stored.join(self.over.lazy().select("mention_id"), on="mention_id", how="anti")
        return pl.concat([rest.collect(), self.over])


def _increment_features(
    home: Home, entity_type: str, target: Path, prev: pl.DataFrame
) -> FeatureView:
    """The model input for every mention (existing and new) as a :class:`FeatureView`,
    and the new mention IDs: those missing from the entity map ``prev``.

    With ``<type>_features.parquet`` (written by :func:`linkage.run.link`, appended to
    by each increment): the stored rows, the features of the new mentions the file
    lacks (new ``uid`` above the stored maximum, so it stays unique; a full derivation
    may already have stored some, e.g. the Dagster mentions asset), and the per-name
    statistics (persons: ``name_py_persons``, ``name_py_thin``; businesses:
    ``name_core_firms``) recomputed over every mention of the names the new mentions
    carry (a name's statistic depends on its own rows only: the same values a full
    derivation gives). The part to append holds the new rows and the stored ones
    whose statistics moved. Without the file (a link made before it existed): every
    mention derived as :func:`linkage.run.link` does."""
    from linkage.features import (
        BUSINESS_NAME_STATS,
        BUSINESS_STAT_INPUTS,
        PERSON_NAME_STATS,
        PERSON_STAT_INPUTS,
        business_features,
        business_name_statistics,
        name_statistics,
        person_features,
    )

    path = target / f"{entity_type}_features.parquet"
    if not path.exists():
        features = entity_features(home, entity_type)
        new_ids = features.join(prev, on="mention_id", how="anti")["mention_id"]
        return FeatureView(None, [], features, new_ids, None)
    stored = read_linkage(home, entity_type, "features")
    schema = stored.collect_schema()
    if entity_type == "person":
        key, stats, restate = "name_py", list(PERSON_NAME_STATS), name_statistics
        inputs = PERSON_STAT_INPUTS
    else:
        key, stats, restate = "name_core", list(BUSINESS_NAME_STATS), business_name_statistics
        inputs = BUSINESS_STAT_INPUTS
    lap = Laps()
    seconds = lap.seconds

    # The staged mention IDs (one narrow column), then the whole rows of the unknown
    # ones only; of the files staged since the last increment when its record says
    # which files it had seen (at 7.2M person mentions the IDs of every staged file
    # took 2-4 s to read and match with the entity map).
    files = unlinked_files(home, entity_type)
    staged = _staged(home, entity_type, files)
    staged_ids = staged.select("mention_id").unique().collect()
    lap("staged_ids")
    known = _map_rows(prev, staged_ids["mention_id"])["mention_id"]
    new_ids = staged_ids.filter(~pl.col("mention_id").is_in(known.implode()))["mention_id"]
    # New mentions whose features are stored already (a full derivation may have stored
    # some): looked for in the ID column alone (reading every column of the 7.2M stored
    # rows to find none took 1.3 s), then read whole if there are any.
    is_new = pl.col("mention_id").is_in(new_ids.implode())
    # (A mention is stored if any file holds it: no need to merge the parts here.)
    parts = linkage_parts(home, entity_type, "features")
    stored_new = (
        pl.concat([pl.scan_parquet(p).select("mention_id") for p in parts])
        .filter(is_new)
        .unique()
        .collect()
    )
    known_new = (
        stored.filter(pl.col("mention_id").is_in(stored_new["mention_id"].implode())).collect()
        if stored_new.height
        else stored.clear().collect()
    )
    unknown = new_ids.filter(~new_ids.is_in(known_new["mention_id"].implode()))
    new_mentions = _first_rows(staged.filter(pl.col("mention_id").is_in(unknown.implode())))
    lap("new_rows")
    if new_mentions.height == 0:
        return FeatureView(
            stored, parts, known_new, new_ids, known_new.clear(), seconds, tuple(stats)
        )
    if entity_type == "person":
        fresh = person_features(new_mentions)
    else:
        # The legal representatives named on the new mentions' rows only.
        reps = _new_legal_reps(home, files, new_mentions["mention_id"])
        fresh = business_features(new_mentions, reps)
    top = stored.select(pl.col("uid").max()).collect().item() or 0
    # The counts the last increment recorded, while they still count the stored files.
    recorded = term_counts.recorded(home, entity_type)
    lap("derive")
    fresh = fresh.with_columns((pl.col("uid") + top).cast(schema["uid"]))
    # The per-name statistics over every mention of the names the new ones carry
    # (1.9M of 7.2M person mentions for a 1,000,000-person world's day: common pinyin
    # names, ~43k once the settled ones are left out), computed from the columns the
    # statistics need.
    narrow = ["mention_id", "uid", *inputs, *stats]
    # Persons: the names whose statistics cannot move (linkage.name_state) are left
    # out: their stored rows stay, their new rows take the settled values.
    settled = skip = None
    if entity_type == "person":
        settled = name_state.stored(home, stored)
        skip = name_state.skipped(settled, fresh).implode()
        lap("settled_names")
    is_skipped = pl.lit(False) if skip is None else pl.col(key).is_in(skip).fill_null(False)
    fresh_read = fresh.filter(~is_skipped)
    # Whole rows: those whose statistics move come from here (a second read of the
    # stored rows by uid took 0.56 s for 173 rows; the other columns here cost ~0.1 s).
    name_rows = stored.filter(
        pl.col(key).is_in(fresh_read[key].unique().implode(), nulls_equal=True)
    ).collect()
    before = name_rows.select(narrow)
    lap("name_rows")
    # Every row of the names read, with their statistics recomputed.
    recomputed = (
        restate(pl.concat([before, fresh_read.select(narrow).cast(before.schema)]))
        .select(
            "mention_id",
            *dict.fromkeys([*stats, *(name_state.COLUMNS if settled is not None else ())]),
        )
        .collect()
    )
    restated = recomputed.select("mention_id", *stats).cast(
        before.select("mention_id", *stats).schema
    )
    # Only the new rows and the stored rows whose statistics moved go into the part.
    changed = statistics_moved(before, restated, stats)
    names_after = None
    if settled is not None:
        settled_rows = fresh.filter(is_skipped).select(
            "mention_id", *name_state.settled_statistics()
        )
        changed = pl.concat([changed, settled_rows.cast(restated.schema)])
        names_after = name_state.updated(settled, recomputed.select(*name_state.COLUMNS))
    lap("restate")
    old_moved = name_rows.filter(pl.col("mention_id").is_in(changed["mention_id"].implode()))
    moved = pl.concat(
        [
            frame.drop(stats)
            .join(changed, on="mention_id")
            .select(schema.names())
            .cast(dict(schema))
            for frame in (old_moved, fresh)
        ]
    )
    over = pl.concat(
        [moved, known_new.join(moved.select("mention_id"), on="mention_id", how="anti")]
    )
    lap("moved_rows")
    return FeatureView(
        stored,
        parts,
        over,
        new_ids,
        moved,
        seconds,
        tuple(stats),
        recorded=recorded,
        stored_top=top,
        names_settled=names_after,
        names_skipped=0 if skip is None else skip.list.len().item(),
    )


def statistics_moved(
    before: pl.DataFrame, restated: pl.DataFrame, stats: list[str]
) -> pl.DataFrame:
    """The rows of ``restated`` (``mention_id`` and the per-name statistics ``stats``)
    whose statistics differ from the stored ones in ``before``, or that ``before``
    lacks. A count is compared as capped (:data:`linkage.features.STAT_CAPS`): a row
    stored before the counts were capped, with 57 people on its name, does not move
    for 4."""
    old = before.select(
        "mention_id",
        *(
            pl.col(c).clip(upper_bound=STAT_CAPS[c]).cast(before.schema[c])
            if c in STAT_CAPS
            else pl.col(c)
            for c in stats
        ),
    )
    return restated.join(old, on=["mention_id", *stats], how="anti", nulls_equal=True)


def _new_legal_reps(home: Home, files: list[Path] | None, new_ids: pl.Series) -> pl.DataFrame:
    """``linkage.features.legal_rep_names`` for the new business mentions ``new_ids``,
    read from the staged mention ``files`` the link had not seen (None: every file).

    A new mention's rows are all in those files (:func:`linkage.parts.unlinked_files`),
    and so are its relationship rows, staged with the record that states it (the
    files' ``.relationships`` siblings). A related mention's name is that of any of
    its rows: a mention ID is a hash of its source and every identity column, name
    included. A related mention none of those files holds is looked up in every file.
    Scanning every staged file for a day's few hundred names took 0.5 s of the business
    link at 1,000,000 persons."""
    ids = new_ids.implode()
    if files is None:
        rel_scan, rows = lake.relationships(home), lake.mentions(home)
    else:
        stems = [p.with_name(p.name.removesuffix(".mentions.parquet")) for p in files]
        siblings = [s.with_name(s.name + ".relationships.parquet") for s in stems]
        rel_scan = lake.scan_relationships([p for p in siblings if p.exists()])
        rows = lake.scan_mentions(files)
    rels = rel_scan.filter(pl.col("mention_id").is_in(ids)).collect()
    related = rels["related_mention_id"].drop_nulls().unique()
    named = rows.filter(pl.col("mention_id").is_in(related.implode())).collect()
    missing = related.filter(~related.is_in(named["mention_id"].implode()))
    if files is not None and missing.len():
        more = lake.mentions(home).filter(pl.col("mention_id").is_in(missing.implode()))
        named = pl.concat([named, more.collect()])
    return legal_rep_names(rels.lazy(), named.lazy())


def _staged(home: Home, entity_type: str, files: list[Path] | None = None) -> pl.LazyFrame:
    """Every staged row of an ``entity_type`` mention (:func:`connectors.lake.mention_rows`;
    of ``files`` only, when given; :func:`_first_rows` keeps the one
    :func:`connectors.lake.mentions` keeps)."""
    rows = lake.mention_rows(home) if files is None else lake.scan_mentions(files)
    return rows.filter(pl.col("entity_type") == entity_type)


def _first_rows(rows: pl.LazyFrame) -> pl.DataFrame:
    """One row per mention, the first in file order, as :func:`connectors.lake.mentions`."""
    return rows.unique(subset=["mention_id"], keep="first", maintain_order=True).collect()


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


def _blocking_candidates(view: FeatureView, new: pl.DataFrame, rules: list[str]) -> pl.DataFrame:
    """The current rows of the existing mentions that can pair with a ``new`` row under
    some blocking rule (:func:`key_conditions`: a superset of the rules' pairs; the
    blocking join applies them exactly): those sharing a key's hash with a new row
    (:mod:`linkage.block_keys`), in every stored file (base and parts as written,
    through their sidecars: a row replaced since may add a candidate, never lose one)
    or among the rows of ``view.over``; then only the candidates' rows are read whole.
    Every existing row when a rule has no usable equality."""
    is_new = pl.col("mention_id").is_in(view.new_ids.implode())
    keys = key_conditions(rules)
    if keys is None:
        return view.frame().filter(~is_new)
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    try:
        t = time.perf_counter()
        sidecars = [block_keys.ensure(con, p, keys) for p in view.stored_files]
        view.seconds["candidate_sidecars"] = round(time.perf_counter() - t, 2)
        # String views go over without a copy; DuckDB reads the columns the keys name.
        con.register("over_rows", view.over.to_arrow(compat_level=ARROW))
        con.register("new_rows", new.to_arrow(compat_level=ARROW))
        t = time.perf_counter()
        uids = block_keys.matching_uids(con, keys, sidecars, "over_rows", "new_rows")
        view.seconds["candidate_keys"] = round(time.perf_counter() - t, 2)
    finally:
        con.close()
    t = time.perf_counter()
    rows = view.rows_where(pl.col("uid").is_in(uids.implode()) & ~is_new)
    view.seconds["candidate_rows"] = round(time.perf_counter() - t, 2)
    return rows


def score_new(
    view: FeatureView,
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
    rules = [r["blocking_rule"] for r in settings["blocking_rules_to_generate_predictions"]]
    fresh = view.over.filter(pl.col("mention_id").is_in(view.new_ids.implode()))
    # The existing side holds only the mentions that share a blocking key with a new
    # one (the blocking join finds its pairs among them): 721k → 330k person mentions
    # for day 4 at 100,000 persons. Term frequencies still come from every mention.
    existing_rows = _blocking_candidates(view, fresh, rules)
    timings["predict_candidates"] = time.perf_counter() - t
    t = time.perf_counter()
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    tables = {"features_new": fresh, "features_existing": existing_rows}
    # Term frequencies over every mention, as Splink computes them (a value's count
    # over the column's non-null count), by polars over the columns alone: Splink
    # would need the whole frame in DuckDB (at 7.2M mentions, 5 s to hand it over).
    tf_columns = term_counts.tf_columns(settings)
    for col in tf_columns:
        counts = view.value_counts(col)
        view.tf_counts[col] = counts
        total = counts["len"].sum()
        # Splink joins a lookup to the rows by value: only the values the scored rows
        # hold can meet (1.5M names at 7.2M mentions, a few thousand here).
        held = pl.concat([fresh[col], existing_rows[col]]).drop_nulls().unique().implode()
        tables[f"tf_{col}_lookup"] = counts.filter(pl.col(col).is_in(held)).select(
            col, (pl.col("len").cast(pl.Float64) / total).alias(f"tf_{col}")
        )
    timings["predict_tf_counts"] = time.perf_counter() - t
    # Registered as Arrow, not copied into DuckDB tables first: Splink's SQL scans them
    # (the copy took 0.25 s of a 1,000,000-person world's day; the scoring took no
    # longer without it).
    for name, frame in tables.items():
        con.register(name, frame.to_arrow(compat_level=ARROW))
    # The linker's own input: both sides, without a third copy of their rows.
    con.execute(
        "CREATE VIEW features_scored AS "
        "SELECT * FROM features_new UNION ALL SELECT * FROM features_existing"
    )
    db_api = DuckDBAPI(connection=con)
    scored_rows = db_api.register("features_scored", dataset_display_name="scored_mentions")
    existing = db_api.register("features_existing", dataset_display_name="existing")
    new = db_api.register("features_new", dataset_display_name="new")
    linker = Linker(scored_rows, settings, log_level="WARNING")
    for col in tf_columns:
        lookup = db_api.register(f"tf_{col}_lookup", dataset_display_name=f"tf_{col}")
        linker.table_management.register_term_frequency_lookup(lookup, col)
    timings["predict_prepare"] = time.perf_counter() - t
    t = time.perf_counter()
    # Oriented by mention ID, not by uid: an increment's new mentions get uids above
    # the stored ones, while the full path ranks every mention ID afresh.
    between_rules: list[Any] = oriented_rules(rules, "mention_id")
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
    id_map = pl.concat([fresh, existing_rows]).select("uid", "mention_id")
    frames = []
    n_pairs = 0
    floor = float(REVIEW_BAND[0])
    for pred in (between, within):
        rel = pred.as_duckdbpyrelation()
        n_pairs += int(rel.aggregate("count(*)").fetchall()[0][0])
        frames.append(contributions(rel.filter(f"match_probability >= {floor!r}"), linker, id_map))
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


def _region(prev: pl.DataFrame, seeds: pl.Series, cross: pl.DataFrame) -> pl.DataFrame:
    """The existing entities to re-cluster: those holding a ``seeds`` mention, closed
    over old edges that cross entities (an edge refused by the guard or a decision
    ties two entities a full relink would reconsider together): ``cross``, the old
    edges between entities (:mod:`linkage.cross`), followed in memory. Returns the
    region's old map (``mention_id, entity_id``)."""
    ents = _map_rows(prev, seeds)["entity_id"].unique()
    if ents.is_empty():
        return prev.clear()
    # Within an entity an edge adds nothing: the closure only follows crossing ones.
    # (The map's rows of their ends only: a join with all 7.2M rows took ~0.1 s.)
    ends = cross_edges.with_entities(cross, _ends_rows(prev, cross)).collect()
    while True:
        within = ents.implode()
        more = pl.concat(
            [
                ends.filter(pl.col("e_l").is_in(within))["e_r"],
                ends.filter(pl.col("e_r").is_in(within))["e_l"],
            ]
        ).drop_nulls()
        grown = pl.concat([ents, more]).unique()
        if grown.len() == ents.len():
            break
        ents = grown
    return prev.filter(pl.col("entity_id").is_in(ents.implode()))


def _region_edges(evidence: pl.DataFrame, cross: pl.DataFrame, members: pl.Series) -> pl.DataFrame:
    """The old edges with both ends among the region's mentions ``members``, without
    reading every edge (26M at 1,000,000 persons, 1.4-1.9 s a day): an edge inside one
    of its entities is one of the entity's ``evidence`` rows from the model (every edge
    at or above the threshold between two mentions of one entity is explained, by the
    full link and by each increment), an edge between two of them a recorded ``cross``
    edge (the region is closed over those, so a crossing edge at a region mention has
    both ends in it). ``evidence``: the region's old entities' rows."""
    ids = members.implode()
    inside = evidence.filter(pl.col("source") == "model").select(EDGE_COLUMNS)
    between = cross.filter(
        pl.col("mention_id_l").is_in(ids) & pl.col("mention_id_r").is_in(ids)
    ).select(EDGE_COLUMNS)
    return (
        pl.concat([inside, between.cast(inside.schema)])
        .unique(subset=["mention_id_l", "mention_id_r"], keep="first")
        .sort("mention_id_l", "mention_id_r")
    )


def _entity_components(prev: pl.DataFrame, new_ids: pl.Series, edges: pl.DataFrame) -> pl.DataFrame:
    """Connected components over the new edges at entity level: each existing entity
    a new edge reaches is one node (its ID), each new mention one node. Returns
    ``node, component, old`` (``old``: the node is an existing entity)."""
    # The map's rows of the edges' ends only (a search of the map), then small joins.
    ent = _ends_rows(prev.select("mention_id", "entity_id"), edges)
    e = cross_edges.with_entities(edges, ent).collect()
    old_nodes = pl.concat([e["e_l"], e["e_r"]]).drop_nulls().unique()
    node_edges = e.select(
        pl.coalesce("e_l", "mention_id_l").alias("mention_id_l"),
        pl.coalesce("e_r", "mention_id_r").alias("mention_id_r"),
    )
    comps = connected_components(pl.concat([new_ids, old_nodes]), node_edges)
    return comps.select(
        pl.col("mention_id").alias("node"),
        pl.col("cluster_id").alias("component"),
        pl.col("mention_id").is_in(old_nodes.implode()).alias("old"),
    )


def _keys_among(
    home: Home, view: FeatureView, keys: pl.DataFrame, looked_up: pl.Series, ids: pl.Series
) -> pl.DataFrame:
    """The duplicate-free guard's keys of the mentions ``ids``, as
    :func:`linkage.run.duplicate_free_keys` gives them: ``keys`` holds those of the
    mentions ``looked_up``, and only the others are read. A mention's key is its own
    (its row and its records), so the keys of the tentative clusters serve the region
    as far as they reach (at 1M persons the whole region: a read of the stored rows and
    the registers' records spared)."""
    outside = ids.filter(~ids.is_in(looked_up.implode()))
    out = keys.filter(pl.col("mention_id").is_in(ids.implode()))
    if outside.len():
        read = duplicate_free_keys(home, view.rows(outside, GUARD_COLUMNS), outside)
        out = pl.concat([out, read])
    return out


def _tentative_clusters(prev: pl.DataFrame, comps: pl.DataFrame) -> pl.DataFrame:
    """Every component as a mention-level cluster (``mention_id, cluster_id``): the
    mentions of its existing entities and its new mentions."""
    olds = comps.filter("old").select(pl.col("node").alias("entity_id"), "component")
    # Their rows first (a filter of the map), then the join: a join with all 7.2M rows
    # took 0.06-0.09 s, the filter 0.03 s.
    old = (
        prev.filter(pl.col("entity_id").is_in(olds["entity_id"].implode()))
        .join(olds, on="entity_id")
        .select("mention_id", pl.col("component").alias("cluster_id"))
    )
    new = comps.filter(~pl.col("old")).select(
        pl.col("node").alias("mention_id"), pl.col("component").alias("cluster_id")
    )
    return pl.concat([old, new])


def _simple_review(
    entities: pl.DataFrame,
    scored: pl.DataFrame,
    kept_simple: pl.DataFrame,
    new_ids: pl.Series,
    region_ids: pl.Series,
) -> pl.DataFrame:
    """Review candidates outside the mention-level region, without the grown entities'
    old edges: uncertain new pairs across entities; weak new links, each old entity
    taken as one already judged part (a new mention held to its entity by one weak
    link alone); grown entities above ``LARGE_ENTITY`` mentions."""
    region = region_ids.implode()
    new = new_ids.implode()
    ent = entities.select("mention_id", "entity_id")
    lo, hi = REVIEW_BAND
    pairs = scored.filter(
        pl.col("match_probability").is_between(lo, hi, closed="left")
        & ~(pl.col("mention_id_l").is_in(region) & pl.col("mention_id_r").is_in(region))
    ).select(EDGE_COLUMNS)
    # The map's rows of the pairs' ends (a search of the map in mention order), joined.
    ends = _ends_rows(ent, pairs)
    el = ends.rename({"mention_id": "mention_id_l", "entity_id": "entity_id_l"})
    er = ends.rename({"mention_id": "mention_id_r", "entity_id": "entity_id_r"})
    uncertain = (
        pairs.join(el, on="mention_id_l")
        .join(er, on="mention_id_r")
        .filter(pl.col("entity_id_l") != pl.col("entity_id_r"))
        .with_columns(pl.lit("uncertain").alias("kind"))
    )
    node = {
        c: pl.when(pl.col(c).is_in(new)).then(pl.col(c)).otherwise(pl.col("entity_id"))
        for c in ("mention_id_l", "mention_id_r")
    }
    e = kept_simple.filter(pl.col("match_weight").is_not_null()).with_columns(
        node["mention_id_l"].alias("a"), node["mention_id_r"].alias("b")
    )
    weak = lone_weak_edges(
        e, pl.concat([e["a"], e["b"]]).unique(), WEAK_WEIGHT, ends=("a", "b")
    ).select(
        pl.lit("weak_link").alias("kind"),
        *EDGE_COLUMNS,
        pl.col("entity_id").alias("entity_id_l"),
        pl.col("entity_id").alias("entity_id_r"),
    )
    touched = pl.concat([kept_simple["entity_id"], _map_rows(ent, new_ids)["entity_id"]]).unique()
    # One pass over the map for the entities both lookups below need.
    uncertain_ids = uncertain["entity_id_l"].unique()
    wanted = ent.filter(pl.col("entity_id").is_in(pl.concat([touched, uncertain_ids]).implode()))
    members = wanted.filter(
        pl.col("entity_id").is_in(touched.implode()) & ~pl.col("mention_id").is_in(region)
    )
    sizes = members.group_by("entity_id").agg(
        pl.len().alias("size"), pl.col("mention_id").sort().head(2).alias("first")
    )
    big = sizes.filter((pl.col("size") > LARGE_ENTITY) & (pl.col("size") > 2)).select(
        pl.lit("large_entity").alias("kind"),
        pl.col("first").list.get(0).alias("mention_id_l"),
        pl.col("first").list.get(1).alias("mention_id_r"),
        pl.lit(None, pl.Float64).alias("match_weight"),
        pl.lit(None, pl.Float64).alias("match_probability"),
        pl.col("entity_id").alias("entity_id_l"),
        pl.col("entity_id").alias("entity_id_r"),
        "size",
    )
    size_l = sizes.select(pl.col("entity_id").alias("entity_id_l"), "size")
    all_sizes = (
        wanted.filter(pl.col("entity_id").is_in(uncertain_ids.implode()))
        .group_by(pl.col("entity_id").alias("entity_id_l"))
        .agg(pl.len().alias("size"))
    )
    return pl.concat(
        [
            uncertain.join(all_sizes, on="entity_id_l"),
            weak.join(size_l, on="entity_id_l"),
            big,
        ],
        how="diagonal_relaxed",
    )


def _review(
    old_review: pl.DataFrame,
    entities: pl.DataFrame,
    region: pl.DataFrame,
    scored: pl.DataFrame,
    kept: pl.DataFrame,
    kept_simple: pl.DataFrame,
    new_ids: pl.Series,
) -> pl.DataFrame:
    """The old queue without the region's rows (and without the grown entities' size
    rows), plus the region's candidates (its uncertain pairs: the new ones and the old
    ones inside it) and those of the simple components (:func:`_simple_review`)."""
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
    # Uncertain pairs reaching out of the region: same pair, current entity IDs (the
    # map's rows of their ends, searched).
    reaching = old_review.filter(touches & (pl.col("kind") == "uncertain"))
    ent = _ends_rows(entities.select("mention_id", "entity_id"), reaching)
    across = (
        reaching.drop("entity_id_l", "entity_id_r")
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
    simple = _simple_review(entities, scored, kept_simple, new_ids, region["mention_id"])
    # A grown entity flagged large again replaces its old row (the size changed).
    restated = simple.filter(pl.col("kind") == "large_entity")["entity_id_l"].implode()
    old = old_review.filter(
        ~touches & ~((pl.col("kind") == "large_entity") & pl.col("entity_id_l").is_in(restated))
    )
    return pl.concat(
        [old, across, fresh.select(old_review.columns), simple.select(old_review.columns)],
        how="vertical_relaxed",
    )


# ------------------------------------------------------------------ the increment


def _ever_issued(
    home: Home, entity_type: str, prev: pl.DataFrame, candidates: list[str]
) -> set[str]:
    """Those of the ``candidates`` IDs that were ever issued (the event history) or are
    current (``prev``): a new entity must not take one."""
    wanted = pl.Series("entity_id", candidates, dtype=pl.String).unique()
    current = prev.filter(pl.col("entity_id").is_in(wanted.implode()))["entity_id"]
    return issued_ids(home, entity_type, wanted) | set(current.to_list())


def touched_path(home: Home, entity_type: str) -> Path:
    """``<type>_touched.parquet``: the entity IDs the last incremental link changed."""
    return home.lake / "linkage" / f"{entity_type}_touched.parquet"


def link_incremental(home: Home, entity_type: str) -> dict[str, Any]:
    """Link the ``entity_type`` mentions of ``home`` that the last run has not seen
    (in the lake, not in ``<type>_entities.parquet``) into the existing entities,
    with the saved model and without re-scoring existing pairs; honour the human
    decisions, keep entity IDs stable (events recorded), rewrite the entity map and
    review queue and append delta parts to the edges, evidence and features (read
    them with :func:`linkage.report.read_linkage`). Returns: new mentions, candidate
    pairs, edges, new mentions that joined an existing entity, new entities, merges,
    splits, grown entities, the mention-level region's size, ID events and seconds
    per step. Raises
    :class:`FileNotFoundError` when there is no previous full link or model."""
    if entity_type not in ENTITY_TYPES:
        raise ValueError(f"unknown entity type {entity_type!r}")
    target, model_path = _previous(home, entity_type)
    # The map's state before this increment: the evaluation's stored sums follow it
    # (linkage.score_store).
    before = map_state(home, entity_type)
    seen = mention_file_states(home)
    timings: dict[str, float] = {}
    t0 = t = time.perf_counter()
    ent_path = target / f"{entity_type}_entities.parquet"
    # In mention order (as written): the lookups by mention ID below search it.
    prev = _sorted_map(pl.read_parquet(ent_path).select("mention_id", "entity_id"))
    sizes_before = entity_sizes.stored(home, entity_type)
    view = _increment_features(home, entity_type, target, prev)
    new_ids, feature_rows = view.new_ids, view.part
    timings["features"] = time.perf_counter() - t
    stats: dict[str, Any] = {"entity_type": entity_type, "new_mentions": new_ids.len()}
    if new_ids.len() == 0:
        pl.DataFrame({"entity_id": []}, schema={"entity_id": pl.String}).write_parquet(
            touched_path(home, entity_type)
        )
        prev.clear().write_parquet(members_file(home, entity_type))
        record_increment(home, entity_type, before, [])
        record_linked_files(home, entity_type, seen)
        return stats | {
            "candidate_pairs": 0,
            "seconds": {k: round(v, 2) for k, v in timings.items()},
        }

    t = time.perf_counter()
    scored, n_pairs = score_new(view, model_path, timings)
    timings |= {f"features_{k}": v for k, v in view.seconds.items()}
    edges = scored.filter(pl.col("match_probability") >= _threshold(entity_type)).select(
        EDGE_COLUMNS
    )

    t = time.perf_counter()
    active = active_decisions(home, entity_type)
    comps = _entity_components(prev, new_ids, edges)
    timings["components"] = time.perf_counter() - t

    # Components that cannot simply take their one old entity's ID (or a new one):
    # a merge of old entities, a human decision, or the duplicate-free guard.
    t = time.perf_counter()
    decided = pl.concat(
        [
            _map_rows(prev, active["mention_id"])["entity_id"],
            active["mention_id"],
        ]
    )
    tentative = _tentative_clusters(prev, comps)
    tentative_ids = tentative["mention_id"]
    keys = duplicate_free_keys(home, view.rows(tentative_ids, GUARD_COLUMNS), tentative_ids)
    offending = offending_clusters(tentative, keys)["cluster_id"]
    complex_ = comps.group_by("component").agg(
        (
            (pl.col("old").sum() > 1)
            | pl.col("node").is_in(decided.implode()).any()
            | pl.col("component").is_in(offending.implode()).any()
        ).alias("fallback")
    )
    fallback = complex_.filter("fallback")["component"]
    timings["guard"] = time.perf_counter() - t

    # Mention level for those, closed over old edges that cross entities.
    t = time.perf_counter()
    # The old edges between entities (recorded by the last link; computed from every
    # edge once when the record is not of this map).
    cross_before = cross_edges.stored(home, entity_type)
    if cross_before is None:
        all_old_edges = read_linkage(home, entity_type, "edges").select(EDGE_COLUMNS)
        cross_before = cross_edges.compute(all_old_edges, prev)
    while True:
        fb_nodes = comps.filter(pl.col("component").is_in(fallback.implode()))
        seeds = pl.concat(
            [
                prev.filter(pl.col("entity_id").is_in(fb_nodes.filter("old")["node"].implode()))[
                    "mention_id"
                ],
                fb_nodes.filter(~pl.col("old"))["node"],
                active["mention_id"],
            ]
        )
        region_old = _region(prev, seeds, cross_before)
        # A component whose old entity the closure reached goes to mention level too.
        reached = comps.filter(
            pl.col("old") & pl.col("node").is_in(region_old["entity_id"].unique().implode())
        )["component"].unique()
        grown = pl.concat([fallback, reached]).unique()
        if grown.len() == fallback.len():
            break
        fallback = grown
    # The converged region's old edges: its entities' evidence and the cross edges.
    region_ids = region_old["entity_id"].unique().implode()
    ev_scan = read_linkage(home, entity_type, "evidence")
    ev_columns = ev_scan.collect_schema().names()
    old_ev = ev_scan.filter(pl.col("entity_id").is_in(region_ids)).collect()
    old_edges = _region_edges(old_ev, cross_before, region_old["mention_id"])
    fb_new = comps.filter(pl.col("component").is_in(fallback.implode()) & ~pl.col("old"))["node"]
    nodes = pl.concat([region_old["mention_id"], fb_new]).unique()
    fb_ids = nodes.implode()
    fb_edges = edges.filter(
        pl.col("mention_id_l").is_in(fb_ids) & pl.col("mention_id_r").is_in(fb_ids)
    )
    region_edges = pl.concat([old_edges, fb_edges])
    clusters = connected_components(nodes, region_edges)
    fb_keys = _keys_among(home, view, keys, tentative_ids, nodes)
    clusters, refused = split_offending(clusters, region_edges, fb_keys)
    clusters, drep = apply_decisions(
        clusters, region_edges, active, fb_keys if active.height else None
    )
    timings["fallback"] = time.perf_counter() - t

    # Stable IDs: the simple components keep their old entity's ID (or get a new one
    # when they hold new mentions only); the mention-level clusters go through
    # assign_entity_ids with their old map.
    t = time.perf_counter()
    simple = comps.filter(~pl.col("component").is_in(fallback.implode()))
    grown_map = simple.filter("old").select("component", pl.col("node").alias("entity_id"))
    grown_rows = (
        simple.filter(~pl.col("old"))
        .join(grown_map, on="component")
        .select(pl.col("node").alias("mention_id"), "entity_id")
    )
    new_only = (
        simple.filter(~pl.col("old"))
        .join(grown_map, on="component", how="anti")
        .select(
            pl.col("node").alias("mention_id"),
            ("n:" + pl.col("component")).alias("cluster_id"),
        )
    )
    to_assign = pl.concat(
        [clusters.with_columns(("f:" + pl.col("cluster_id")).alias("cluster_id")), new_only]
    )
    ids = assign_entity_ids(
        entity_type, to_assign, region_old, lambda c: _ever_issued(home, entity_type, prev, c)
    )
    n_events = record_id_events(home, entity_type, event_reasons(ids.events, ids.entities, active))
    # In mention order, flagged so for _map_rows: the few added rows merged into the
    # kept ones (sorted already).
    entities = _merged_map(
        prev.filter(~pl.col("entity_id").is_in(region_ids)),
        pl.concat([grown_rows, ids.entities]),
    )
    timings["stable_ids"] = time.perf_counter() - t

    # Evidence: the new edges of the simple components are appended (their entities'
    # earlier rows stay valid); the mention-level region is re-explained in full.
    t = time.perf_counter()
    old_contrib = (
        old_ev.filter(pl.col("source") == "model")
        .drop("entity_id", "source", "decision_id")
        .unique(subset=["mention_id_l", "mention_id_r"], keep="first")
    )
    contrib = pl.concat([old_contrib, scored.select(old_contrib.columns)])
    kept_fb = kept_edges(ids.entities, region_edges, drep.must_edges)
    simple_edges = edges.join(fb_edges, on=["mention_id_l", "mention_id_r"], how="anti")
    # The map's rows of the edges' ends only: joining the edges with all 7.2M rows cost
    # ~0.1 s (the evidence step 0.24-0.26 -> 0.12-0.14 s).
    kept_simple = kept_edges(_ends_rows(entities, simple_edges), simple_edges, None)
    evidence = pl.concat(
        [
            model_evidence(kept_simple, scored).select(ev_columns),
            model_evidence(kept_fb, contrib).select(ev_columns),
        ]
    )
    timings["explain"] = time.perf_counter() - t
    t = time.perf_counter()
    rv_path = target / f"{entity_type}_review.parquet"
    fb_entities = ids.entities.filter(pl.col("mention_id").is_in(fb_ids))
    review = _review(
        pl.read_parquet(rv_path), entities, fb_entities, scored, kept_fb, kept_simple, new_ids
    )
    timings["review"] = time.perf_counter() - t

    t = time.perf_counter()
    write_entity_maps(target, entity_type, entities)
    # Edges, evidence and features as delta parts (read_linkage reads them with
    # their base): rewriting them cost ~8 s of 9 at 100,000 persons.
    append_linkage(home, entity_type, "edges", edges)
    append_linkage(home, entity_type, "evidence", evidence, void=region_old["entity_id"])
    if feature_rows is None:
        write_features(view.over, target / f"{entity_type}_features.parquet")
    elif feature_rows.height:
        append_linkage(home, entity_type, "features", feature_rows)
    # The counts over every stored row, now with the new part: the publish's.
    term_counts.record(home, entity_type, view.tf_counts)
    if view.names_settled is not None:
        name_state.record(home, view.names_settled)
    review.write_parquet(rv_path)
    # The entities this increment changed (grown, new, or rebuilt at mention level):
    # the checks of a daily run look at these only (every other entity passed them).
    new_rows = _map_rows(entities, new_ids)
    touched = pl.concat([new_rows["entity_id"], ids.entities["entity_id"]]).unique()
    touched.to_frame("entity_id").sort("entity_id").write_parquet(touched_path(home, entity_type))
    # Their rows of the map, for the evaluation (linkage.score_store: no scan of the map
    # for them) and the checks below.
    touched_rows = entities.filter(pl.col("entity_id").is_in(touched.implode()))
    touched_rows.write_parquet(members_file(home, entity_type))
    record_increment(home, entity_type, before, region_old["entity_id"])
    record_linked_files(home, entity_type, seen)
    timings["write"] = time.perf_counter() - t

    # While the map is in memory: the entity sizes (the changed entities recounted) and
    # the edges between entities (the region's and the new ones reconsidered), for the
    # next increment and the daily checks; and the duplicate-free guard over the
    # entities this increment changed, on the map as written (their mentions' keys:
    # those of the components and of the region, computed above).
    t = time.perf_counter()
    if sizes_before is None:
        sizes_before = entity_sizes.count(prev.rename({"entity_id": "cluster_id"}))
    sizes_after = entity_sizes.updated(sizes_before, entities, region_old["entity_id"], touched)
    entity_sizes.record(home, entity_type, sizes_after)
    reconsidered = pl.concat([old_edges.select(EDGE_COLUMNS), edges.select(EDGE_COLUMNS)])
    # (The map's rows of their ends only: all the update looks at.)
    cross_edges.record(
        home,
        entity_type,
        cross_edges.updated(
            cross_before, region_old["mention_id"], reconsidered, _ends_rows(entities, reconsidered)
        ),
    )
    changed_map = touched_rows.rename({"entity_id": "cluster_id"})
    bad = offending_clusters(changed_map, pl.concat([keys, fb_keys]).unique())["cluster_id"]
    duplicate_free = {
        "entities": bad.len(),
        "examples": bad.sort().head(5).to_list(),
        "entities_checked": touched.len(),
    }
    timings["checks"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0

    # What happened to the new mentions (new_rows): joined an old entity, or made new ones.
    with_old = pl.concat(
        [
            grown_map["entity_id"],
            ids.entities.join(region_old.select("mention_id"), on="mention_id")["entity_id"],
        ]
    )
    joined = new_rows.filter(pl.col("entity_id").is_in(with_old.unique().implode()))
    events = ids.events.group_by("kind").len()
    # Only the region's entities can lose their ID (a simple component keeps it).
    n_before = sizes_before.height
    retired = (
        region_old.select("entity_id")
        .unique()
        .join(ids.entities.select("entity_id").unique(), on="entity_id", how="anti")
        .height
    )
    return stats | {
        "candidate_pairs": n_pairs,
        "pairs_per_new_mention": round(n_pairs / new_ids.len(), 2),
        "edges": edges.height,
        "joined_existing": joined.height,
        "joined_existing_entities": joined["entity_id"].n_unique(),
        "new_entities": new_rows.join(joined, on="mention_id", how="anti")["entity_id"].n_unique(),
        "merges": int(ids.events.filter(pl.col("kind") == "merge").height),
        "splits": int(ids.events.filter(pl.col("kind") == "split").height),
        "grown_entities": grown_map.height,
        "region_entities": region_old["entity_id"].n_unique(),
        "region_mentions": nodes.len(),
        "guard_refused_edges": refused,
        "decisions": drep.as_dict(),
        "entity_ids": {
            "kept_untouched": n_before - region_old["entity_id"].n_unique(),
            "kept_in_region": ids.kept,
            "issued": ids.issued,
            "retired": retired,
            "events": dict(zip(events["kind"].to_list(), events["len"].to_list(), strict=True)),
            "events_recorded": n_events,
        },
        "entities": sizes_after.height,
        "evidence_rows_appended": evidence.height,
        "features_appended": feature_rows.height if feature_rows is not None else None,
        "settled_names_skipped": view.names_skipped,
        "review_candidates": review.height,
        "duplicate_free": duplicate_free,
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
                    read_linkage(home, etype, "edges").filter(th).collect(),
                    read_linkage(shadow, etype, "edges").filter(th).collect(),
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
