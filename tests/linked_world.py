"""A small linked world shared by the decisions, stable-ID and explanation tests:
simulated, ingested and linked (``link_all``) once per session; each test module
works on its own copy."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from tessera.config import Home

LINKED = {"persons": 1000, "seed": 5, "days": 2}
_built: dict[Path, Home] = {}


def build_linked_home(home: Home, **world: int) -> Home:
    """Simulate (embedded databases, whatever the environment says), ingest and link
    ``home`` for a world of the given ``WorldConfig`` fields."""
    from connectors.catalog import load_specs
    from connectors.ingest import ingest
    from linkage.report import link_all
    from simulation.run import simulate
    from simulation.world import WorldConfig

    mp = pytest.MonkeyPatch()
    mp.delenv("TESSERA_PG_URL", raising=False)
    mp.delenv("TESSERA_MYSQL_URL", raising=False)
    try:
        simulate(home, WorldConfig(**world))
        ingest(home, load_specs(home.sources_dir))
        link_all(home)
    finally:
        mp.undo()
    return home


def linked_world(tmp_path_factory: pytest.TempPathFactory) -> Home:
    """The pristine linked world of this session (build once; do not modify)."""
    base = tmp_path_factory.getbasetemp()
    if base not in _built:
        home = Home(tmp_path_factory.mktemp("linked") / "home")
        _built[base] = build_linked_home(home, **LINKED)
    return _built[base]


def copy_of_linked_world(tmp_path_factory: pytest.TempPathFactory, name: str) -> Home:
    """A private, writable copy of the linked world."""
    src = linked_world(tmp_path_factory)
    home = Home(tmp_path_factory.mktemp(name) / "home")
    shutil.copytree(src.root, home.root)
    return home


def warehouse_rows(home: Home, sql: str, params: list | None = None) -> list[tuple]:
    """Rows of one query on ``home``'s published warehouse (read-only connection)."""
    from warehouse.publish import connect

    con = connect(home)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def file_rows(path: Path, sql: str, params: list | None = None) -> list[tuple]:
    """The rows of ``sql`` on the DuckDB file ``path`` (opened read-only)."""
    import duckdb

    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def next_linked_day(home: Home) -> None:
    """Deliver, ingest and link (incrementally) the linked world's next day."""
    from connectors.catalog import load_specs
    from connectors.ingest import ingest
    from linkage.incremental import ENTITY_TYPES, link_incremental
    from simulation.run import simulate
    from simulation.world import WorldConfig

    days = LINKED["days"]
    simulate(home, WorldConfig(**{**LINKED, "days": days + 1}), days=range(days, days + 1))
    ingest(home, load_specs(home.sources_dir))
    for t in ENTITY_TYPES:
        link_incremental(home, t)


# Catalog queries (one parameter: the attached database's name) whose rows describe a
# DuckDB file's shape, for :func:`file_differences`.
COLUMNS_SQL = (
    "SELECT table_name, column_name, data_type FROM information_schema.columns "
    "WHERE table_catalog = ? ORDER BY ALL"
)
INDEXES_SQL = (
    "SELECT index_name, table_name, expressions FROM duckdb_indexes() "
    "WHERE database_name = ? ORDER BY ALL"
)
VIEWS_SQL = (
    "SELECT view_name, sql FROM duckdb_views() WHERE database_name = ? AND NOT internal "
    "ORDER BY ALL"
)
MACROS_SQL = (
    "SELECT function_name, macro_definition FROM duckdb_functions() "
    "WHERE database_name = ? AND function_type = 'macro' AND NOT internal ORDER BY ALL"
)


def file_differences(
    a: Path, b: Path, tables: list[str], shape: list[str]
) -> dict[str, tuple[int, int]]:
    """:func:`multiset_differences` of ``tables`` between the DuckDB files ``a`` and
    ``b``, plus ``schema`` when the ``shape`` catalog queries answer differently."""
    import duckdb

    con = duckdb.connect()
    try:
        con.execute("ATTACH ? AS a (READ_ONLY)", [str(a)])
        con.execute("ATTACH ? AS b (READ_ONLY)", [str(b)])
        out = multiset_differences(con, tables)
        seen = [[con.execute(q, [db]).fetchall() for q in shape] for db in ("a", "b")]
        if seen[0] != seen[1]:
            out["schema"] = (1, 1)
        return out
    finally:
        con.close()


def multiset_differences(con: Any, tables: list[str]) -> dict[str, tuple[int, int]]:
    """Per table of the databases attached as ``a`` and ``b`` on ``con``: rows only in
    ``a``, rows only in ``b`` (multisets: every column, duplicates counted); tables
    that agree are left out."""
    out = {}
    for t in tables:
        only = [
            con.execute(
                f"SELECT count(*) FROM (SELECT * FROM {x}.{t} EXCEPT ALL SELECT * FROM {y}.{t})"
            ).fetchone()[0]
            for x, y in (("a", "b"), ("b", "a"))
        ]
        if any(only):
            out[t] = (only[0], only[1])
    return out


def unmasked_identifiers(con: Any) -> list[tuple[str, str]]:
    """(column, value) of every resident ID or phone number of the warehouse attached as
    ``w`` that appears unmasked anywhere in the export attached as ``x``: in any column
    of any table, JSON included, also with spaces or dashes inside (decimals of floats
    are not numbers). Fails when the warehouse holds no such identifier."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE raw AS SELECT DISTINCT regexp_replace(value, '^\\+86', '') "
        "AS v FROM w.entity_identifiers WHERE kind IN ('id_number', 'phone')"
    )
    assert con.execute("SELECT count(*) FROM raw").fetchone()[0] > 0
    cols = con.execute(
        "SELECT table_name, column_name FROM duckdb_columns() WHERE database_name = 'x'"
    ).fetchall()
    runs = " UNION ALL ".join(
        f"SELECT '{t}.{c}' AS col, unnest(regexp_extract_all(regexp_replace("
        f"CAST(\"{c}\" AS VARCHAR), '[ -]', '', 'g'), '(^|[^0-9.])([0-9]{{11,}}[0-9Xx]?)', 2))"
        f' AS run FROM x."{t}"'
        for t, c in cols
    )
    return con.execute(
        f"SELECT col, v FROM ({runs}) JOIN raw ON contains(run, v) ORDER BY 1, 2"
    ).fetchall()


def record_day_edits(home: Home) -> dict[str, Any]:
    """A human day's edits before the next day: a cannot-link between the two ends of
    the largest person (``apart``), a must-link of the next two (``merged``) and a field
    correction of the sixth (``corrected``: sex F)."""
    import polars as pl

    import linkage.decisions as dec
    from warehouse.corrections import record_correction

    ent = pl.read_parquet(home.lake / "linkage" / "person_entities.parquet")
    sizes = ent.group_by("entity_id").len().sort(["len", "entity_id"], descending=[True, False])
    big = ent.filter(pl.col("entity_id") == sizes["entity_id"][0]).sort("mention_id")
    apart = (big["mention_id"][0], big["mention_id"][-1])
    dec.record_decision(home, *apart, same=False, reason="test: two people")
    merged = (sizes["entity_id"][1], sizes["entity_id"][2])
    dec.record_decision(home, *merged, same=True, reason="test: one person")
    corrected = sizes["entity_id"][5]
    record_correction(home, corrected, "sex", "F", who="tester", reason="test: corrected")
    return {"apart": apart, "merged": merged, "corrected": corrected}


def assert_day_edits_shown(before: Path, after: Path, edits: dict[str, Any]) -> None:
    """The DuckDB file ``after`` (a warehouse or its export, the day after ``before``)
    shows the day: new entities, the must-link merged, the cannot-link split, the
    correction applied."""
    old = {r[0] for r in file_rows(before, "SELECT entity_id FROM entities")}
    new = {r[0] for r in file_rows(after, "SELECT entity_id FROM entities")}
    assert new - old, "the day brings new entities"
    assert not set(edits["merged"]) <= new, "the must-link merged two entities into one"
    apart = file_rows(
        after,
        "SELECT count(DISTINCT entity_id) FROM memberships WHERE list_contains(?, mention_id)",
        [list(edits["apart"])],
    )
    assert apart == [(2,)], "the cannot-link split the largest entity"
    got = file_rows(
        after, "SELECT sex, sex_source FROM entities WHERE entity_id = ?", [edits["corrected"]]
    )
    assert got == [("F", "correction")]
