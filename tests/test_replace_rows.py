"""``warehouse.incremental._replace_rows`` leaves a table with exactly the rows a
delete-then-insert leaves, while touching fewer indexed rows: equal rows stay, a keyed
row whose indexed columns did not move is updated in place."""

from __future__ import annotations

import duckdb
import pytest

from warehouse import incremental

COND = "g IN ('a', 'b')"
# (key, g, ix, val): ``ix`` is indexed, ``key`` names a row in the keyed variant.
OLD = [
    ("k1", "a", "x1", 1),  # unchanged
    ("k2", "a", "x2", 2),  # val moves: updated in place when keyed
    ("k3", "b", "x3", 3),  # indexed column moves: deleted and inserted
    ("k4", "b", "x4", 4),  # vanishes
    ("k5", "c", "x5", 5),  # outside the condition: never touched
    ("k6", "a", "x6", 6),  # twice (unkeyed only)
    ("k6", "a", "x6", 6),
]
NEW = [
    ("k1", "a", "x1", 1),
    ("k2", "a", "x2", 20),
    ("k3", "b", "x30", 3),
    ("k7", "b", "x7", 7),  # new
    ("k6", "a", "x6", 6),  # one of the two stays
    ("k5", "c", "x50", 50),  # outside the condition: ignored
]


def _table(con: duckdb.DuckDBPyConnection, name: str, rows: list[tuple]) -> None:
    con.execute(f"CREATE TABLE {name} (key VARCHAR, g VARCHAR, ix VARCHAR, val INTEGER)")
    con.executemany(f"INSERT INTO {name} VALUES (?, ?, ?, ?)", rows)


def _rows(con: duckdb.DuckDBPyConnection, name: str) -> list[tuple]:
    return sorted(con.execute(f"SELECT * FROM {name}").fetchall())


@pytest.mark.parametrize("keyed", [False, True])
def test_same_rows_as_delete_and_insert(monkeypatch: pytest.MonkeyPatch, keyed: bool) -> None:
    old = [r for i, r in enumerate(OLD) if not (keyed and i == 6)]  # a key names one row
    new = [r for r in NEW if not (keyed and r[0] == "k6")]
    monkeypatch.setattr(incremental.schema, "indexed_columns", lambda t: ["ix"])
    monkeypatch.setattr(incremental, "ROW_KEYS", {"t": "key"} if keyed else {})
    con = duckdb.connect()
    con.execute(f"ATTACH ':memory:' AS {incremental.SCRATCH}")
    _table(con, "t", old)
    _table(con, f"{incremental.SCRATCH}.main.t", new)
    _table(con, "want", old)
    con.execute(f"DELETE FROM want WHERE {COND}")
    con.execute(f"INSERT INTO want SELECT * FROM {incremental.SCRATCH}.main.t WHERE {COND}")
    con.execute("CREATE INDEX t_ix ON t (ix)")
    before = dict(con.execute("SELECT key, rowid FROM t WHERE key IN ('k1', 'k2')").fetchall())

    incremental._replace_rows(con, "t", COND)

    assert _rows(con, "t") == _rows(con, "want")
    after = dict(con.execute("SELECT key, rowid FROM t WHERE key IN ('k1', 'k2')").fetchall())
    assert after["k1"] == before["k1"]  # an equal row is left where it was
    # Keyed, the row whose value moved keeps its place (updated); unkeyed it is replaced.
    assert (after["k2"] == before["k2"]) is keyed
    assert con.execute("SELECT count(*) FROM t WHERE ix = 'x30'").fetchall() == [(1,)]
