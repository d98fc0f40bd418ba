"""What a publish changed: the DuckDB diff of two warehouse files equals the polars one."""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl

from tessera import quality as qc


def _warehouse(path: Path, rows: list[tuple[str, str]]) -> Path:
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE memberships (mention_id VARCHAR, entity_id VARCHAR)")
    con.executemany("INSERT INTO memberships VALUES (?, ?)", rows)
    con.close()
    return path


def test_warehouse_changes_equal_entity_changes(tmp_path: Path) -> None:
    old = [("m1", "A"), ("m2", "A"), ("m3", "B"), ("m4", "C"), ("m5", "C"), ("m6", "D"),
           ("m7", "E"), ("m8", "F")]  # fmt: skip
    # A grows (m9), B and D merge into B, C splits into C and G, E is untouched,
    # F is retired (its mention moves to E), H is new.
    new = [("m1", "A"), ("m2", "A"), ("m9", "A"), ("m3", "B"), ("m6", "B"), ("m4", "C"),
           ("m5", "G"), ("m7", "E"), ("m8", "E"), ("m10", "H"), ("m11", "H")]  # fmt: skip
    o = _warehouse(tmp_path / "old.duckdb", old)
    n = _warehouse(tmp_path / "new.duckdb", new)
    frame = lambda rows: pl.DataFrame(rows, schema=["mention_id", "entity_id"], orient="row")  # noqa: E731
    expected = qc.entity_changes(frame(old), frame(new))
    got = qc.warehouse_changes(o, n)
    assert got == expected
    assert got == {"entities_before": 6, "entities_after": 6, "new": 1, "grown": 1,
                   "merged": 2, "split": 1, "retired": 2, "new_mentions": 3}  # fmt: skip
    # No live warehouse yet: everything is new.
    assert qc.warehouse_changes(tmp_path / "none.duckdb", n) == qc.entity_changes(None, frame(new))
