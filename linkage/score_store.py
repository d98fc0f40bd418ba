"""The accuracy sums of the saved clusters, kept between runs: a daily evaluation
rescores the clusters and entities the day changed, not the world.

Every score of :func:`linkage.evaluate.score_clusters` is a sum over the (cluster,
entity) groups of the labelled mentions (:func:`linkage.evaluate.create_groups`):
by cluster (mentions, predicted and correct pairs, B-cubed precision ce²/c) or by
truth entity (true pairs, B-cubed recall ce²/e), the B-cubed terms as exact
decimals. So the store (``lake/linkage/cluster_scores/``) keeps, per entity type,
every group (``groups_<type>.<generation>.parquet``: a base and parts, a later part
replacing every group of the clusters it names, ``n = 0`` marking a cluster gone) and
the totals in ``<type>.json`` with what they were computed from: the state (size,
mtime_ns) of ``<type>_clusters.parquet`` and ``<type>_entities.parquet``, and the
truth store's lineage and generation (:func:`linkage.truth.update_truth_store`).

A daily run changes two things. The incremental link (:mod:`linkage.incremental`)
changes some clusters: it names them in ``<type>_touched.parquet`` (grown, new or
rebuilt), writes their rows of the map to ``<type>_touched_members.parquet`` (read
instead of scanning the map for them when the record names that file as it is) and,
in ``<type>_touched.json`` (:func:`record_increment`), the clusters it took apart (the
region) and the map's state before and after it. The truth store
logs the mentions whose label (entity, ``collapsed``, ``amb``) it added or changed.
The clusters to rescore are the touched and taken-apart ones, those of the relabelled
mentions and the singletons of their mentions; the entities to rescore are those in
those clusters' old or new groups (an entity's recall terms depend on its size,
which a new mention elsewhere changes). Their old sums are subtracted from the totals
and the new ones added: integers and decimals, so the result is the one a full
scoring gives, exactly.

Anything that cannot be shown to follow from the stored sums by those changes is
scored in full, which rewrites the store: no store, a rebuilt truth store, a change
log no longer kept, clusters rewritten without an increment record (a full link), a
record older than the map or than the touched file, an increment that did not start
from the map the sums are of (an increment not scored), or totals whose mention count
is not the labelled mentions'.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Context, Decimal, localcontext
from pathlib import Path
from typing import Any

import duckdb

from linkage.evaluate import (
    CLUSTER_TOTALS,
    ENTITY_TOTALS,
    GROUP_COLUMNS,
    _base_table,
    cluster_totals,
    clusters_sql,
    create_groups,
    entity_totals,
    scores_from_totals,
)
from linkage.parts import file_stat as file_state  # [size, mtime_ns] or None
from linkage.truth import locked, read_parquet_sql, run_sql
from linkage.truth import store_dir as truth_store_dir
from tessera.config import Home

STORE_VERSION = 1
INCREMENT_VERSION = 1
# At most this many mention IDs are looked up in the map as values (DuckDB skips the
# row groups that cannot hold them: 27 IDs 0.06 s at 7.2M rows, 300 as slow as a scan).
MAX_LOOKUP = 100
# As the truth store: past MAX_PARTS parts, or MAX_DELTA_SHARE of the base's rows in
# the later parts, the groups are rewritten as one file.
MAX_PARTS = 16
MAX_DELTA_SHARE = 0.1
_DECIMALS = ("bp", "br")


def store_dir(home: Home) -> Path:
    """Where the sums are kept: ``lake/linkage/cluster_scores/``."""
    return home.lake / "linkage" / "cluster_scores"


def _linkage_file(home: Home, entity_type: str, kind: str, ext: str = "parquet") -> Path:
    if not entity_type.isidentifier():
        raise ValueError(f"not an entity type: {entity_type!r}")
    return home.lake / "linkage" / f"{entity_type}_{kind}.{ext}"


def touched_file(home: Home, entity_type: str) -> Path:
    """``<type>_touched.parquet`` (``linkage.incremental.touched_path``)."""
    return _linkage_file(home, entity_type, "touched")


def members_file(home: Home, entity_type: str) -> Path:
    """``<type>_touched_members.parquet``: the touched entities' rows of the map
    (``mention_id, entity_id``), written by the incremental link with the touched file."""
    return _linkage_file(home, entity_type, "touched_members")


def increment_file(home: Home, entity_type: str) -> Path:
    """``<type>_touched.json``: the record of the last incremental link
    (:func:`record_increment`)."""
    return _linkage_file(home, entity_type, "touched", "json")


def map_state(home: Home, entity_type: str) -> dict[str, list[int] | None]:
    """The state (:func:`file_state`) of the entity map and the clusters file: what a
    link rewrites."""
    return {
        kind: file_state(_linkage_file(home, entity_type, kind))
        for kind in ("entities", "clusters")
    }


def record_increment(
    home: Home,
    entity_type: str,
    before: dict[str, list[int] | None],
    region: Iterable[str],
) -> Path:
    """Write ``<type>_touched.json`` (atomically): what an incremental link changed,
    for :func:`score_saved_clusters`. ``before``: :func:`map_state` when the link
    started (before it read the map); ``region``: the entity IDs of the map it read
    whose mentions it clustered again (every mention of those is in a touched entity
    afterwards). The link calls it last, after writing the map and
    ``<type>_touched.parquet``; the record keeps their states as written."""
    rec = {
        "version": INCREMENT_VERSION,
        "before": before,
        "after": map_state(home, entity_type),
        "touched": file_state(touched_file(home, entity_type)),
        # Optional (an older record lacks it): the touched entities' map rows, which spare
        # the evaluation a scan of the map for them.
        "members": file_state(members_file(home, entity_type)),
        "region": sorted({str(e) for e in region}),
        "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    path = increment_file(home, entity_type)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(rec))
    os.replace(tmp, path)
    return path


def read_increment(home: Home, entity_type: str) -> dict[str, Any] | None:
    """The last increment's record (:func:`record_increment`), None when there is none
    or it is of another version."""
    path = increment_file(home, entity_type)
    if not path.exists():
        return None
    rec = json.loads(path.read_text())
    return rec if rec.get("version") == INCREMENT_VERSION else None


def _manifest_path(home: Home, entity_type: str) -> Path:
    return store_dir(home) / f"{entity_type}.json"


def read_manifest(home: Home, entity_type: str) -> dict[str, Any] | None:
    """The stored sums of ``entity_type`` (``<type>.json``), None when there are none,
    they are of another version or a group file is missing or not the one written."""
    path = _manifest_path(home, entity_type)
    if not path.exists():
        return None
    m = json.loads(path.read_text())
    if m.get("version") != STORE_VERSION:
        return None
    for name, size, mtime_ns, _ in m["parts"]:
        if file_state(path.parent / name) != [size, mtime_ns]:
            return None
    return m


class _Full(Exception):
    """The stored sums cannot be carried forward: score in full (the reason)."""


def score_saved_clusters(
    con: duckdb.DuckDBPyConnection, home: Home, entity_type: str, truth: dict[str, Any]
) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """Score ``<type>_clusters.parquet`` as :func:`linkage.evaluate.score_clusters`
    does, from the stored sums brought up to date (see the module), or in full when
    that cannot be shown to be exact; the store is rewritten either way. ``con``:
    :func:`linkage.evaluate.scoring_duckdb` with the stored truth views, ``truth``
    their manifest (:func:`linkage.truth.stored_truth_views`). Returns the scores and
    how they were computed: ``scored`` (``incremental`` or ``full``), ``reason`` and,
    incremental, the clusters and entities rescored."""
    d = store_dir(home)
    d.mkdir(parents=True, exist_ok=True)
    with locked(d):
        old = read_manifest(home, entity_type)
        now = map_state(home, entity_type)
        manifest = None
        try:
            plan = _plan(home, entity_type, old, now, truth)
            assert old is not None
            manifest, how = _increment(con, home, entity_type, old, plan, truth)
        except _Full as why:
            how = {"scored": "full", "reason": str(why)}
        finally:
            _drop_work_tables(con)
        if manifest is None:
            manifest = _full(con, home, entity_type, old)
        if map_state(home, entity_type) != now:  # rewritten meanwhile: not these sums'
            now = {"entities": None, "clusters": None}
        manifest |= {
            "version": STORE_VERSION,
            "entity_type": entity_type,
            "map": now,
            "truth": {"lineage": truth.get("lineage"), "generation": truth["generation"]},
            "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            **how,
        }
        path = _manifest_path(home, entity_type)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(manifest, indent=1))
        os.replace(tmp, path)
        keep = {name for m in (old, manifest) for name, *_ in (m or {}).get("parts", [])}
        for p in d.glob(f"groups_{entity_type}.*"):
            if p.name not in keep:
                p.unlink()
    return scores_from_totals(_load_totals(manifest["totals"]), entity_type), how


def _plan(
    home: Home,
    entity_type: str,
    old: dict[str, Any] | None,
    now: dict[str, list[int] | None],
    truth: dict[str, Any],
) -> dict[str, Any]:
    """What changed since the stored sums (touched clusters, taken-apart clusters,
    relabelled mentions' change logs); raises :class:`_Full` when that is not known."""
    if old is None:
        raise _Full("no stored sums")
    if truth.get("lineage") is None or old["truth"]["lineage"] != truth["lineage"]:
        raise _Full("the truth store was rebuilt (another lineage)")
    since = old["truth"]["generation"]
    if since < truth["changes_from"]:
        raise _Full(f"the truth changes since generation {since} are no longer logged")
    logs = [e for e in truth["changes"].get(entity_type, []) if e[4] > since]
    tdir = truth_store_dir(home)
    for name, size, mtime_ns, *_ in logs:
        if file_state(tdir / name) != [size, mtime_ns]:
            raise _Full(f"the truth change log {name} is missing or rewritten")
    plan: dict[str, Any] = {"changes": [tdir / e[0] for e in logs], "touched": None, "region": []}
    if now == old["map"]:
        return plan
    rec = read_increment(home, entity_type)
    if rec is None:
        raise _Full("the clusters were rewritten and no increment is recorded (a full link)")
    if rec["after"] != now:
        raise _Full("the clusters were rewritten after the last increment (a full link)")
    if rec["touched"] is None or rec["touched"] != file_state(touched_file(home, entity_type)):
        raise _Full("the touched file is missing or not the last increment's")
    if rec["before"] != old["map"]:
        raise _Full("the last increment did not start from the scored clusters")
    # The touched entities' map rows as the link wrote them, when they are of this map.
    members = members_file(home, entity_type)
    known = rec.get("members") is not None and rec["members"] == file_state(members)
    return plan | {
        "touched": touched_file(home, entity_type),
        "region": rec["region"],
        "members": members if known else None,
    }


def _groups_sql(d: Path, parts: list[list[Any]]) -> str:
    """The stored groups as they stand: the base without the clusters later parts
    name, and each cluster's rows of the last part naming it (``n = 0``: gone)."""
    cols = ", ".join(GROUP_COLUMNS)
    files = [d / name for name, *_ in parts]
    if len(files) == 1:
        return f"SELECT {cols} FROM {read_parquet_sql(files)}"
    return f"""
        WITH p AS MATERIALIZED (SELECT * FROM {read_parquet_sql(files[1:], filename=True)}),
        last AS (SELECT cluster_id, max(filename) AS filename FROM p GROUP BY cluster_id)
        SELECT {cols} FROM {read_parquet_sql(files[:1])} ANTI JOIN last USING (cluster_id)
        UNION ALL
        SELECT {cols} FROM p SEMI JOIN last USING (cluster_id, filename) WHERE n > 0"""


def _write(con: duckdb.DuckDBPyConnection, d: Path, name: str, query: str) -> list[Any]:
    """Write ``query`` to ``d/name`` (temporary file, then :func:`os.replace`); returns
    ``[name, size, mtime_ns, rows]``."""
    tmp = d / f"{name}.{os.getpid()}.tmp"
    target = str(tmp).replace("'", "''")
    rows = con.execute(f"COPY ({query}) TO '{target}' (FORMAT parquet)").fetchall()[0][0]
    os.replace(tmp, d / name)
    return [name, *(file_state(d / name) or []), int(rows)]


def _full(
    con: duckdb.DuckDBPyConnection, home: Home, entity_type: str, old: dict[str, Any] | None
) -> dict[str, Any]:
    """Every group of the saved clusters, stored as one file; the manifest's parts and
    totals."""
    gen = (old["generation"] if old else 0) + 1
    path = _linkage_file(home, entity_type, "clusters")
    create_groups(con, "_ss_groups", _base_table(con, home, entity_type), clusters_sql(path))
    totals = cluster_totals(con, "_ss_groups") | entity_totals(con, "_ss_groups")
    part = _write(
        con, store_dir(home), f"groups_{entity_type}.{gen:06d}.parquet", "SELECT * FROM _ss_groups"
    )
    run_sql(con, "DROP TABLE _ss_groups")
    return {"generation": gen, "parts": [part], "totals": _dump_totals(totals)}


def _increment(
    con: duckdb.DuckDBPyConnection,
    home: Home,
    entity_type: str,
    old: dict[str, Any],
    plan: dict[str, Any],
    truth: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The stored sums carried forward by ``plan`` (:func:`_plan`): the manifest's
    generation, parts and totals, and what was rescored."""
    d = store_dir(home)
    gen = old["generation"] + 1
    stored = f"({_groups_sql(d, old['parts'])})"
    labelled = _base_table(con, home, entity_type)
    clusters = clusters_sql(_linkage_file(home, entity_type, "clusters"))
    cluster_key = "coalesce(cluster_id::VARCHAR, 'single:' || mention_id)"

    run_sql(con, "CREATE OR REPLACE TEMP TABLE _ss_touched (cluster_id VARCHAR)")
    if plan["touched"] is not None:
        run_sql(
            con,
            "INSERT INTO _ss_touched SELECT DISTINCT entity_id::VARCHAR "
            f"FROM {read_parquet_sql([plan['touched']])}",
        )
    run_sql(con, "INSERT INTO _ss_touched SELECT unnest(?::VARCHAR[])", [plan["region"]])
    run_sql(con, "CREATE OR REPLACE TEMP TABLE _ss_changed (mention_id VARCHAR)")
    if plan["changes"]:
        run_sql(
            con,
            "INSERT INTO _ss_changed SELECT DISTINCT mention_id "
            f"FROM {read_parquet_sql(plan['changes'])}",
        )
    n_touched, n_changed = _count(con, "_ss_touched"), _count(con, "_ss_changed")
    if not n_touched and not n_changed:
        how = {"scored": "incremental", "reason": "nothing changed", "clusters_rescored": 0,
               "entities_rescored": 0}  # fmt: skip
        return {k: old[k] for k in ("generation", "parts", "totals")}, how

    # The clusters to rescore: the touched and taken-apart ones, the relabelled
    # mentions' clusters, and the singletons of all those mentions (a mention listed
    # now was a singleton if unlisted before; an unlisted relabelled one is one now).
    if plan.get("members") is not None:
        # The touched entities' rows as the link wrote them (every surviving region
        # entity is touched, a retired one has no rows), and the rows of the relabelled
        # mentions outside them: a scan of the map spared (0.2 s at 7.2M rows), and
        # when those are few, looked up by value in the map (sorted by mention ID).
        run_sql(
            con,
            "CREATE OR REPLACE TEMP TABLE _ss_hit AS SELECT mention_id::VARCHAR AS mention_id, "
            f"entity_id::VARCHAR AS cluster_id FROM {read_parquet_sql([plan['members']])}",
        )
        run_sql(
            con,
            "CREATE OR REPLACE TEMP TABLE _ss_outside AS "
            "SELECT mention_id FROM _ss_changed ANTI JOIN _ss_hit USING (mention_id)",
        )
        n_outside = _count(con, "_ss_outside")
        if n_outside:
            where, values = "SEMI JOIN _ss_outside USING (mention_id)", None
            if n_outside <= MAX_LOOKUP:
                values = [
                    r[0] for r in con.execute("SELECT mention_id FROM _ss_outside").fetchall()
                ]
                where = f"WHERE mention_id IN ({', '.join('?' * n_outside)})"
            run_sql(
                con,
                f"INSERT INTO _ss_hit SELECT mention_id, {cluster_key} FROM {clusters} {where}",
                values,
            )
    else:
        run_sql(
            con,
            f"""
            CREATE OR REPLACE TEMP TABLE _ss_hit AS
            SELECT mention_id, {cluster_key} AS cluster_id FROM {clusters}
            WHERE {cluster_key} IN (SELECT cluster_id FROM _ss_touched)
               OR mention_id IN (SELECT mention_id FROM _ss_changed)""",
        )
    run_sql(
        con,
        """
        CREATE OR REPLACE TEMP TABLE _ss_extra AS
        SELECT DISTINCT cluster_id FROM _ss_hit
        WHERE mention_id IN (SELECT mention_id FROM _ss_changed)
          AND cluster_id NOT IN (SELECT cluster_id FROM _ss_touched);
        CREATE OR REPLACE TEMP TABLE _ss_unlisted AS
        SELECT mention_id FROM _ss_changed ANTI JOIN _ss_hit USING (mention_id);
        CREATE OR REPLACE TEMP TABLE _ss_clusters AS
        SELECT cluster_id FROM _ss_touched UNION SELECT cluster_id FROM _ss_extra
        UNION SELECT 'single:' || mention_id FROM _ss_hit
        UNION SELECT 'single:' || mention_id FROM _ss_changed;
        """,
    )
    members = "SELECT mention_id, cluster_id FROM _ss_hit SEMI JOIN _ss_touched USING (cluster_id)"
    if _count(con, "_ss_extra"):
        members += f"""
            UNION ALL SELECT mention_id, {cluster_key} FROM {clusters}
            WHERE {cluster_key} IN (SELECT cluster_id FROM _ss_extra)"""
    run_sql(con, f"CREATE OR REPLACE TEMP TABLE _ss_members AS {members}")
    # The groups of those clusters now, as create_groups makes them (the unlisted
    # relabelled mentions are their own singletons).
    create_groups(
        con,
        "_ss_new",
        f"(SELECT * FROM {labelled} SEMI JOIN (SELECT mention_id FROM _ss_members "
        "UNION ALL SELECT mention_id FROM _ss_unlisted) USING (mention_id))",
        "_ss_members",
    )
    run_sql(
        con,
        f"""
        CREATE OR REPLACE TEMP TABLE _ss_old AS
        SELECT * FROM {stored} SEMI JOIN _ss_clusters USING (cluster_id);
        CREATE OR REPLACE TEMP TABLE _ss_entities AS
        SELECT entity_id FROM _ss_old UNION SELECT entity_id FROM _ss_new;
        CREATE OR REPLACE TEMP TABLE _ss_old_e AS
        SELECT * FROM {stored} SEMI JOIN _ss_entities USING (entity_id);
        CREATE OR REPLACE TEMP TABLE _ss_new_e AS
        SELECT * FROM _ss_old_e ANTI JOIN _ss_clusters USING (cluster_id)
        UNION ALL SELECT * FROM _ss_new;
        """,
    )
    totals = _load_totals(old["totals"])
    for sign, part in ((-1, cluster_totals(con, "_ss_old")), (1, cluster_totals(con, "_ss_new"))):
        totals = _add(totals, part, sign)
    for sign, part in ((-1, entity_totals(con, "_ss_old_e")), (1, entity_totals(con, "_ss_new_e"))):
        totals = _add(totals, part, sign)
    labels = truth.get("labels", {}).get(entity_type)
    if labels is None or totals["mentions"] != labels or min(totals.values()) < 0:
        raise _Full(f"the carried sums count {totals['mentions']} mentions, the truth {labels}")

    # The part: every group of the rescored clusters, and n = 0 for those now gone.
    run_sql(
        con,
        """
        CREATE OR REPLACE TEMP TABLE _ss_part AS
        SELECT * FROM _ss_new
        UNION ALL
        SELECT DISTINCT cluster_id, NULL::VARCHAR, 0::BIGINT, 0::BIGINT, 0::BIGINT, 0::BIGINT
        FROM _ss_old ANTI JOIN _ss_new USING (cluster_id)
        """,
    )
    n_part = _count(con, "_ss_part")
    parts = list(old["parts"])
    later = sum(p[3] for p in parts[1:]) + n_part
    name = f"groups_{entity_type}.{gen:06d}.parquet"
    if len(parts) < MAX_PARTS and later <= MAX_DELTA_SHARE * parts[0][3]:
        parts.append(_write(con, d, name, "SELECT * FROM _ss_part"))
    else:
        whole = f"SELECT * FROM {stored} ANTI JOIN _ss_clusters USING (cluster_id) "
        whole += "UNION ALL SELECT * FROM _ss_new"
        parts = [_write(con, d, name, whole)]
    how = {
        "scored": "incremental",
        "reason": "the last increment and the truth changes since the stored sums",
        "clusters_rescored": _count(
            con, "(SELECT cluster_id FROM _ss_old UNION SELECT cluster_id FROM _ss_new)"
        ),
        "entities_rescored": _count(con, "_ss_entities"),
    }
    return {"generation": gen, "parts": parts, "totals": _dump_totals(totals)}, how


def _drop_work_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Drop the temporary ``_ss_*`` tables :func:`_increment` made."""
    names = con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE temporary AND starts_with(table_name, '_ss_')"
    ).fetchall()
    for (name,) in names:
        run_sql(con, f"DROP TABLE {name}")


def _count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    return int(con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0])


# Decimals of 38 digits added exactly (the default context rounds to 28).
_EXACT = Context(prec=80)


def _add(totals: dict[str, Any], part: dict[str, Any], sign: int) -> dict[str, Any]:
    with localcontext(_EXACT):
        return totals | {k: totals[k] + sign * v for k, v in part.items()}


def _dump_totals(totals: dict[str, Any]) -> dict[str, Any]:
    return {k: str(v) if k in _DECIMALS else int(v) for k, v in totals.items()}


def _load_totals(stored: dict[str, Any]) -> dict[str, Any]:
    out = {k: Decimal(v) if k in _DECIMALS else int(v) for k, v in stored.items()}
    if set(out) != {*CLUSTER_TOTALS, *ENTITY_TOTALS}:
        raise ValueError(
            f"stored totals lack {sorted({*CLUSTER_TOTALS, *ENTITY_TOTALS} - set(out))}"
        )
    return out
