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
import shutil
import time
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from connectors import lake
from connectors.canonical import ADDRESS_FIELDS, MENTION_SCHEMA, RECORD_SCHEMA, RELATIONSHIP_SCHEMA
from connectors.catalog import load_specs
from linkage.parts import linkage_parts, linkage_sql
from tessera.config import Home
from warehouse import corrections, matching, prefetch, schema

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


_DUCK_TYPES = {
    pl.String: "VARCHAR",
    pl.Date: "DATE",
    pl.Float64: "DOUBLE",
    pl.Int64: "BIGINT",
    pl.Int32: "INTEGER",
    pl.Boolean: "BOOLEAN",
}


def _duck_type(dtype: pl.DataType) -> str:
    if isinstance(dtype, pl.Datetime):
        return "TIMESTAMPTZ" if dtype.time_zone else "TIMESTAMP"
    return _DUCK_TYPES[dtype.base_type()]


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _scan_sql(
    con: duckdb.DuckDBPyConnection,
    paths: list[Path],
    schema: dict[str, pl.DataType],
    *,
    columns: tuple[str, ...] | None = None,
    extra: str = "",
) -> str:
    """A ``SELECT`` over the Parquet files ``paths`` read by DuckDB (``read_parquet``,
    union by name): ``schema``'s columns (or ``columns`` of it) cast to their types, a
    column no file has as nulls (as :func:`connectors.lake._scan` does); an empty
    typed result without files. Paths are the home's, never user values."""
    cols = columns or tuple(schema)
    if not paths:
        return (
            "SELECT "
            + ", ".join(f"NULL::{_duck_type(schema[c])} AS {c}" for c in cols)
            + (", NULL::VARCHAR AS filename, NULL::BIGINT AS file_row_number" if extra else "")
            + " WHERE false"
        )
    scan = (
        "read_parquet(["
        + ", ".join(_quote(str(p)) for p in paths)
        + "], union_by_name = true"
        + (", filename = true, file_row_number = true" if extra else "")
        + ")"
    )
    have = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {scan}").fetchall()}
    select = [
        f"CAST({c} AS {_duck_type(schema[c])}) AS {c}"
        if c in have
        else f"NULL::{_duck_type(schema[c])} AS {c}"
        for c in cols
    ]
    if extra:
        select += ["filename", "file_row_number"]
    return f"SELECT {', '.join(select)} FROM {scan}"


def _files_table(con: duckdb.DuckDBPyConnection, name: str, paths: list[Path]) -> None:
    """``name(filename, fi)``: the files of one input in the order the lake reads them
    (the first file wins where a mention is staged twice)."""
    con.execute(f"CREATE TEMP TABLE {name} (filename VARCHAR, fi INTEGER)")
    if paths:
        con.executemany(
            f"INSERT INTO {name} VALUES (?, ?)", [[str(p), i] for i, p in enumerate(paths)]
        )


def map_files(home: Home) -> list[Path]:
    """The entity map's files: per type its stable IDs (``<type>_entities``) if present,
    else its clusters."""
    out = []
    for etype in ENTITY_TYPES:
        ent = home.lake / "linkage" / f"{etype}_entities.parquet"
        clu = home.lake / "linkage" / f"{etype}_clusters.parquet"
        if ent.exists() or clu.exists():
            out.append(ent if ent.exists() else clu)
    return out


def _entity_map(con: duckdb.DuckDBPyConnection, home: Home, name: str = "_map") -> None:
    """``_map`` (or ``name``): mention → entity, stable IDs (``<type>_entities``) if
    present, else clusters, read by DuckDB straight from the Parquet files."""
    arms = []
    for etype in ENTITY_TYPES:
        ent = home.lake / "linkage" / f"{etype}_entities.parquet"
        clu = home.lake / "linkage" / f"{etype}_clusters.parquet"
        if ent.exists():
            arms.append(
                "SELECT CAST(mention_id AS VARCHAR) AS mention_id, "
                f"CAST(entity_id AS VARCHAR) AS entity_id FROM read_parquet({_quote(str(ent))})"
            )
        elif clu.exists():
            arms.append(
                "SELECT CAST(mention_id AS VARCHAR) AS mention_id, "
                f"CAST(cluster_id AS VARCHAR) AS entity_id FROM read_parquet({_quote(str(clu))})"
            )
    if not arms:
        raise FileNotFoundError(f"no linkage output in {home.lake / 'linkage'}: run link first")
    con.execute(f"CREATE TEMP TABLE {name} AS " + " UNION ALL ".join(arms))


_EMPTY_EDGES = """
    SELECT NULL::VARCHAR AS entity_type, NULL::VARCHAR AS entity_id,
           NULL::VARCHAR AS mention_id_l, NULL::VARCHAR AS mention_id_r,
           NULL::DOUBLE AS match_weight, NULL::DOUBLE AS match_probability,
           NULL::VARCHAR AS decided_by, NULL::BIGINT AS decision_id,
           NULL::UBIGINT AS contributions_key
    WHERE false"""


def evidence_scans(
    con: duckdb.DuckDBPyConnection, home: Home
) -> list[tuple[str, str, list[tuple[str, str]], list[str]]]:
    """Per entity type with evidence: its merged scan (a ``FROM`` item: the base file,
    or the base and its delta parts merged as linkage merges them), its columns
    (name, type) and its per-comparison columns (every column but
    :data:`_EVIDENCE_FIXED`)."""
    scans = []
    for etype in ENTITY_TYPES:
        parts = linkage_parts(home, etype, "evidence")
        if not parts:
            continue
        if len(parts) == 1:
            # The path is the home's, not a user value; a view cannot take parameters.
            scan = f"read_parquet({_quote(str(parts[0]))})"
        else:  # incremental links appended parts: merged as linkage does, by DuckDB
            scan = f"({linkage_sql(home, etype, 'evidence')})"
        cols = [(r[0], r[1]) for r in con.execute(f"DESCRIBE SELECT * FROM {scan}").fetchall()]
        extra = [c for c, _ in cols if c not in _EVIDENCE_FIXED]
        for c in extra:  # column names become SQL identifiers: only plain ones
            if not c.isidentifier():
                raise ValueError(f"unexpected evidence column {c!r} in {parts[0]}")
        scans.append((etype, scan, cols, extra))
    return scans


def evidence_head(etype: str, cols: list[str]) -> str:
    """The ``SELECT`` of the fixed evidence columns, as ``_evidence_edges`` has them."""
    source = "CAST(source AS VARCHAR)" if "source" in cols else "NULL::VARCHAR"
    decision = "CAST(decision_id AS BIGINT)" if "decision_id" in cols else "NULL::BIGINT"
    return (
        f"SELECT '{etype}' AS entity_type, CAST(entity_id AS VARCHAR) AS entity_id, "
        "CAST(mention_id_l AS VARCHAR) AS mention_id_l, "
        "CAST(mention_id_r AS VARCHAR) AS mention_id_r, "
        "CAST(match_weight AS DOUBLE) AS match_weight, "
        "CAST(match_probability AS DOUBLE) AS match_probability, "
        f"{source} AS decided_by, {decision} AS decision_id"
    )


def evidence_packed(extra: list[str]) -> str:
    """The per-comparison columns as one JSON object."""
    if not extra:
        return "'{}'::JSON"
    return "to_json(struct_pack(" + ", ".join(f"{c} := {c}" for c in extra) + "))"


def evidence_key(etype: str, extra: list[str]) -> str:
    """The contributions key: a hash of the entity type and the per-comparison columns."""
    return "hash(" + ", ".join([f"'{etype}'", *extra]) + ")"


def _evidence_inputs(con: duckdb.DuckDBPyConnection, home: Home) -> dict[str, str]:
    """The kept edges of both types, read by DuckDB straight from the Parquet file
    (after incremental links, the base and its parts as
    :func:`linkage.report.read_linkage` merges them):

    - ``_evidence_edges`` (view): one row per edge with ``contributions_key``, a hash
      of its entity type and per-comparison columns;
    - ``_evidence_contributions`` (table): per distinct key, those columns packed into
      one JSON object (``to_json``), built once per combination (tens of thousands)
      rather than per edge (millions).

    If two different combinations ever shared a hash, the keys are numbered instead
    and each edge finds its combination by comparing every column (slower, exact).
    Returns what an incremental publish must find unchanged: per type the evidence
    columns with their types, and how the keys were made (``hash`` or ``numbered``)."""
    scans = evidence_scans(con, home)
    stamps = {f"evidence_columns:{etype}": repr(cols) for etype, _, cols, _ in scans}
    combos = [
        f"SELECT {evidence_key(etype, extra)} AS contributions_key, "
        f"{evidence_packed(extra)} AS contributions "
        f"FROM (SELECT DISTINCT {', '.join(extra) or 'true'} FROM {scan})"
        for etype, scan, _, extra in scans
    ]
    con.execute(
        "CREATE TEMP TABLE _evidence_contributions AS "
        + (
            " UNION ALL ".join(combos)
            or "SELECT NULL::UBIGINT AS contributions_key, NULL::JSON AS contributions WHERE false"
        )
    )
    n, distinct = con.execute(
        "SELECT count(*), count(DISTINCT contributions_key) FROM _evidence_contributions"
    ).fetchone()
    if n == distinct:
        stamps["contributions"] = "hash"
        arms = [
            f"{evidence_head(etype, [c for c, _ in cols])}, "
            f"{evidence_key(etype, extra)} AS contributions_key FROM {scan}"
            for etype, scan, cols, extra in scans
        ]
    else:  # a hash collision between two combinations: number them, join on the values
        stamps["contributions"] = "numbered"
        con.execute("DELETE FROM _evidence_contributions")
        arms = []
        offset = 0
        for etype, scan, cols, extra in scans:
            combos_t = f"_evidence_{etype}_combos"
            con.execute(
                f"CREATE TEMP TABLE {combos_t} AS SELECT CAST(row_number() OVER () + {offset} "
                f"AS UBIGINT) AS contributions_key, * FROM (SELECT DISTINCT "
                f"{', '.join(extra) or 'true AS _none'} FROM {scan})"
            )
            con.execute(
                f"INSERT INTO _evidence_contributions SELECT contributions_key, "
                f"{evidence_packed(extra)} FROM {combos_t}"
            )
            offset = con.execute("SELECT count(*) FROM _evidence_contributions").fetchone()[0]
            match = " AND ".join(f"k.{c} IS NOT DISTINCT FROM e.{c}" for c in extra) or "true"
            arms.append(
                f"{evidence_head(etype, [c for c, _ in cols])}, k.contributions_key FROM {scan} e "
                f"JOIN {combos_t} k ON {match}"
            )
    con.execute("CREATE TEMP VIEW _evidence_edges AS " + (" UNION ALL ".join(arms) or _EMPTY_EDGES))
    return stamps


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


# The mention columns the warehouse uses (not the raw values, names split in parts or
# the attributes JSON, which stay in the lake for subject access).
MENTION_COLUMNS = (
    "mention_id",
    "source_id",
    "entity_type",
    "role",
    "name_native",
    "name_latin",
    "dob",
    "sex",
    "id_number",
    "id_masked",
    "id_dob",
    "phone",
    "phone_masked",
    "email",
    "plate",
    "passport",
    "name",
    "uscc",
    "industry",
    *ADDRESS_FIELDS,
)


def _current_sql(home: Home, latest: str | None = None) -> str:
    """``_current_records`` (a view) as :func:`connectors.lake.current_records` defines
    it, in SQL over ``_records``: snapshot files by their latest delivery, databases by
    the newest version of each record (``ingested_at``, then ``line``, then the later
    file and row) minus deletions detected at or after it, deltas all. The source IDs
    come from the catalog (a view takes no parameters). ``latest`` (``source_id,
    delivered``) gives each snapshot source's latest delivery when ``_records`` holds
    only some of the records (an incremental publish)."""
    specs = load_specs(home.sources_dir)

    def ids(chosen: list[str]) -> str:
        return "[" + ", ".join(_quote(i) for i in chosen) + "]::VARCHAR[]"

    snapshots = ids([s.id for s in specs if s.cadence == "snapshot" and s.database is None])
    dbs = ids([s.id for s in specs if s.database is not None])
    cols = ", ".join(f"r.{c}" for c in RECORD_SCHEMA)
    return f"""
    CREATE TEMP VIEW _current_records AS
    WITH r AS (SELECT * FROM _records r JOIN _record_files USING (filename)),
    latest AS ({
        f"SELECT source_id, delivered FROM {latest}"
        if latest
        else f"SELECT source_id, max(delivered) AS delivered FROM r "
        f"WHERE list_contains({snapshots}, source_id) GROUP BY source_id"
    }),
    gone AS (
        SELECT source_id, record_key, max(detected_at) AS detected_at FROM _deletions
        GROUP BY source_id, record_key
    ),
    newest AS (
        SELECT * FROM r WHERE list_contains({dbs}, source_id)
        QUALIFY row_number() OVER (
            PARTITION BY source_id, record_key
            ORDER BY ingested_at DESC NULLS LAST, line DESC NULLS LAST, fi DESC,
                     file_row_number DESC) = 1
    )
    SELECT {cols} FROM r JOIN latest USING (source_id, delivered)
    UNION ALL
    SELECT {cols} FROM newest r LEFT JOIN gone g USING (source_id, record_key)
    WHERE g.detected_at IS NULL OR g.detected_at < r.ingested_at
    UNION ALL
    SELECT {cols} FROM r
    WHERE NOT list_contains({snapshots}, source_id) AND NOT list_contains({dbs}, source_id)
    """


def register_mentions(con: duckdb.DuckDBPyConnection, rows: str) -> None:
    """``_mentions`` (a view): one row per mention of ``rows`` (the staged mention rows
    with their ``filename``): where a mention is staged in several files (the same
    identity, so the same values), the first file's row (``_mention_files``), as
    ``lake.mentions`` keeps."""
    con.execute(
        f"""CREATE TEMP TABLE _mention_dups AS
        SELECT mention_id, min(fi) AS fi
        FROM (SELECT mention_id, filename FROM {rows}) JOIN _mention_files USING (filename)
        GROUP BY mention_id HAVING count(*) > 1"""
    )
    con.execute(
        f"""CREATE TEMP VIEW _mentions AS
        SELECT {", ".join(f"r.{c}" for c in MENTION_COLUMNS)}
        FROM {rows} r JOIN _mention_files f USING (filename)
        WHERE NOT EXISTS (SELECT 1 FROM _mention_dups d
                          WHERE d.mention_id = r.mention_id AND d.fi <> f.fi)"""
    )


def deletion_files(home: Home) -> list[Path]:
    """The staged deletions detected in the source databases."""
    return sorted((home.lake / "staged").glob("*/*/*.deletions.parquet"))


def small_table(con: duckdb.DuckDBPyConnection, name: str, frame: pl.DataFrame) -> None:
    """A temporary table ``name`` holding a small polars frame."""
    con.register(f"{name}_frame", frame)
    con.execute(f"CREATE TEMP TABLE {name} AS SELECT * FROM {name}_frame")
    con.unregister(f"{name}_frame")


def _register_inputs(
    con: duckdb.DuckDBPyConnection, home: Home
) -> tuple[dict[str, float], dict[str, str]]:
    """Make the inputs visible to :func:`warehouse.schema.build`; returns the seconds
    per input and the evidence stamps (:func:`_evidence_inputs`). The lake's staged files and linkage's outputs are read by DuckDB
    straight from Parquet (``read_parquet``: views, or temporary tables where a
    result is used many times); only the small catalog, corrections and decisions
    come through polars."""
    seconds: dict[str, float] = {}

    def timed(name: str, fn: Any) -> None:
        t = time.perf_counter()
        fn()
        seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - t

    mention_files = lake.staged_files(home, "mentions")
    record_files = lake.staged_files(home, "records")

    def mentions() -> None:
        _files_table(con, "_mention_files", mention_files)
        raw = _scan_sql(con, mention_files, MENTION_SCHEMA, columns=MENTION_COLUMNS, extra="f")
        con.execute(f"CREATE TEMP VIEW _mention_rows AS {raw}")
        register_mentions(con, "_mention_rows")

    def records() -> None:
        _files_table(con, "_record_files", record_files)
        con.execute(
            "CREATE TEMP VIEW _records AS " + _scan_sql(con, record_files, RECORD_SCHEMA, extra="f")
        )
        from connectors.database_ingest import DELETION_SCHEMA

        con.execute(
            "CREATE TEMP VIEW _deletions AS "
            + _scan_sql(con, deletion_files(home), DELETION_SCHEMA)
        )

    def current() -> None:
        con.execute(_current_sql(home))

    def relationships() -> None:
        files = lake.staged_files(home, "relationships")
        con.execute(
            "CREATE TEMP VIEW _relationships AS " + _scan_sql(con, files, RELATIONSHIP_SCHEMA)
        )

    def small(name: str, frame: Any) -> Any:
        return lambda: small_table(con, name, frame())

    timed("_mentions", mentions)
    timed("_records", records)
    timed("_current", current)
    timed("_relationships", relationships)
    timed("_map", lambda: _entity_map(con, home))
    timed("_sources", small("_sources", lambda: _sources(home)))
    timed("_corrections", small("_corrections", lambda: corrections.corrections_frame(home)))
    timed("_decisions", small("_decisions", lambda: corrections.decisions_frame(home)))
    timed("match_features", lambda: matching.register_match_inputs(con, home))
    stamps: dict[str, str] = {}
    timed("_evidence", lambda: stamps.update(_evidence_inputs(con, home)))
    return {k: round(v, 2) for k, v in seconds.items()}, stamps


def _one(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> Any:
    row = con.execute(sql, params or []).fetchone()
    return row[0] if row else None


SMOKE_CHECKS: dict[str, str] = {
    # each query returns the number of violations
    "mention in no entity or several": """
        SELECT (SELECT count(*) FROM (SELECT DISTINCT mention_id FROM _mention_rows)
                WHERE mention_id NOT IN (SELECT mention_id FROM memberships))
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
    counts = _counts(con)
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


def memory_limit() -> str:
    """DuckDB's memory limit for a publish: ``$TESSERA_PUBLISH_MEMORY`` (e.g. ``12GB``),
    else half the machine's memory, at most 8 GB (the publish shares the machine; what
    does not fit spills to the temporary directory)."""
    env = os.environ.get("TESSERA_PUBLISH_MEMORY")
    if env:
        return env
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 << 30
    return f"{max(1, min(8, total // 2 >> 30))}GB"


def _configure(con: duckdb.DuckDBPyConnection, spill: Path) -> None:
    """Every core, a memory limit, spilling next to the file being built."""
    con.execute("SET enable_progress_bar = false")
    con.execute(f"SET threads = {max(1, os.cpu_count() or 1)}")
    con.execute(f"SET memory_limit = {_quote(memory_limit())}")
    con.execute(f"SET temp_directory = {_quote(str(spill))}")
    # Tables that need an order say ORDER BY; the others may be written in
    # parallel, in any order (faster, less memory).
    con.execute("SET preserve_insertion_order = false")


def fingerprint(home: Home) -> str:
    """What the warehouse's content is a function of besides its input files: the SQL
    of every table (:func:`warehouse.schema.fingerprint`), the mention columns, the
    current-records rule with the catalog's snapshot and database sources, and the
    evidence columns' reading. An incremental publish needs the base's to be equal."""
    import hashlib

    parts = [
        schema.fingerprint(),
        repr(MENTION_COLUMNS),
        _current_sql(home),
        evidence_head("person", ["source", "decision_id"]),
        evidence_key("person", ["a"]),
        evidence_packed(["a"]),
    ]
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()[:16]


def _counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    counts = {
        t: int(_one(con, f"SELECT count(*) FROM {t}"))
        for t in schema.TABLES
        if t not in ("runs", "publish_inputs")
    }
    counts["link_evidence"] = counts["evidence_edges"]  # the view: one row per edge
    return counts


def _full_build(
    con: duckdb.DuckDBPyConnection, home: Home, ref: dt.date, target: Path, steps: dict[str, float]
) -> dict[str, Any]:
    """Every table from the lake (the inputs, :func:`warehouse.schema.build`, the smoke
    checks), with the run history of ``target``."""
    t = time.perf_counter()
    read_seconds, stamps = _register_inputs(con, home)
    steps["read_inputs"] = time.perf_counter() - t
    t = time.perf_counter()
    build_seconds = schema.build(con, ref) or {}
    steps["build"] = time.perf_counter() - t
    t = time.perf_counter()
    counts = _smoke(con)
    steps["smoke_checks"] = time.perf_counter() - t
    _copy_runs(con, target)
    return {
        "counts": counts,
        "read_seconds": read_seconds,
        "build_seconds": build_seconds,
        "stamps": stamps,
    }


def publish(
    home: Home,
    reference_date: dt.date | None = None,
    *,
    base: Path | None = None,
    max_touched: float | None = None,
) -> dict[str, Any]:
    """Build the warehouse in a new file, check it, and swap it in atomically.

    ``reference_date`` (default: the last delivery date in the lake) is the day
    list entries are judged active / expired / not_started against.

    ``base`` (e.g. the live warehouse) asks for an incremental publish
    (:mod:`warehouse.incremental`): when ``base`` was built from inputs that today's
    extend (no staged file removed or rewritten, no full relink since, the same SQL),
    it is copied and only the rows of the entities the new inputs touched are
    rebuilt; otherwise (or when more than ``max_touched`` of the entities were
    touched, default :data:`warehouse.incremental.MAX_TOUCHED`) everything is built.
    ``base`` itself is never modified.

    Returns ``mode`` (``incremental`` or ``full``), ``full_reason`` (why a full build
    ran), ``touched`` (entities whose rows were rebuilt; null for a full build), the
    row count per table, the reference date, the path, the seconds taken, the
    seconds per step and, for a full build, per input (``read_seconds``); per table
    (``build_seconds``). Raises (and leaves the previous warehouse in place) if
    anything fails."""
    t0 = time.perf_counter()
    ref = reference_date or default_reference_date(home)
    target = home.warehouse
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = building_path(home)
    steps: dict[str, float] = {}
    for stale in (tmp, tmp.with_name(tmp.name + ".wal")):
        stale.unlink(missing_ok=True)
    spill = tmp.with_name(tmp.name + ".tmp")
    mode, reason, touched = "full", "no base warehouse given", None
    out: dict[str, Any] = {}
    try:
        if base is not None:
            from warehouse import incremental

            try:
                t = time.perf_counter()
                plan = incremental.plan(home, base)
                steps["plan"] = time.perf_counter() - t
                t = time.perf_counter()
                # The copy a daily run made ahead (warehouse.prefetch), else now.
                if not prefetch.take(base, tmp):
                    prefetch.clone_file(base, tmp)
                steps["copy_base"] = time.perf_counter() - t
                con = duckdb.connect(str(tmp))
                try:
                    _configure(con, spill)
                    inc = incremental.update(
                        con,
                        home,
                        ref,
                        plan,
                        max_touched=incremental.MAX_TOUCHED if max_touched is None else max_touched,
                    )
                    fatal = {k: v for k, v in inc["problems"].items() if v}
                    counts = _counts(con)
                    empty = [
                        t
                        for t in ("entities", "memberships", "entity_names", "facts")
                        if not counts[t]
                    ]
                    if fatal or empty:
                        raise PublishError(
                            f"smoke checks failed: {fatal or ''} "
                            f"{'empty: ' + str(empty) if empty else ''}"
                        )
                    steps.update(inc["steps"])
                    mode, reason, touched = "incremental", None, inc["touched"]
                    out = {
                        "counts": counts,
                        "read_seconds": {},
                        "build_seconds": inc["build_seconds"],
                        "stamps": inc["stamps"],
                        "entities_before": inc["entities_before"],
                    }
                    _finish(con, home, ref, out, t0)
                    t = time.perf_counter()
                    con.execute("COMMIT")
                    steps["commit"] = time.perf_counter() - t
                    incremental.detach(con)
                    t = time.perf_counter()
                    con.execute("CHECKPOINT")
                    steps["checkpoint"] = time.perf_counter() - t
                finally:
                    con.close()
            except incremental.FullBuild as e:
                reason = str(e)
                for stale in (tmp, tmp.with_name(tmp.name + ".wal")):
                    stale.unlink(missing_ok=True)
        if mode == "full":
            con = duckdb.connect(str(tmp))
            try:
                _configure(con, spill)
                out = _full_build(con, home, ref, target if base is None else base, steps)
                _finish(con, home, ref, out, t0)
                con.execute("CHECKPOINT")
            finally:
                con.close()
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        tmp.with_name(tmp.name + ".wal").unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(spill, ignore_errors=True)
    return {
        "path": str(target),
        "mode": mode,
        "full_reason": reason,
        "touched": touched,
        "reference_date": ref.isoformat(),
        "counts": out["counts"],
        "seconds": round(time.perf_counter() - t0, 2),
        "steps": {k: round(v, 2) for k, v in steps.items()},
        "read_seconds": out["read_seconds"],
        "build_seconds": out["build_seconds"],
    }


def _finish(
    con: duckdb.DuckDBPyConnection, home: Home, ref: dt.date, out: dict[str, Any], t0: float
) -> None:
    """Append the run to ``runs`` and record what the warehouse was built from."""
    from warehouse import incremental

    seconds = round(time.perf_counter() - t0, 3)
    con.execute(
        "INSERT INTO runs VALUES (current_timestamp, ?, ?, ?)",
        [ref, seconds, json.dumps(out["counts"])],
    )
    stamps = {
        **out["stamps"],
        "fingerprint": fingerprint(home),
        "reference_date": ref.isoformat(),
    }
    incremental.record_inputs(con, home, stamps)


def connect(home: Home) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the published warehouse (what analysts get)."""
    if not home.warehouse.exists():
        raise FileNotFoundError(f"no warehouse at {home.warehouse}: run publish first")
    return duckdb.connect(str(home.warehouse), read_only=True)
