"""The masked analyst export: the analyst views of the warehouse as a DuckDB file.

:func:`write` builds ``<target>.building`` and renames it to ``target``, a new file
(the pipeline then moves it over the live export: readers see the old or the new
one). The export holds the tables of :data:`TABLES` (the analyst views as tables,
facts of hidden list entries left out, the evidence edges and contributions, the
small tables), the masking macros, the ``link_evidence`` view and ``export_lineage``:
one row naming the warehouse run it was built from (the last ``runs.published_at``),
its reference date, the fingerprint of the export's SQL and how it was written.

**In full** every table is ``CREATE TABLE … AS`` its ``SELECT`` over the warehouse
(attached read-only as ``w``).

**Incrementally** (``previous``: the export written before, never modified) when the
previous export provably holds what a full export of the warehouse's *base* holds:
its lineage names the run the warehouse was incrementally published from (the
warehouse's ``base_run`` stamp, :mod:`warehouse.incremental`) and the same SQL
(fingerprint), or it is of this very warehouse run. The previous file is cloned
(:func:`warehouse.prefetch.clone_file`; a daily run has the copy made ahead,
:func:`warehouse.prefetch.take`) and, in one transaction:

- the entities to replace are the ones the publish rebuilt (``publish_touched``)
  plus those whose exported list entries differ between the previous export and the
  warehouse (a moved reference date turns entries active or inactive, and so shows
  or hides their facts);
- per entity table the rows of those entities are deleted and the warehouse's rows
  inserted (``relationships``: either side; ``evidence_edges`` by entity as well:
  the publish's void lists and new parts only touch entities in ``publish_touched``);
- ``evidence_contributions``, keyed by a hash of the combination (content fixed by
  the key), made the warehouse's set: keys the warehouse no longer holds out, keys it
  holds that the file lacks in (the warehouse's table is small, the edges' are not);
- ``list_entries`` whole when the reference date moved (every row carries it); the
  small tables (sources, runs, corrections, human decisions) whole;
- the row counts that are cheap to compare are compared with the warehouse's.

Anything else (no previous export, another lineage, a full publish, other SQL, too
many entities, a count that does not match) means a full export; the result says
why (``full_reason``), as a publish does.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from tessera.timing import Laps
from warehouse import prefetch, schema

# Above this share of the entities to replace, a full export is cheaper.
MAX_TOUCHED = 0.25
TOUCHED = "SELECT entity_id FROM _export_touched"
# The rows of the touched entities, per kind of key (identifiers written here).
KEYS = {
    "entity": f"entity_id IN ({TOUCHED})",
    "either_side": f"entity_id IN ({TOUCHED}) OR related_entity_id IN ({TOUCHED})",
}


@dataclass(frozen=True)
class ExportTable:
    """One table of the export: its ``SELECT`` over the warehouse (``w``), which rows an
    incremental export replaces (``keyed``: ``entity`` / ``either_side`` per
    :data:`KEYS`, ``contributions`` by key, ``whole``), whether its rows carry the
    reference date (``dated``: rebuilt whole when it moved) and whether the
    ``SELECT`` drops rows (``filtered``: its count is not checked, that costs a scan)."""

    name: str
    select: str
    keyed: str
    dated: bool = False
    filtered: bool = False


TABLES = (
    ExportTable("entities", "SELECT * FROM w.analyst_entities", "entity"),
    ExportTable("entity_identifiers", "SELECT * FROM w.analyst_identifiers", "entity"),
    ExportTable(
        "list_entries", "SELECT * FROM w.analyst_list_entries", "entity", dated=True, filtered=True
    ),
    ExportTable("entity_names", "SELECT * FROM w.entity_names", "entity"),
    ExportTable("entity_addresses", "SELECT * FROM w.entity_addresses", "entity"),
    ExportTable("memberships", "SELECT * FROM w.memberships", "entity"),
    ExportTable(
        "facts",
        "SELECT * FROM w.facts f WHERE NOT EXISTS (SELECT 1 FROM w.list_entries l "
        "WHERE l.source_id = f.source_id AND l.record_key = f.record_key "
        "AND l.entity_id = f.entity_id AND l.status <> 'active')",
        "entity",
        filtered=True,
    ),
    ExportTable("relationships", "SELECT * FROM w.relationships", "either_side"),
    # The edges and, once per distinct combination, their contributions; the export's
    # ``link_evidence`` is the warehouse's view over the two (materialising one JSON
    # per edge was most of an export's time at 1,000,000 persons).
    ExportTable("evidence_edges", "SELECT * FROM w.evidence_edges", "entity"),
    ExportTable(
        "evidence_contributions", "SELECT * FROM w.evidence_contributions", "contributions"
    ),
    ExportTable("sources", "SELECT * FROM w.sources", "whole"),
    ExportTable("runs", "SELECT * FROM w.runs", "whole"),
    ExportTable(
        "corrections",
        "SELECT * REPLACE (CASE WHEN attribute IN ('id_number', 'phone') "
        "THEN mask_identifier(attribute, value) ELSE value END AS value) FROM w.corrections",
        "whole",
    ),
    ExportTable("human_decisions", "SELECT * FROM w.human_decisions", "whole"),
)
LINEAGE = "export_lineage"
LINEAGE_DDL = f"""
CREATE TABLE {LINEAGE} (
    warehouse_published_at TIMESTAMPTZ, reference_date DATE, fingerprint VARCHAR,
    mode VARCHAR, full_reason VARCHAR, touched BIGINT, exported_at TIMESTAMPTZ
)
"""


def fingerprint() -> str:
    """A hash of the SQL that defines the export: an incremental export only updates
    an export written by the same statements."""
    parts = [repr(TABLES), repr(schema.MACROS), schema.VIEWS["link_evidence"], LINEAGE_DDL]
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()[:16]


class FullExport(Exception):
    """The previous export cannot be updated; the message says why."""


@dataclass
class ExportResult:
    """What :func:`write` wrote: rows per table, ``mode`` (``incremental`` / ``full``),
    ``full_reason``, ``touched`` (entities whose rows were replaced; null in full) and
    the seconds per step."""

    counts: dict[str, int]
    mode: str
    full_reason: str | None
    touched: int | None
    steps: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class _Run:
    """The warehouse run exported: its ``published_at`` (epoch microseconds), reference
    date and the run it was incrementally published from (``base_run``, null after a
    full publish)."""

    run: int
    reference_date: dt.date
    base_run: int | None


def _when(us: int | None) -> str:
    if us is None:
        return "none"
    return dt.datetime.fromtimestamp(us / 1e6, dt.UTC).isoformat()


def _one(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> Any:
    row = con.execute(sql, params or []).fetchone()
    return row[0] if row else None


def _warehouse_run(con: duckdb.DuckDBPyConnection) -> _Run:
    """The run of the warehouse attached as ``w``."""
    row = con.execute(
        "SELECT epoch_us(published_at), reference_date FROM w.runs "
        "ORDER BY published_at DESC LIMIT 1"
    ).fetchone()
    if row is None:
        raise ValueError("the warehouse records no run")
    base = None
    has = _one(
        con,
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = 'w' "
        "AND table_name IN ('publish_inputs', 'publish_touched')",
    )
    if has == 2:
        stamp = _one(con, "SELECT stamp FROM w.publish_inputs WHERE kind = 'base_run'")
        base = int(stamp) if stamp is not None else None
    return _Run(int(row[0]), row[1], base)


def _previous(con: duckdb.DuckDBPyConnection, now: _Run) -> bool:
    """Whether ``previous`` (attached as ``p``) is the export of the warehouse's base
    (``True``: replace the touched entities) or of this very warehouse run (``False``:
    nothing to replace); raises :class:`FullExport` otherwise."""
    try:
        row = con.execute(
            f"SELECT epoch_us(warehouse_published_at), fingerprint FROM p.{LINEAGE}"
        ).fetchall()
    except duckdb.Error as e:
        raise FullExport(f"the previous export records no lineage ({e})") from e
    if len(row) != 1:
        raise FullExport(f"the previous export's lineage has {len(row)} rows")
    run, fp = row[0]
    if fp != fingerprint():
        raise FullExport("the export's SQL changed since the previous export")
    if run == now.run:
        return False
    if now.base_run is None:
        raise FullExport("the warehouse was published in full")
    if run != now.base_run:
        raise FullExport(
            f"the previous export is of the warehouse run {_when(run)}, the warehouse was "
            f"published from the run {_when(now.base_run)}"
        )
    return True


def _lineage(con: duckdb.DuckDBPyConnection, now: _Run, result: ExportResult) -> None:
    con.execute(
        f"INSERT INTO {LINEAGE} VALUES (make_timestamptz(?), ?, ?, ?, ?, ?, current_timestamp)",
        [
            now.run,
            now.reference_date,
            fingerprint(),
            result.mode,
            result.full_reason,
            result.touched,
        ],
    )


def _counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    names = [t.name for t in TABLES] + [LINEAGE]
    return {n: int(_one(con, f"SELECT count(*) FROM {n}")) for n in names}


def _full(con: duckdb.DuckDBPyConnection, warehouse: Path, result: ExportResult) -> None:
    for sql in schema.MACROS:  # the analysts' masking macros, in the export too
        con.execute(sql)
    con.execute("ATTACH ? AS w (READ_ONLY)", [str(warehouse)])
    now = _warehouse_run(con)
    for t in TABLES:
        con.execute(f"CREATE TABLE {t.name} AS {t.select}")
    con.execute("DETACH w")
    con.execute(schema.VIEWS["link_evidence"])
    con.execute(LINEAGE_DDL)
    _lineage(con, now, result)


def _replace(con: duckdb.DuckDBPyConnection, t: ExportTable, cond: str) -> None:
    con.execute(f"DELETE FROM {t.name} WHERE {cond}")
    con.execute(f"INSERT INTO {t.name} BY NAME SELECT * FROM ({t.select}) AS s WHERE {cond}")


def _touched(con: duckdb.DuckDBPyConnection, base: bool, max_touched: float) -> int:
    """``_export_touched``: the entities the publish rebuilt (if ``base``: the previous
    export is of the base) and those whose exported list entries differ (their status
    moved with the reference date); raises :class:`FullExport` above ``max_touched``."""
    lists = next(t for t in TABLES if t.name == "list_entries")
    new = f"SELECT * EXCLUDE (reference_date) FROM ({lists.select})"
    old = "SELECT * EXCLUDE (reference_date) FROM list_entries"
    rebuilt = (
        "SELECT entity_id FROM w.publish_touched"
        if base
        else "SELECT NULL::VARCHAR AS entity_id WHERE false"
    )
    con.execute(
        f"""CREATE TEMP TABLE _export_touched AS
        SELECT DISTINCT entity_id FROM (
            {rebuilt}
            UNION ALL SELECT entity_id FROM ({new} EXCEPT ALL {old})
            UNION ALL SELECT entity_id FROM ({old} EXCEPT ALL {new})
        ) WHERE entity_id IS NOT NULL"""
    )
    n = int(_one(con, "SELECT count(*) FROM _export_touched"))
    total = int(_one(con, "SELECT count(*) FROM entities"))
    if n > max_touched * max(total, 1):
        raise FullExport(f"{n:,} of {total:,} entities to replace (more than {max_touched:.0%})")
    return n


def _apply(con: duckdb.DuckDBPyConnection, moved: bool) -> None:
    """Replace the rows of the touched entities, the contributions and the small tables
    (see the module docstring)."""
    for t in TABLES:
        if t.keyed == "whole" or (t.dated and moved):
            _replace(con, t, "true")
        elif t.keyed == "contributions":
            key = "contributions_key"
            con.execute(f"DELETE FROM {t.name} WHERE {key} NOT IN (SELECT {key} FROM ({t.select}))")
            con.execute(
                f"""INSERT INTO {t.name} BY NAME SELECT * FROM ({t.select}) AS s
                WHERE {key} NOT IN (SELECT {key} FROM {t.name})"""
            )
        else:
            _replace(con, t, KEYS[t.keyed])


def _check_counts(con: duckdb.DuckDBPyConnection, counts: dict[str, int]) -> None:
    """Raise :class:`FullExport` where a table's rows do not number the warehouse's
    (the tables whose ``SELECT`` keeps every row: a count from the metadata)."""
    wrong = {}
    for t in TABLES:
        if not t.filtered:
            want = int(_one(con, f"SELECT count(*) FROM ({t.select})"))
            if want != counts[t.name]:
                wrong[t.name] = (counts[t.name], want)
    if wrong:
        raise FullExport(f"the update's row counts differ from the warehouse's: {wrong}")


def _incremental(
    con: duckdb.DuckDBPyConnection,
    warehouse: Path,
    now: _Run,
    base: bool,
    previous_ref: dt.date,
    max_touched: float,
    result: ExportResult,
) -> None:
    step = Laps(result.steps)

    con.execute("ATTACH ? AS w (READ_ONLY)", [str(warehouse)])
    if _warehouse_run(con) != now:  # a publish swapped a new warehouse in meanwhile
        raise FullExport("the warehouse changed while the export was planned")
    result.touched = _touched(con, base, max_touched)
    step("touched")
    con.execute("BEGIN TRANSACTION")
    try:
        _apply(con, moved=previous_ref != now.reference_date)
        step("apply")
        result.counts = _counts(con)
        _check_counts(con, result.counts)
        step("check_counts")
        con.execute(f"DELETE FROM {LINEAGE}")
        _lineage(con, now, result)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    step("commit")
    con.execute("DETACH w")


def write(
    warehouse: Path,
    target: Path,
    previous: Path | None = None,
    *,
    max_touched: float = MAX_TOUCHED,
) -> ExportResult:
    """Write the analyst export of ``warehouse`` to the new file ``target`` (must not
    exist): incrementally from ``previous`` where that is provably the same as a full
    export (see the module docstring), else in full. ``previous`` is never modified.
    Raises (leaving no file behind) if anything fails."""
    if target.exists():
        raise FileExistsError(f"{target} exists; the export writes a new file")
    tmp = target.with_name(target.name + ".building")
    wal = tmp.with_name(tmp.name + ".wal")
    for stale in (tmp, wal):
        stale.unlink(missing_ok=True)
    result = ExportResult({}, "full", "no previous export given", None)
    try:
        if previous is not None:
            try:
                now, base, previous_ref = _plan(warehouse, previous)
                t = time.perf_counter()
                # The copy a daily run made ahead (warehouse.prefetch), else now.
                if not prefetch.take(previous, tmp):
                    prefetch.clone_file(previous, tmp)
                result.steps["copy_previous"] = round(time.perf_counter() - t, 2)
                result.mode, result.full_reason = "incremental", None
                con = duckdb.connect(str(tmp))
                try:
                    _incremental(con, warehouse, now, base, previous_ref, max_touched, result)
                    t = time.perf_counter()
                    con.execute("CHECKPOINT")
                    result.steps["checkpoint"] = round(time.perf_counter() - t, 2)
                finally:
                    con.close()
            except FullExport as e:
                result = ExportResult({}, "full", str(e), None)
                for stale in (tmp, wal):
                    stale.unlink(missing_ok=True)
        if result.mode == "full":
            t = time.perf_counter()
            con = duckdb.connect(str(tmp))
            try:
                _full(con, warehouse, result)
                result.counts = _counts(con)
                con.execute("CHECKPOINT")
            finally:
                con.close()
            result.steps["full"] = round(time.perf_counter() - t, 2)
        tmp.replace(target)
    except BaseException:
        for stale in (tmp, wal):
            stale.unlink(missing_ok=True)
        raise
    return result


def _plan(warehouse: Path, previous: Path) -> tuple[_Run, bool, dt.date]:
    """The warehouse's run, whether ``previous`` is the export of its base (see
    :func:`_previous`) and the previous export's reference date; raises
    :class:`FullExport` when it cannot be updated."""
    if not previous.exists():
        raise FullExport(f"no previous export at {previous}")
    if previous.with_name(previous.name + ".wal").exists():
        raise FullExport(f"the previous export {previous.name} has an uncheckpointed WAL")
    con = duckdb.connect()
    try:
        con.execute("ATTACH ? AS w (READ_ONLY)", [str(warehouse)])
        now = _warehouse_run(con)
        try:
            con.execute("ATTACH ? AS p (READ_ONLY)", [str(previous)])
        except duckdb.Error as e:
            raise FullExport(f"the previous export cannot be opened: {e}") from e
        base = _previous(con, now)
        ref = _one(con, f"SELECT reference_date FROM p.{LINEAGE}")
    finally:
        con.close()
    return now, base, ref


def read_lineage(path: Path) -> dict[str, Any]:
    """The ``export_lineage`` row of the export at ``path``, as a dict."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        cur = con.execute(f"SELECT * FROM {LINEAGE}")
        names = [d[0] for d in cur.description]
        row = cur.fetchone()
    finally:
        con.close()
    if row is None:
        raise ValueError(f"{path} records no lineage")
    return dict(zip(names, row, strict=True))
