"""The simulated truth for staged mentions: which real entity each mention is about.

Read only by evaluation, never by the model. The simulator writes
``truth/<source>/<day>.parquet`` with one row per delivered record (``record_key``,
``entity_id``) and, for rows that carry a second mention, ``<role>_id``. A mention
is mapped through the records that stage it (``source_id``, ``record_key``); a
related mention through the relationship rows and the truth's ``<role>_id``. When a
record is delivered more than once, its first truth row (files in path order) counts.

A mention is one distinct identity tuple per source, so a thin source (a name
only) can collapse two people into one mention: such a mention gets its majority
entity (ties: the smallest entity ID) and is counted as ambiguous.

DuckDB reads the Parquet files directly (:func:`create_mention_truth`), so the
staged records never sit in Python; :func:`mention_truth` returns the same table as
a polars frame.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from connectors import lake
from tessera.config import Home

ROLES = ("legal_rep", "employer", "household_head")


def truth_files(home: Home) -> list[Path]:
    """The truth files (``truth/<source>/<day>.parquet``) in path order; raises
    :class:`FileNotFoundError` when there are none."""
    files = sorted(home.truth.glob("*/*.parquet"))
    if not files:
        raise FileNotFoundError(f"no truth under {home.truth}")
    return files


def read_parquet_sql(paths: list[Path], **options: bool) -> str:
    """DuckDB's ``read_parquet`` over ``paths`` (by column name; paths quoted as literals)."""
    listed = ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths)
    opts = "".join(f", {k} = {str(v).lower()}" for k, v in options.items())
    return f"read_parquet([{listed}], union_by_name = true{opts})"


def run_sql(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> None:
    """Run one statement that returns no rows to use, to its end (a DuckDB connection
    takes no other work while a result is open)."""
    con.execute(sql, params or []).fetchall()


def _columns(con: duckdb.DuckDBPyConnection, source: str) -> set[str]:
    return {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}


def create_mention_truth(
    con: duckdb.DuckDBPyConnection, home: Home, table: str = "mention_truth"
) -> None:
    """Create the temporary table ``table`` on ``con``: one row per mapped mention,
    ``mention_id, entity_id`` (the majority entity), ``n_entities`` (> 1: the mention
    collapses several real entities). Read from the truth files and the staged
    records and relationships by DuckDB."""
    if not table.isidentifier():
        raise ValueError(f"not a table name: {table!r}")
    files = truth_files(home)
    run_sql(con, "CREATE OR REPLACE TEMP TABLE _truth_files (path VARCHAR, i BIGINT)")
    con.executemany(
        "INSERT INTO _truth_files VALUES (?, ?)", [(str(p), i) for i, p in enumerate(files)]
    ).fetchall()
    src = read_parquet_sql(files, filename=True, file_row_number=True)
    have = _columns(con, src)
    roles = ", ".join(f"{r}_id" if f"{r}_id" in have else f"NULL::VARCHAR AS {r}_id" for r in ROLES)
    # The first row of each (source, record): lowest file number, then row number.
    run_sql(
        con,
        f"""
        CREATE OR REPLACE TEMP TABLE _truth AS
        SELECT source_id, record_key,
               min_by(struct_pack(entity_id, {", ".join(f"{r}_id" for r in ROLES)}),
                      f.i * 4294967296 + t.file_row_number) AS v
        FROM (SELECT source_id, record_key, entity_id, {roles}, filename, file_row_number
              FROM {src}) t
        JOIN _truth_files f ON f.path = t.filename
        GROUP BY source_id, record_key
    """,
    )
    records = lake.staged_files(home, "records")
    rels = lake.staged_files(home, "relationships")
    parts = []
    if records:
        parts.append(f"""
            SELECT s.mention_id, t.v.entity_id AS entity_id
            FROM (SELECT DISTINCT source_id, record_key, mention_id FROM {read_parquet_sql(records)}) s
            JOIN _truth t USING (source_id, record_key)""")
    if rels:
        case = " ".join(f"WHEN '{r}' THEN t.v.{r}_id" for r in ROLES)
        parts.append(f"""
            SELECT r.mention_id, CASE r.role {case} END AS entity_id
            FROM (SELECT DISTINCT source_id, record_key, role, related_mention_id AS mention_id
                  FROM {read_parquet_sql(rels)}) r
            JOIN _truth t USING (source_id, record_key)
            WHERE CASE r.role {case} END IS NOT NULL""")
    votes = (
        " UNION ALL ".join(parts)
        if parts
        else "SELECT NULL::VARCHAR AS mention_id, NULL::VARCHAR AS entity_id WHERE false"
    )
    # Majority entity, ties to the smallest ID (a truth row without an entity, never
    # written by the simulator, would sort first, as polars sorts nulls).
    run_sql(
        con,
        f"""
        CREATE OR REPLACE TEMP TABLE {table} AS
        SELECT mention_id,
               min_by(entity_id, struct_pack(neg_n := -n, missing := entity_id IS NOT NULL,
                                             entity_id := entity_id)) AS entity_id,
               count(*)::UINTEGER AS n_entities
        FROM (SELECT mention_id, entity_id, count(*) AS n FROM ({votes}) GROUP BY ALL)
        GROUP BY mention_id
    """,
    )
    run_sql(con, "DROP TABLE _truth")
    run_sql(con, "DROP TABLE _truth_files")


def mention_truth(home: Home) -> pl.DataFrame:
    """One row per mapped mention, by mention ID: ``mention_id, entity_id`` (the
    majority entity), ``n_entities`` (> 1 means the mention collapses several real
    entities). See :func:`create_mention_truth`."""
    from linkage.run import linkage_duckdb

    with linkage_duckdb() as con:
        create_mention_truth(con, home)
        return con.sql("SELECT * FROM mention_truth ORDER BY mention_id").pl()
