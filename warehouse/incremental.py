"""Incremental publish: the previous warehouse, updated for the entities a day touched.

A full publish (:func:`warehouse.publish.publish`) rebuilds every table from the lake.
A day's delta touches a few thousand entities out of a million, so
``publish(home, base=<previous warehouse>)`` copies that file and rebuilds only the
rows of the touched entities, giving the same content as a full publish:

1. :func:`plan`: the base records what it was built from (``publish_inputs``: every
   staged file and linkage output with its size and modification time, the SQL's
   fingerprint, the evidence columns). It can be updated only when today's inputs
   extend those: no staged file removed or rewritten, the linkage base files
   (``<type>_evidence.parquet``, ``<type>_features.parquet``) and models unchanged
   (no full relink since), the same SQL. Otherwise :class:`FullBuild` says why.
2. :func:`update` (on the copy): the *touched* entities ``_touched`` are those of the
   mentions whose entity changed (the new entity map against the base's
   ``memberships``, old and new IDs), of the mentions named by the new staged files
   (with, for a database source, every version of the same record key and the
   deletions; for a snapshot source with a new latest delivery, the previous latest
   one too; for a new record, the related mentions of the relationships it dates),
   the entities of the new evidence parts and their void lists, and those with a new
   or changed correction. Too many (``max_touched`` of the entities) means a full
   build.
3. The inputs restricted to the touched entities (their mentions, every version of
   the records that state them or date their relationships, the relationships on
   either side, the evidence and match features) are registered under the names
   :func:`warehouse.schema.build_tables` reads, and the very statements of a full
   build run into an in-memory database (``_scratch``).
4. In one transaction on the copy: per entity table (:data:`schema.ENTITY_TABLES`)
   the touched entities' rows become the scratch rows, changing only the rows that
   differ (DuckDB rewrites a changed table's indexes at the checkpoint in time that
   grows with the indexed rows changed; :func:`_replace_rows`);
   ``name_variants_added`` gains the variants of new name references (nothing is
   deleted: a variant of a reference that no longer exists finds no ``name_refs`` row,
   and ``name_variants`` with its index stays as the last full build wrote it); the evidence loses the rows of the new parts' void lists
   and gains the new parts' rows (``evidence_contributions`` the new combinations,
   checked for hash collisions, minus the ones no edge uses any more); the match
   features replace the rows of the touched entities and of restated mentions, then
   every term-frequency count that moved, and the totals, are updated;
   list statuses are recomputed when the reference date moved; the small tables
   (sources, corrections, human decisions, models) are rebuilt whole; the touched
   entities are recorded in ``publish_touched`` and the base's last run in the
   ``base_run`` stamp (for :mod:`warehouse.export`). Smoke checks then look at the
   rows that changed.

The base file is never modified: the copy is built as ``warehouse.duckdb.building``
and moved over the target by the caller, as a full publish is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from connectors import lake
from connectors.canonical import MENTION_SCHEMA, RECORD_SCHEMA, RELATIONSHIP_SCHEMA
from connectors.catalog import load_specs
from linkage.parts import file_stat, linkage_parts, linkage_sql, void_files
from tessera.config import Home
from tessera.timing import Laps
from warehouse import matching, schema
from warehouse import publish as pub

# Above this share of the entities touched, a full build is cheaper than the update.
MAX_TOUCHED = 0.25
STAGED_KINDS = ("mentions", "records", "relationships", "deletions")
LINKAGE_KINDS = ("evidence", "features")
SCRATCH = "_scratch"
TOUCHED = "SELECT entity_id FROM _touched"


class FullBuild(Exception):
    """The base warehouse cannot be updated incrementally; the message says why."""


@dataclass
class Plan:
    """What an incremental publish adds to its base: the new staged files per kind,
    the new linkage parts per ``<kind>:<type>`` (with, for evidence, their void
    files), and the settings the base recorded (``stamps``)."""

    stamps: dict[str, str]
    staged: dict[str, list[Path]] = field(default_factory=dict)
    parts: dict[str, list[Path]] = field(default_factory=dict)
    voids: dict[str, list[Path]] = field(default_factory=dict)
    # The entity maps the base was built from: path relative to the lake -> [size, mtime].
    maps: dict[str, list[int]] = field(default_factory=dict)


# ------------------------------------------------------------------ inputs


def input_files(home: Home) -> list[tuple[str, Path]]:
    """Every file a publish reads, as ``(kind, path)``: staged files
    (``staged:<kind>``), the entity maps (``map``), the evidence and features files
    (``<kind>:<type>``, the base first, then the delta parts in order; the evidence
    parts' void lists as ``evidence_void:<type>``) and the models (``model:<type>``)."""
    out: list[tuple[str, Path]] = []
    for kind in STAGED_KINDS:
        files = pub.deletion_files(home) if kind == "deletions" else lake.staged_files(home, kind)
        out += [(f"staged:{kind}", p) for p in files]
    out += [("map", p) for p in pub.map_files(home)]
    for etype in pub.ENTITY_TYPES:
        for kind in LINKAGE_KINDS:
            paths = linkage_parts(home, etype, kind)
            out += [(f"{kind}:{etype}", p) for p in paths]
            if kind == "evidence" and len(paths) > 1:
                out += [
                    (f"evidence_void:{etype}", v)
                    for v, p in zip(void_files(paths), paths[1:], strict=True)
                    if v != p
                ]
        model = matching.models_path(home, etype)
        if model.exists():
            out.append((f"model:{etype}", model))
    return out


def input_rows(home: Home, stamps: dict[str, str]) -> pl.DataFrame:
    """The ``publish_inputs`` rows: each input file (path relative to the lake, size,
    modification time) and each setting in ``stamps``."""
    rows: list[dict[str, Any]] = []
    for kind, p in input_files(home):
        st = p.stat()
        rows.append(
            {
                "kind": kind,
                "path": str(p.relative_to(home.lake)),
                "size": st.st_size,
                "modified": st.st_mtime_ns,
                "stamp": None,
            }
        )
    rows += [
        {"kind": k, "path": None, "size": None, "modified": None, "stamp": v}
        for k, v in sorted(stamps.items())
    ]
    return pl.DataFrame(
        rows,
        schema={
            "kind": pl.String,
            "path": pl.String,
            "size": pl.Int64,
            "modified": pl.Int64,
            "stamp": pl.String,
        },
    ).with_columns(pl.col("modified").cast(pl.Datetime("ns")))


def record_inputs(con: duckdb.DuckDBPyConnection, home: Home, stamps: dict[str, str]) -> None:
    """Replace the rows of ``publish_inputs`` with today's inputs and ``stamps``."""
    con.register("_publish_inputs_frame", input_rows(home, stamps))
    try:
        con.execute("DELETE FROM publish_inputs")
        con.execute("INSERT INTO publish_inputs BY NAME SELECT * FROM _publish_inputs_frame")
    finally:
        con.unregister("_publish_inputs_frame")


def _recorded(base: Path) -> list[tuple[str, str | None, int | None, int | None, str | None]]:
    wal = base.with_name(base.name + ".wal")
    if wal.exists():
        raise FullBuild(f"the base {base.name} has an uncheckpointed WAL")
    try:
        con = duckdb.connect(str(base), read_only=True)
    except duckdb.Error as e:
        raise FullBuild(f"the base {base.name} cannot be opened: {e}") from e
    try:
        return con.execute(
            "SELECT kind, path, size, epoch_ns(modified), stamp FROM publish_inputs "
            "ORDER BY kind, path"
        ).fetchall()
    except duckdb.Error as e:
        raise FullBuild(f"the base records no inputs it can be compared by ({e})") from e
    finally:
        con.close()


def plan(home: Home, base: Path) -> Plan:
    """What today's inputs add to those ``base`` was built from; raises
    :class:`FullBuild` when they do not simply extend them."""
    if not base.exists():
        raise FullBuild(f"no base warehouse at {base}")
    recorded = _recorded(base)
    stamps = {k: s for k, p, _, _, s in recorded if p is None and s is not None}
    if stamps.get("fingerprint") != pub.fingerprint(home):
        raise FullBuild("the warehouse's SQL or the catalog changed since the base was built")
    if stamps.get("contributions") != "hash":
        raise FullBuild("the base numbers its evidence combinations (a hash collision)")
    before: dict[str, list[tuple[str, int, int]]] = {}
    for k, p, size, mtime, _ in recorded:
        if p is not None:
            before.setdefault(k, []).append((p, int(size or 0), int(mtime or 0)))
    now: dict[str, list[tuple[Path, str, int, int]]] = {}
    for k, p in input_files(home):
        st = p.stat()
        now.setdefault(k, []).append((p, str(p.relative_to(home.lake)), st.st_size, st.st_mtime_ns))

    out = Plan(
        stamps=stamps, maps={rel: [size, mtime] for rel, size, mtime in before.get("map", [])}
    )
    for kind in STAGED_KINDS:
        k = f"staged:{kind}"
        have = {rel: (size, mtime) for _, rel, size, mtime in now.get(k, [])}
        for rel, size, mtime in before.get(k, []):
            if have.get(rel) != (size, mtime):
                raise FullBuild(f"a staged file was removed or rewritten: {rel}")
        old = {rel for rel, _, _ in before.get(k, [])}
        out.staged[kind] = [p for p, rel, _, _ in now.get(k, []) if rel not in old]
    for etype in pub.ENTITY_TYPES:
        for kind in LINKAGE_KINDS:
            k = f"{kind}:{etype}"
            old_files = before.get(k, [])
            new_files = now.get(k, [])
            if not old_files and not new_files:
                continue
            if [(rel, s, m) for _, rel, s, m in new_files[: len(old_files)]] != old_files or (
                not old_files
            ):
                raise FullBuild(f"{etype} {kind} was relinked in full since the base was built")
            out.parts[k] = [p for p, _, _, _ in new_files[len(old_files) :]]
            if kind == "evidence" and out.parts[k]:
                paths = [p for p, _, _, _ in new_files]
                out.voids[k] = void_files(paths)[len(old_files) - 1 :]
        k = f"evidence_void:{etype}"
        have = {rel: (size, mtime) for _, rel, size, mtime in now.get(k, [])}
        for rel, size, mtime in before.get(k, []):
            if have.get(rel) != (size, mtime):
                raise FullBuild(f"an evidence void list was rewritten: {rel}")
        k = f"model:{etype}"
        if [(r, s, m) for _, r, s, m in now.get(k, [])] != before.get(k, []):
            raise FullBuild(f"the {etype} model changed since the base was built")
    return out


# ------------------------------------------------------------------ helpers


def _files(paths: list[Path]) -> str:
    return "[" + ", ".join(pub._quote(str(p)) for p in paths) + "]"


def _typed_scan(
    con: duckdb.DuckDBPyConnection, paths: list[Path], cols: list[tuple[str, str]]
) -> str:
    """A ``SELECT`` of ``cols`` (name, DuckDB type) over the Parquet files ``paths``
    (union by name): each cast to its type, a column the files lack as nulls, so the
    rows of a few files have the types the whole input has."""
    scan = f"read_parquet({_files(paths)}, union_by_name = true)"
    have = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {scan}").fetchall()}
    select = [
        f"CAST({c} AS {t}) AS {c}" if c in have else f"CAST(NULL AS {t}) AS {c}" for c, t in cols
    ]
    return f"SELECT {', '.join(select)} FROM {scan}"


def _latest_parts(
    con: duckdb.DuckDBPyConnection,
    parts: list[Path],
    voids: list[Path],
    key: str,
    cols: list[tuple[str, str]],
) -> str:
    """The rows of the delta ``parts`` (oldest first) that no later part replaces (its
    void file ``voids[i]`` names the ``key`` values part ``i`` replaces), as
    :func:`linkage.parts.linkage_sql` merges them, with the types of ``cols``."""
    arms = []
    for i, p in enumerate(parts):
        rows = _typed_scan(con, [p], cols)
        later = voids[i + 1 :]
        if later:
            rows = (
                f"SELECT f.* FROM ({rows}) AS f ANTI JOIN (SELECT DISTINCT CAST({key} AS VARCHAR) "
                f"AS {key} FROM read_parquet({_files(later)}, union_by_name = true)) AS v "
                f"USING ({key})"
            )
        arms.append(f"({rows})")
    return " UNION ALL ".join(arms)


# ------------------------------------------------------------------ the touched set


def _register_lake(con: duckdb.DuckDBPyConnection, home: Home) -> None:
    """Views over every staged file (read only where a query needs them), the file
    order the full publish uses, the entity map and the small inputs."""
    from connectors.database_ingest import DELETION_SCHEMA

    mention_files = lake.staged_files(home, "mentions")
    record_files = lake.staged_files(home, "records")
    pub._files_table(con, "_mention_files", mention_files)
    pub._files_table(con, "_record_files", record_files)
    mention_scan = pub._scan_sql(
        con, mention_files, MENTION_SCHEMA, columns=pub.MENTION_COLUMNS, extra="f"
    )
    con.execute(f"CREATE TEMP VIEW _mention_rows_all AS {mention_scan}")
    record_scan = pub._scan_sql(con, record_files, RECORD_SCHEMA, extra="f")
    con.execute(f"CREATE TEMP VIEW _records_all AS {record_scan}")
    rel_scan = pub._scan_sql(con, lake.staged_files(home, "relationships"), RELATIONSHIP_SCHEMA)
    con.execute(f"CREATE TEMP VIEW _relationships_all AS {rel_scan}")
    deletions = pub._scan_sql(con, pub.deletion_files(home), DELETION_SCHEMA)
    con.execute(f"CREATE TEMP VIEW _deletions AS {deletions}")
    pub._entity_map(con, home, "_map_full")
    pub.small_table(con, "_sources", pub._sources(home))
    pub.small_table(con, "_corrections", pub.corrections.corrections_frame(home))
    pub.small_table(con, "_decisions", pub.corrections.decisions_frame(home))


def _source_files(paths: list[Path], sources: set[str]) -> list[Path]:
    return [p for p in paths if p.parent.parent.name in sources]


def _seeds(con: duckdb.DuckDBPyConnection, home: Home, plan_: Plan) -> None:
    """``_seed_m`` (mentions) and ``_seed_e`` (entities) the new inputs name directly,
    and ``_new_mentions`` / ``_new_records`` (the new staged rows, for the smoke checks)."""
    from connectors.database_ingest import DELETION_SCHEMA

    specs = load_specs(home.sources_dir)
    dbs = {s.id for s in specs if s.database is not None}
    snapshots = {s.id for s in specs if s.cadence == "snapshot" and s.database is None}
    new = plan_.staged
    con.execute("CREATE TEMP TABLE _seed_m (mention_id VARCHAR)")
    con.execute("CREATE TEMP TABLE _seed_e (entity_id VARCHAR)")

    scan = pub._scan_sql(con, new.get("mentions", []), MENTION_SCHEMA, columns=("mention_id",))
    con.execute(f"CREATE TEMP TABLE _new_mentions AS SELECT DISTINCT mention_id FROM ({scan})")
    con.execute("INSERT INTO _seed_m SELECT mention_id FROM _new_mentions")
    scan = pub._scan_sql(
        con,
        new.get("records", []),
        RECORD_SCHEMA,
        columns=("source_id", "record_key", "mention_id", "delivered"),
    )
    con.execute(f"CREATE TEMP TABLE _new_records AS {scan}")
    con.execute("INSERT INTO _seed_m SELECT mention_id FROM _new_records")
    scan = pub._scan_sql(con, new.get("relationships", []), RELATIONSHIP_SCHEMA)
    con.execute(
        f"INSERT INTO _seed_m SELECT unnest([mention_id, related_mention_id]) FROM ({scan})"
    )
    # A new record dates the relationships stated on its row (the related mention's
    # first/last seen): every relationship with that record key.
    con.execute(
        """INSERT INTO _seed_m
        SELECT unnest([rel.mention_id, rel.related_mention_id]) FROM _relationships_all rel
        SEMI JOIN (SELECT DISTINCT source_id, record_key FROM _new_records) k
        USING (source_id, record_key)"""
    )
    # Databases: a new version or a deletion moves the current record of its key,
    # whichever mention each version names.
    scan = pub._scan_sql(con, new.get("deletions", []), DELETION_SCHEMA)
    con.execute(f"CREATE TEMP TABLE _new_deletions AS SELECT source_id, record_key FROM ({scan})")
    db_files = _source_files(lake.staged_files(home, "records"), dbs)
    if db_files and (new.get("records") or new.get("deletions")):
        versions = pub._scan_sql(
            con, db_files, RECORD_SCHEMA, columns=("source_id", "record_key", "mention_id")
        )
        con.execute(
            f"""INSERT INTO _seed_m SELECT r.mention_id FROM ({versions}) r
            SEMI JOIN (SELECT source_id, record_key FROM _new_records
                       WHERE list_contains(?, source_id)
                       UNION SELECT source_id, record_key FROM _new_deletions) k
            USING (source_id, record_key)""",
            [sorted(dbs)],
        )
    # Snapshots: a new latest delivery replaces the previous one's records.
    changed = sorted({p.parent.parent.name for p in new.get("records", [])} & snapshots)
    snap_files = _source_files(lake.staged_files(home, "records"), set(changed))
    if snap_files:
        rows = pub._scan_sql(
            con,
            snap_files,
            RECORD_SCHEMA,
            columns=("source_id", "mention_id", "delivered"),
            extra="f",
        )
        fresh = [str(p) for p in new.get("records", [])]
        con.execute(
            f"""INSERT INTO _seed_m
            WITH s AS ({rows}),
            l AS (SELECT source_id,
                         max(delivered) FILTER (WHERE NOT list_contains(?, filename)) AS old_d,
                         max(delivered) AS new_d
                  FROM s GROUP BY source_id)
            SELECT s.mention_id FROM s JOIN l USING (source_id)
            WHERE l.old_d IS DISTINCT FROM l.new_d
              AND (s.delivered = l.old_d OR s.delivered = l.new_d)""",
            [fresh],
        )
    # Corrections: any new (or, against the rules, changed) one.
    con.execute(
        """INSERT INTO _seed_e SELECT entity_id FROM (
            (SELECT correction_id, entity_id, attribute, value FROM _corrections
             EXCEPT SELECT correction_id, entity_id, attribute, value FROM corrections)
            UNION ALL
            (SELECT correction_id, entity_id, attribute, value FROM corrections
             EXCEPT SELECT correction_id, entity_id, attribute, value FROM _corrections))"""
    )


def _evidence_delta(
    con: duckdb.DuckDBPyConnection, home: Home, plan_: Plan, recorded: dict[str, str]
) -> dict[str, str]:
    """``_void_ev`` (entity type and ID whose earlier evidence rows the new parts
    replace), ``_new_evidence`` (the new parts' rows as ``_evidence_edges`` has them,
    with ``contributions``) and ``_new_combos``; returns today's evidence stamps.
    Raises :class:`FullBuild` when the evidence columns changed, a new combination
    shares its hash with another, or a new edge is not inside its entity."""
    scans = pub.evidence_scans(con, home)
    stamps = {f"evidence_columns:{etype}": repr(cols) for etype, _, cols, _ in scans}
    for k, v in stamps.items():
        if recorded.get(k) != v:
            raise FullBuild(f"the evidence columns changed ({k})")
    con.execute("CREATE TEMP TABLE _void_ev (entity_type VARCHAR, entity_id VARCHAR)")
    arms = []
    for etype, _, cols, extra in scans:
        parts = plan_.parts.get(f"evidence:{etype}", [])
        if not parts:
            continue
        voids = plan_.voids[f"evidence:{etype}"]
        con.execute(
            f"INSERT INTO _void_ev SELECT DISTINCT '{etype}', CAST(entity_id AS VARCHAR) "
            f"FROM read_parquet({_files(voids)}, union_by_name = true)"
        )
        rows = _latest_parts(con, parts, voids, "entity_id", cols)
        names = [c for c, _ in cols]
        arms.append(
            f"{pub.evidence_head(etype, names)}, {pub.evidence_key(etype, extra)} AS "
            f"contributions_key, {pub.evidence_packed(extra)} AS contributions FROM ({rows})"
        )
    empty = pub._EMPTY_EDGES.replace("WHERE false", ", NULL::JSON AS contributions WHERE false")
    con.execute(
        "CREATE TEMP TABLE _new_evidence AS " + (" UNION ALL ".join(arms) if arms else empty)
    )
    con.execute(
        "CREATE TEMP TABLE _new_combos AS SELECT DISTINCT contributions_key, contributions "
        "FROM _new_evidence"
    )
    n, keys = con.execute(
        "SELECT count(*), count(DISTINCT contributions_key) FROM _new_combos"
    ).fetchone()
    clash = pub._one(
        con,
        "SELECT count(*) FROM _new_combos n JOIN evidence_contributions c "
        "USING (contributions_key) WHERE CAST(c.contributions AS VARCHAR) "
        "<> CAST(n.contributions AS VARCHAR)",
    )
    if n != keys or clash:
        raise FullBuild("two evidence combinations share a hash")
    outside = pub._one(
        con,
        """SELECT count(*) FROM _new_evidence e
        LEFT JOIN _map_full a ON a.mention_id = e.mention_id_l
        LEFT JOIN _map_full b ON b.mention_id = e.mention_id_r
        WHERE a.entity_id IS DISTINCT FROM e.entity_id OR b.entity_id IS DISTINCT FROM e.entity_id""",
    )
    if outside:
        raise FullBuild(f"{outside} new evidence edges join mentions of other entities")
    stamps["contributions"] = "hash"
    return stamps


def _linked_changes(home: Home, plan_: Plan) -> pl.DataFrame | None:
    """The entities whose mentions the incremental links since the base changed, from
    the last link's own record (``linkage.score_store.record_increment``: the entities
    it touched, new IDs, and those it clustered again, old IDs), when that link
    started from the very maps the base was built from and its outputs are as it
    wrote them; else None. Every mention whose entity changed has its old entity
    among the second and its new one among the first."""
    from linkage.score_store import read_increment, touched_file

    frames = []
    for etype in pub.ENTITY_TYPES:
        path = home.lake / "linkage" / f"{etype}_entities.parquet"
        rec = read_increment(home, etype)
        base = plan_.maps.get(str(path.relative_to(home.lake)))
        if (
            rec is None
            or base is None
            or rec["before"].get("entities") != base
            or rec["after"].get("entities") != file_stat(path)
            or rec["touched"] != file_stat(touched_file(home, etype))
        ):
            return None
        frames += [
            pl.read_parquet(touched_file(home, etype), columns=["entity_id"]),
            pl.DataFrame({"entity_id": rec["region"]}, schema={"entity_id": pl.String}),
        ]
    return pl.concat(frames)


def _touched(
    con: duckdb.DuckDBPyConnection, home: Home, plan_: Plan, max_touched: float
) -> tuple[int, int]:
    """``_touched``: every entity ID (old or new) whose rows change; returns its size
    and the number of entities in the base. The entities whose mentions moved come
    from the link's record (:func:`_linked_changes`), else from comparing the whole map
    with ``memberships`` (1.5 s at 1,000,000 persons)."""
    linked = _linked_changes(home, plan_)
    if linked is not None:
        con.execute(
            "CREATE TEMP TABLE _changed AS SELECT unnest(CAST(? AS VARCHAR[])) AS entity_id",
            [linked["entity_id"].to_list()],
        )
    else:
        con.execute(
            """CREATE TEMP TABLE _changed AS
            SELECT unnest([n.entity_id, o.entity_id]) AS entity_id
            FROM _map_full n FULL OUTER JOIN (SELECT mention_id, entity_id FROM memberships) o
            ON n.mention_id = o.mention_id
            WHERE n.entity_id IS DISTINCT FROM o.entity_id"""
        )
    con.execute(
        """CREATE TEMP TABLE _touched AS
        SELECT DISTINCT entity_id FROM (
            SELECT entity_id FROM _seed_e
            UNION ALL SELECT entity_id FROM _void_ev
            UNION ALL SELECT entity_id FROM _new_evidence
            UNION ALL SELECT entity_id FROM _changed
            UNION ALL SELECT m.entity_id FROM _map_full m SEMI JOIN _seed_m s USING (mention_id)
        ) WHERE entity_id IS NOT NULL"""
    )
    n = int(pub._one(con, "SELECT count(*) FROM _touched"))
    total = int(pub._one(con, "SELECT count(*) FROM entities"))
    if n > max_touched * max(total, 1):
        raise FullBuild(
            f"the inputs touched {n:,} of {total:,} entities (more than {max_touched:.0%})"
        )
    return n, total


# ------------------------------------------------------------------ restricted inputs


def _scattered(con: duckdb.DuckDBPyConnection, table: str, cond: str, name: str) -> str:
    """A ``FROM`` clause for the rows of ``table`` that meet ``cond`` when they are few
    and scattered over the table (the touched entities' rows): their row ids are found
    first, reading only the columns ``cond`` names, then the rows are fetched by row
    id. One scan would read every column of nearly every vector, each holding a match
    (at 1,000,000 persons: evidence edges 0.4-0.75 s against 0.37 s, the person match
    features 0.42-0.57 against 0.27)."""
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE _rid_{name} AS SELECT rowid AS _rid FROM {table} WHERE {cond}"
    )
    return f"{table} WHERE rowid IN (SELECT _rid FROM _rid_{name})"


def _restrict(con: duckdb.DuckDBPyConnection, home: Home, plan_: Plan, cat: str) -> None:
    """Register the inputs of :func:`warehouse.schema.build_tables` restricted to the
    touched entities (see the module docstring)."""
    in_tm = "mention_id IN (SELECT mention_id FROM _tm)"
    con.execute(
        f"CREATE TEMP TABLE _tm AS SELECT mention_id, entity_id FROM _map_full "
        f"WHERE entity_id IN ({TOUCHED})"
    )
    con.execute(f"CREATE TEMP TABLE _mention_rows AS SELECT * FROM _mention_rows_all WHERE {in_tm}")
    pub.register_mentions(con, "_mention_rows")
    con.execute(
        f"""CREATE TEMP TABLE _relationships AS SELECT * FROM _relationships_all
        WHERE {in_tm} OR related_mention_id IN (SELECT mention_id FROM _tm)"""
    )
    # Every version of every record that states a touched mention or dates one of
    # these relationships (the newest version per key is chosen among all of them).
    con.execute(
        f"""CREATE TEMP TABLE _records AS
        SELECT * FROM _records_all SEMI JOIN (
            SELECT source_id, record_key FROM _records_all WHERE {in_tm}
            UNION SELECT source_id, record_key FROM _relationships
        ) k USING (source_id, record_key)"""
    )
    specs = load_specs(home.sources_dir)
    snapshots = {s.id for s in specs if s.cadence == "snapshot" and s.database is None}
    snap = pub._scan_sql(
        con,
        _source_files(lake.staged_files(home, "records"), snapshots),
        RECORD_SCHEMA,
        columns=("source_id", "delivered"),
    )
    con.execute(
        f"CREATE TEMP TABLE _snapshot_latest AS SELECT source_id, max(delivered) AS delivered "
        f"FROM ({snap}) GROUP BY source_id"
    )
    con.execute(pub._current_sql(home, latest="_snapshot_latest"))

    # Match features: the touched entities' mentions and the mentions a new features
    # part restates.
    con.execute("CREATE TEMP TABLE _restated (entity_type VARCHAR, mention_id VARCHAR)")
    for etype in pub.ENTITY_TYPES:
        if not linkage_parts(home, etype, "features"):  # derived from the mentions: all of them
            raise FullBuild(f"linkage stored no {etype} features")
        scan = f"({linkage_sql(home, etype, 'features')})"
        have = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {scan}").fetchall()}
        if not set(matching.FEATURES[etype]) <= have:
            raise FullBuild(f"the stored {etype} features lack columns the warehouse needs")
    matching.register_match_inputs(con, home)
    for etype in pub.ENTITY_TYPES:
        table = matching.TABLES[etype]
        types = dict(
            (r[0], r[1]) for r in con.execute(f"DESCRIBE SELECT * FROM {table}").fetchall()
        )
        cols = [(c, types[c]) for c in matching.FEATURES[etype] if c != "role"]
        names = ", ".join(c for c, _ in cols)
        parts = plan_.parts.get(f"features:{etype}", [])
        fresh = (
            _latest_parts(con, parts, parts, "mention_id", cols)
            if parts
            else f"SELECT {names} FROM {table} WHERE false"
        )
        con.execute(f"CREATE TEMP TABLE _fresh_{etype} AS {fresh}")
        con.execute(f"INSERT INTO _restated SELECT '{etype}', mention_id FROM _fresh_{etype}")
        # A table, not a view: the build reads it three times, and each read of a view
        # would scan the whole base table (sorted by name, not by entity) again.
        # Parquet is read by name, so a column's position never matters.
        con.execute(f"DROP VIEW IF EXISTS _{etype}_features")
        kept = _scattered(
            con,
            f'"{cat}".main.{table}',
            f"entity_id IN ({TOUCHED}) AND mention_id NOT IN (SELECT mention_id FROM _fresh_{etype})",
            f"{etype}_features",
        )
        con.execute(
            f"""CREATE TEMP TABLE _{etype}_features AS
            SELECT {names} FROM _fresh_{etype}
            UNION ALL
            SELECT {names} FROM {kept}"""
        )
    con.execute(
        """CREATE TEMP TABLE _map AS SELECT * FROM _map_full WHERE mention_id IN (
            SELECT mention_id FROM _tm
            UNION ALL SELECT mention_id FROM _relationships
            UNION ALL SELECT related_mention_id FROM _relationships
            UNION ALL SELECT mention_id FROM _restated)"""
    )
    # Memberships take each mention's best kept edge: the touched entities' edges,
    # as they stand after the new evidence parts (a table: the build reads it twice).
    # The touched rows first, in a statement of their own: in one statement the
    # optimiser anti-joins the void lists against the whole base table first.
    edges = _scattered(con, f'"{cat}".main.evidence_edges', f"entity_id IN ({TOUCHED})", "ev")
    con.execute(f"CREATE TEMP TABLE _evidence_edges AS SELECT * FROM {edges}")
    con.execute(
        """DELETE FROM _evidence_edges e WHERE EXISTS (
            SELECT 1 FROM _void_ev v
            WHERE v.entity_type = e.entity_type AND v.entity_id = e.entity_id)"""
    )
    con.execute(
        f"""INSERT INTO _evidence_edges
        SELECT * EXCLUDE (contributions) FROM _new_evidence WHERE entity_id IN ({TOUCHED})"""
    )
    con.execute(
        "CREATE TEMP TABLE _applied_keys AS SELECT DISTINCT entity_id, 0 AS ek FROM _corrections "
        "WHERE entity_id IN (SELECT entity_id FROM _map_full)"
    )


def _term_frequencies(con: duckdb.DuckDBPyConnection, home: Home) -> None:
    """``_tf_<type>_<column>``: the mentions per value of each term-frequency column,
    over every mention's stored features (as :func:`warehouse.matching.tf_sql` counts
    them): the counts the last incremental link recorded for these very features
    files (:mod:`linkage.term_counts`), else counted here."""
    from linkage import term_counts

    for etype in pub.ENTITY_TYPES:
        tf_cols = matching.TF_COLUMNS[etype]
        if not tf_cols:
            continue
        recorded = {c: term_counts.stored(home, etype, c) for c in tf_cols}
        if all(recorded.values()):
            for c, path in recorded.items():
                con.execute(
                    f"CREATE TEMP TABLE _tf_{etype}_{c} AS SELECT {c}, n "
                    f"FROM read_parquet({pub._quote(str(path))})"
                )
            continue
        # One read of the stored features (their term-frequency columns only).
        src = f"_tf_src_{etype}"
        con.execute(
            f"CREATE TEMP TABLE {src} AS SELECT {', '.join(tf_cols)} "
            f"FROM ({linkage_sql(home, etype, 'features')})"
        )
        for c in tf_cols:
            con.execute(
                matching.tf_sql(etype, c, source=src).replace(
                    f"CREATE TABLE {matching.tf_table(etype, c)}",
                    f"CREATE TEMP TABLE _tf_{etype}_{c}",
                )
            )
        con.execute(f"DROP TABLE {src}")


# ------------------------------------------------------------------ the update


# The column that names one row, in the tables that have one: there a row whose key
# and indexed columns stay is updated in place (see :func:`_replace_rows`).
ROW_KEYS: dict[str, str] = {
    matching.TABLES["person"]: "mention_id",
    matching.TABLES["business"]: "mention_id",
}


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    return [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()]


def _same(cols: list[str], a: str = "o", b: str = "n") -> str:
    return " AND ".join(f"{a}.{c} IS NOT DISTINCT FROM {b}.{c}" for c in cols)


def _replace_rows(con: duckdb.DuckDBPyConnection, table: str, cond: str) -> None:
    """Make the rows of ``table`` that meet ``cond`` the scratch table's rows that meet
    it, changing as few indexed rows as possible: DuckDB writes every ART index of a
    changed table afresh at the checkpoint, in time that grows with the rows inserted
    into and deleted from it (a day's replaced rows cost the commit 13 s at 1,000,000
    persons), while an ``UPDATE`` of columns no index holds leaves the indexes alone.

    Rows equal on both sides stay. In a table with a row key (:data:`ROW_KEYS`), a row
    whose key and indexed columns are unchanged is updated in place; the remaining
    rows are deleted and inserted (as multisets: a row present twice stays twice)."""
    cols = _columns(con, table)
    new = f"{SCRATCH}.main.{table}"
    indexed = set(schema.indexed_columns(table))
    key = ROW_KEYS.get(table)
    old = _scattered(con, table, cond, "old")
    if key:
        con.execute(f"CREATE OR REPLACE TEMP TABLE _rows_old AS SELECT rowid AS _rid, * FROM {old}")
        con.execute(f"CREATE OR REPLACE TEMP TABLE _rows_new AS SELECT * FROM {new} WHERE {cond}")
        fixed = [c for c in cols if c == key or c in indexed]
        rest = [c for c in cols if c not in fixed]
        # Key and indexed columns unchanged: updated in place where another column moved.
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE _rows_kept AS
            SELECT o._rid, n.* FROM _rows_old o JOIN _rows_new n ON {_same(fixed)}"""
        )
        # Only the columns that moved in some row (an UPDATE costs per column).
        flags = ", ".join(f"bool_or(o.{c} IS DISTINCT FROM k.{c})" for c in rest)
        row = (
            con.execute(
                f"SELECT {flags} FROM _rows_kept k JOIN _rows_old o USING (_rid)"
            ).fetchall()[0]
            if rest
            else ()
        )
        moved = [c for c, m in zip(rest, row, strict=True) if m]
        if moved:
            differ = " OR ".join(f"k.{c} IS DISTINCT FROM {table}.{c}" for c in moved)
            sets = ", ".join(f"{c} = k.{c}" for c in moved)
            con.execute(
                f"UPDATE {table} SET {sets} FROM _rows_kept k "
                f"WHERE {table}.rowid = k._rid AND ({differ})"
            )
        gone = "SELECT _rid FROM _rows_old WHERE _rid NOT IN (SELECT _rid FROM _rows_kept)"
        come = f"SELECT * FROM _rows_new WHERE {key} NOT IN (SELECT {key} FROM _rows_kept)"
    else:
        # Equal rows paired off one to one (row_number within each group of equals).
        every = ", ".join(cols)
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE _rows_pair_o AS SELECT rowid AS _rid, {every},
            row_number() OVER (PARTITION BY {every}) AS _n FROM {old}"""
        )
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE _rows_pair_n AS SELECT {every},
            row_number() OVER (PARTITION BY {every}) AS _n FROM {new} WHERE {cond}"""
        )
        pair = _same([*cols, "_n"])
        gone = f"SELECT o._rid FROM _rows_pair_o o ANTI JOIN _rows_pair_n n ON {pair}"
        come = f"SELECT n.* EXCLUDE (_n) FROM _rows_pair_n n ANTI JOIN _rows_pair_o o ON {pair}"
    con.execute(f"DELETE FROM {table} WHERE rowid IN ({gone})")
    con.execute(f"INSERT INTO {table} BY NAME {come}")


def _apply_entities(con: duckdb.DuckDBPyConnection) -> None:
    """The entity tables' rows of the touched entities, and the name variants."""
    # Name variants: the touched entities' references the warehouse does not hold yet.
    hp = "left(name_ref, 2) IN ('h:', 'p:')"
    con.execute(
        f"""CREATE TEMP TABLE _refs_new AS
        SELECT DISTINCT name_ref FROM {SCRATCH}.main.name_refs WHERE {hp}
        EXCEPT
        SELECT name_ref FROM name_refs
        WHERE name_ref IN (SELECT name_ref FROM {SCRATCH}.main.name_refs)"""
    )
    for table, cond in schema.ENTITY_TABLES.items():
        _replace_rows(con, table, cond)
    # Only appended, and to name_variants_added: a reference that no longer exists keeps
    # its variants (they lead to no name_refs row); one that comes back has them still
    # (every reference is stored under itself).
    con.execute(
        f"""INSERT INTO name_variants_added BY NAME
        SELECT * FROM {SCRATCH}.main.name_variants
        WHERE name_ref IN (SELECT name_ref FROM _refs_new)
          AND name_ref NOT IN (
              SELECT name_ref FROM name_variants
              WHERE variant IN (SELECT name_ref FROM _refs_new) AND variant = name_ref
              UNION ALL SELECT name_ref FROM name_variants_added
              WHERE variant IN (SELECT name_ref FROM _refs_new) AND variant = name_ref)"""
    )


def _apply_evidence(con: duckdb.DuckDBPyConnection) -> None:
    """Evidence: the rows the new parts void out, the parts' rows in; the combinations
    no edge uses any more out, the new ones in."""
    void = (
        "EXISTS (SELECT 1 FROM _void_ev v WHERE v.entity_type = evidence_edges.entity_type "
        "AND v.entity_id = evidence_edges.entity_id)"
    )
    con.execute(
        f"CREATE TEMP TABLE _old_keys AS SELECT DISTINCT contributions_key FROM evidence_edges "
        f"WHERE entity_id IN (SELECT entity_id FROM _void_ev) AND {void}"
    )
    con.execute(
        f"DELETE FROM evidence_edges WHERE entity_id IN (SELECT entity_id FROM _void_ev) AND {void}"
    )
    con.execute(
        "INSERT INTO evidence_edges BY NAME SELECT * EXCLUDE (contributions) FROM _new_evidence"
    )
    con.execute(
        """DELETE FROM evidence_contributions WHERE contributions_key IN (
            SELECT contributions_key FROM _old_keys
            EXCEPT SELECT contributions_key FROM evidence_edges
            WHERE contributions_key IN (SELECT contributions_key FROM _old_keys))"""
    )
    con.execute(
        """INSERT INTO evidence_contributions BY NAME
        SELECT * FROM _new_combos
        WHERE contributions_key NOT IN (SELECT contributions_key FROM evidence_contributions
                                        WHERE contributions_key IN
                                              (SELECT contributions_key FROM _new_combos))"""
    )


def _apply_features(con: duckdb.DuckDBPyConnection) -> None:
    """Match features: the touched entities' rows and the restated mentions' rows, then
    every term-frequency count that moved and the totals."""
    for etype in pub.ENTITY_TYPES:
        table = matching.TABLES[etype]
        cond = (
            f"entity_id IN ({TOUCHED}) OR mention_id IN "
            f"(SELECT mention_id FROM _restated WHERE entity_type = '{etype}')"
        )
        _replace_rows(con, table, cond)
        # Term frequencies: the counts that moved (a day's names), then the totals.
        for c in matching.TF_COLUMNS[etype]:
            tf, now = matching.tf_table(etype, c), f"_tf_{etype}_{c}"
            con.execute(
                f"""DELETE FROM {tf} WHERE NOT EXISTS (
                    SELECT 1 FROM {now} t WHERE t.{c} = {tf}.{c} AND t.n = {tf}.n)"""
            )
            con.execute(f"INSERT INTO {tf} SELECT {c}, n FROM {now} EXCEPT SELECT {c}, n FROM {tf}")
    con.execute(f"DELETE FROM {matching.TF_TOTALS}")
    con.execute(f"INSERT INTO {matching.TF_TOTALS} BY NAME {matching.tf_totals_select()}")


def _apply_rest(con: duckdb.DuckDBPyConnection, reference_date: Any, base_ref: str | None) -> None:
    """List statuses when the reference date moved; the small tables whole."""
    if base_ref != str(reference_date):
        status = schema.LIST_STATUS.format(start="start_date", expiry="expiry_date")
        con.execute(
            f"UPDATE list_entries SET status = {status}, "
            "reference_date = CAST($reference_date AS DATE)",
            {"reference_date": reference_date},
        )
    for table in schema.WHOLE_TABLES:
        con.execute(f"DELETE FROM {table}")
        con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM {SCRATCH}.main.{table}")


def _record_touched(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """``publish_touched``: the touched entities, for an incremental analyst export
    (:mod:`warehouse.export`); returns the ``base_run`` stamp naming the base (its last
    run's ``published_at`` in epoch microseconds; the new run is not in ``runs`` yet)."""
    con.execute("DELETE FROM publish_touched")
    con.execute(f"INSERT INTO publish_touched {TOUCHED}")
    base_run = pub._one(con, "SELECT epoch_us(max(published_at)) FROM runs")
    return {} if base_run is None else {"base_run": str(base_run)}


SMOKE_CHECKS: dict[str, str] = {
    # each query returns the number of violations among the rows that changed
    "mention in no entity or several": """
        WITH s AS (SELECT mention_id FROM _old_members UNION SELECT mention_id FROM _mention_rows
                   UNION SELECT mention_id FROM _new_mentions),
        c AS (SELECT mention_id, count(*) AS n FROM memberships
              WHERE mention_id IN (SELECT mention_id FROM s) GROUP BY mention_id)
        SELECT count(*) FROM s LEFT JOIN c USING (mention_id) WHERE c.n IS DISTINCT FROM 1""",
    "record whose mention is unknown": """
        SELECT count(*) FROM (SELECT DISTINCT mention_id FROM _new_records) r
        WHERE mention_id NOT IN (SELECT mention_id FROM memberships
                                 WHERE mention_id IN (SELECT mention_id FROM _new_records))""",
}


def update(
    con: duckdb.DuckDBPyConnection,
    home: Home,
    reference_date: Any,
    plan_: Plan,
    *,
    max_touched: float = MAX_TOUCHED,
) -> dict[str, Any]:
    """Update the copy of the base open on ``con`` for today's inputs (see the module
    docstring), leaving the transaction of the changes open for the caller to commit.
    Raises :class:`FullBuild` (before changing anything) when the update would not
    give what a full build gives, or would cost as much. Returns the touched entity
    count, the base's entity count, today's stamps, the smoke check results and the
    seconds per step and per table."""
    step = Laps()
    steps = step.seconds

    cat = pub._one(con, "SELECT current_database()")
    _register_lake(con, home)
    changed = pub._one(
        con,
        "SELECT count(*) FROM ((SELECT * FROM _sources EXCEPT SELECT * FROM sources) "
        "UNION ALL (SELECT * FROM sources EXCEPT SELECT * FROM _sources))",
    )
    if changed:
        raise FullBuild("the source catalog changed")
    step("read_inputs")
    _seeds(con, home, plan_)
    step("seeds")
    stamps = _evidence_delta(con, home, plan_, plan_.stamps)
    step("evidence_delta")
    touched, total = _touched(con, home, plan_, max_touched)
    con.execute(
        f"CREATE TEMP TABLE _old_members AS SELECT mention_id FROM memberships "
        f"WHERE entity_id IN ({TOUCHED})"
    )
    step("touched")
    _restrict(con, home, plan_, cat)
    step("restrict_inputs")
    _term_frequencies(con, home)
    step("term_frequencies")
    con.execute(f"ATTACH ':memory:' AS {SCRATCH}")
    con.execute(f"USE {SCRATCH}")
    try:
        build_seconds = schema.build_tables(
            con,
            reference_date,
            skip=("evidence_edges", "evidence_contributions"),
            applied_keys="_applied_keys",
        )
    finally:
        con.execute(f'USE "{cat}"')
    step("build")
    con.execute("BEGIN TRANSACTION")
    _apply_entities(con)
    step("apply_entities")
    _apply_evidence(con)
    step("apply_evidence")
    _apply_features(con)
    step("apply_features")
    _apply_rest(con, reference_date, plan_.stamps.get("reference_date"))
    stamps.update(_record_touched(con))
    step("apply_rest")
    problems = {name: int(pub._one(con, sql)) for name, sql in SMOKE_CHECKS.items()}
    step("smoke_checks")
    return {
        "touched": touched,
        "entities_before": total,
        "stamps": stamps,
        "problems": problems,
        "steps": steps,
        "build_seconds": build_seconds,
    }


def detach(con: duckdb.DuckDBPyConnection) -> None:
    """Drop the scratch database (after the commit)."""
    con.execute(f"DETACH DATABASE IF EXISTS {SCRATCH}")
