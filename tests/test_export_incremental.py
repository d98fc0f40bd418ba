"""Incremental analyst export: after an incremental publish, a copy of the previous
export with the changed entities' rows replaced holds exactly what a full export of
the new warehouse holds, masked alike; anything it cannot prove equal is exported in
full, and says why; a failure leaves the previous export.

World: a copy of the session's linked world (``tests/linked_world.py``), published in
full and exported (day 2). Then a field correction and two human decisions (a
cannot-link splitting the largest person, a must-link merging two others), day 3
delivered, ingested and linked incrementally, published incrementally and exported
by the pipeline's ``write_analyst_export``. Then another correction and a reference
date a year on (list entries expire, their facts leave the export), published and
exported incrementally again."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import duckdb
import pytest
from linked_world import (
    COLUMNS_SQL,
    MACROS_SQL,
    VIEWS_SQL,
    assert_day_edits_shown,
    copy_of_linked_world,
    file_differences,
    file_rows,
    next_linked_day,
    record_day_edits,
    unmasked_identifiers,
)

from orchestration.warehouse import SYSTEM_USER, analyst_export_path, write_analyst_export
from tessera.config import Home
from warehouse import audit, export, prefetch
from warehouse.publish import publish


def _differences(a: Path, b: Path) -> dict[str, tuple[int, int]]:
    """Per export table: rows only in ``a``, rows only in ``b`` (multisets, every
    column); plus ``schema`` when the tables, columns, types, views or macros differ.
    ``export_lineage`` (how each was written) is not compared."""
    return file_differences(
        a, b, [t.name for t in export.TABLES], [COLUMNS_SQL, VIEWS_SQL, MACROS_SQL]
    )


def _keep(home: Home, path: Path, name: str) -> Path:
    """A copy of ``path`` under ``name`` in the home (the pipeline replaces the files)."""
    out = home.root / name
    shutil.copyfile(path, out)
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Day 2 published in full and exported; day 3 (a split, a merge, a correction)
    published and exported incrementally; then a correction and a reference date a
    year on, published and exported incrementally again. Each warehouse and export is
    kept, with a full export of each warehouse to compare with."""
    from warehouse.corrections import record_correction

    home = copy_of_linked_world(tmp_path_factory, "export_incremental")
    w = {"home": home}
    w["pub0"] = publish(home)
    w["out0"] = write_analyst_export(home)
    w["w0"] = _keep(home, home.warehouse, "w0.duckdb")
    w["e0"] = _keep(home, analyst_export_path(home), "e0.duckdb")

    w |= record_day_edits(home)
    next_linked_day(home)
    w["day3"] = home.root.parent / "day3"
    shutil.copytree(home.root, w["day3"])  # the lake as the day left it, for the fallbacks

    w["pub1"] = publish(home, base=w["w0"])
    w["out1"] = write_analyst_export(home)
    w["w1"] = _keep(home, home.warehouse, "w1.duckdb")
    w["e1"] = _keep(home, analyst_export_path(home), "e1.duckdb")
    w["f1"] = home.root / "f1.duckdb"
    export.write(w["w1"], w["f1"])

    target = file_rows(
        w["w1"], "SELECT entity_id FROM entities WHERE entity_type = 'person' LIMIT 1"
    )
    record_correction(home, target[0][0], "name_latin", "zhang san", who="tester", reason="test")
    w["later"] = dt.date.fromisoformat(w["pub1"]["reference_date"]) + dt.timedelta(days=400)
    w["pub2"] = publish(home, w["later"], base=w["w1"])
    w["out2"] = write_analyst_export(home)
    w["w2"] = _keep(home, home.warehouse, "w2.duckdb")
    w["e2"] = _keep(home, analyst_export_path(home), "e2.duckdb")
    w["f2"] = home.root / "f2.duckdb"
    export.write(w["w2"], w["f2"])
    return w


def test_the_warehouse_records_its_base_and_touched_entities(world: dict) -> None:
    """A full publish leaves ``publish_touched`` empty and names no base; an
    incremental one lists the entities it rebuilt and its base's last run."""
    base_run = "SELECT stamp FROM publish_inputs WHERE kind = 'base_run'"
    assert file_rows(world["w0"], "SELECT count(*) FROM publish_touched") == [(0,)]
    assert file_rows(world["w0"], base_run) == []
    assert world["pub1"]["mode"] == "incremental", world["pub1"]["full_reason"]
    n = file_rows(world["w1"], "SELECT count(DISTINCT entity_id), count(*) FROM publish_touched")
    assert n == [(world["pub1"]["touched"], world["pub1"]["touched"])]
    last = file_rows(world["w0"], "SELECT CAST(epoch_us(max(published_at)) AS VARCHAR) FROM runs")
    assert file_rows(world["w1"], base_run) == last


def test_incremental_export_equals_full(world: dict) -> None:
    out = world["out1"]
    print("incremental export:", out)
    assert world["out0"]["mode"] == "full"
    assert out["mode"] == "incremental", out["full_reason"]
    assert world["pub1"]["touched"] <= out["touched"] < out["counts"]["entities"] / 4
    assert _differences(world["e1"], world["f1"]) == {}
    assert out["counts"] == _counts(world["f1"])
    lineage = export.read_lineage(world["e1"])
    assert lineage["mode"] == "incremental" and lineage["touched"] == out["touched"]
    run = file_rows(world["w1"], "SELECT max(published_at) FROM runs")[0][0]
    assert lineage["warehouse_published_at"] == run


def _counts(path: Path) -> dict[str, int]:
    names = [t.name for t in export.TABLES] + [export.LINEAGE]
    return {n: file_rows(path, f"SELECT count(*) FROM {n}")[0][0] for n in names}


def test_the_export_shows_the_split_merge_and_correction(world: dict) -> None:
    e0, e1 = world["e0"], world["e1"]
    assert_day_edits_shown(e0, e1, world)
    assert len(file_rows(e1, "SELECT * FROM runs")) == 2
    assert len(file_rows(e1, "SELECT * FROM human_decisions")) == 2


def test_a_moved_reference_date_changes_statuses_beyond_the_touched(world: dict) -> None:
    """A year on, list entries expire: their entities' list entries and facts change in
    the export although the publish rebuilt one entity; the update follows them."""
    out, pub = world["out2"], world["pub2"]
    assert pub["mode"] == "incremental" and pub["touched"] == 1, pub["full_reason"]
    assert out["mode"] == "incremental", out["full_reason"]
    assert out["touched"] > pub["touched"], "the status changes add entities"
    assert _differences(world["e2"], world["f2"]) == {}
    assert out["counts"]["list_entries"] < world["out1"]["counts"]["list_entries"]
    assert out["counts"]["facts"] < world["out1"]["counts"]["facts"]
    assert file_rows(world["e2"], "SELECT DISTINCT reference_date FROM list_entries") == [
        (world["later"],)
    ]


@pytest.mark.parametrize("which", ["e1", "e2"])
def test_the_incremental_export_stays_masked(world: dict, which: str) -> None:
    """No resident ID or phone number of the warehouse in clear anywhere in the export
    (any column, JSON included), masked IDs and phones in the golden records, list
    entries active only, no fact of a hidden list entry, no match features."""
    path, wh = world[which], world["w" + which[1]]
    con = duckdb.connect()
    try:
        con.execute("ATTACH ? AS w (READ_ONLY)", [str(wh)])
        con.execute("ATTACH ? AS x (READ_ONLY)", [str(path)])
        tables = {
            r[0]
            for r in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE database_name = 'x'"
            ).fetchall()
        }
        assert not {"person_match_features", "business_match_features", "match_models"} & tables
        leaks = unmasked_identifiers(con)
        assert leaks == []
        masked = con.execute(
            "SELECT count(*) FILTER (WHERE regexp_full_match(id_number, "
            "'[0-9]{6}\\*{8}[0-9]{3}[0-9X]')), count(id_number) FROM x.entities"
        ).fetchone()
        assert masked[0] == masked[1] > 0
        inactive = con.execute("SELECT count(*) FROM x.list_entries WHERE status <> 'active'")
        assert inactive.fetchone()[0] == 0
        hidden = con.execute(
            "SELECT count(*) FROM x.facts f JOIN w.list_entries l USING (source_id, record_key, "
            "entity_id) WHERE l.status <> 'active'"
        ).fetchone()[0]
        assert hidden == 0
        evidence = con.execute("SELECT count(*) FROM x.link_evidence").fetchone()[0]
        assert evidence == con.execute("SELECT count(*) FROM w.evidence_edges").fetchone()[0]
    finally:
        con.close()


def test_each_export_is_one_audit_row(world: dict) -> None:
    rows = audit.read(world["home"], action="export")
    assert [(r["user"], r["role"], r["outcome"]) for r in rows] == [
        (SYSTEM_USER, "admin", "ok")
    ] * 3
    assert [r["query"]["previous"] is None for r in rows] == [True, False, False]


def test_fallbacks_to_a_full_export(world: dict, tmp_path: Path) -> None:
    """No previous export; a previous export not of the warehouse's base; a warehouse
    published in full; an export written by other SQL; too many entities; a previous
    export that does not hold what it claims. Each full export equals a plain one."""

    def full(warehouse: Path, previous: Path | None, reason: str, **kw: float) -> None:
        target = tmp_path / f"x{len(list(tmp_path.iterdir()))}.duckdb"
        out = export.write(warehouse, target, previous, **kw)
        assert out.mode == "full" and reason in (out.full_reason or ""), out.full_reason
        plain = tmp_path / "plain.duckdb"
        plain.unlink(missing_ok=True)
        export.write(warehouse, plain)
        assert _differences(target, plain) == {}

    full(world["w1"], None, "no previous export given")
    full(world["w1"], tmp_path / "missing.duckdb", "no previous export at")
    full(world["w2"], world["e0"], "published from the run")  # two publishes on

    home = Home(tmp_path / "home")
    shutil.copytree(world["day3"], home.root)
    shutil.copyfile(world["w0"], home.warehouse)
    pub = publish(home)  # in full, after the warehouse e0 is the export of
    assert pub["mode"] == "full"
    assert file_rows(home.warehouse, "SELECT count(*) FROM publish_touched") == [(0,)]
    full(home.warehouse, world["e0"], "published in full")

    other = tmp_path / "other_sql.duckdb"
    shutil.copyfile(world["e0"], other)
    with duckdb.connect(str(other)) as con:
        con.execute("UPDATE export_lineage SET fingerprint = 'older'")
    full(world["w1"], other, "SQL changed")
    full(world["w1"], world["e0"], "entities to replace", max_touched=0.0001)

    broken = tmp_path / "broken.duckdb"
    shutil.copyfile(world["e0"], broken)
    with duckdb.connect(str(broken)) as con:  # an entity the publish did not touch is lost
        con.execute("ATTACH ? AS w (READ_ONLY)", [str(world["w1"])])
        con.execute(
            "DELETE FROM entities WHERE entity_id = (SELECT min(entity_id) FROM entities "
            "WHERE entity_id NOT IN (SELECT entity_id FROM w.publish_touched))"
        )
    full(world["w1"], broken, "row counts differ")


def test_the_same_warehouse_again_is_a_copy(world: dict, tmp_path: Path) -> None:
    """Exporting a warehouse its previous export already is of replaces nothing."""
    target = tmp_path / "again.duckdb"
    out = export.write(world["w1"], target, world["e1"])
    assert (out.mode, out.touched) == ("incremental", 0)
    assert _differences(target, world["f1"]) == {}


def test_a_copy_made_ahead_is_taken(world: dict, tmp_path: Path) -> None:
    """A daily run copies the previous export ahead (``warehouse.prefetch``): the export
    takes that copy instead of copying, and the result is the same."""
    previous = tmp_path / "previous.duckdb"
    shutil.copyfile(world["e0"], previous)
    assert prefetch.copy(previous)
    target = tmp_path / "taken.duckdb"
    out = export.write(world["w1"], target, previous)
    assert out.mode == "incremental", out.full_reason
    assert not prefetch.prepared_path(previous).exists()  # taken, not copied again
    assert _differences(target, world["f1"]) == {}
    assert _differences(previous, world["e0"]) == {}  # the previous export untouched


def test_a_failed_update_leaves_the_previous_export(
    world: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = Home(tmp_path / "home")
    shutil.copytree(world["day3"], home.root)
    shutil.copyfile(world["w1"], home.warehouse)
    final = analyst_export_path(home)
    final.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(world["e0"], final)
    before = final.read_bytes()

    def dying(con: duckdb.DuckDBPyConnection, counts: dict[str, int]) -> None:
        raise RuntimeError("disk full")  # after every table was updated

    monkeypatch.setattr(export, "_check_counts", dying)
    with pytest.raises(RuntimeError, match="disk full"):
        write_analyst_export(home)
    assert final.read_bytes() == before
    assert sorted(p.name for p in final.parent.iterdir()) == [final.name]
    rows = audit.read(home, action="export")
    assert rows[-1]["outcome"].startswith("error: RuntimeError: disk full")
