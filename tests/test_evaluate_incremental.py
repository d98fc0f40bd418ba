"""The daily evaluation from kept sums (linkage.score_store): after an incremental
link, a truth-only day, a day with human decisions, the scores carried forward equal
a full scoring from scratch, every integer and the B-cubed sums to the last decimal;
whatever cannot be shown to follow from the kept sums (no sums, a full relink, a
missing or stale touched file or increment record, an increment not scored, a
rebuilt truth store, an expired change log, a tampered group file) is scored in full.

World: the session's linked world (``tests/linked_world.py``: 1,000 persons, 2 days),
copied. Timeline: scored in full; day 3 delivered and ingested, scored (the new
mentions unlisted: singletons); day 3 linked incrementally, scored; two decisions,
day 4 delivered, ingested and linked, scored. Copies taken on the way are the
starting points of the fallback tests."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from linked_world import LINKED, copy_of_linked_world
from test_evaluate_fast import assert_same_scores

import linkage.score_store as ss
from linkage.incremental import ENTITY_TYPES, link_incremental
from tessera.config import Home


def scratch(home: Home) -> dict[str, tuple[dict[str, Any] | None, dict[str, Any]]]:
    """Per entity type the scores and the sums of a full scoring with the truth built
    from scratch (not the store)."""
    from linkage.evaluate import (
        _base_table,
        cluster_totals,
        clusters_sql,
        create_groups,
        entity_totals,
        score_clusters,
        scoring_duckdb,
    )

    out = {}
    with scoring_duckdb(home) as con:
        for t in ENTITY_TYPES:
            path = home.lake / "linkage" / f"{t}_clusters.parquet"
            create_groups(con, "_g", _base_table(con, home, t), clusters_sql(path))
            totals = cluster_totals(con, "_g") | entity_totals(con, "_g")
            out[t] = (score_clusters(con, home, path, t), totals)
    return out


def evaluate_and_check(home: Home, scored: str, reason: str = "") -> dict[str, Any]:
    """evaluate_all (daily: no detail, no naive rule); every type scored as ``scored``
    (its reason containing ``reason``), the scores and the kept sums exactly those of
    a full scoring from scratch."""
    from linkage.report import evaluate_all

    got = evaluate_all(home, detail=False, naive=False)
    want = scratch(home)
    for t in ENTITY_TYPES:
        assert got[t]["scored"] == scored, (t, got[t]["scoring"])
        assert reason in got[t]["scoring"]["reason"], (t, got[t]["scoring"])
        scores, totals = want[t]
        assert scores is not None and scores["pairwise"]["true_pairs"] > 0
        assert_same_scores(got[t]["model"], scores, t)
        # Not just to 1e-12: the kept integers and decimals are the full scoring's.
        kept = ss.read_manifest(home, t)
        assert kept is not None
        assert {k: Decimal(v) if k in ("bp", "br") else v for k, v in kept["totals"].items()} == (
            totals
        )
        assert kept["scored"] == scored
    return got


def link_day(home: Home) -> dict[str, Any]:
    """``link_incremental`` for each entity type; it records its increment
    (``linkage.score_store.record_increment``) for the states it wrote."""
    stats = {}
    for t in ENTITY_TYPES:
        stats[t] = link_incremental(home, t)
        rec = ss.read_increment(home, t)
        assert rec is not None
        assert rec["after"] == ss.map_state(home, t)
        assert rec["touched"] == ss.file_state(ss.touched_file(home, t))
        # The touched entities' map rows, as written: those of the map.
        assert rec["members"] == ss.file_state(ss.members_file(home, t))
        touched = pl.read_parquet(ss.touched_file(home, t))["entity_id"]
        want = pl.read_parquet(home.lake / "linkage" / f"{t}_entities.parquet").filter(
            pl.col("entity_id").is_in(touched.implode())
        )
        got = pl.read_parquet(ss.members_file(home, t))
        assert got.sort("mention_id").equals(want.sort("mention_id"))
    return stats


def deliver(home: Home, day: int) -> None:
    """Simulate day ``day`` (0-based) of the linked world and ingest it."""
    from connectors.catalog import load_specs
    from connectors.ingest import ingest
    from simulation.run import simulate
    from simulation.world import WorldConfig

    mp = pytest.MonkeyPatch()
    mp.delenv("TESSERA_PG_URL", raising=False)
    mp.delenv("TESSERA_MYSQL_URL", raising=False)
    try:
        simulate(home, WorldConfig(**{**LINKED, "days": day + 1}), days=range(day, day + 1))
    finally:
        mp.undo()
    ingest(home, load_specs(home.sources_dir))


def snapshot(home: Home, root: Path) -> Home:
    shutil.copytree(home.root, root / "home")
    return Home(root / "home")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The timeline of the module docstring, with the results and snapshots."""
    import linkage.decisions as dec

    home = copy_of_linked_world(tmp_path_factory, "eval_incremental")
    out: dict[str, Any] = {"home": home}
    out["full"] = evaluate_and_check(home, "full", "no stored sums")

    deliver(home, LINKED["days"])
    out["unlinked"] = evaluate_and_check(home, "incremental")
    out["linked_not_scored"] = snapshot(home, tmp_path_factory.mktemp("before_link"))
    out["link"] = link_day(home)
    out["after_link_not_scored"] = snapshot(home, tmp_path_factory.mktemp("after_link"))
    out["day3"] = evaluate_and_check(home, "incremental", "increment")

    ent = pl.read_parquet(home.lake / "linkage" / "person_entities.parquet")
    sizes = ent.group_by("entity_id").len().sort(["len", "entity_id"], descending=[True, False])
    big = ent.filter(pl.col("entity_id") == sizes["entity_id"][0]).sort("mention_id")
    out["cannot"] = dec.record_decision(
        home, big["mention_id"][0], big["mention_id"][-1], same=False, reason="test: two people"
    )
    out["must"] = dec.record_decision(
        home, sizes["entity_id"][1], sizes["entity_id"][2], same=True, reason="test: one person"
    )
    deliver(home, LINKED["days"] + 1)
    out["link4"] = link_day(home)
    out["day4"] = evaluate_and_check(home, "incremental", "increment")
    return out


def test_the_first_scoring_is_full_and_later_days_carry_the_sums(world: dict) -> None:
    """The new mentions of a day are scored before they are linked (as singletons) and
    after; only the changed clusters are rescored."""
    assert world["unlinked"]["person"]["scoring"]["clusters_rescored"] > 0
    for day in ("day3", "day4"):
        for t in ENTITY_TYPES:
            how = world[day][t]["scoring"]
            assert 0 < how["clusters_rescored"] < world[day][t]["model"]["clusters"] / 2, how
    assert (
        world["day3"]["person"]["model"]["mentions"] > world["full"]["person"]["model"]["mentions"]
    )
    assert world["link"]["person"]["new_mentions"] > 0


def test_human_decisions_split_and_merge_in_the_increment(world: dict) -> None:
    """The day-4 link applied a cannot-link (a split of the largest entity) and a
    must-link (a merge of two others), and the carried sums still equal the full
    scoring (checked in the fixture)."""
    ent = pl.read_parquet(world["home"].lake / "linkage" / "person_entities.parquet")
    for d, together in ((world["cannot"], False), (world["must"], True)):
        ids_a = ent.filter(pl.col("mention_id").is_in(list(d.mentions_a)))["entity_id"].unique()
        ids_b = ent.filter(pl.col("mention_id").is_in(list(d.mentions_b)))["entity_id"].unique()
        assert ids_a.len() == ids_b.len() == 1
        assert (ids_a[0] == ids_b[0]) is together, d.kind
    assert world["day4"]["person"]["scored"] == "incremental"


def test_nothing_changed_is_carried_as_is(world: dict, tmp_path: Path) -> None:
    home = snapshot(world["home"], tmp_path)
    got = evaluate_and_check(home, "incremental", "nothing changed")
    for t in ENTITY_TYPES:
        assert got[t]["model"] == world["day4"][t]["model"]
        assert got[t]["scoring"]["clusters_rescored"] == 0


def _unlink(home: Home, name: str) -> None:
    for t in ENTITY_TYPES:
        (home.lake / "linkage" / name.format(t=t)).unlink()


def _relink(home: Home) -> None:
    from linkage.report import link_all

    link_all(home)


def _no_new_link(home: Home) -> None:
    """A second increment (nothing new) before the first was scored."""
    link_day(home)


def _rebuild_truth(home: Home) -> None:
    staged = sorted((home.lake / "staged").glob("*/*/*.records.parquet"))[0]
    st = staged.stat()
    os.utime(staged, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def _touched_rewritten(home: Home) -> None:
    for t in ENTITY_TYPES:
        path = ss.touched_file(home, t)
        pl.read_parquet(path).head(1).write_parquet(path)


def _tamper_groups(home: Home) -> None:
    for p in ss.store_dir(home).glob("groups_*.parquet"):
        pl.read_parquet(p).head(3).write_parquet(p)


def _clusters_edited(home: Home) -> None:
    """The clusters file rewritten after the increment, by something else."""
    for t in ENTITY_TYPES:
        path = home.lake / "linkage" / f"{t}_clusters.parquet"
        pl.read_parquet(path).write_parquet(path)


CASES: dict[str, tuple[Callable[[Home], None], str]] = {
    "touched file missing": (lambda h: _unlink(h, "{t}_touched.parquet"), "touched file"),
    "touched file rewritten": (_touched_rewritten, "touched file"),
    "no increment record": (lambda h: _unlink(h, "{t}_touched.json"), "no increment"),
    "full relink": (_relink, "after the last increment"),
    "clusters edited": (_clusters_edited, "after the last increment"),
    "two increments": (_no_new_link, "did not start from the scored"),
    "truth rebuilt": (_rebuild_truth, "truth store was rebuilt"),
    "groups tampered": (_tamper_groups, "no stored sums"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_what_cannot_be_carried_is_scored_in_full(world: dict, case: str, tmp_path: Path) -> None:
    """From the state after the day-3 link (the sums of the day before): each case
    scores in full, with the full scoring's figures, and the next run (nothing new)
    carries those."""
    home = snapshot(world["after_link_not_scored"], tmp_path)
    change, reason = CASES[case]
    change(home)
    evaluate_and_check(home, "full", reason)
    evaluate_and_check(home, "incremental", "nothing changed")


def test_an_expired_change_log_is_scored_in_full(
    world: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The truth store keeps no change older than MAX_CHANGE_GENERATIONS generations:
    sums of an older generation are not carried."""
    import linkage.truth as truth

    home = snapshot(world["linked_not_scored"], tmp_path)
    deliver(home, LINKED["days"] + 1)  # new files: the truth store updates
    monkeypatch.setattr(truth, "MAX_CHANGE_GENERATIONS", 0)
    evaluate_and_check(home, "full", "no longer logged")


def test_the_increment_record_names_what_the_link_changed(world: dict) -> None:
    """The record's states are the files the link wrote; its region and the touched
    entities cover every mention whose entity changed."""
    home = world["after_link_not_scored"]
    for t in ENTITY_TYPES:
        rec = ss.read_increment(home, t)
        assert rec is not None and rec["after"] == ss.map_state(home, t)
        assert rec["touched"] == ss.file_state(ss.touched_file(home, t))
        assert rec["before"] != rec["after"]
        assert json.loads(ss.increment_file(home, t).read_text())["region"] == rec["region"]


def _members_rewritten(home: Home) -> None:
    for t in ENTITY_TYPES:
        path = ss.members_file(home, t)
        pl.read_parquet(path).head(1).write_parquet(path)


@pytest.mark.parametrize(
    "change",
    [
        lambda h: _unlink(h, "{t}_touched_members.parquet"),
        _members_rewritten,
        None,  # as written, every relabelled mention outside looked up by a join
    ],
    ids=["members missing", "members rewritten", "many outside"],
)
def test_the_touched_members_or_a_scan_give_the_full_scores(
    world: dict, change: Callable[[Home], None] | None, tmp_path: Path, monkeypatch
) -> None:
    """From the state after the day-3 link: the touched entities' rows from the link's
    file (the relabelled mentions outside them looked up in the map by a join, not by
    value), or from a scan of the map when the file is missing or not the one recorded,
    carry the sums to the full scoring's figures."""
    home = snapshot(world["after_link_not_scored"], tmp_path)
    if change is None:
        monkeypatch.setattr(ss, "MAX_LOOKUP", 0)
    else:
        change(home)
    evaluate_and_check(home, "incremental", "increment")
