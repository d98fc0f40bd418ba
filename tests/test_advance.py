"""Advancing the world a day: earlier deliveries stay identical, databases yield only
what changed, and incremental extraction ends where a full extraction does."""

from __future__ import annotations

import polars as pl

from connectors.catalog import load_specs
from connectors.ingest import ingest
from connectors.lake import current_records
from simulation.run import simulate
from simulation.world import WorldConfig, generate_world
from tessera.config import Home

CFG = {"persons": 400, "seed": 21}


def test_world_does_not_depend_on_days_delivered() -> None:
    a = generate_world(WorldConfig(days=2, **CFG))
    b = generate_world(WorldConfig(days=9, **CFG))
    assert a.persons.equals(b.persons) and a.cases.equals(b.cases)


def _current_db_records(home: Home) -> set[tuple[str, str, str]]:
    db_ids = [s.id for s in load_specs(home.sources_dir) if s.database is not None]
    cur = current_records(home).filter(pl.col("source_id").is_in(db_ids)).collect()
    return set(cur.select("source_id", "record_key", "mention_id").iter_rows())


def test_advance_a_day_then_ingest(tmp_path) -> None:
    inc = Home(tmp_path / "incremental")
    simulate(inc, WorldConfig(days=2, **CFG))
    first = ingest(inc, load_specs(inc.sources_dir))
    sim = simulate(inc, WorldConfig(days=3, **CFG))
    second = ingest(inc, load_specs(inc.sources_dir))

    landed_days = {
        f.day
        for f in second.files
        if f.status in ("ingested", "duplicate") and f.file.startswith("landing/")
    }
    assert landed_days == {"2026-01-03"}, "only the new day's files are read"
    by_source = second.by_source()
    changed = 0
    for sid, days in sim.databases.items():
        log = days["2026-01-03"]
        s = by_source[sid]
        # Only the changed rows are extracted: inserts and updates of the new day.
        assert (s["inserted"], s["updated"], s["deleted"]) == (
            log["inserted"],
            log["updated"],
            log["deleted"],
        ), sid
        assert s["read"] == log["inserted"] + log["updated"], sid
        changed += log["updated"] + log["deleted"]
    assert changed > 0, "the day must carry updates or deletes to test anything"
    assert first.totals()["read"] > second.totals()["read"]

    full = Home(tmp_path / "full")
    simulate(full, WorldConfig(days=3, **CFG))
    ingest(full, load_specs(full.sources_dir))
    assert _current_db_records(inc) == _current_db_records(full)


def test_a_sized_delta_day(tmp_path) -> None:
    """``advance(..., delta_records=N)`` (the delta benchmark's day): only the file-drop
    delta sources deliver, about N records in all, and a later full day still delivers
    every source, the databases catching up on the day they skipped."""
    from connectors.catalog import builtin_specs
    from simulation.run import expected_delta_rows
    from tessera.world_clock import advance

    home = Home(tmp_path / "w")
    cfg = WorldConfig(days=1, persons=3000, seed=21)
    simulate(home, cfg)
    specs = builtin_specs()
    delta_ids = {s.id for s in specs if s.cadence == "delta" and s.database is None}
    full_day = expected_delta_rows(generate_world(cfg), specs, 1)
    assert full_day > 300, "the day's usual size must exceed the asked one"

    (day,) = advance(home, 1, delta_records=150)
    landed = {p.parent.parent.name for p in home.landing.glob("*/2026-01-02/*")}
    assert landed and landed <= delta_ids
    # Poisson draws per source: within a few standard deviations of 150.
    assert 100 <= day.rows <= 200, day.rows
    assert (home.truth / "world.json").read_text().count('"days": 2')

    def db_days() -> set[int]:
        import sqlite3

        days = set()
        for db in (home.root / "databases").glob("*.sqlite"):
            with sqlite3.connect(db) as con:
                days |= {r[0] for r in con.execute("SELECT day_index FROM _sim_days")}
        return days

    assert db_days() == {0}, "the databases skip the sized day"
    (nxt,) = advance(home, 1)
    assert db_days() == {0, 1, 2}, "and catch up on the next full day"
    assert nxt.rows > 2 * day.rows
