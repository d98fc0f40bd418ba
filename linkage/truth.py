"""The simulated truth for staged mentions: which real entity each mention is about.

Read only by evaluation, never by the model. The simulator writes
``truth/<source>/<day>.parquet`` with one row per delivered record (``record_key``,
``entity_id``) and, for rows that carry a second mention, ``<role>_id``. A mention
is mapped through the records that stage it (``source_id``, ``record_key``); a
related mention through the relationship rows and the truth's ``<role>_id``. When a
record is delivered more than once, its first truth row (files in path order) counts.
Each distinct (record, mention) and (record, role, related mention) is one vote.

A mention is one distinct identity tuple per source, so a thin source (a name
only) can collapse two people into one mention: such a mention gets its majority
entity (ties: the smallest entity ID) and is counted as ambiguous.

DuckDB reads the Parquet files directly (:func:`create_mention_truth`), so the
staged records never sit in Python; :func:`mention_truth` returns the same table as
a polars frame. Both build the mapping from scratch.

A daily run keeps it instead (:func:`update_truth_store`): past days' files never
change, new days add files, so the mapping and what it takes to extend it exactly
are stored in ``lake/linkage/mention_truth/`` and each evaluation reads only the
files added since. See :func:`update_truth_store` for what is kept.
"""

from __future__ import annotations

import fcntl
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from connectors import lake
from tessera.config import Home

ROLES = ("legal_rep", "employer", "household_head")

# A person mention that says none of these carries only a name (and perhaps sex,
# birth place or an address): see linkage.evaluate.name_only_ceiling.
DISTINGUISHING = (
    "dob", "dob_raw", "id_number", "id_raw", "id_masked", "id_dob",
    "phone", "phone_raw", "phone_masked", "email", "plate", "passport",
)  # fmt: skip
# The polars key of name_only_ceiling: RE2's \s is ASCII only, so the rest of Rust's
# Unicode White_Space (\v, U+0085 and the separators \p{Z}) is listed.
NAME_KEY_SQL = "lower(regexp_replace(name_latin, '[\\s\\x{0B}\\x{85}\\p{Z}·\\-]', '', 'g'))"


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


def staged_mentions_sql(con: duckdb.DuckDBPyConnection, files: list[Path]) -> str:
    """A query over the staged mention ``files`` with ``mention_id, entity_type,
    name_latin`` and the :data:`DISTINGUISHING` columns; a column no file has is nulls
    (as :func:`connectors.lake.mentions` inserts it), no file gives no rows."""
    wanted = ("mention_id", "entity_type", "name_latin", *DISTINGUISHING)
    if not files:
        cols = ", ".join(f'NULL::VARCHAR AS "{c}"' for c in wanted)
        return f"(SELECT {cols} WHERE false)"
    src = read_parquet_sql(files)
    have = _columns(con, src)
    cols = ", ".join((f'"{c}"' if c in have else f'NULL::VARCHAR AS "{c}"') for c in wanted)
    return f"(SELECT {cols} FROM {src})"


# -- the SQL both the scratch build and the store use -----------------------------------

_FIRST_COLUMNS = ("source_id", "record_key", "entity_id", *(f"{r}_id" for r in ROLES))
_ROLE_ENTITY = "CASE k.role " + " ".join(f"WHEN '{r}' THEN t.{r}_id" for r in ROLES) + " END"


def _create_first_truth(
    con: duckdb.DuckDBPyConnection, table: str, files: list[tuple[Path, int]]
) -> None:
    """Temporary ``table``: the first truth row of each (source, record) among
    ``files`` (path, file number; lowest number, then row, first): ``source_id,
    record_key, entity_id, <role>_id..., file_no``."""
    run_sql(con, "CREATE OR REPLACE TEMP TABLE _truth_files (path VARCHAR, i BIGINT)")
    con.executemany("INSERT INTO _truth_files VALUES (?, ?)", [(str(p), i) for p, i in files])
    src = read_parquet_sql([p for p, _ in files], filename=True, file_row_number=True)
    have = _columns(con, src)
    roles = ", ".join(f"{r}_id" if f"{r}_id" in have else f"NULL::VARCHAR AS {r}_id" for r in ROLES)
    packed = ", ".join(f"{c}" for c in _FIRST_COLUMNS[2:])
    run_sql(
        con,
        f"""
        CREATE OR REPLACE TEMP TABLE {table} AS
        SELECT source_id, record_key, {", ".join(f"v.{c}" for c in _FIRST_COLUMNS[2:])},
               v.file_no::INTEGER AS file_no
        FROM (SELECT source_id, record_key,
                     min_by(struct_pack({packed}, file_no := f.i),
                            f.i * 4294967296 + t.file_row_number) AS v
              FROM (SELECT source_id, record_key, entity_id, {roles}, filename, file_row_number
                    FROM {src}) t
              JOIN _truth_files f ON f.path = t.filename
              WHERE source_id IS NOT NULL AND record_key IS NOT NULL
              GROUP BY source_id, record_key)
        """,
    )
    run_sql(con, "DROP TABLE _truth_files")


def _keys_sql(records: list[Path], relationships: list[Path]) -> str:
    """The distinct votes of the staged ``records`` (``role`` null) and
    ``relationships`` files: ``source_id, record_key, role, mention_id``."""
    parts = ["SELECT NULL::VARCHAR, NULL::VARCHAR, NULL::VARCHAR, NULL::VARCHAR WHERE false"]
    if records:
        parts.append(f"""
            SELECT DISTINCT source_id, record_key, NULL::VARCHAR AS role, mention_id
            FROM {read_parquet_sql(records)}
            WHERE source_id IS NOT NULL AND record_key IS NOT NULL AND mention_id IS NOT NULL""")
    if relationships:
        roles = ", ".join(f"'{r}'" for r in ROLES)
        parts.append(f"""
            SELECT DISTINCT source_id, record_key, role, related_mention_id AS mention_id
            FROM {read_parquet_sql(relationships)}
            WHERE source_id IS NOT NULL AND record_key IS NOT NULL AND role IN ({roles})
              AND related_mention_id IS NOT NULL""")
    return (
        "SELECT * FROM ("
        + " UNION ALL ".join(parts)
        + ") AS k(source_id, record_key, role, mention_id)"
    )


def _votes_sql(keys: str, first: str) -> str:
    """One row (``mention_id, entity_id``) per vote: ``keys`` joined with the first
    truth rows ``first``; a related mention's vote needs its role's entity."""
    return f"""
        SELECT k.mention_id, CASE WHEN k.role IS NULL THEN t.entity_id ELSE {_ROLE_ENTITY} END
               AS entity_id
        FROM {keys} k JOIN {first} t USING (source_id, record_key)
        WHERE k.role IS NULL OR {_ROLE_ENTITY} IS NOT NULL"""


def _majority_sql(counts: str) -> str:
    """Per mention of ``counts`` (``mention_id, entity_id, n``): the majority entity (ties
    to the smallest ID; a vote without an entity, never written by the simulator,
    would sort first, as polars sorts nulls), ``n_entities`` and the majority's ``n``."""
    return f"""
        SELECT mention_id,
               min_by(entity_id, struct_pack(neg_n := -n, missing := entity_id IS NOT NULL,
                                             entity_id := entity_id)) AS entity_id,
               count(*)::UINTEGER AS n_entities, max(n)::BIGINT AS n
        FROM {counts} GROUP BY mention_id"""


def create_mention_truth(
    con: duckdb.DuckDBPyConnection, home: Home, table: str = "mention_truth"
) -> None:
    """Create the temporary table ``table`` on ``con``: one row per mapped mention,
    ``mention_id, entity_id`` (the majority entity), ``n_entities`` (> 1: the mention
    collapses several real entities). Read from the truth files and the staged
    records and relationships by DuckDB, from scratch."""
    if not table.isidentifier():
        raise ValueError(f"not a table name: {table!r}")
    files = truth_files(home)
    _create_first_truth(con, "_truth", [(p, i) for i, p in enumerate(files)])
    keys = _keys_sql(lake.staged_files(home, "records"), lake.staged_files(home, "relationships"))
    votes = _votes_sql(f"({keys})", "_truth")
    counts = f"(SELECT mention_id, entity_id, count(*) AS n FROM ({votes}) GROUP BY ALL)"
    run_sql(
        con,
        f"CREATE OR REPLACE TEMP TABLE {table} AS "
        f"SELECT mention_id, entity_id, n_entities FROM ({_majority_sql(counts)})",
    )
    run_sql(con, "DROP TABLE _truth")


def mention_truth(home: Home) -> pl.DataFrame:
    """One row per mapped mention, by mention ID: ``mention_id, entity_id`` (the
    majority entity), ``n_entities`` (> 1 means the mention collapses several real
    entities). See :func:`create_mention_truth`."""
    from linkage.run import linkage_duckdb

    with linkage_duckdb() as con:
        create_mention_truth(con, home)
        return con.sql("SELECT * FROM mention_truth ORDER BY mention_id").pl()


def create_labels(
    con: duckdb.DuckDBPyConnection, table: str, mentions: str, truth: str, entity_type: str
) -> None:
    """Temporary ``table``: every distinct ``entity_type`` mention of the query
    ``mentions`` (:func:`staged_mentions_sql`) with its truth from the table
    ``truth`` (:func:`create_mention_truth`): ``mention_id, entity_id`` (``unknown:<id>``
    without truth), ``collapsed`` (several real entities), ``name_key, name_only``
    (persons: the pinyin name key, computed once per distinct name, and whether the
    mention carries only a name; ``amb`` is set by :func:`set_ambiguous_name_only`)."""
    if entity_type == "person":
        name_only = " AND ".join(f'"{c}" IS NULL' for c in DISTINGUISHING)
        distinct = f"SELECT DISTINCT mention_id, name_latin, ({name_only}) AS name_only"
        named = f"""
            SELECT m.mention_id, n.name_key, m.name_only FROM m
            LEFT JOIN (SELECT name_latin, {NAME_KEY_SQL} AS name_key
                       FROM (SELECT DISTINCT name_latin FROM m WHERE name_latin IS NOT NULL)) n
            USING (name_latin)"""
    else:
        distinct = "SELECT DISTINCT mention_id"
        named = "SELECT mention_id, NULL::VARCHAR AS name_key, false AS name_only FROM m"
    run_sql(
        con,
        f"""
        CREATE OR REPLACE TEMP TABLE {table} AS
        WITH m AS MATERIALIZED ({distinct} FROM {mentions} WHERE entity_type = ?)
        SELECT l.mention_id, coalesce(t.entity_id, 'unknown:' || l.mention_id) AS entity_id,
               coalesce(t.n_entities, 1) > 1 AS collapsed, false AS amb, l.name_key, l.name_only
        FROM ({named}) l LEFT JOIN {truth} t ON t.mention_id = l.mention_id
        """,
        [entity_type],
    )


def ambiguous_keys_sql(labels: str, keys: str | None = None) -> str:
    """Per name key of ``labels`` (rows of :func:`create_labels`; only the keys of the
    table ``keys`` when given): ``shared``, whether the mentions carrying it are of two
    or more real entities (their smallest and largest entity differ: no distinct count
    to keep). Only keys a name-only mention carries are listed."""
    restrict = f" SEMI JOIN {keys} USING (name_key)" if keys else ""
    return f"""
        SELECT name_key, min(entity_id) <> max(entity_id) AS shared
        FROM {labels}{restrict}
        WHERE name_key IS NOT NULL
        GROUP BY name_key HAVING bool_or(name_only)"""


# -- the stored mapping ------------------------------------------------------------------

# 2: the first rows and vote keys in record-key order (_record_ranges), the labels in
# name-key order, the per (name key, entity) counts.
STORE_VERSION = 2
# A table is stored in parts: a base and one part per update with the rows it adds
# (an append-only table) or changes (a table keyed by mention: a later part's row
# replaces the mention's earlier ones). Past MAX_PARTS parts, or for a keyed table
# past MAX_DELTA_SHARE of its base's rows in the later parts, it is rewritten as one.
MAX_PARTS = 16
MAX_DELTA_SHARE = 0.1
# Each update logs, per entity type, the mentions whose label it changed (or added):
# ``changes`` in the manifest, kept for this many generations, so a consumer that
# read generation g can tell what changed since (linkage.score_store).
MAX_CHANGE_GENERATIONS = 32
# The keyed tables and their keys.
_KEYS = {
    "mention_truth": "mention_id",
    **{f"labels_{t}": "mention_id" for t in ("person", "business")},
    **{f"names_{t}": "name_key, entity_id" for t in ("person", "business")},
}
_KEYED = tuple(_KEYS)
# Rows per Parquet row group of a stored file: small enough that a scan filtered on
# the order a table is kept in (record keys, name keys) skips most of the table.
ROW_GROUP_ROWS = 16_384
# Up to this many name keys are looked up as a list of values (pushed into the scan).
MAX_IN_LIST = 2_000
_INPUT_KINDS = ("truth", "records", "relationships", "mentions")
_TABLES = {
    # the first truth row of each (source, record) seen, with the number of its file
    # in the manifest's truth list; append-only
    "first": {c: "VARCHAR" for c in _FIRST_COLUMNS} | {"file_no": "INTEGER"},
    # every distinct vote key seen (role null: a record's own mention); append-only
    "keys": {"source_id": "VARCHAR", "record_key": "VARCHAR", "role": "VARCHAR",
             "mention_id": "VARCHAR"},
    # the mapping, with the majority entity's vote count
    "mention_truth": {"mention_id": "VARCHAR", "entity_id": "VARCHAR",
                      "n_entities": "UINTEGER", "n": "BIGINT"},
    # the votes for the other entities of a mention that collapses several
    "minority": {"mention_id": "VARCHAR", "entity_id": "VARCHAR", "n": "BIGINT"},
    # per entity type, every staged mention with its truth (create_labels)
    **{
        f"labels_{t}": {"mention_id": "VARCHAR", "entity_id": "VARCHAR", "collapsed": "BOOLEAN",
                        "amb": "BOOLEAN", "name_key": "VARCHAR", "name_only": "BOOLEAN"}
        for t in ("person", "business")
    },
    # per entity type and name key, how many labelled mentions each entity has (0: none
    # any more), for ``amb`` (ambiguous_keys_sql) without reading the labels
    **{f"names_{t}": {"name_key": "VARCHAR", "entity_id": "VARCHAR", "n": "BIGINT"}
       for t in ("person", "business")},
}  # fmt: skip
LABELLED_TYPES = ("person", "business")
_LABEL_COLUMNS = ", ".join(_TABLES["labels_person"])


class _Superseded(Exception):
    """A new truth file holds an earlier row for a record already mapped."""


def store_dir(home: Home) -> Path:
    """Where the mapping is kept: ``lake/linkage/mention_truth/``."""
    return home.lake / "linkage" / "mention_truth"


def input_states(home: Home) -> dict[str, list[list[Any]]]:
    """The files the truth mapping and the naive rule are computed from, now, per kind
    (truth, staged records, relationships, mentions): ``[path relative to home, size,
    mtime_ns]`` (a stat, no read)."""
    files = {
        "truth": sorted(home.truth.glob("*/*.parquet")),
        **{k: lake.staged_files(home, k) for k in ("records", "relationships", "mentions")},
    }
    out: dict[str, list[list[Any]]] = {}
    for kind, paths in files.items():
        out[kind] = []
        for p in paths:
            st = p.stat()
            out[kind].append([str(p.relative_to(home.root)), st.st_size, st.st_mtime_ns])
    return out


def read_manifest(home: Home) -> dict[str, Any] | None:
    """The store's manifest (``manifest.json``: the input files it covers, its table
    files), or None when there is none, it is of another version or a table file is
    missing or not the one written (or the manifest does not list every table)."""
    path = store_dir(home) / "manifest.json"
    if not path.exists():
        return None
    m = json.loads(path.read_text())
    if m.get("version") != STORE_VERSION or set(m["tables"]) != set(_TABLES):
        return None
    for parts in m["tables"].values():
        for name, size, mtime_ns, _ in parts:
            p = path.parent / name
            if not p.exists() or [p.stat().st_size, p.stat().st_mtime_ns] != [size, mtime_ns]:
                return None
    return m


def _new_inputs(
    old: dict[str, Any] | None, now: dict[str, list[list[Any]]]
) -> tuple[dict[str, list[str]] | None, str]:
    """The files added since ``old`` covered its inputs, per kind, or None (rebuild)
    when a covered file changed or disappeared; and why."""
    if old is None:
        return None, "no store"
    new: dict[str, list[str]] = {}
    for kind in _INPUT_KINDS:
        current = {rel: [size, mtime] for rel, size, mtime in now[kind]}
        for rel, size, mtime in old["inputs"][kind]:
            if current.get(rel) != [size, mtime]:
                return None, f"{rel} changed" if rel in current else f"{rel} disappeared"
        covered = {rel for rel, _, _ in old["inputs"][kind]}
        new[kind] = [rel for rel, _, _ in now[kind] if rel not in covered]  # path order
    return new, "files added" if any(new.values()) else "current"


@contextmanager
def locked(directory: Path) -> Iterator[None]:
    """One writer at a time (an exclusive lock on ``.lock``; readers need none: every
    table file is written once, under a new name, and the manifest replaced last)."""
    with open(directory / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def update_truth_store(con: duckdb.DuckDBPyConnection, home: Home) -> dict[str, Any]:
    """Bring the stored mapping up to date with the truth and staged files; returns the
    manifest with ``status`` (``current``, ``updated``, ``built``) and ``reason``.

    The store (``lake/linkage/mention_truth/``) holds, beside ``manifest.json`` (every
    input file covered: path, size, mtime_ns, and the table files): the first truth
    row of every record seen (with its file), every distinct vote key, the mapping
    with the majority's vote count, the other entities' votes of the mentions that
    collapse several, per entity type every staged mention labelled
    (:func:`create_labels`, with ``amb``: an ambiguous name-only mention) and per name
    key how many labelled mentions each entity has.

    When every covered file is unchanged, only the added files are read, and of the
    stored tables only what they need (:func:`_apply`): their first truth rows for
    records not seen, their new vote keys, which vote through the known first rows
    (and the known keys through the new first rows); the mentions with new votes get
    their majority again from all their votes; their labels change, new mentions are
    labelled, the name keys of those are counted again and ``amb`` is recomputed for
    the mentions of the keys whose sharing changed. A covered file changed or gone, a
    new truth row earlier (in path order) than the stored first row of its record, or
    a manifest of another version or without every table, means a rebuild from
    scratch. The result equals :func:`create_mention_truth`. Files are written under
    new names (temporary file, then :func:`os.replace`), the manifest last; the
    previous generation's files stay for readers that opened its manifest.

    For consumers that keep sums over the labels (:mod:`linkage.score_store`) the
    manifest also says what changed: ``lineage`` (new with each build), per entity type
    ``labels`` (how many mentions are labelled) and ``changes`` (per update, a file of
    the mentions whose label it added or changed: ``[name, size, mtime_ns, rows,
    generation]``, kept :data:`MAX_CHANGE_GENERATIONS` generations; complete for the
    generations after ``changes_from``)."""
    d = store_dir(home)
    d.mkdir(parents=True, exist_ok=True)
    with locked(d):
        old = read_manifest(home)
        now = input_states(home)
        if not now["truth"]:
            raise FileNotFoundError(f"no truth under {home.truth}")
        new, reason = _new_inputs(old, now)
        if old is not None and new is not None and not any(new.values()):
            return old | {"status": "current", "reason": reason}
        gen = (old["generation"] if old else 0) + 1
        manifest = None
        if old is not None and new is not None:
            try:
                manifest = _apply(con, home, gen, old, new, now)
                status = "updated"
            except _Superseded:
                reason = "a new truth row precedes a stored one"
        if manifest is None:
            every = {kind: [rel for rel, _, _ in now[kind]] for kind in _INPUT_KINDS}
            manifest = _apply(con, home, gen, None, every, now)
            status = "built"
        manifest["updated_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        path = d / "manifest.json"
        tmp = path.with_name(f"manifest.json.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(manifest, indent=1))
        os.replace(tmp, path)
        keep = {"manifest.json", ".lock"}
        for m in (old, manifest):
            for group in ("tables", "changes"):
                keep |= {name for parts in (m or {}).get(group, {}).values() for name, *_ in parts}
        for p in d.iterdir():
            if p.name not in keep:
                p.unlink()
        return manifest | {"status": status, "reason": reason}


def _table_sql(d: Path, table: str, parts: list[list[Any]]) -> str:
    """A query for a stored table as it stands, from its ``parts`` (none: empty)."""
    if not parts:
        cols = ", ".join(f"NULL::{t} AS {c}" for c, t in _TABLES[table].items())
        return f"SELECT {cols} WHERE false"
    files = [d / name for name, *_ in parts]
    if table not in _KEYED or len(files) == 1:
        return f"SELECT * FROM {read_parquet_sql(files)}"
    # Part names end in the zero-padded generation: the last name is the latest row.
    key = _KEYS[table]
    return f"""
        WITH delta AS (
            SELECT * EXCLUDE (filename) FROM {read_parquet_sql(files[1:], filename=True)}
            QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY filename DESC) = 1)
        SELECT * FROM {read_parquet_sql(files[:1])} ANTI JOIN delta USING ({key})
        UNION ALL SELECT * FROM delta"""


def _write(con: duckdb.DuckDBPyConnection, d: Path, name: str, query: str) -> list[Any]:
    """Write ``query`` to ``d/name`` (a temporary file, then :func:`os.replace`);
    returns the manifest entry ``[name, size, mtime_ns, rows]``."""
    tmp = d / f"{name}.{os.getpid()}.tmp"
    target = str(tmp).replace("'", "''")
    rows = con.execute(
        f"COPY ({query}) TO '{target}' (FORMAT parquet, ROW_GROUP_SIZE {ROW_GROUP_ROWS})"
    ).fetchall()[0][0]
    st = tmp.stat()
    os.replace(tmp, d / name)
    return [name, st.st_size, st.st_mtime_ns, int(rows)]


def _store(
    con: duckdb.DuckDBPyConnection,
    d: Path,
    tables: dict[str, list[list[Any]]],
    table: str,
    stamp: str,
    delta: str,
    whole: str,
) -> None:
    """Store ``table``'s change (the temporary table ``delta``) as a part, or the table
    as it now stands (the query ``whole``) as one part (see :data:`MAX_PARTS`)."""
    parts = tables.get(table, [])
    n = _count(con, delta)
    if parts and not n:
        return
    name = f"{table}.{stamp}.parquet"
    later = sum(p[3] for p in parts[1:]) + n
    if (
        parts
        and len(parts) < MAX_PARTS
        and (table not in _KEYED or later <= MAX_DELTA_SHARE * parts[0][3])
    ):
        tables[table] = [*parts, _write(con, d, name, f"SELECT * FROM {delta}")]
    else:
        tables[table] = [_write(con, d, name, whole)]


def _count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    return int(con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0])


def _stored_rows(d: Path, table: str, parts: list[list[Any]], narrow: str) -> str:
    """A query for the rows of the stored ``table`` (its ``parts``) that ``narrow`` keeps:
    a ``WHERE`` or ``SEMI JOIN`` clause put on each part's scan, so that DuckDB reads
    only what it must; for a keyed table, of each key kept its latest row. The
    clause must keep every row of a key or none: it tests what a key's rows share (a
    mention's ID; its name key, which its name fixes)."""
    if not parts:
        return _table_sql(d, table, parts)
    files = [d / name for name, *_ in parts]
    if table not in _KEYED or len(files) == 1:
        return f"SELECT * FROM {read_parquet_sql(files)} {narrow}"
    # The narrowed rows first, then the window over them: left to itself DuckDB turns
    # the window into an aggregate over the hits and a second join back to every row of
    # the files by row number, reading all their columns (0.58 s for 10k of 7.9M
    # mention rows, against 0.2 s for the narrow read).
    return f"""
        WITH hit AS MATERIALIZED (
            SELECT * FROM {read_parquet_sql(files, filename=True)} {narrow})
        SELECT * EXCLUDE (filename) FROM hit
        QUALIFY row_number() OVER (PARTITION BY {_KEYS[table]} ORDER BY filename DESC) = 1"""


def _record_ranges(con: duckdb.DuckDBPyConnection, table: str) -> tuple[str, list[str]]:
    """A ``WHERE`` clause that keeps at least the records of ``table`` (``source_id,
    record_key``), and its parameters: per source, its smallest to largest record key,
    overlapping ranges merged. A source numbers its record keys by day, so on a table
    stored in record-key order the day's ranges skip the row groups of other days."""
    rows = con.execute(
        f"SELECT min(record_key), max(record_key) FROM {table} GROUP BY source_id ORDER BY 1"
    ).fetchall()
    merged: list[list[str]] = []
    for lo, hi in rows:  # one per source
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    if not merged:
        return "WHERE false", []
    return "WHERE " + " OR ".join(["record_key BETWEEN ? AND ?"] * len(merged)), [
        key for pair in merged for key in pair
    ]


def _apply(
    con: duckdb.DuckDBPyConnection,
    home: Home,
    gen: int,
    old: dict[str, Any] | None,
    new: dict[str, list[str]],
    now: dict[str, list[list[Any]]],
) -> dict[str, Any]:
    """Extend the stored tables of ``old`` (None: empty) by the ``new`` input files;
    writes the changed tables' files and returns the new manifest (not yet written).

    The stored tables are read narrowly: the first rows and vote keys of the records
    the new files name (record-key ranges pushed into the scans, the tables kept in
    record-key order), the mapping and labels of the mentions the new files name or
    give new votes, the name counts of those mentions' name keys, and the labels of
    the name keys whose sharing changed (the labels kept in name-key order). The
    ``_old_<table>`` views over the whole tables are read only when a table is
    rewritten as one part."""
    d = store_dir(home)
    tables_old: dict[str, list[list[Any]]] = old["tables"] if old else {}
    for table in _TABLES:
        query = _table_sql(d, table, tables_old.get(table, []))
        run_sql(con, f"CREATE OR REPLACE TEMP VIEW _old_{table} AS {query}")
    tables = {t: list(parts) for t, parts in tables_old.items()}
    stamp = f"{gen:06d}"

    def stored(table: str, narrow: str) -> str:
        return _stored_rows(d, table, tables_old.get(table, []), narrow)

    # The new files' first truth rows and vote keys, and the stored ones of their records.
    covered = [rel for rel, _, _ in old["inputs"]["truth"]] if old else []
    truth_list = covered + new["truth"]
    if new["truth"]:
        files = [(home.root / rel, len(covered) + j) for j, rel in enumerate(new["truth"])]
        _create_first_truth(con, "_first_new", files)
    else:
        cols = ", ".join(f"{c} {t}" for c, t in _TABLES["first"].items())
        run_sql(con, f"CREATE OR REPLACE TEMP TABLE _first_new ({cols})")
    keys = _keys_sql(
        [home.root / rel for rel in new["records"]],
        [home.root / rel for rel in new["relationships"]],
    )
    run_sql(con, f"CREATE OR REPLACE TEMP TABLE _keys_new AS {keys}")
    run_sql(
        con,
        "CREATE OR REPLACE TEMP TABLE _records AS SELECT source_id, record_key FROM _first_new "
        "UNION SELECT source_id, record_key FROM _keys_new",
    )
    narrow, params = _record_ranges(con, "_records") if old else ("WHERE false", [])
    for table in ("first", "keys"):
        run_sql(
            con,
            f"CREATE OR REPLACE TEMP TABLE _{table}_hit AS SELECT * FROM "
            f"({stored(table, narrow)}) SEMI JOIN _records USING (source_id, record_key)",
            params,
        )
    if old and new["truth"]:
        # A new file that sorts before the one holding a record's stored first row
        # would take its place: not extended, rebuilt.
        rank = {rel: r for r, rel in enumerate(sorted(truth_list, key=Path))}
        run_sql(con, "CREATE OR REPLACE TEMP TABLE _truth_rank (file_no INTEGER, r INTEGER)")
        con.executemany(
            "INSERT INTO _truth_rank VALUES (?, ?)",
            [(i, rank[rel]) for i, rel in enumerate(truth_list)],
        )
        earlier = con.execute("""
            SELECT count(*) FROM _first_new n JOIN _first_hit o USING (source_id, record_key)
            JOIN _truth_rank rn ON rn.file_no = n.file_no
            JOIN _truth_rank ro ON ro.file_no = o.file_no
            WHERE rn.r < ro.r
        """).fetchall()[0][0]
        run_sql(con, "DROP TABLE _truth_rank")
        if earlier:
            raise _Superseded
    # First truth rows of records not seen before; vote keys not seen before.
    run_sql(
        con,
        """
        CREATE OR REPLACE TEMP TABLE _first_add AS
        SELECT * FROM _first_new ANTI JOIN _first_hit USING (source_id, record_key);
        CREATE OR REPLACE TEMP TABLE _keys_add AS
        SELECT * FROM _keys_new n ANTI JOIN _keys_hit o
        ON o.source_id = n.source_id AND o.record_key = n.record_key
           AND o.mention_id = n.mention_id AND o.role IS NOT DISTINCT FROM n.role
        """,
    )
    n_first, n_keys = _count(con, "_first_add"), _count(con, "_keys_add")
    for table, src in (("first", "_first_add"), ("keys", "_keys_add")):
        # In record-key order, for the ranges above to skip row groups.
        whole = f"SELECT * FROM _old_{table} UNION ALL SELECT * FROM {src} ORDER BY record_key"
        _store(con, d, tables, table, stamp, src, whole)

    # The new votes: new keys through the first rows, known keys through the new ones.
    new_votes = []
    if n_keys:
        new_votes.append(
            _votes_sql("_keys_add", "(SELECT * FROM _first_hit UNION ALL SELECT * FROM _first_add)")
        )
    if n_first and old:
        new_votes.append(_votes_sql("_keys_hit", "_first_add"))
    votes = " UNION ALL ".join(new_votes) or "SELECT NULL::VARCHAR, NULL::VARCHAR WHERE false"
    run_sql(
        con,
        f"""
        CREATE OR REPLACE TEMP TABLE _votes_new AS
        SELECT mention_id, entity_id, count(*) AS n
        FROM ({votes}) AS v(mention_id, entity_id) GROUP BY ALL;
        CREATE OR REPLACE TEMP TABLE _affected AS SELECT DISTINCT mention_id FROM _votes_new;
        """,
    )
    # The mentions looked up: those with new votes and those of the new mention files.
    mentions = staged_mentions_sql(con, [home.root / rel for rel in new["mentions"]])
    need = "SELECT mention_id FROM _affected"
    if old:
        need += f" UNION SELECT mention_id FROM {mentions} WHERE mention_id IS NOT NULL"
    run_sql(con, f"CREATE OR REPLACE TEMP TABLE _need AS {need}")
    # Every vote of the mentions with new ones: the stored majority and minority ones
    # and the new.
    truth_hit = stored("mention_truth", "SEMI JOIN _need USING (mention_id)")
    run_sql(
        con,
        f"""
        CREATE OR REPLACE TEMP TABLE _truth_hit AS {truth_hit};
        CREATE OR REPLACE TEMP TABLE _votes AS
        SELECT mention_id, entity_id, sum(n)::BIGINT AS n FROM (
            SELECT mention_id, entity_id, n FROM _truth_hit SEMI JOIN _affected USING (mention_id)
            UNION ALL
            SELECT mention_id, entity_id, n FROM _old_minority SEMI JOIN _affected USING (mention_id)
            UNION ALL
            SELECT mention_id, entity_id, n FROM _votes_new)
        GROUP BY ALL;
        CREATE OR REPLACE TEMP TABLE _truth_upd AS {_majority_sql("_votes")};
        CREATE OR REPLACE TEMP VIEW _truth_need AS
        SELECT * FROM _truth_hit ANTI JOIN _affected USING (mention_id)
        UNION ALL SELECT * FROM _truth_upd;
        CREATE OR REPLACE TEMP VIEW _truth_now AS
        SELECT * FROM _old_mention_truth ANTI JOIN _affected USING (mention_id)
        UNION ALL SELECT * FROM _truth_upd;
        """,
    )
    _store(con, d, tables, "mention_truth", stamp, "_truth_upd", "SELECT * FROM _truth_now")
    if _count(con, "_affected") or "minority" not in tables:  # small: rewritten
        tables["minority"] = [
            _write(
                con,
                d,
                f"minority.{stamp}.parquet",
                """SELECT * FROM _old_minority ANTI JOIN _affected USING (mention_id)
                   UNION ALL
                   SELECT v.mention_id, v.entity_id, v.n FROM _votes v
                   JOIN _truth_upd m USING (mention_id)
                   WHERE v.entity_id IS DISTINCT FROM m.entity_id""",
            )
        ]

    # Labels: new mentions labelled; mentions with new votes relabelled; ``amb`` again
    # for those and for every mention that carries a name key they made (or stopped
    # making) shared.
    changes: dict[str, list[list[Any]]] = {
        t: list((old or {}).get("changes", {}).get(t, [])) for t in LABELLED_TYPES
    }
    labels: dict[str, int] = dict((old or {}).get("labels", {}))
    logged = old is not None and "lineage" in old
    for etype in LABELLED_TYPES:
        table = f"labels_{etype}"
        create_labels(con, "_labels_in", mentions, "_truth_need", etype)
        labels_hit = stored(table, "SEMI JOIN _need USING (mention_id)")
        run_sql(
            con,
            f"""
            CREATE OR REPLACE TEMP TABLE _labels_hit AS {labels_hit};
            CREATE OR REPLACE TEMP TABLE _labels_new AS
            SELECT * FROM _labels_in ANTI JOIN _labels_hit USING (mention_id);
            CREATE OR REPLACE TEMP TABLE _labels_upd AS
            SELECT o.mention_id, coalesce(u.entity_id, 'unknown:' || o.mention_id) AS entity_id,
                   u.n_entities > 1 AS collapsed, o.amb, o.name_key, o.name_only,
                   o.entity_id AS was_entity, o.collapsed AS was_collapsed
            FROM _labels_hit o JOIN _truth_upd u USING (mention_id);
            CREATE OR REPLACE TEMP VIEW _labels_all AS
            SELECT * FROM _old_{table} ANTI JOIN _labels_upd USING (mention_id)
            UNION ALL SELECT {_LABEL_COLUMNS} FROM _labels_upd
            UNION ALL SELECT * FROM _labels_new;
            CREATE OR REPLACE TEMP TABLE _name_keys AS
            SELECT DISTINCT name_key FROM (SELECT name_key FROM _labels_new
                                           UNION ALL SELECT name_key FROM _labels_upd)
            WHERE name_key IS NOT NULL;
            """,
        )
        # Whether those name keys are shared (ambiguous_keys_sql), before and now, from
        # the per (name key, entity) counts: the stored ones of those keys, changed by
        # the new and relabelled mentions.
        names = f"names_{etype}"
        run_sql(
            con,
            f"""
            CREATE OR REPLACE TEMP TABLE _names_hit AS
            {stored(names, "SEMI JOIN _name_keys USING (name_key)")};
            CREATE OR REPLACE TEMP TABLE _names_upd AS
            SELECT name_key, entity_id, coalesce(h.n, 0) + c.d AS n
            FROM (SELECT name_key, entity_id, sum(d)::BIGINT AS d FROM (
                      SELECT name_key, entity_id, 1 AS d FROM _labels_new
                      UNION ALL
                      SELECT name_key, entity_id, 1 FROM _labels_upd
                      WHERE was_entity IS DISTINCT FROM entity_id
                      UNION ALL
                      SELECT name_key, was_entity, -1 FROM _labels_upd
                      WHERE was_entity IS DISTINCT FROM entity_id)
                  WHERE name_key IS NOT NULL GROUP BY ALL HAVING sum(d) <> 0) c
            LEFT JOIN _names_hit h USING (name_key, entity_id);
            CREATE OR REPLACE TEMP TABLE _shared AS
            WITH now AS (SELECT * FROM _names_hit ANTI JOIN _names_upd USING (name_key, entity_id)
                         UNION ALL SELECT * FROM _names_upd)
            SELECT k.name_key, coalesce(b.shared, false) AS was_shared,
                   coalesce(a.shared, false) AS shared
            FROM _name_keys k
            LEFT JOIN (SELECT name_key, min(entity_id) <> max(entity_id) AS shared
                       FROM _names_hit WHERE n > 0 GROUP BY name_key) b USING (name_key)
            LEFT JOIN (SELECT name_key, min(entity_id) <> max(entity_id) AS shared
                       FROM now WHERE n > 0 GROUP BY name_key) a USING (name_key);
            """,
        )
        _store(
            con, d, tables, names, stamp, "_names_upd",
            f"""SELECT * FROM (SELECT * FROM _old_{names} ANTI JOIN _names_upd
                               USING (name_key, entity_id)
                               UNION ALL SELECT * FROM _names_upd)
                WHERE n > 0 ORDER BY name_key""",
        )  # fmt: skip
        # A stored name-only mention's ``amb`` is whether its key is shared: of the stored
        # labels, only the name-only mentions of the keys whose sharing changed are read
        # (the labels kept in name-key order, the keys as values pushed into the scan).
        flipped: list[str] = []
        if tables_old.get(table):
            rows = con.execute("SELECT name_key FROM _shared WHERE was_shared <> shared")
            flipped = [k for (k,) in rows.fetchall()]
        run_sql(con, "CREATE OR REPLACE TEMP TABLE _flipped (name_key VARCHAR)")
        if len(flipped) <= MAX_IN_LIST:
            narrow = "WHERE " + (
                f"name_key IN ({', '.join('?' * len(flipped))})" if flipped else "false"
            )
        else:
            con.executemany("INSERT INTO _flipped VALUES (?)", [(k,) for k in flipped])
            narrow, flipped = "SEMI JOIN _flipped USING (name_key)", []
        run_sql(
            con,
            f"""
            CREATE OR REPLACE TEMP TABLE _touched AS
            SELECT * FROM ({stored(table, narrow)}) ANTI JOIN _labels_upd USING (mention_id)
            WHERE name_only
            UNION SELECT {_LABEL_COLUMNS} FROM _labels_upd UNION SELECT * FROM _labels_new
            """,
            flipped,
        )
        # Every name-only mention whose ``amb`` may differ is in _touched (the others'
        # ``amb`` is false whatever the key: a common name's many mentions are not
        # looked at one by one).
        relabel = """
            SELECT a.mention_id, a.entity_id, a.collapsed,
                   CASE WHEN k.name_key IS NULL THEN a.amb
                        ELSE a.name_only AND coalesce(s.shared, false) END AS amb,
                   a.name_key, a.name_only
            FROM {} a
            LEFT JOIN _name_keys k ON k.name_key = a.name_key
            LEFT JOIN _shared s ON s.name_key = a.name_key"""
        # Of the rows looked at again, the ones that differ from the stored: a new
        # mention, another entity or ``collapsed``, another ``amb`` (``_touched`` holds
        # the stored ``amb``). Only these are stored as the part and logged.
        run_sql(
            con,
            "CREATE OR REPLACE TEMP TABLE _labels_delta AS "
            + relabel.format("_touched")
            + """;
            CREATE OR REPLACE TEMP TABLE _labels_changed AS
            SELECT d.* FROM _labels_delta d
            JOIN _touched t USING (mention_id)
            LEFT JOIN _labels_upd u USING (mention_id)
            WHERE d.mention_id IN (SELECT mention_id FROM _labels_new)
               OR u.was_entity IS DISTINCT FROM u.entity_id
               OR u.was_collapsed IS DISTINCT FROM u.collapsed
               OR d.amb IS DISTINCT FROM t.amb""",
        )
        whole = relabel.format("_labels_all") + " ORDER BY a.name_key"
        _store(con, d, tables, table, stamp, "_labels_changed", whole)
        # A build has no earlier generation to differ from: nothing to log.
        n_changed = _count(con, "_labels_changed") if logged else 0
        if n_changed:
            name = f"changes_{etype}.{stamp}.parquet"
            entry = _write(con, d, name, "SELECT mention_id FROM _labels_changed")
            changes[etype].append([*entry, gen])
        n_new = _count(con, "_labels_new")
        if etype in labels:
            labels[etype] += n_new
        else:  # a store written before the count was kept, or the first build
            labels[etype] = _count(con, "_labels_all")
    for name in ("_first_new", "_keys_new", "_records", "_first_hit", "_keys_hit",
                 "_first_add", "_keys_add", "_votes_new", "_affected", "_need", "_truth_hit",
                 "_votes", "_truth_upd", "_labels_in", "_labels_hit", "_labels_new",
                 "_labels_upd", "_name_keys", "_names_hit", "_names_upd", "_flipped",
                 "_touched", "_shared",
                 "_labels_delta", "_labels_changed"):  # fmt: skip
        run_sql(con, f"DROP TABLE IF EXISTS {name}")
    for name in ("_truth_need", "_truth_now", "_labels_all", *(f"_old_{t}" for t in _TABLES)):
        run_sql(con, f"DROP VIEW IF EXISTS {name}")

    added = {k: set(new[k]) for k in _INPUT_KINDS}
    inputs = {k: [e for e in now[k] if e[0] in added[k]] for k in _INPUT_KINDS}
    if old:
        inputs = {k: old["inputs"][k] + inputs[k] for k in _INPUT_KINDS}
    # The truth list keeps its order: the stored first rows name their file by position.
    by_rel = {e[0]: e for e in inputs["truth"]}
    inputs["truth"] = [by_rel[rel] for rel in truth_list]
    # Changes are kept for the last MAX_CHANGE_GENERATIONS generations: complete after
    # ``changes_from``.
    since = max(old["changes_from"] if old and logged else gen, gen - MAX_CHANGE_GENERATIONS)
    changes = {t: [e for e in entries if e[4] > since] for t, entries in changes.items()}
    return {
        "version": STORE_VERSION,
        "generation": gen,
        "lineage": old["lineage"] if old and logged else _new_lineage(gen),
        "changes_from": since,
        "inputs": inputs,
        "tables": tables,
        "changes": changes,
        "labels": labels,
    }


def _new_lineage(gen: int) -> str:
    """A name for a store built from scratch (its changes start there)."""
    return f"{gen:06d}-{uuid.uuid4().hex[:12]}"


def stored_truth_views(con: duckdb.DuckDBPyConnection, home: Home) -> dict[str, Any]:
    """Update the store (:func:`update_truth_store`) and create on ``con`` the temporary
    views ``mention_truth`` (``mention_id, entity_id, n_entities``) and, per entity
    type of :data:`LABELLED_TYPES`, ``labelled_<type>`` (``mention_id, entity_id,
    collapsed, amb``) over its files. Returns the manifest with ``status``."""
    manifest = update_truth_store(con, home)
    d = store_dir(home)

    def files(table: str) -> str:
        return f"({_table_sql(d, table, manifest['tables'][table])})"

    run_sql(
        con,
        "CREATE OR REPLACE TEMP VIEW mention_truth AS "
        f"SELECT mention_id, entity_id, n_entities FROM {files('mention_truth')}",
    )
    for etype in LABELLED_TYPES:
        run_sql(
            con,
            f"CREATE OR REPLACE TEMP VIEW labelled_{etype} AS "
            f"SELECT mention_id, entity_id, collapsed, amb FROM {files(f'labels_{etype}')}",
        )
    return manifest
