"""The truth mapping kept between runs (linkage.truth.update_truth_store): extended
file by file it equals the mapping built from scratch, every column; a changed or
removed covered file, or a new truth row that precedes a stored one, rebuilds it;
files are replaced atomically and one writer works at a time."""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from linked_world import copy_of_linked_world

from tessera.config import Home

TYPES = ("person", "business")


def scratch_tables(home: Home) -> dict[str, pl.DataFrame]:
    """The mapping and each entity type's labelled mentions, built from scratch."""
    from linkage.evaluate import _base_table, scoring_duckdb
    from linkage.truth import create_mention_truth

    with scoring_duckdb(home) as con:
        create_mention_truth(con, home)
        out = {"mention_truth": con.sql("SELECT * FROM mention_truth").pl()}
        for t in TYPES:
            out[t] = con.sql(f"SELECT * FROM {_base_table(con, home, t)}").pl()
    return out


def stored_tables(home: Home) -> tuple[dict[str, Any], dict[str, pl.DataFrame]]:
    """Update the store; its manifest (with ``status``) and the same tables from it."""
    from linkage.run import linkage_duckdb
    from linkage.truth import stored_truth_views

    with linkage_duckdb() as con:
        manifest = stored_truth_views(con, home)
        out = {"mention_truth": con.sql("SELECT * FROM mention_truth").pl()}
        for t in TYPES:
            out[t] = con.sql(f"SELECT * FROM labelled_{t}").pl()
    return manifest, out


def assert_same_tables(got: dict[str, pl.DataFrame], want: dict[str, pl.DataFrame]) -> None:
    assert list(got) == list(want)
    for name, frame in want.items():
        assert got[name].schema == frame.schema, name
        assert got[name].sort("mention_id").equals(frame.sort("mention_id")), name


def assert_store_is_scratch(
    home: Home, status: str, before: dict[str, pl.DataFrame] | None = None
) -> dict[str, Any]:
    """Update the store, check its status and that it equals the scratch tables, and
    that it counts each type's labelled mentions; with ``before`` (the scratch tables
    of the previous generation, ``scratch`` of what this returned), that this
    generation's change log names exactly the mentions whose label is new or differs.
    Returns the manifest, with the mapping's row count as ``mapped`` and the tables."""
    manifest, got = stored_tables(home)
    assert manifest["status"] == status, manifest["reason"]
    want = scratch_tables(home)
    assert want["mention_truth"].height > 0 and want["person"].height > 0
    assert_same_tables(got, want)
    assert manifest["labels"] == {t: want[t].height for t in TYPES}
    assert_names_count_labels(home, manifest)
    if before is not None:
        for t in TYPES:
            cols = ["mention_id", "entity_id", "collapsed", "amb"]
            differ = want[t].select(cols).join(before[t].select(cols), on=cols, how="anti")
            logged = [e for e in manifest["changes"][t] if e[4] == manifest["generation"]]
            store = home.lake / "linkage" / "mention_truth"
            names = pl.concat(
                [pl.read_parquet(store / e[0]) for e in logged]
                or [pl.DataFrame(schema={"mention_id": pl.String})]
            )["mention_id"]
            assert sorted(names) == sorted(differ["mention_id"]), t
    return manifest | {"mapped": want["mention_truth"].height, "scratch": want}


def assert_names_count_labels(home: Home, manifest: dict[str, Any]) -> None:
    """The stored per (name key, entity) counts (``names_<type>``, what ``amb`` is
    updated from) are the stored labels' counts; a count gone to 0 may stay as 0."""
    from linkage.run import linkage_duckdb
    from linkage.truth import _table_sql, store_dir

    d = store_dir(home)
    with linkage_duckdb() as con:
        for t in TYPES:
            names = con.sql(
                f"SELECT * FROM ({_table_sql(d, f'names_{t}', manifest['tables'][f'names_{t}'])})"
                " WHERE n > 0"
            ).pl()
            labels = con.sql(
                f"SELECT name_key, entity_id, count(*) AS n FROM "
                f"({_table_sql(d, f'labels_{t}', manifest['tables'][f'labels_{t}'])}) "
                "WHERE name_key IS NOT NULL GROUP BY ALL"
            ).pl()
            assert names.schema == labels.schema, t
            assert names.sort(["name_key", "entity_id"]).equals(
                labels.sort(["name_key", "entity_id"])
            ), t


def _hold(home: Home, held: Path, paths: list[Path]) -> list[tuple[Path, Path]]:
    """Move ``paths`` out of ``home`` (kept with their times) to bring back later."""
    moves = []
    for p in paths:
        dst = held / p.relative_to(home.root)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(p, dst)
        moves.append((dst, p))
    return moves


def _bring_back(moves: list[tuple[Path, Path]]) -> None:
    for src, dst in moves:
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(src, dst)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    return copy_of_linked_world(tmp_path_factory, "truth_store")


def test_extended_day_by_day_equals_scratch(
    home: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Day 1 alone; then day 2's truth before its records (known keys vote once their
    record's truth arrives); then day 2's staged files; then a day that delivers
    day 1's records and truth again (nothing counted twice). With two parts at most
    the tables are also merged on the way."""
    import linkage.truth as truth

    day2_truth = sorted(home.truth.glob("*/2026-01-02.parquet"))
    day2_staged = sorted((home.lake / "staged").glob("*/2026-01-02/*.parquet"))
    assert day2_truth and day2_staged
    truth_moves = _hold(home, tmp_path / "held", day2_truth)
    staged_moves = _hold(home, tmp_path / "held", day2_staged)

    first = assert_store_is_scratch(home, "built")
    assert first["changes"] == {t: [] for t in TYPES}
    _bring_back(truth_moves)
    # Day 2's truth makes some name keys shared: the name-only mentions that carry them
    # are read by a join here (by a list of values in test_writes_are_atomic...).
    monkeypatch.setattr(truth, "MAX_IN_LIST", 0)
    second = assert_store_is_scratch(home, "updated", first["scratch"])
    monkeypatch.setattr(truth, "MAX_IN_LIST", 2_000)
    assert second["lineage"] == first["lineage"]
    assert second["changes_from"] == first["generation"]
    assert any(second["changes"][t] for t in TYPES)
    # The new first truth rows are a second part, not the table rewritten; staged
    # records already known got their truth.
    assert len(second["tables"]["first"]) == 2
    assert second["mapped"] > first["mapped"]
    _bring_back(staged_moves)
    monkeypatch.setattr(truth, "MAX_PARTS", 1)  # every changed table merged into one
    third = assert_store_is_scratch(home, "updated", second["scratch"])
    assert third["generation"] == first["generation"] + 2
    assert len(third["tables"]["keys"]) == 1 and len(third["tables"]["labels_person"]) == 1
    assert third["tables"]["keys"][0][3] > first["tables"]["keys"][0][3]

    monkeypatch.setattr(truth, "MAX_PARTS", 16)
    src_day = sorted((home.lake / "staged").glob("*/2026-01-01"))[0]
    again = src_day.with_name("2026-01-05")
    shutil.copytree(src_day, again)
    for p in again.iterdir():
        p.rename(p.with_name(p.name.replace("20260101", "20260105")))
    src_truth = home.truth / src_day.parent.name / "2026-01-01.parquet"
    shutil.copy(src_truth, src_truth.with_name("2026-01-05.parquet"))
    fourth = assert_store_is_scratch(home, "updated", third["scratch"])
    assert all(len(parts) <= 2 for parts in fourth["tables"].values())
    assert assert_store_is_scratch(home, "current")["generation"] == fourth["generation"]
    store = truth.store_dir(home)
    # Only the files of this generation's manifest and of the previous one are kept
    # (a reader may have opened that); no temporary file.
    referenced = {
        name
        for group in ("tables", "changes")
        for parts in fourth[group].values()
        for name, *_ in parts
    }
    assert referenced <= {p.name for p in store.iterdir()}
    assert not list(store.glob("*.tmp"))
    for p in store.glob("*.parquet"):
        assert p.name in referenced or int(p.name.split(".")[1]) >= fourth["generation"] - 1


@pytest.fixture
def own_home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    return copy_of_linked_world(tmp_path_factory, "truth_store_own")


def test_a_changed_or_removed_file_rebuilds(own_home: Home) -> None:
    """A rebuild starts a new lineage with no change log (what changed since an
    earlier generation is not known)."""
    first = assert_store_is_scratch(own_home, "built")
    staged = sorted((own_home.lake / "staged").glob("*/*/*.records.parquet"))
    st = staged[0].stat()
    os.utime(staged[0], ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    manifest = assert_store_is_scratch(own_home, "built")
    assert manifest["reason"].endswith("changed")
    assert manifest["lineage"] != first["lineage"]
    assert manifest["changes_from"] == manifest["generation"]
    # A records file gone: its votes are gone too.
    staged[-1].unlink()
    manifest = assert_store_is_scratch(own_home, "built")
    assert manifest["reason"].endswith("disappeared")
    # A stored table file replaced behind the manifest's back: not trusted.
    store = own_home.lake / "linkage" / "mention_truth"
    labels = sorted(store.glob("labels_person.*.parquet"))[-1]
    pl.read_parquet(labels).head(3).write_parquet(labels)
    assert_store_is_scratch(own_home, "built")
    # A manifest that does not list a table (a store of another layout): not trusted.
    path = store / "manifest.json"
    m = json.loads(path.read_text())
    del m["tables"]["names_person"]
    path.write_text(json.dumps(m))
    assert_store_is_scratch(own_home, "built")


def test_an_earlier_truth_row_rebuilds(own_home: Home) -> None:
    """A truth file that sorts before a covered one and gives a stored record another
    entity takes its place: the store is rebuilt, and equals the scratch mapping."""
    assert_store_is_scratch(own_home, "built")
    day1 = sorted(own_home.truth.glob("*/2026-01-01.parquet"))[0]
    rows = pl.read_parquet(day1).head(5).with_columns(pl.lit("P-someone-else").alias("entity_id"))
    rows.write_parquet(day1.with_name("2025-12-31.parquet"))
    manifest = assert_store_is_scratch(own_home, "built")
    assert "precedes" in manifest["reason"]
    mt = scratch_tables(own_home)["mention_truth"]
    assert mt.filter(pl.col("entity_id") == "P-someone-else").height > 0


def test_writes_are_atomic_and_serialised(
    own_home: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that fails midway leaves the last manifest and its files valid; two
    writers at once (each waits for the lock) leave one consistent store."""
    import linkage.truth as truth

    later = sorted(own_home.truth.glob("*/2026-01-02.parquet"))
    moves = _hold(own_home, tmp_path / "held", later)
    built = assert_store_is_scratch(own_home, "built")
    _bring_back(moves)

    real = os.replace

    def failing(src: Path, dst: Path) -> None:
        if str(dst).endswith(".parquet") and "labels_person" in str(dst):
            raise OSError("disk full")
        real(src, dst)

    monkeypatch.setattr(truth.os, "replace", failing)
    with pytest.raises(OSError, match="disk full"):
        stored_tables(own_home)
    monkeypatch.setattr(truth.os, "replace", real)
    kept = truth.read_manifest(own_home)
    assert kept is not None and kept["generation"] == built["generation"]

    results: list[dict[str, Any]] = []

    def update() -> None:
        results.append(stored_tables(own_home)[0])

    threads = [threading.Thread(target=update) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r["status"] for r in results) == ["current", "updated"]
    assert_store_is_scratch(own_home, "current")


def test_evaluate_all_scores_equal_the_scratch_scores(own_home: Home) -> None:
    """evaluate_all (stored truth, built then current) gives the figures of scoring
    from scratch."""
    from test_evaluate_fast import assert_same_scores

    from linkage.evaluate import score_clusters, scoring_duckdb
    from linkage.report import evaluate_all

    for _ in range(2):
        got = evaluate_all(own_home, detail=False, naive=False)
        with scoring_duckdb(own_home) as con:
            for t in TYPES:
                path = own_home.lake / "linkage" / f"{t}_clusters.parquet"
                assert_same_scores(got[t]["model"], score_clusters(con, own_home, path, t))


@pytest.mark.parametrize(
    ("records", "ranges"),
    [
        ([], []),
        ([("a", "A2"), ("a", "A9"), ("b", "B1")], [["A2", "A9"], ["B1", "B1"]]),
        # a source whose keys fall inside another's range: one range
        ([("a", "A1"), ("a", "C9"), ("b", "B1"), ("b", "B5")], [["A1", "C9"]]),
        ([("a", "A1"), ("a", "B3"), ("b", "B2"), ("b", "B7")], [["A1", "B7"]]),
    ],
)
def test_record_ranges_keep_every_record(
    records: list[tuple[str, str]], ranges: list[list[str]]
) -> None:
    """The record-key filter a narrow read of the stored first rows and vote keys is
    put on: per source the smallest to the largest key, overlapping ranges merged; it
    keeps every record it was made from."""
    import duckdb

    from linkage.truth import _record_ranges

    con = duckdb.connect()
    con.execute("CREATE TABLE r (source_id VARCHAR, record_key VARCHAR)")
    if records:
        con.executemany("INSERT INTO r VALUES (?, ?)", records)
    where, params = _record_ranges(con, "r")
    assert [params[i : i + 2] for i in range(0, len(params), 2)] == ranges
    kept = con.execute(f"SELECT count(*) FROM r {where}", params).fetchall()[0][0]
    assert kept == len(records)
