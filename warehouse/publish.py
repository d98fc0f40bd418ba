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


def _evidence(home: Home) -> pl.DataFrame:
    """Kept edges of both types; per-comparison columns packed into one JSON object."""
    out = []
    for etype in ENTITY_TYPES:
        path = home.lake / "linkage" / f"{etype}_evidence.parquet"
        if not path.exists():
            continue
        ev = pl.read_parquet(path)
        extra = [c for c in ev.columns if c not in _EVIDENCE_FIXED]
        out.append(
            ev.select(
                pl.lit(etype).alias("entity_type"),
                pl.col("entity_id").cast(pl.String),
                pl.col("mention_id_l").cast(pl.String),
                pl.col("mention_id_r").cast(pl.String),
                pl.col("match_weight").cast(pl.Float64),
                pl.col("match_probability").cast(pl.Float64),
                (pl.col("source") if "source" in ev.columns else pl.lit(None))
                .cast(pl.String)
                .alias("decided_by"),
                (pl.col("decision_id") if "decision_id" in ev.columns else pl.lit(None))
                .cast(pl.Int64)
                .alias("decision_id"),
                (pl.struct(extra).struct.json_encode() if extra else pl.lit("{}")).alias(
                    "contributions"
                ),
            )
        )
    if not out:
        return pl.DataFrame(
            schema={
                "entity_type": pl.String,
                "entity_id": pl.String,
                "mention_id_l": pl.String,
                "mention_id_r": pl.String,
                "match_weight": pl.Float64,
                "match_probability": pl.Float64,
                "decided_by": pl.String,
                "decision_id": pl.Int64,
                "contributions": pl.String,
            }
        )
    return pl.concat(out)


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


def _register_inputs(con: duckdb.DuckDBPyConnection, home: Home) -> dict[str, pl.DataFrame]:
    mentions = lake.mentions(home).collect()
    inputs = {
        "_mentions": mentions,
        "_records": lake.records(home).collect(),
        "_current": lake.current_records(home).collect(),
        "_relationships": lake.relationships(home).collect(),
        "_map": _entity_map(home),
        "_evidence": _evidence(home),
        "_sources": _sources(home),
        "_corrections": corrections.corrections_frame(home),
        "_decisions": corrections.decisions_frame(home),
        **matching.match_inputs(home, mentions),
    }
    for name, frame in inputs.items():
        con.register(f"{name}_frame", frame)
        con.execute(f"CREATE TEMP TABLE {name} AS SELECT * FROM {name}_frame")
        con.unregister(f"{name}_frame")
    return inputs


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
    row count per table, the reference date, the path, the seconds taken and
    the seconds per step (read inputs, build, smoke checks).
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
            t = time.perf_counter()
            _register_inputs(con, home)
            steps["read_inputs"] = time.perf_counter() - t
            t = time.perf_counter()
            schema.build(con, ref)
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
    }


def connect(home: Home) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the published warehouse (what analysts get)."""
    if not home.warehouse.exists():
        raise FileNotFoundError(f"no warehouse at {home.warehouse}: run publish first")
    return duckdb.connect(str(home.warehouse), read_only=True)
