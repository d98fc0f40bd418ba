"""Incremental linking: a new day's mentions are scored against the existing
entities with the saved model (no existing pair re-scored), join or form entities,
keep stable IDs and human decisions, and agree with a full relink.

World: the session's linked world (``tests/linked_world.py``: 1,000 persons, 2 days,
linked by ``link_all``), copied; two decisions are recorded, then day 3 is delivered
(only that day: earlier deliveries do not change, see ``test_advance.py``), ingested
and linked incrementally."""

from __future__ import annotations

import json
import math

import polars as pl
import pytest
from linked_world import LINKED, copy_of_linked_world

import linkage.decisions as dec
from connectors import lake
from linkage.explain import contributions
from linkage.incremental import ENTITY_TYPES, compare_with_full, link_incremental, oriented_rules
from linkage.model import make_linker
from linkage.report import read_linkage
from linkage.run import entity_features
from tessera.config import Home


def _entities(home: Home, etype: str) -> pl.DataFrame:
    return pl.read_parquet(home.lake / "linkage" / f"{etype}_entities.parquet")


def _full_prediction(home: Home, etype: str) -> pl.DataFrame:
    """Every candidate pair of a full prediction with the saved model (the reference)."""
    path = home.lake / "linkage" / f"{etype}_model.json"
    settings = json.loads(path.read_text(encoding="utf-8"))
    settings["retain_intermediate_calculation_columns"] = True
    features = entity_features(home, etype)
    linker, _ = make_linker(features, settings, name=f"{etype}_reference")
    return contributions(linker.inference.predict().as_duckdbpyrelation(), linker, features)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The linked world before and after one incremental day."""
    from connectors.catalog import load_specs
    from connectors.ingest import ingest
    from linkage import term_counts
    from simulation.run import simulate
    from simulation.world import WorldConfig

    home = copy_of_linked_world(tmp_path_factory, "incremental")
    # The full link recorded the term-frequency counts: the increment adds to them.
    assert set(term_counts.recorded(home, "person")) == {"name_native", "name_py"}
    before = {t: _entities(home, t) for t in ENTITY_TYPES}
    issued = {t: dec.issued_ids(home, t) for t in ENTITY_TYPES}
    ent = before["person"]
    sizes = ent.group_by("entity_id").len().sort(["len", "entity_id"], descending=[True, False])
    big = ent.filter(pl.col("entity_id") == sizes["entity_id"][0]).sort("mention_id")
    cannot = dec.record_decision(
        home, big["mention_id"][0], big["mention_id"][-1], same=False, reason="test: two people"
    )
    e1, e2 = sizes["entity_id"][1], sizes["entity_id"][2]
    must = dec.record_decision(home, e1, e2, same=True, reason="test: one person")

    mp = pytest.MonkeyPatch()
    mp.delenv("TESSERA_PG_URL", raising=False)
    mp.delenv("TESSERA_MYSQL_URL", raising=False)
    try:
        days = LINKED["days"]
        simulate(home, WorldConfig(**{**LINKED, "days": days + 1}), days=range(days, days + 1))
    finally:
        mp.undo()
    ingest(home, load_specs(home.sources_dir))
    new = {
        t: lake.mentions(home)
        .filter(pl.col("entity_type") == t)
        .select("mention_id")
        .collect()
        .join(before[t], on="mention_id", how="anti")["mention_id"]
        for t in ENTITY_TYPES
    }
    reference = _full_prediction(home, "person")
    stats = {t: link_incremental(home, t) for t in ENTITY_TYPES}
    print("incremental:", json.dumps(stats, default=str))
    return {
        "home": home,
        "before": before,
        "issued": issued,
        "new": new,
        "stats": stats,
        "reference": reference,
        "cannot": cannot,
        "must": must,
    }


def test_every_new_mention_is_assigned_once(world: dict) -> None:
    home = world["home"]
    for t in ENTITY_TYPES:
        ent = _entities(home, t)
        staged = lake.mentions(home).filter(pl.col("entity_type") == t).collect()
        assert ent["mention_id"].is_unique().all()
        assert set(ent["mention_id"].to_list()) == set(staged["mention_id"].to_list())
        assert world["stats"][t]["new_mentions"] == world["new"][t].len()
    assert world["new"]["person"].len() > 100, "the new day must bring new persons"
    s = world["stats"]["person"]
    assert s["joined_existing"] > 0 and s["new_entities"] > 0
    # Entities a new mention only grows keep their ID without mention-level work;
    # only merges, decisions and the guard go through it.
    assert s["grown_entities"] > s["region_entities"]


def test_evidence_holds_every_kept_edge_once(world: dict) -> None:
    """Base and parts together: every model edge whose two mentions share an entity
    has exactly one evidence row, under that entity; no row of a replaced entity is left."""
    from linkage.explain import kept_edges

    home = world["home"]
    for t in ENTITY_TYPES:
        ent = _entities(home, t)
        ev = read_linkage(home, t, "evidence").collect()
        edges = read_linkage(home, t, "edges").collect()
        kept = kept_edges(ent, edges, None)
        model = ev.filter(pl.col("source") == "model")
        key = ["mention_id_l", "mention_id_r"]
        assert model.select(key).is_unique().all(), t
        got = model.select(*key, "entity_id").sort(key)
        assert got.equals(kept.select(*key, "entity_id").sort(key)), t
        assert ev["entity_id"].is_in(ent["entity_id"].implode()).all(), t


def test_only_pairs_with_a_new_mention_are_scored(world: dict) -> None:
    """The candidate pairs are exactly the full prediction's pairs that hold a new
    mention (none of existing × existing), with the same weights."""
    ref = world["reference"]
    new = world["new"]["person"].implode()
    with_new = ref.filter(pl.col("mention_id_l").is_in(new) | pl.col("mention_id_r").is_in(new))
    s = world["stats"]["person"]
    print("candidate pairs: incremental", s["candidate_pairs"], "full prediction", ref.height)
    assert s["candidate_pairs"] == with_new.height
    assert s["candidate_pairs"] < ref.height / 5
    th = 0.7
    edges = read_linkage(world["home"], "person", "edges").collect()
    added = edges.filter(pl.col("mention_id_l").is_in(new) | pl.col("mention_id_r").is_in(new))
    expected = with_new.filter(pl.col("match_probability") >= th)
    key = ["mention_id_l", "mention_id_r"]
    assert added.height == expected.height == s["edges"]
    both = added.join(expected, on=key, suffix="_ref")
    assert both.height == expected.height
    assert (both["match_weight"] - both["match_weight_ref"]).abs().max() < 1e-9


def test_map_rows_by_binary_search_equal_a_filter() -> None:
    """The map lookups by mention ID (a binary search of the map in mention order) give
    the rows a filter gives: IDs absent, before the first and after the last, repeated
    and null; an unsorted map (not flagged) is filtered."""
    import random

    from linkage.incremental import _map_rows, _sorted_map

    rng = random.Random(7)
    for _ in range(300):
        n = rng.randint(0, 40)
        ids_in_map = {f"M{rng.randint(10, 89):03d}" for _ in range(n)}
        raw = pl.DataFrame(
            {"mention_id": sorted(ids_in_map, reverse=True), "entity_id": "E"},
            schema={"mention_id": pl.String, "entity_id": pl.String},
        )
        wanted = pl.Series(
            "mention_id",
            [rng.choice([None, f"M{rng.randint(0, 99):03d}"]) for _ in range(rng.randint(0, 30))],
            dtype=pl.String,
        )
        expected = raw.filter(pl.col("mention_id").is_in(wanted.implode())).sort("mention_id")
        assert _map_rows(_sorted_map(raw), wanted).equals(expected)
        assert _map_rows(raw, wanted).sort("mention_id").equals(expected)


def test_merged_map_equals_a_sort_of_both() -> None:
    """The map with the added rows merged in by binary search equals the sort of both,
    is flagged sorted (what _map_rows searches), whatever the added rows' order: empty
    sides, added IDs before the first and after the last, between two kept ones; an
    unflagged map is sorted whole."""
    import random

    from linkage.incremental import _map_rows, _merged_map, _sorted_map

    rng = random.Random(11)
    schema = {"mention_id": pl.String, "entity_id": pl.String}
    for _ in range(300):
        ids = rng.sample(range(100), rng.randint(0, 60))
        cut = rng.randint(0, len(ids))
        kept = pl.DataFrame(
            {"mention_id": [f"M{i:03d}" for i in ids[:cut]], "entity_id": "K"}, schema=schema
        )
        added = pl.DataFrame(
            {"mention_id": [f"M{i:03d}" for i in ids[cut:]], "entity_id": "A"}, schema=schema
        )
        expected = pl.concat([kept, added]).sort("mention_id")
        merged = _merged_map(_sorted_map(kept), added)
        assert merged.equals(expected)
        assert merged["mention_id"].flags["SORTED_ASC"]
        probe = pl.Series([f"M{rng.randint(0, 99):03d}" for _ in range(10)])
        assert _map_rows(merged, probe).equals(
            expected.filter(pl.col("mention_id").is_in(probe.implode()))
        )
        assert _merged_map(kept.reverse(), added).equals(expected)


def test_new_legal_reps_from_the_new_files_equal_those_of_every_file(
    world: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The new business mentions' legal representatives, read from the files they were
    staged in (and those files' relationships), equal those read from every staged
    file; a related mention those files lack is looked up in every file."""
    from linkage import incremental

    home = world["home"]
    new = world["new"]["business"]
    every = lake.staged_files(home, "mentions")
    files = [
        p
        for p in every
        if pl.scan_parquet(p).filter(pl.col("mention_id").is_in(new.implode())).collect().height
    ]
    assert 0 < len(files) < len(every)
    cols = ["mention_id", "legal_rep_name"]
    everywhere = incremental._new_legal_reps(home, None, new).sort(cols)
    assert everywhere.height > 0
    assert incremental._new_legal_reps(home, files, new).sort(cols).equals(everywhere)
    # The new files' rows without the (person) legal representatives: each is missing
    # there and looked up in every file.
    real = lake.scan_mentions

    def without_people(paths: list) -> pl.LazyFrame:
        rows = real(paths)
        return rows if paths == every else rows.filter(pl.col("entity_type") != "person")

    monkeypatch.setattr(lake, "scan_mentions", without_people)
    assert incremental._new_legal_reps(home, files, new).sort(cols).equals(everywhere)


def test_oriented_rules_double_only_asymmetric_rules() -> None:
    rules = ['l."id_any" = r."id_any"', "l.name_py = r.name_py_rev"]
    out = [r["blocking_rule"] for r in oriented_rules(rules, "uid")]
    assert out == [
        'l."id_any" = r."id_any"',
        "(l.name_py = r.name_py_rev) AND l.uid < r.uid",
        "(r.name_py = l.name_py_rev) AND r.uid < l.uid",
    ]


def test_unchanged_entities_keep_their_ids(world: dict) -> None:
    for t in ENTITY_TYPES:
        old = world["before"][t].rename({"entity_id": "old_id"})
        now = _entities(world["home"], t)
        m = old.join(now, on="mention_id")
        # An old entity whose mentions all sit in one entity holding no other old
        # entity's mentions is unchanged (it may have gained new mentions).
        per_old = m.group_by("old_id").agg(pl.col("entity_id").n_unique().alias("n"))
        per_new = m.group_by("entity_id").agg(pl.col("old_id").n_unique().alias("n"))
        intact = (
            m.join(per_old.filter(pl.col("n") == 1), on="old_id")
            .join(per_new.filter(pl.col("n") == 1), on="entity_id")
            .select("old_id", "entity_id")
            .unique()
        )
        assert intact.height > 0.9 * old["old_id"].n_unique()
        assert (intact["old_id"] == intact["entity_id"]).all(), t


def test_new_entity_ids_never_collide(world: dict) -> None:
    home = world["home"]
    for t in ENTITY_TYPES:
        old_ids = set(world["before"][t]["entity_id"].to_list())
        now = _entities(home, t)
        fresh = set(now["entity_id"].to_list()) - old_ids
        assert len(fresh) == world["stats"][t]["entity_ids"]["issued"]
        assert not fresh & world["issued"][t], "a new ID repeats one issued before"
        ev = dec.id_events(home, t)
        assert ev.filter(pl.col("kind") == "new").height >= world["stats"][t]["new_entities"]


def test_decisions_hold_after_the_increment(world: dict) -> None:
    ent = _entities(world["home"], "person")
    for d, together in ((world["cannot"], False), (world["must"], True)):
        ids_a = ent.filter(pl.col("mention_id").is_in(list(d.mentions_a)))["entity_id"].unique()
        ids_b = ent.filter(pl.col("mention_id").is_in(list(d.mentions_b)))["entity_id"].unique()
        assert ids_a.len() == ids_b.len() == 1
        assert (ids_a[0] == ids_b[0]) is together, d.kind


def test_new_edges_are_explained(world: dict) -> None:
    ev = read_linkage(world["home"], "person", "evidence").collect()
    new = world["new"]["person"].implode()
    model = ev.filter(
        (pl.col("source") == "model")
        & (pl.col("mention_id_l").is_in(new) | pl.col("mention_id_r").is_in(new))
    )
    assert model.height > 0
    bf = [c for c in model.columns if c.endswith("_log2_bf")]
    total = model.select(pl.sum_horizontal("prior_log2", *bf) - pl.col("match_weight")).to_series()
    assert total.abs().max() < 1e-9
    assert model["name_level"].null_count() == 0


def test_no_previous_link_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="previous full link"):
        link_incremental(Home(tmp_path / "empty"), "person")


def test_incremental_agrees_with_full_relink(world: dict) -> None:
    """A full relink (same saved model) after the increment: the partitions agree.

    Bound: the only things the incremental path does not redo are the scores of
    existing pairs (their ``name_py_persons`` and term frequencies move with the new
    mentions: a few tenths of a bit) and entities no new mention touches. On this
    world that moves no pair across the threshold; allow 0.1 % of the pairs."""
    home = world["home"]
    before = {t: _entities(home, t) for t in ENTITY_TYPES}
    cmp = compare_with_full(home)
    print("incremental vs full:", json.dumps(cmp, default=str))
    for t in ENTITY_TYPES:
        c = cmp[t]
        assert c["mentions"] == before[t].height
        for k in ("pairs_only_incremental", "pairs_only_full"):
            assert c[k] <= math.ceil(0.001 * c["pairs_full"]), (t, k, c[k])
        assert c["edges_only_incremental"] + c["edges_only_full"] <= math.ceil(
            0.001 * c["edges_full"]
        )
        acc = c["accuracy"]
        for side in ("precision", "recall"):
            diff = acc["incremental"]["pairwise"][side] - acc["full"]["pairwise"][side]
            assert abs(diff) <= 0.001, (t, side)
        # compare_with_full leaves the incremental result where it was.
        assert _entities(home, t).equals(before[t])


def test_stored_features_equal_a_full_derivation(world: dict) -> None:
    """The stored features (base and the increment's part) are what a full derivation
    gives today: the new mentions' rows and the per-name statistics of the names they
    touch, recomputed over those names only; ``uid`` stays unique."""
    home = world["home"]
    for t in ENTITY_TYPES:
        stored = read_linkage(home, t, "features").collect()
        full = entity_features(home, t)
        assert stored["uid"].is_unique().all()
        assert stored.height == full.height
        cols = [c for c in full.columns if c != "uid"]
        assert stored.select(cols).sort("mention_id").equals(full.select(cols).sort("mention_id"))
    part = world["stats"]["person"]["features_appended"]
    assert (
        world["new"]["person"].len()
        <= part
        < read_linkage(home, "person", "features").collect().height
    )


def test_statistics_moved_compares_counts_as_capped() -> None:
    """A stored row moves only when a statistic the models can see changed: a count
    stored uncapped (written before the cap) equal to the restated capped count once
    capped stays; a count crossing the cap, a changed flag or a new row move."""
    from linkage.features import PERSONS_CAP
    from linkage.incremental import statistics_moved

    stats = ["name_py_persons", "name_py_thin"]
    before = pl.DataFrame(
        {
            "mention_id": ["a", "b", "c", "d"],
            "name_py_persons": [57, 2, 4, 1],
            "name_py_thin": [None, None, None, "li"],
        },
        schema={"mention_id": pl.String, "name_py_persons": pl.Int32, "name_py_thin": pl.String},
    )
    restated = pl.DataFrame(
        {
            "mention_id": ["a", "b", "c", "d", "e"],
            "name_py_persons": [PERSONS_CAP, 3, PERSONS_CAP, 1, 1],
            "name_py_thin": [None, None, None, None, "li"],
        },
        schema=before.schema,
    )
    moved = statistics_moved(before, restated, stats)
    assert sorted(moved["mention_id"]) == ["b", "d", "e"]
    assert moved.schema == restated.schema


def test_settled_names_recorded_equal_those_of_the_stored_rows(world: dict) -> None:
    """The increment left the stored rows of settled names unread (some were) and
    recorded the settled names of the features as written: the same set, ``long``
    included, as computed from every stored row (a full derivation's rows equal the
    stored ones: test_stored_features_equal_a_full_derivation)."""
    from linkage import name_state

    home = world["home"]
    assert world["stats"]["person"]["settled_names_skipped"] > 0
    stored = read_linkage(home, "person", "features")
    recorded = name_state.stored(home, stored.clear())  # the record: no row to compute from
    assert recorded.height > 0
    assert recorded.sort("name_py").equals(name_state.settled(stored).sort("name_py"))


def test_a_full_link_records_the_settled_names(tmp_path_factory) -> None:
    """The full link (``linkage.report.settle``) records the settled person names of the
    features it wrote, so the first increment reads them instead of every stored row."""
    from linked_world import linked_world

    from linkage import name_state

    home = linked_world(tmp_path_factory)
    stored = read_linkage(home, "person", "features")
    assert len(list((home.lake / "linkage").glob("person_features_delta/*.parquet"))) == 0
    recorded = name_state.stored(home, stored.clear())  # the record, or nothing
    assert recorded.height > 0
    assert recorded.sort("name_py").equals(name_state.settled(stored).sort("name_py"))


def test_settled_names_skip_and_update() -> None:
    """A settled name is skipped unless it is short and a new mention of it is long
    (咸宁 and 西安宁: a 3-character name stops the phone keys counting); a recomputed
    name leaves the record when it is no longer settled and joins when it is."""
    from linkage import name_state
    from linkage.features import PERSONS_CAP

    names = pl.DataFrame({"name_py": ["a", "b", "c"], "long": [False, True, False]})
    fresh = pl.DataFrame(
        {
            "name_py": ["a", "b", "c", "d", None],
            "name_native": ["西安宁", "张三丰", "咸宁", "李四", "王"],
        }
    )
    assert sorted(name_state.skipped(names, fresh)) == ["b", "c"]

    recomputed = pl.DataFrame(
        {
            "name_py": ["a", "a", "d", "d", "e"],
            "name_py_persons": [2, 2, PERSONS_CAP, PERSONS_CAP, PERSONS_CAP],
            "name_registered": [True, True, True, True, False],
            "name_native": ["西安宁", "咸宁", "李四", "李四", "王五"],
        },
        schema_overrides={"name_py_persons": pl.Int32},
    )
    after = name_state.updated(names, recomputed)
    assert after.rows() == [("b", True), ("c", False), ("d", False)]


def test_stored_features_are_written_with_the_fast_codec(world: dict) -> None:
    """The features base (the full link's) and the increment's part are written with
    ``FEATURES_COMPRESSION`` (lz4: the increments scan them several times a day)."""
    import duckdb

    from linkage.features import FEATURES_COMPRESSION
    from linkage.parts import linkage_parts

    for t in ENTITY_TYPES:
        files = linkage_parts(world["home"], t, "features")
        assert len(files) > 1, t
        for f in files:
            codecs = duckdb.sql(
                f"SELECT DISTINCT compression FROM parquet_metadata('{f}')"
            ).fetchall()
            # polars writes lz4 as Parquet's LZ4_RAW codec.
            assert codecs and all(c.startswith(FEATURES_COMPRESSION.upper()) for (c,) in codecs), (
                f.name,
                codecs,
            )


def test_read_linkage_applies_parts_in_order(tmp_path) -> None:
    """Edges parts add rows; a features part replaces rows with the same mention ID;
    an evidence part replaces every earlier row of its void entities; parts of an
    older base are ignored once the base is rewritten."""
    from linkage.report import append_linkage

    home = Home(tmp_path)
    d = home.lake / "linkage"
    d.mkdir(parents=True)
    pl.DataFrame({"mention_id_l": ["a"], "mention_id_r": ["b"]}).write_parquet(
        d / "person_edges.parquet"
    )
    append_linkage(
        home, "person", "edges", pl.DataFrame({"mention_id_l": ["c"], "mention_id_r": ["d"]})
    )
    assert read_linkage(home, "person", "edges").collect()["mention_id_l"].to_list() == ["a", "c"]

    pl.DataFrame({"mention_id": ["m1", "m2"], "v": [1, 2]}).write_parquet(
        d / "person_features.parquet"
    )
    append_linkage(
        home, "person", "features", pl.DataFrame({"mention_id": ["m2", "m3"], "v": [20, 3]})
    )
    append_linkage(home, "person", "features", pl.DataFrame({"mention_id": ["m3"], "v": [30]}))
    got = read_linkage(home, "person", "features").collect().sort("mention_id")
    assert got.rows() == [("m1", 1), ("m2", 20), ("m3", 30)]

    ev = pl.DataFrame({"entity_id": ["E1", "E1", "E2"], "mention_id_l": ["a", "b", "c"]})
    ev.write_parquet(d / "person_evidence.parquet")
    part = pl.DataFrame({"entity_id": ["E3"], "mention_id_l": ["a"]})
    append_linkage(home, "person", "evidence", part, void=pl.Series(["E1", "E3"]))
    got = read_linkage(home, "person", "evidence").collect().sort("entity_id")
    assert got.rows() == [("E2", "c"), ("E3", "a")]

    # A full link rewrites the base: the parts written after the old one no longer apply.
    pl.DataFrame({"mention_id": ["m9"], "v": [9]}).write_parquet(d / "person_features.parquet")
    assert read_linkage(home, "person", "features").collect().rows() == [("m9", 9)]
    with pytest.raises(ValueError):
        read_linkage(home, "person", "entities")


def test_new_mentions_come_from_the_entity_map(
    world: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """New mentions are those the entity map lacks, even when the stored features
    already hold them (a full derivation rewrote the file before the increment, as
    the Dagster mentions asset does): nothing is derived twice, none is missed. (Every
    staged file is read: the link's record of the files it saw is for its own map.)"""
    from linkage import incremental
    from linkage.incremental import _increment_features

    monkeypatch.setattr(incremental, "unlinked_files", lambda home, entity_type: None)
    home = world["home"]
    for t in ENTITY_TYPES:
        stored = read_linkage(home, t, "features").collect()
        view = _increment_features(home, t, home.lake / "linkage", world["before"][t])
        assert sorted(view.new_ids.to_list()) == sorted(world["new"][t].to_list()), t
        assert view.part is not None and view.part.height == 0
        got = view.frame()
        assert got.height == stored.height
        assert got.sort("mention_id").equals(stored.sort("mention_id"))


@pytest.mark.parametrize(
    ("etype", "key", "stats"),
    [
        ("person", "name_py", ["name_py_persons", "name_py_thin"]),
        ("business", "name_core", ["name_core_firms"]),
    ],
)
def test_name_statistics_over_the_touched_names_equal_the_full_ones(
    world: dict, etype: str, key: str, stats: list[str]
) -> None:
    """The per-name statistics recomputed over every mention of some names (what an
    increment does for the names its new mentions carry) equal those of a full
    derivation: a name's statistic depends on that name's mentions only."""
    from linkage.features import business_name_statistics, name_statistics

    restate = name_statistics if etype == "person" else business_name_statistics
    full = entity_features(world["home"], etype)
    names = full.sample(fraction=0.1, seed=7)[key].unique().implode()
    subset = full.filter(pl.col(key).is_in(names, nulls_equal=True))
    blanked = subset.with_columns(pl.lit(None).cast(full.schema[s]).alias(s) for s in stats)
    got = restate(blanked).collect().select("mention_id", *stats).sort("mention_id")
    assert got.height < full.height
    assert got.equals(subset.select("mention_id", *stats).sort("mention_id"))


def test_linkage_sql_merges_parts_as_read_linkage_does(world: dict, tmp_path) -> None:
    """warehouse.matching.linkage_sql (publish's DuckDB reader of the base and parts)
    gives the rows read_linkage gives: on the world after an increment (evidence,
    features, edges) and on hand-made parts where a void replaces earlier rows."""
    import duckdb

    from linkage.report import append_linkage
    from warehouse.matching import linkage_sql

    def both(home: Home, kind: str, etype: str = "person") -> tuple[pl.DataFrame, pl.DataFrame]:
        want = read_linkage(home, etype, kind).collect()
        got = duckdb.connect().sql(linkage_sql(home, etype, kind)).pl()
        cols = sorted(want.columns)
        assert sorted(got.columns) == cols
        key = [c for c in ("entity_id", "mention_id", "mention_id_l", "mention_id_r") if c in cols]
        return (
            want.select(cols).cast(pl.String).sort(key),
            got.select(cols).cast(pl.String).sort(key),
        )

    home = world["home"]
    for etype in ENTITY_TYPES:
        for kind in ("evidence", "features", "edges"):
            want, got = both(home, kind, etype)
            assert want.height > 0
            assert got.equals(want), (etype, kind)

    small = Home(tmp_path)
    d = small.lake / "linkage"
    d.mkdir(parents=True)
    pl.DataFrame({"entity_id": ["E1", "E1", "E2"], "mention_id_l": ["a", "b", "c"]}).write_parquet(
        d / "person_evidence.parquet"
    )
    part = pl.DataFrame({"entity_id": ["E3"], "mention_id_l": ["a"]})
    append_linkage(small, "person", "evidence", part, void=pl.Series(["E1", "E3"]))
    want, got = both(small, "evidence")
    assert got.rows() == want.rows() == [("E2", "c"), ("E3", "a")]


def test_the_next_increment_reads_the_files_staged_since(world: dict) -> None:
    """The link records the staged mention files it saw and the map it wrote: the next
    increment reads only the files staged since, and every file when the map or a
    seen file changed."""
    import os

    from linkage.incremental import unlinked_files

    home = world["home"]
    for t in ENTITY_TYPES:
        assert unlinked_files(home, t) == [], t
    staged = lake.staged_files(home, "mentions")
    extra = staged[0].with_name("zz-test.mentions.parquet")
    extra.write_bytes(staged[0].read_bytes())
    try:
        assert unlinked_files(home, "person") == [extra]
        # A seen file rewritten: its rows may hold anything, every file is read.
        st = staged[1].stat()
        os.utime(staged[1], ns=(st.st_atime_ns, st.st_mtime_ns + 1))
        assert unlinked_files(home, "person") is None
        os.utime(staged[1], ns=(st.st_atime_ns, st.st_mtime_ns))
        assert unlinked_files(home, "person") == [extra]
    finally:
        extra.unlink()
    # Another entity map (a full relink): no record applies.
    ent = home.lake / "linkage" / "business_entities.parquet"
    st = ent.stat()
    os.utime(ent, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    try:
        assert unlinked_files(home, "business") is None
    finally:
        os.utime(ent, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_value_counts_read_from_the_base_equal_every_row(world: dict) -> None:
    """Term-frequency counts from the base file plus the rows added since equal the
    counts over every current row (base and parts merged), for the columns no
    increment restates; a restated column is counted over every row."""
    from linkage.features import BUSINESS_NAME_STATS, PERSON_NAME_STATS
    from linkage.incremental import FeatureView
    from linkage.parts import linkage_parts

    home = world["home"]
    for t, cols, stats in (
        ("person", ["name_py", "name_native", "name_py_thin"], PERSON_NAME_STATS),
        ("business", ["name_core", "name_core_firms"], BUSINESS_NAME_STATS),
    ):
        files = linkage_parts(home, t, "features")
        assert len(files) > 1, "the increment appended a part"
        stored = read_linkage(home, t, "features")
        over = stored.head(0).collect()
        view = FeatureView(stored, files, over, over["mention_id"], None, restated=stats)
        every = stored.collect()
        for col in cols:
            want = every.select(col).drop_nulls().group_by(col).len().sort(col)
            assert view.value_counts(col).sort(col).equals(want), (t, col)

    # With the counts the increment recorded, plus new rows (uid above the stored ones).
    from linkage import term_counts

    recorded = term_counts.recorded(home, "person")
    assert set(recorded) == {"name_native", "name_py"}
    stored = read_linkage(home, "person", "features")
    every = stored.collect()
    top = int(every["uid"].max())
    fresh = every.head(3).with_columns(
        (pl.col("mention_id") + "-new").alias("mention_id"),
        (pl.int_range(1, 4) + top).cast(every.schema["uid"]).alias("uid"),
    )
    files = linkage_parts(home, "person", "features")
    view = FeatureView(
        stored, files, fresh, fresh["mention_id"], None, restated=PERSON_NAME_STATS,
        recorded=recorded, stored_top=top,
    )  # fmt: skip
    for col in recorded:
        want = pl.concat([every, fresh]).select(col).drop_nulls().group_by(col).len().sort(col)
        assert view.value_counts(col).sort(col).equals(want), col


def test_recorded_sizes_and_the_changed_entities_guard_match_the_map(world: dict) -> None:
    """The increment records the entity sizes of the map it wrote (the daily checks
    read them instead of the map) and counts duplicate-free violations over the
    entities it changed: both equal what the checks compute from the files; a
    clusters file the sizes do not count is counted afresh."""
    import os

    from linkage import sizes as entity_sizes
    from linkage.incremental import touched_path
    from tessera import quality as qc

    home = world["home"]
    for t in ENTITY_TYPES:
        counted = entity_sizes.count(qc.clusters(home, t)).sort("cluster_id")
        recorded = entity_sizes.stored(home, t)
        assert recorded is not None, t
        assert recorded.sort("cluster_id").equals(counted), t
        assert world["stats"][t]["entities"] == counted.height
        touched = pl.read_parquet(touched_path(home, t))["entity_id"]
        assert world["stats"][t]["duplicate_free"] == qc.duplicate_free_violations(
            home, t, touched
        ), t
    # The update itself: the sizes before, minus the entities whose mentions moved,
    # plus the changed ones recounted, equal a count of the new map.
    before, after = world["before"]["person"], _entities(home, "person")
    moved = before.join(after, on="mention_id", how="left", suffix="_new").filter(
        pl.col("entity_id") != pl.col("entity_id_new")
    )
    touched = pl.read_parquet(touched_path(home, "person"))["entity_id"]
    got = entity_sizes.updated(
        entity_sizes.count(before.rename({"entity_id": "cluster_id"})),
        after,
        moved["entity_id"].unique(),
        touched,
    )
    want = entity_sizes.count(after.rename({"entity_id": "cluster_id"}))
    assert got.sort("cluster_id").equals(want.sort("cluster_id"))
    # Another clusters file (a full relink): the recorded sizes no longer apply.
    path = entity_sizes.clusters_path(home, "business")
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    try:
        assert entity_sizes.stored(home, "business") is None
        assert (
            entity_sizes.current(home, "business").height == world["stats"]["business"]["entities"]
        )
        assert entity_sizes.stored(home, "business") is not None
    finally:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _region_by_scanning(
    prev: pl.DataFrame, seeds: pl.Series, old_edges: pl.LazyFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The reference region: the seeds' entities closed over every old edge touching
    them (each step a scan of all edges), and the old edges with both ends inside."""
    ents = prev.filter(pl.col("mention_id").is_in(seeds.implode()))["entity_id"].unique()
    while True:
        members = prev.filter(pl.col("entity_id").is_in(ents.implode()))
        ids = members["mention_id"].implode()
        touching = old_edges.filter(
            pl.col("mention_id_l").is_in(ids) | pl.col("mention_id_r").is_in(ids)
        ).collect()
        ends = pl.concat([touching["mention_id_l"], touching["mention_id_r"]]).unique()
        more = prev.filter(pl.col("mention_id").is_in(ends.implode()))["entity_id"].unique()
        grown = pl.concat([ents, more]).unique()
        if grown.len() == ents.len():
            return members, touching.filter(
                pl.col("mention_id_l").is_in(ids) & pl.col("mention_id_r").is_in(ids)
            )
        ents = grown


def test_recorded_cross_edges_and_the_region_closure_over_them(world: dict) -> None:
    """The increment records the edges between entities of the map it wrote, with their
    weights (equal to computing them from every edge), and the region closed over them
    in memory is the region closed by scanning every edge; its old edges, taken from
    its entities' evidence and the recorded cross edges, are the edges the scan finds
    with both ends inside, weights included."""
    from linkage import cross as cross_edges
    from linkage.incremental import EDGE_COLUMNS, _region, _region_edges

    home = world["home"]
    for t in ENTITY_TYPES:
        entity_map = _entities(home, t).select("mention_id", "entity_id")
        edges = read_linkage(home, t, "edges").select(EDGE_COLUMNS)
        recorded = cross_edges.stored(home, t)
        assert recorded is not None, t
        computed = cross_edges.compute(edges, entity_map)
        assert recorded.columns == cross_edges.COLUMNS
        assert recorded.sort(cross_edges.ENDS).equals(computed.sort(cross_edges.ENDS)), t
    # Persons: the guard and the cannot-link leave edges between entities.
    entity_map = _entities(home, "person").select("mention_id", "entity_id")
    edges = read_linkage(home, "person", "edges").select(EDGE_COLUMNS)
    recorded = cross_edges.stored(home, "person")
    assert recorded.height > 0
    evidence_all = read_linkage(home, "person", "evidence").collect()
    seed_sets = [
        recorded["mention_id_l"].head(3),  # entities tied by crossing edges
        recorded["mention_id_r"].tail(2),
        entity_map["mention_id"].sample(50, seed=3),
    ]
    for seeds in seed_sets:
        by_scan, scan_edges = _region_by_scanning(entity_map, seeds, edges)
        by_cross = _region(entity_map, seeds, recorded)
        assert by_scan.sort("mention_id").equals(by_cross.sort("mention_id"))
        assert scan_edges.height > 0
        region_ids = by_cross["entity_id"].unique().implode()
        evidence = evidence_all.filter(pl.col("entity_id").is_in(region_ids))
        inside = _region_edges(evidence, recorded, by_cross["mention_id"])
        want = scan_edges.unique(subset=cross_edges.ENDS).sort(cross_edges.ENDS)
        assert inside.sort(cross_edges.ENDS).equals(want.select(EDGE_COLUMNS))


def test_guard_keys_among_those_looked_up_equal_a_lookup(world: dict) -> None:
    """The region's duplicate-free keys taken from those of the tentative clusters'
    mentions, and read for the others only, equal the keys read for the region whole:
    region inside, partly outside and wholly outside the mentions looked up."""
    import random

    from linkage.incremental import GUARD_COLUMNS, FeatureView, _keys_among
    from linkage.parts import linkage_parts
    from linkage.run import duplicate_free_keys

    home = world["home"]
    stored = read_linkage(home, "person", "features")
    over = stored.head(0).collect()
    view = FeatureView(
        stored, linkage_parts(home, "person", "features"), over, over["mention_id"], None
    )
    every = duplicate_free_keys(home, stored.select(GUARD_COLUMNS).collect())
    keyed = sorted(every["mention_id"].unique().to_list())
    unkeyed = sorted(
        stored.select("mention_id")
        .collect()
        .filter(~pl.col("mention_id").is_in(keyed))["mention_id"]
        .to_list()
    )
    assert len(keyed) > 40 and len(unkeyed) > 40
    rng = random.Random(5)
    with_keys, without = rng.sample(keyed, 40), rng.sample(unkeyed, 40)
    looked_up = pl.Series(with_keys[:20] + without[:20])
    others = with_keys[20:] + without[20:]
    keys = duplicate_free_keys(home, view.rows(looked_up, GUARD_COLUMNS), looked_up)
    for n_out in (0, 20, 40):
        ids = pl.Series(rng.sample(looked_up.to_list(), 20 if n_out < 40 else 0), dtype=pl.String)
        ids = pl.concat([ids, pl.Series(rng.sample(others, n_out), dtype=pl.String)])
        want = duplicate_free_keys(home, view.rows(ids, GUARD_COLUMNS), ids)
        got = _keys_among(home, view, keys, looked_up, ids)
        # Keys of mentions outside those looked up are among the wanted ones.
        outside = want.filter(~pl.col("mention_id").is_in(looked_up.implode()))
        assert (outside.height > 0) == (n_out > 0), n_out
        assert got.sort("mention_id").equals(want.sort("mention_id")), n_out
