"""Incremental publish: the previous warehouse updated for the entities a day touched
holds exactly what a full publish builds; anything it cannot follow falls back to a
full build; a failure leaves the previous warehouse.

World: a copy of the session's linked world (``tests/linked_world.py``), published in
full (the base). Then a field correction and two human decisions (a cannot-link
splitting the largest person, a must-link merging two others) are recorded, day 3 is
delivered, ingested and linked incrementally (``link_incremental``), so the day
brings new mentions, grown, new, merged and split entities and a correction."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import duckdb
import polars as pl
import pytest
from linked_world import (
    COLUMNS_SQL,
    INDEXES_SQL,
    assert_day_edits_shown,
    copy_of_linked_world,
    file_differences,
    file_rows,
    next_linked_day,
    record_day_edits,
)

from tessera.config import Home
from warehouse import incremental, prefetch, schema
from warehouse.publish import building_path, publish

UNCOMPARED = ("runs", "publish_inputs")
# Compared by what search finds in them: an incremental publish appends the variants of
# new references to name_variants_added and deletes none.
VARIANTS = ("name_variants", "name_variants_added")
LIVE_VARIANTS = """
    SELECT DISTINCT variant, name_ref FROM (
        SELECT * FROM {db}.name_variants UNION ALL SELECT * FROM {db}.name_variants_added)
    WHERE name_ref IN (SELECT name_ref FROM {db}.name_refs)"""


def _counted(out: dict) -> dict[str, int]:
    """A publish's row counts, but the name variants' (:func:`_differences` compares
    what search finds in them)."""
    return {t: n for t, n in out["counts"].items() if t not in VARIANTS}


def _differences(a: Path, b: Path) -> dict[str, tuple[int, int]]:
    """Per table (all but runs and publish_inputs): rows only in ``a``, rows only in
    ``b`` (multisets: every column, duplicates counted); plus the columns and types,
    indexes and views of both files; the name variants as the variants of the
    references each file holds."""
    out = file_differences(
        a,
        b,
        [t for t in schema.TABLES if t not in UNCOMPARED + VARIANTS],
        [COLUMNS_SQL, INDEXES_SQL],
    )
    con = duckdb.connect()
    try:
        con.execute("ATTACH ? AS a (READ_ONLY)", [str(a)])
        con.execute("ATTACH ? AS b (READ_ONLY)", [str(b)])
        only = [
            con.execute(
                f"SELECT count(*) FROM ({LIVE_VARIANTS.format(db=x)} "
                f"EXCEPT {LIVE_VARIANTS.format(db=y)})"
            ).fetchone()[0]
            for x, y in (("a", "b"), ("b", "a"))
        ]
    finally:
        con.close()
    if any(only):
        out["name_variants (of the references held)"] = (only[0], only[1])
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The base warehouse (day 2, full), then day 3 linked incrementally with a
    correction and two decisions; an incremental and a full publish of it."""
    home = copy_of_linked_world(tmp_path_factory, "publish_incremental")
    publish(home)
    base = home.root / "base.duckdb"
    shutil.copyfile(home.warehouse, base)

    edits = record_day_edits(home)
    next_linked_day(home)

    day3 = home.root.parent / "day3"
    shutil.copytree(home.root, day3)  # the lake as the day left it, for the fallbacks
    # The copy of the base made ahead, as a daily run's linkage starts it: the build
    # takes it (and this test compares what it built with a full build).
    assert prefetch.start(base) == "started"
    inc = publish(home, base=base)
    assert not prefetch.prepared_path(base).exists()
    inc_path = home.root / "incremental.duckdb"
    shutil.copyfile(home.warehouse, inc_path)
    full = publish(home)
    full_path = home.root / "full.duckdb"
    shutil.copyfile(home.warehouse, full_path)
    return {
        "home": home,
        "day3": day3,
        "base": base,
        "inc": inc,
        "inc_path": inc_path,
        "full": full,
        "full_path": full_path,
        **edits,
    }


def test_incremental_publish_equals_full(world: dict) -> None:
    from linkage import term_counts

    # The day's link recorded the term-frequency counts the update took.
    for c in ("name_native", "name_py"):
        assert term_counts.stored(world["home"], "person", c) is not None, c
    inc, full = world["inc"], world["full"]
    print("incremental:", inc["seconds"], inc["steps"], "full:", full["seconds"])
    assert inc["mode"] == "incremental", inc["full_reason"]
    assert full["mode"] == "full"
    entities = inc["counts"]["entities"]
    assert 0 < inc["touched"] < entities / 4
    assert _differences(world["inc_path"], world["full_path"]) == {}

    assert _counted(inc) == _counted(full)


def test_the_links_record_covers_every_moved_mention(world: dict) -> None:
    """The update takes the entities whose mentions moved from the day's link record
    (the publish above used it): they cover both entities of every mention whose
    entity differs between the map and the base's memberships. A record of another
    map than the base's is not used."""
    import dataclasses

    from warehouse.publish import map_files

    home, base = world["home"], world["base"]
    plan_ = incremental.plan(home, base)
    linked = incremental._linked_changes(home, plan_)
    assert linked is not None
    maps = ", ".join(f"'{p}'" for p in map_files(home))
    moved = file_rows(
        base,
        f"""SELECT DISTINCT unnest([n.entity_id, o.entity_id]) FROM read_parquet([{maps}]) n
        FULL OUTER JOIN memberships o USING (mention_id)
        WHERE n.entity_id IS DISTINCT FROM o.entity_id""",
    )
    moved = {e for (e,) in moved if e is not None}
    assert moved and moved <= set(linked["entity_id"])
    other = {k: [size, mtime + 1] for k, (size, mtime) in plan_.maps.items()}
    assert incremental._linked_changes(home, dataclasses.replace(plan_, maps=other)) is None


def test_the_day_merged_split_and_corrected(world: dict) -> None:
    """The touched set covered what the day did: the split entity, the merged pair,
    the corrected entity (its correction applied by the update)."""
    base, inc = world["base"], world["inc_path"]
    assert_day_edits_shown(base, inc, world)
    assert file_rows(inc, "SELECT count(*) FROM corrections WHERE applied")[0][0] == 1


def test_a_later_reference_date_and_a_second_update(world: dict, tmp_path: Path) -> None:
    """Incrementally again from the incremental warehouse (rows updated once are
    deleted again), with a reference date a year on (every list status recomputed):
    the same as a full publish on that date."""
    from warehouse.corrections import record_correction

    home = Home(tmp_path / "home")
    shutil.copytree(world["day3"], home.root)
    shutil.copyfile(world["inc_path"], home.warehouse)
    target = file_rows(
        home.warehouse, "SELECT entity_id FROM entities WHERE entity_type = 'person' LIMIT 1"
    )[0][0]
    record_correction(home, target, "name_latin", "zhang san", who="tester", reason="test")
    later = dt.date.fromisoformat(world["inc"]["reference_date"]) + dt.timedelta(days=400)
    base = home.root / "base.duckdb"
    shutil.copyfile(home.warehouse, base)
    inc = publish(home, later, base=base)
    assert inc["mode"] == "incremental", inc["full_reason"]
    assert inc["touched"] == 1
    inc_path = home.root / "incremental.duckdb"
    shutil.copyfile(home.warehouse, inc_path)
    full = publish(home, later)
    assert _differences(inc_path, home.warehouse) == {}
    assert _counted(full) == _counted(inc)
    statuses = dict(file_rows(inc_path, "SELECT status, count(*) FROM list_entries GROUP BY ALL"))
    assert statuses.get("expired", 0) > 0


def test_a_full_relink_means_a_full_build(world: dict, tmp_path: Path) -> None:
    from linkage.report import link_all

    home = Home(tmp_path / "home")
    shutil.copytree(world["day3"], home.root)
    link_all(home)
    out = publish(home, base=world["base"])
    assert out["mode"] == "full"
    assert "relinked in full" in out["full_reason"]
    assert out["touched"] is None


def test_a_rewritten_staged_file_means_a_full_build(world: dict, tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    shutil.copytree(world["day3"], home.root)
    old = sorted((home.lake / "staged").glob("*/*/*.records.parquet"))[0]
    pl.read_parquet(old).write_parquet(old)  # the same rows, written again
    out = publish(home, base=world["base"])
    assert out["mode"] == "full"
    assert "rewritten" in out["full_reason"]


def test_too_many_touched_entities_mean_a_full_build(world: dict, tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    shutil.copytree(world["day3"], home.root)
    out = publish(home, base=world["base"], max_touched=0.001)
    assert out["mode"] == "full"
    assert "touched" in out["full_reason"]
    assert _differences(home.warehouse, world["full_path"]) == {}


def test_a_failed_update_leaves_the_previous_warehouse(
    world: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = Home(tmp_path / "home")
    shutil.copytree(world["day3"], home.root)
    shutil.copyfile(world["base"], home.warehouse)
    before = home.warehouse.read_bytes()
    real = incremental._replace_rows

    def dying(con: duckdb.DuckDBPyConnection, table: str, cond: str) -> None:
        real(con, table, cond)
        if table == "facts":  # half the tables updated ...
            raise RuntimeError("disk full")  # ... then the update dies

    monkeypatch.setattr(incremental, "_replace_rows", dying)
    with pytest.raises(RuntimeError, match="disk full"):
        publish(home, base=home.warehouse)
    assert home.warehouse.read_bytes() == before
    assert not building_path(home).exists()
    assert not building_path(home).with_name(building_path(home).name + ".wal").exists()


def test_publish_records_its_inputs(world: dict) -> None:
    rows = file_rows(
        world["inc_path"], "SELECT kind, path, size, modified, stamp FROM publish_inputs"
    )
    kinds = {r[0] for r in rows}
    assert {"staged:mentions", "staged:records", "map", "evidence:person", "features:person"} <= (
        kinds
    )
    assert {"fingerprint", "reference_date", "contributions"} <= kinds
    home = world["home"]
    staged = {str(p.relative_to(home.lake)) for p in home.lake.glob("staged/*/*/*.parquet")}
    assert staged == {r[1] for r in rows if r[0].startswith("staged:")}


def test_a_new_snapshot_delivery(world: dict, tmp_path: Path) -> None:
    """A snapshot list delivers again a week later with a fifth of its entries gone:
    the entities of the old and the new delivery are rebuilt (their list entries
    leave, their facts move), as a full publish builds them."""
    from connectors.catalog import load_specs

    home = Home(tmp_path / "home")
    shutil.copytree(world["day3"], home.root)
    base = home.root / "base.duckdb"
    shutil.copyfile(world["full_path"], base)
    snapshots = {
        s.id for s in load_specs(home.sources_dir) if s.cadence == "snapshot" and s.database is None
    }
    latest = {}
    for source in sorted(snapshots):
        files = sorted((home.lake / "staged" / source).glob("*/*.records.parquet"))
        if files:
            rows = pl.read_parquet(files)
            rows = rows.filter(pl.col("delivered") == pl.col("delivered").max())
            if rows["list_type"].is_not_null().any():
                latest[source] = rows
    source, rows = min(latest.items(), key=lambda kv: (kv[1].height, kv[0]))
    day = rows["delivered"].max() + dt.timedelta(days=7)
    kept = rows.with_row_index().filter(pl.col("index") % 5 != 0).drop("index")
    folder = home.lake / "staged" / source / day.isoformat()
    folder.mkdir()
    kept.with_columns(pl.lit(day).alias("delivered")).write_parquet(
        folder / f"{source}_{day:%Y%m%d}.records.parquet"
    )

    inc = publish(home, base=base)
    assert inc["mode"] == "incremental", inc["full_reason"]
    assert inc["reference_date"] == day.isoformat()
    assert inc["touched"] >= rows["mention_id"].n_unique() * 0.5
    inc_path = home.root / "incremental.duckdb"
    shutil.copyfile(home.warehouse, inc_path)
    publish(home)
    assert _differences(inc_path, home.warehouse) == {}
    n = file_rows(inc_path, "SELECT count(*) FROM list_entries WHERE source_id = ?", [source])
    assert n == [(kept.filter(pl.col("list_type").is_not_null()).height,)]


def test_the_swap_checks_look_at_the_rebuilt_entities(world: dict, tmp_path: Path) -> None:
    """Against its base, an incremental warehouse's change summary is computed over the
    rebuilt entities and equals the one over both whole maps; its smoke checks look
    at those entities and still catch a broken one. Against any other file (a full
    build), both look at everything."""
    from tessera import quality as qc

    base, inc, full = world["base"], world["inc_path"], world["full_path"]
    whole = qc.entity_changes(qc.membership_map(base), qc.membership_map(inc))
    assert qc.warehouse_changes(base, inc) == whole
    assert whole["new"] and whole["grown"] and whole["merged"] and whole["split"]
    assert qc.warehouse_changes(base, full) == whole  # the full build: every row compared
    smoke = qc.warehouse_smoke(inc, base, 0.2)
    assert smoke["ok"] and smoke["scope"].endswith("rebuilt from the live warehouse")
    assert qc.warehouse_smoke(full, base, 0.2)["scope"] == "every entity"

    # A rebuilt entity that lost its memberships, and a mention in two entities.
    broken = tmp_path / "broken.duckdb"
    shutil.copyfile(inc, broken)
    con = duckdb.connect(str(broken))
    lost, other = (
        r[0]
        for r in con.execute(
            "SELECT entity_id FROM publish_touched ORDER BY entity_id LIMIT 2"
        ).fetchall()
    )
    con.execute("DELETE FROM memberships WHERE entity_id = ?", [lost])
    con.execute(
        "INSERT INTO memberships SELECT * REPLACE (? AS entity_id) FROM memberships "
        "WHERE entity_id = ? LIMIT 1",
        [lost, other],
    )
    con.close()
    smoke = qc.warehouse_smoke(broken, base, 0.2)
    assert not smoke["ok"]
    assert smoke["violations"]["mention in several entities"] == 1
    assert qc.warehouse_smoke(broken, None, 0.2)["violations"] == smoke["violations"]


def test_names_the_day_added_are_found_with_a_typo(world: dict) -> None:
    """The day's new name references went to name_variants_added (name_variants is the
    base's): a name search with one character dropped finds their entities."""
    from warehouse.search import _name_candidates

    inc = world["inc_path"]
    con = duckdb.connect(str(inc), read_only=True)
    try:
        rows = con.execute(
            """SELECT DISTINCT a.name_ref, r.entity_id FROM name_variants_added a
            JOIN name_refs r USING (name_ref)
            WHERE a.variant = a.name_ref AND a.name_ref LIKE 'p:%' AND length(a.name_ref) >= 8
            ORDER BY a.name_ref LIMIT 5"""
        ).fetchall()
        assert rows, "the day added no pinyin name"
        base_variants = file_rows(world["base"], "SELECT count(*) FROM name_variants")[0][0]
        assert con.execute("SELECT count(*) FROM name_variants").fetchone()[0] == base_variants
        for ref, entity_id in rows:
            typo = ref[2:-1]  # the pinyin without its last letter
            found = [r[0] for r in _name_candidates(con, typo, None, None, 50)]
            assert entity_id in found, (ref, typo)
    finally:
        con.close()
