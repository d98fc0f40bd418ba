"""Publish the warehouse atomically.

``publish(home)`` builds a complete new DuckDB file next to ``warehouse.duckdb``
(``warehouse.duckdb.building``), fills it set-based from the lake and the
linkage outputs, runs smoke checks on it, closes it and only then moves it over
the old file with ``os.replace`` (atomic on one filesystem). A reader either
sees the previous warehouse or the new one, never a half-built one; a build
that fails leaves the previous warehouse untouched and removes its own file.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from connectors import lake
from connectors.catalog import load_specs
from tessera.config import Home
from warehouse import corrections, matching, schema

ENTITY_TYPES = ("person", "business")
_EVIDENCE_FIXED = (
    "mention_id_l",
    "mention_id_r",
    "match_weight",
    "match_probability",
    "entity_id",
    "source",
    "decision_id",
)


class PublishError(RuntimeError):
    """A smoke check failed: the new warehouse was not published."""


def building_path(home: Home) -> Path:
    return home.warehouse.with_name(home.warehouse.name + ".building")


def _entity_map(home: Home) -> pl.DataFrame:
    """mention → entity: stable IDs (``<type>_entities``) if present, else clusters."""
    frames = []
    for etype in ENTITY_TYPES:
        ent = home.lake / "linkage" / f"{etype}_entities.parquet"
        clu = home.lake / "linkage" / f"{etype}_clusters.parquet"
        if ent.exists():
            frames.append(pl.read_parquet(ent).select("mention_id", "entity_id"))
        elif clu.exists():
            frames.append(
                pl.read_parquet(clu).select("mention_id", pl.col("cluster_id").alias("entity_id"))
            )
    if not frames:
        raise FileNotFoundError(f"no linkage output in {home.lake / 'linkage'}: run link first")
    return pl.concat(frames).cast({"mention_id": pl.String, "entity_id": pl.String})


_EMPTY_EVIDENCE = """
    SELECT NULL::VARCHAR AS entity_type, NULL::VARCHAR AS entity_id,
           NULL::VARCHAR AS mention_id_l, NULL::VARCHAR AS mention_id_r,
           NULL::DOUBLE AS match_weight, NULL::DOUBLE AS match_probability,
           NULL::VARCHAR AS decided_by, NULL::BIGINT AS decision_id,
           NULL::JSON AS contributions
    WHERE false"""


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _evidence_view(con: duckdb.DuckDBPyConnection, home: Home) -> None:
    """``_evidence``: a view over the kept edges of both types, read by DuckDB straight
    from the Parquet file (no copy through polars; after incremental links, the base
    and its parts as :func:`linkage.report.read_linkage` merges them); the
    per-comparison columns are packed into one JSON object."""
    from linkage.report import linkage_parts, read_linkage

    arms = []
    for etype in ENTITY_TYPES:
        parts = linkage_parts(home, etype, "evidence")
        if not parts:
            continue
        path = parts[0]
        if len(parts) == 1:
            # The path is the home's, not a user value; a view cannot take parameters.
            scan = f"read_parquet({_quote(str(path))})"
        else:  # incremental links appended parts: linkage merges them
            scan = f"_evidence_{etype}_frame"
            con.register(scan, read_linkage(home, etype, "evidence").collect())
        cols = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {scan}").fetchall()]
        extra = [c for c in cols if c not in _EVIDENCE_FIXED]
        for c in extra:  # column names become SQL identifiers: only plain ones
            if not c.isidentifier():
                raise ValueError(f"unexpected evidence column {c!r} in {path}")
        packed = (
            "to_json(struct_pack(" + ", ".join(f"{c} := {c}" for c in extra) + "))"
            if extra
            else "'{}'::JSON"
        )
        source = "CAST(source AS VARCHAR)" if "source" in cols else "NULL::VARCHAR"
        decision = "CAST(decision_id AS BIGINT)" if "decision_id" in cols else "NULL::BIGINT"
        arms.append(
            f"SELECT '{etype}' AS entity_type, CAST(entity_id AS VARCHAR) AS entity_id, "
            "CAST(mention_id_l AS VARCHAR) AS mention_id_l, "
            "CAST(mention_id_r AS VARCHAR) AS mention_id_r, "
            "CAST(match_weight AS DOUBLE) AS match_weight, "
            "CAST(match_probability AS DOUBLE) AS match_probability, "
            f"{source} AS decided_by, {decision} AS decision_id, {packed} AS contributions "
            f"FROM {scan}"
        )
    con.execute("CREATE TEMP VIEW _evidence AS " + (" UNION ALL ".join(arms) or _EMPTY_EVIDENCE))


def _sources(home: Home) -> pl.DataFrame:
    specs = load_specs(home.sources_dir)
    return pl.DataFrame(
        {
            "source_id": [s.id for s in specs],
            "title": [s.title for s in specs],
            "domain": [s.domain for s in specs],
            "entity_type": [s.entity for s in specs],
            "engine": [s.database.engine if s.database else None for s in specs],
            "format": [s.format.kind for s in specs],
            "cadence": [s.cadence for s in specs],
            "duplicate_free": [s.duplicate_free for s in specs],
            "rank": [schema.source_rank(s) for s in specs],
        },
        schema_overrides={"engine": pl.String},
    )


def _register_inputs(con: duckdb.DuckDBPyConnection, home: Home) -> dict[str, float]:
    """Copy the inputs into temporary tables; returns the seconds per input (read and
    copy). The match features are computed from the mentions frame by linkage's
    feature functions."""
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    mentions = lake.mentions(home).collect()
    seconds["_mentions"] = time.perf_counter() - t
    readers: dict[str, Any] = {
        "_mentions": lambda: mentions,
        "_records": lambda: lake.records(home).collect(),
        "_current": lambda: lake.current_records(home).collect(),
        "_relationships": lambda: lake.relationships(home).collect(),
        "_map": lambda: _entity_map(home),
        "_sources": lambda: _sources(home),
        "_corrections": lambda: corrections.corrections_frame(home),
        "_decisions": lambda: corrections.decisions_frame(home),
    }
    for name, read in readers.items():
        t = time.perf_counter()
        frame = read()
        con.register(f"{name}_frame", frame)
        con.execute(f"CREATE TEMP TABLE {name} AS SELECT * FROM {name}_frame")
        con.unregister(f"{name}_frame")
        seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - t
    t = time.perf_counter()
    matching.register_match_inputs(con, home, mentions)  # read once, by one CREATE TABLE
    seconds["match_features"] = time.perf_counter() - t
    _evidence_view(con, home)
    return {k: round(v, 2) for k, v in seconds.items()}


def _one(con: duckdb.DuckDBPyConnection, sql: str) -> Any:
    row = con.execute(sql).fetchone()
    return row[0] if row else None


SMOKE_CHECKS: dict[str, str] = {
    # each query returns the number of violations
    "mention in no entity or several": """
        SELECT (SELECT count(*) FROM _mentions WHERE mention_id NOT IN
                    (SELECT mention_id FROM memberships))
             + (SELECT count(*) FROM (SELECT mention_id FROM memberships
                    GROUP BY mention_id HAVING count(*) > 1))""",
    "record whose mention is unknown": """
        SELECT count(*) FROM _records WHERE mention_id NOT IN (SELECT mention_id FROM memberships)""",
}


def _smoke(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Run :data:`SMOKE_CHECKS` and count rows; raise :class:`PublishError` on a violation
    or an empty core table."""
    problems = {name: int(_one(con, sql)) for name, sql in SMOKE_CHECKS.items()}
    fatal = {k: v for k, v in problems.items() if v}
    counts = {t: int(_one(con, f"SELECT count(*) FROM {t}")) for t in schema.TABLES if t != "runs"}
    empty = [t for t in ("entities", "memberships", "entity_names", "facts") if counts[t] == 0]
    if fatal or empty:
        raise PublishError(
            f"smoke checks failed: {fatal or ''} {'empty: ' + str(empty) if empty else ''}"
        )
    return counts


def default_reference_date(home: Home) -> dt.date:
    """The last delivery date in the lake (the simulated world's "today"), else today."""
    d = lake.records(home).select(pl.col("delivered").max()).collect().item()
    return d if d is not None else dt.date.today()


def _copy_runs(con: duckdb.DuckDBPyConnection, old: Path) -> None:
    """Carry the run history over from the warehouse being replaced."""
    if not old.exists():
        return
    con.execute("ATTACH ? AS previous (READ_ONLY)", [str(old)])
    try:
        has = _one(
            con,
            "SELECT count(*) FROM duckdb_tables() WHERE database_name = 'previous' "
            "AND table_name = 'runs'",
        )
        if has:
            con.execute(
                "INSERT INTO runs SELECT published_at, reference_date, seconds, counts "
                "FROM previous.runs"
            )
    finally:
        con.execute("DETACH previous")


def publish(home: Home, reference_date: dt.date | None = None) -> dict[str, Any]:
    """Build the warehouse in a new file, check it, and swap it in atomically.

    ``reference_date`` (default: the last delivery date in the lake) is the day
    list entries are judged active / expired / not_started against. Returns the
    row count per table, the reference date, the path, the seconds taken, the
    seconds per step (read inputs, build, smoke checks) and, within them, per input
    (``read_seconds``) and per table (``build_seconds``).
    Raises (and leaves the previous warehouse in place) if anything fails."""
    t0 = time.perf_counter()
    ref = reference_date or default_reference_date(home)
    target = home.warehouse
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = building_path(home)
    steps: dict[str, float] = {}
    for stale in (tmp, tmp.with_name(tmp.name + ".wal")):
        stale.unlink(missing_ok=True)
    try:
        con = duckdb.connect(str(tmp))
        try:
            con.execute("SET enable_progress_bar = false")
            # Tables that need an order say ORDER BY; the others may be written in
            # parallel, in any order (faster, less memory).
            con.execute("SET preserve_insertion_order = false")
            t = time.perf_counter()
            read_seconds = _register_inputs(con, home)
            steps["read_inputs"] = time.perf_counter() - t
            t = time.perf_counter()
            build_seconds = schema.build(con, ref) or {}
            steps["build"] = time.perf_counter() - t
            t = time.perf_counter()
            counts = _smoke(con)
            steps["smoke_checks"] = time.perf_counter() - t
            _copy_runs(con, target)
            seconds = round(time.perf_counter() - t0, 3)
            con.execute(
                "INSERT INTO runs VALUES (current_timestamp, ?, ?, ?)",
                [ref, seconds, json.dumps(counts)],
            )
            con.execute("CHECKPOINT")
        finally:
            con.close()
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        tmp.with_name(tmp.name + ".wal").unlink(missing_ok=True)
        raise
    return {
        "path": str(target),
        "reference_date": ref.isoformat(),
        "counts": counts,
        "seconds": round(time.perf_counter() - t0, 2),
        "steps": {k: round(v, 2) for k, v in steps.items()},
        "read_seconds": read_seconds,
        "build_seconds": build_seconds,
    }


def connect(home: Home) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the published warehouse (what analysts get)."""
    if not home.warehouse.exists():
        raise FileNotFoundError(f"no warehouse at {home.warehouse}: run publish first")
    return duckdb.connect(str(home.warehouse), read_only=True)
