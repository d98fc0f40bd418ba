"""Live source databases: simulated day by day, extracted incrementally, exactly once.

SQLite (the embedded default) is always tested. PostgreSQL and MariaDB tests
(``-m db``) use the servers at ``TESSERA_TEST_PG_URL`` / ``TESSERA_TEST_MYSQL_URL``
(default: the local ones), create throwaway databases named with the pid and
drop them afterwards; they skip when no server answers.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest

from connectors.catalog.databases import DATABASE_PROFILES, DATABASE_SPECS
from connectors.database import (
    CursorState,
    CursorStore,
    Extraction,
    SourceDatabaseError,
    _keys_hash,
    database_url,
    engine_of,
    extract,
    incremental_query,
    mysql_connect_args,
    preflight,
    read_sql,
    sqlite_path,
    with_database,
)
from connectors.spec import SourceSpec, spec_from_dict
from simulation.databases import DatabaseDayLog, write_database_day
from simulation.world import World, WorldConfig, generate_world
from tessera.config import DatabaseServers, Home

PG_URL = (
    os.environ.get("TESSERA_TEST_PG_URL")
    or os.environ.get("TESSERA_PG_URL")
    or "postgresql://postgres@127.0.0.1:5432/postgres"
)
MYSQL_URL = (
    os.environ.get("TESSERA_TEST_MYSQL_URL")
    or os.environ.get("TESSERA_MYSQL_URL")
    or "mysql://root@127.0.0.1:3306/"
)
SPECS = {s.id: s for s in DATABASE_SPECS}
DAYS = 3
Run = list[tuple[DatabaseDayLog, Extraction]]


@pytest.fixture(scope="module")
def world() -> World:
    return generate_world(WorldConfig(persons=300, days=DAYS))


def _sqlite_url(root: Path, spec: SourceSpec) -> str:
    return database_url(spec, DatabaseServers(), Home(root))


def _run_days(world: World, spec: SourceSpec, url: str, store: CursorStore, truth: Path) -> Run:
    """Simulate every day; after each, extract and commit (as the ingest does)."""
    out = []
    for d in range(DAYS):
        log = write_database_day(world, spec, DATABASE_PROFILES[spec.id], d, url, truth)
        ex = extract(spec, url, store.load(spec.id))
        store.commit(ex.new_state)
        out.append((log, ex))
    return out


@pytest.fixture(scope="module")
def sqlite_home(
    world: World, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Home, dict[str, Run]]:
    home = Home(tmp_path_factory.mktemp("dbs") / "home").ensure()
    store = CursorStore(home.state / "cursors")
    runs = {
        s.id: _run_days(world, s, _sqlite_url(home.root, s), store, home.truth)
        for s in DATABASE_SPECS
    }
    return home, runs


def _ops(ex: Extraction) -> dict[str, int]:
    return dict(ex.rows.group_by("_op").len().iter_rows()) if ex.rows.height else {}


def _records(ex: Extraction) -> set[tuple]:
    return set(ex.rows.drop("_line").iter_rows())


# ---------------------------------------------------------------- embedded (SQLite)


def test_eight_systems_spread_over_engines_and_domains() -> None:
    engines = [s.database.engine for s in DATABASE_SPECS]
    assert (
        len(DATABASE_SPECS) == 8 and engines.count("postgres") >= 3 and engines.count("mysql") >= 3
    )
    assert {s.domain for s in DATABASE_SPECS} >= {"municipal", "commercial", "transport", "court"}
    flags = {s.id: s.database.deleted_flag for s in DATABASE_SPECS}
    assert any(flags.values()) and not all(flags.values()), "some soft-delete, some hard-delete"
    assert set(DATABASE_PROFILES) == set(SPECS)


def test_full_load_extracts_every_record_once_as_text(sqlite_home) -> None:
    _, runs = sqlite_home
    for sid, run in runs.items():
        log, ex = run[0]
        spec = SPECS[sid]
        assert log.inserted > 0 and log.updated == 0 and log.deleted == 0, sid
        assert _ops(ex) == {"insert": log.inserted}, sid
        assert ex.deleted.height == 0 and ex.quarantine.height == 0, sid
        assert ex.rows_read == ex.rows.height
        assert ex.rows["_line"].to_list() == list(range(1, ex.rows.height + 1))
        assert ex.rows[spec.database.key].n_unique() == ex.rows.height, sid
        assert all(dt == pl.String for c, dt in ex.rows.schema.items() if c != "_line"), sid
        assert {c.name for c in spec.columns} <= set(ex.rows.columns), sid
        assert ex.new_state.known_keys == log.inserted


def test_incremental_days_extract_exactly_what_the_simulator_changed(sqlite_home) -> None:
    _, runs = sqlite_home
    for sid, run in runs.items():
        for log, ex in run[1:]:
            assert _ops(ex) == {
                k: v for k, v in (("insert", log.inserted), ("update", log.updated)) if v
            }, (sid, log)
            how = "soft" if SPECS[sid].database.deleted_flag else "hard"
            assert ex.deleted.height == log.deleted and set(ex.deleted["how"]) <= {how}, (sid, log)
    totals = {
        k: sum(getattr(log, k) for run in runs.values() for log, _ in run[1:])
        for k in ("inserted", "updated", "deleted")
    }
    assert all(v > 0 for v in totals.values()), totals


def test_truth_covers_exactly_the_rows_inserted_or_updated(sqlite_home) -> None:
    home, runs = sqlite_home
    for sid, run in runs.items():
        spec = SPECS[sid]
        for d, (_log, ex) in enumerate(run):
            truth = pl.read_parquet(
                home.truth / sid / f"{WorldConfig(days=DAYS).day(d).isoformat()}.parquet"
            )
            assert set(truth["record_key"]) == set(ex.rows[spec.database.key]), (sid, d)
            assert truth["entity_id"].null_count() == 0
            assert {"record_key", "entity_id", "source_id", "entity_type", "day"} <= set(
                truth.columns
            )
    hukou = pl.read_parquet(home.truth / "hukou_db" / "2026-01-01.parquet")
    assert "household_head_id" in hukou.columns


def test_rerun_of_a_day_changes_nothing(sqlite_home, world: World) -> None:
    home, runs = sqlite_home
    spec = SPECS["ecommerce_accounts_db"]
    url = _sqlite_url(home.root, spec)
    before = (
        sqlite3.connect(sqlite_path_of(url))
        .execute("SELECT count(*), max(gmt_modified) FROM user_account")
        .fetchone()
    )
    log = write_database_day(world, spec, DATABASE_PROFILES[spec.id], 1, url, home.truth)
    assert not log.applied and (log.inserted, log.updated, log.deleted) == (
        runs[spec.id][1][0].inserted,
        runs[spec.id][1][0].updated,
        runs[spec.id][1][0].deleted,
    )
    after = (
        sqlite3.connect(sqlite_path_of(url))
        .execute("SELECT count(*), max(gmt_modified) FROM user_account")
        .fetchone()
    )
    assert before == after
    again = extract(spec, url, CursorStore(home.state / "cursors").load(spec.id))
    assert again.rows.height == 0 and again.deleted.height == 0, (
        "equal timestamps at the mark are not re-read"
    )


def sqlite_path_of(url: str) -> str:
    return url.removeprefix("sqlite://")


def test_same_seed_same_data(world: World, tmp_path: Path) -> None:
    spec = SPECS["telecom_db"]
    got = []
    for name in ("a", "b"):
        url = _sqlite_url(tmp_path / name, spec)
        _run_days(
            world,
            spec,
            url,
            CursorStore(tmp_path / name / "state" / "cursors"),
            tmp_path / name / "truth",
        )
        got.append(_records(extract(spec, url, None)))
    assert got[0] == got[1] and len(got[0]) > 100


def _fresh(world: World, spec: SourceSpec, url: str, tmp: Path, days: int = 1) -> CursorStore:
    store = CursorStore(tmp / "state" / "cursors")
    for d in range(days):
        write_database_day(world, spec, DATABASE_PROFILES[spec.id], d, url, tmp / "truth")
    store.commit(extract(spec, url, None).new_state)
    return store


def test_crash_mid_extraction_then_rerun_gets_every_change_exactly_once(
    world: World, tmp_path: Path, monkeypatch
) -> None:
    import connectors.database as cdb

    spec = SPECS["ecommerce_accounts_db"]
    key = spec.database.key
    url = _sqlite_url(tmp_path, spec)
    store = _fresh(world, spec, url, tmp_path)
    committed = store.load(spec.id)
    write_database_day(world, spec, DATABASE_PROFILES[spec.id], 1, url, tmp_path / "truth")
    real = cdb.read_sql

    def dies_listing_keys(sid: str, u: str, sql: str) -> pl.DataFrame:
        if sql == spec.database.key_query:  # the rows were read; the connection drops now
            raise SourceDatabaseError(f"{sid}: connection lost")
        return real(sid, u, sql)

    monkeypatch.setattr(cdb, "read_sql", dies_listing_keys)
    with pytest.raises(SourceDatabaseError, match="ecommerce_accounts_db"):
        extract(spec, url, store.load(spec.id))
    monkeypatch.setattr(cdb, "read_sql", real)
    # Or the extraction finished but the caller died before committing.
    assert extract(spec, url, store.load(spec.id)).rows.height > 0
    assert store.load(spec.id) == committed
    write_database_day(world, spec, DATABASE_PROFILES[spec.id], 2, url, tmp_path / "truth")
    rerun = extract(spec, url, store.load(spec.id))
    assert rerun.rows[key].n_unique() == rerun.rows.height, "nothing doubled"
    changed = set()
    for day in ("2026-01-02", "2026-01-03"):
        changed |= set(
            pl.read_parquet(tmp_path / "truth" / spec.id / f"{day}.parquet")["record_key"]
        )
    with sqlite3.connect(sqlite_path_of(url)) as con:
        gone = {str(k) for (k,) in con.execute("SELECT id FROM user_account WHERE is_deleted = 1")}
    assert set(rerun.rows[key]) == changed - gone, "nothing missed"
    assert set(rerun.deleted["key"]) == gone & set(committed.keys["key"])
    store.commit(rerun.new_state)
    assert extract(spec, url, store.load(spec.id)).rows.height == 0


def test_commit_is_atomic_when_interrupted(world: World, tmp_path: Path, monkeypatch) -> None:
    spec = SPECS["telecom_db"]
    url = _sqlite_url(tmp_path, spec)
    store = _fresh(world, spec, url, tmp_path)
    old = store.load(spec.id)
    write_database_day(world, spec, DATABASE_PROFILES[spec.id], 1, url, tmp_path / "truth")
    ex = extract(spec, url, old)
    real = os.replace

    def fails_on_the_json(src, dst) -> None:  # power cut just before the state file is swapped
        if str(dst).endswith(".json"):
            raise OSError("disk full")
        real(src, dst)

    monkeypatch.setattr(os, "replace", fails_on_the_json)
    with pytest.raises(OSError):
        store.commit(ex.new_state)
    monkeypatch.setattr(os, "replace", real)
    reloaded = store.load(spec.id)
    assert reloaded == old and reloaded.keys.height == old.known_keys
    store.commit(ex.new_state)
    assert store.load(spec.id) == ex.new_state
    assert len(list((tmp_path / "state" / "cursors").glob("telecom_db.keys-*.parquet"))) == 1


def test_keys_hash_is_the_digest_of_the_sorted_pairs() -> None:
    """The vectorised hash names key files exactly as the Python join did (states
    committed before it still load)."""

    def joined(keys: pl.DataFrame) -> str:
        text = keys.sort("key").select(
            pl.concat_str("key", pl.col("cursor").fill_null(""), separator="\x1f")
        )
        return hashlib.sha256("\x1e".join(text.to_series().to_list()).encode()).hexdigest()

    empty = pl.DataFrame(schema={"key": pl.String, "cursor": pl.String})
    some = pl.DataFrame(
        {
            "key": [f"K{(i * 7919) % 5000:05d}" for i in range(5000)],
            "cursor": [None if i % 9 == 0 else f"2026-01-{i % 28 + 1:02d}" for i in range(5000)],
        }
    )
    for keys in (empty, some, some.head(1)):
        assert _keys_hash(keys) == joined(keys)


def test_unchanged_extraction_keeps_its_key_file_and_a_damaged_one_is_refused(
    world: World, tmp_path: Path
) -> None:
    spec = SPECS["telecom_db"]
    url = _sqlite_url(tmp_path, spec)
    store = _fresh(world, spec, url, tmp_path)
    state = store.load(spec.id)
    (key_file,) = (tmp_path / "state" / "cursors").glob("telecom_db.keys-*.parquet")
    written = key_file.stat().st_mtime_ns
    ex = extract(spec, url, state)
    assert ex.rows.height == 0 and ex.deleted.height == 0
    assert ex.new_state.keys_hash == state.keys_hash
    assert ex.new_state.known_keys == state.known_keys
    store.commit(ex.new_state)
    assert key_file.stat().st_mtime_ns == written, "the same key file is not written again"
    assert store.load(spec.id).keys.equals(state.keys)

    state.keys.head(state.keys.height - 1).write_parquet(key_file)  # damaged
    with pytest.raises(SourceDatabaseError, match="does not match its hash"):
        store.load(spec.id)

    # A state committed before the file digest existed is checked by content.
    state.keys.write_parquet(key_file)
    cfg = tmp_path / "state" / "cursors" / "telecom_db.json"
    body = json.loads(cfg.read_text())
    body.pop("keys_file_sha256")
    cfg.write_text(json.dumps(body))
    assert store.load(spec.id) == state
    state.keys.head(state.keys.height - 1).write_parquet(key_file)
    with pytest.raises(SourceDatabaseError, match="does not match its hash"):
        store.load(spec.id)
    store.commit(ex.new_state)  # the file is written again, with its digest
    assert store.load(spec.id).keys.equals(state.keys)
    assert "keys_file_sha256" in json.loads(cfg.read_text())


def test_hard_and_soft_deletes_are_found(world: World, tmp_path: Path) -> None:
    hard, soft = SPECS["ride_hailing_db"], SPECS["hukou_db"]
    for spec, sql in (
        (hard, "DELETE FROM t_driver WHERE driver_id = (SELECT min(driver_id) FROM t_driver)"),
        (
            soft,
            "UPDATE rk_jbxx SET zxbz = 1, gxsj = '2026-01-01 23:00:00' "
            "WHERE rkbh = (SELECT min(rkbh) FROM rk_jbxx)",
        ),
    ):
        url = _sqlite_url(tmp_path, spec)
        store = _fresh(world, spec, url, tmp_path)
        key = (
            sqlite3.connect(sqlite_path_of(url))
            .execute(
                f"SELECT min({spec.database.key}) FROM {'t_driver' if spec is hard else 'rk_jbxx'}"
            )
            .fetchone()[0]
        )
        with sqlite3.connect(sqlite_path_of(url)) as con:
            con.execute(sql)
        ex = extract(spec, url, store.load(spec.id))
        assert ex.deleted.rows() == [(str(key), "hard" if spec is hard else "soft")]
        assert ex.rows.height == 0
        assert ex.new_state.known_keys == store.load(spec.id).known_keys - 1


@pytest.mark.parametrize(
    "change, message",
    [
        ("ALTER TABLE zx_bzxr RENAME TO zx_bzxr_2024", "zx_bzxr"),
        ("ALTER TABLE zx_bzxr DROP COLUMN sfzh", "sfzh"),
        ("UPDATE zx_aj SET gxsj = 'not a time'", "gxsj"),
    ],
)
def test_schema_change_is_a_clear_error_and_keeps_the_state(
    world: World, tmp_path: Path, change: str, message: str
) -> None:
    spec = SPECS["court_enforcement_db"]
    url = _sqlite_url(tmp_path, spec)
    store = _fresh(world, spec, url, tmp_path)
    state_file = tmp_path / "state" / "cursors" / f"{spec.id}.json"
    before = state_file.read_bytes()
    with sqlite3.connect(sqlite_path_of(url)) as con:
        con.execute(change)
    with pytest.raises(
        SourceDatabaseError, match=rf"court_enforcement_db: .*{message}.*schema changed"
    ):
        extract(spec, url, store.load(spec.id))
    assert state_file.read_bytes() == before


def test_query_missing_a_spec_column_is_a_clear_error(world: World, tmp_path: Path) -> None:
    spec = SPECS["court_enforcement_db"]
    url = _sqlite_url(tmp_path, spec)
    write_database_day(world, spec, DATABASE_PROFILES[spec.id], 0, url, tmp_path / "truth")
    narrowed = replace(
        spec, database=replace(spec.database, query=spec.database.query.replace("r.sfzh, ", ""))
    )
    with pytest.raises(
        SourceDatabaseError, match="court_enforcement_db: column 'sfzh' missing from query result"
    ):
        extract(narrowed, url, None)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres@127.0.0.1:1/tessera_court_enforcement_db",
        "mysql://root:secret@127.0.0.1:1/tessera_telecom_db",
        "sqlite:///nonexistent/dir/telecom_db.sqlite",
    ],
)
def test_server_down_fails_fast_naming_the_source(url: str) -> None:
    spec = SPECS["telecom_db"]
    t = time.monotonic()
    with pytest.raises(
        SourceDatabaseError, match=r"^telecom_db: cannot connect to .*(refused|no database file)"
    ) as e:
        extract(spec, url, None)
    assert time.monotonic() - t < 10
    assert "secret" not in str(e.value)


def test_high_water_mark_is_validated_before_it_reaches_sql(world: World, tmp_path: Path) -> None:
    spec = SPECS["telecom_db"]
    url = _sqlite_url(tmp_path, spec)
    write_database_day(world, spec, DATABASE_PROFILES[spec.id], 0, url, tmp_path / "truth")
    evil = CursorState(spec.id, "2026-01-01 00:00:00' OR '1'='1", None, 0, "")
    with pytest.raises(SourceDatabaseError, match="refusing to use it in SQL"):
        extract(spec, url, evil)


def test_database_url_chooses_server_by_engine(tmp_path: Path) -> None:
    servers = DatabaseServers(
        postgres_url="postgresql://u:p@db.example:5433/postgres?sslmode=require"
    )
    home = Home(tmp_path)
    assert (
        database_url(SPECS["hukou_db"], servers, home)
        == "postgresql://u:p@db.example:5433/tessera_hukou_db?sslmode=require"
    )
    assert (
        database_url(SPECS["telecom_db"], servers, home)
        == f"sqlite://{tmp_path.resolve()}/databases/telecom_db.sqlite"
    )


# ---------------------------------------------------------------- servers


def _server(base: str, engine: str) -> Iterator[Callable[[str], str]]:
    """A factory of throwaway database URLs on a server; dropped at teardown."""
    try:
        preflight("test", base)
    except SourceDatabaseError as exc:
        pytest.skip(f"no {engine} server: {exc}")
    made: list[str] = []

    def make(sid: str) -> str:
        name = f"tessera_test_{os.getpid()}_{sid}"
        made.append(name)
        return with_database(base, name)

    yield make
    if engine == "postgres":
        import psycopg2

        con = psycopg2.connect(base)
        con.autocommit = True
        with con.cursor() as cur:
            for name in made:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        con.close()
    else:
        import pymysql

        from connectors.database import mysql_connect_args

        con = pymysql.connect(**mysql_connect_args(base))
        with con.cursor() as cur:
            for name in made:
                cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        con.close()


@pytest.fixture(scope="module")
def pg() -> Iterator[Callable[[str], str]]:
    yield from _server(PG_URL, "postgres")


@pytest.fixture(scope="module")
def mysql() -> Iterator[Callable[[str], str]]:
    yield from _server(MYSQL_URL, "mysql")


@pytest.mark.db
@pytest.mark.parametrize("engine", ["postgres", "mysql"])
def test_server_and_sqlite_give_the_same_records(
    engine: str, request, world: World, sqlite_home, tmp_path: Path
) -> None:
    make = request.getfixturevalue("pg" if engine == "postgres" else "mysql")
    _, sqlite_runs = sqlite_home
    specs = [s for s in DATABASE_SPECS if s.database.engine == engine]
    assert len(specs) >= 3
    for spec in specs:
        run = _run_days(
            world,
            spec,
            make(spec.id),
            CursorStore(tmp_path / "state" / "cursors"),
            tmp_path / "truth",
        )
        for d, ((log, ex), (slog, sex)) in enumerate(zip(run, sqlite_runs[spec.id], strict=True)):
            assert log.applied and (log.inserted, log.updated, log.deleted) == (
                slog.inserted,
                slog.updated,
                slog.deleted,
            ), (spec.id, d)
            assert _records(ex) == _records(sex), (spec.id, d)
            assert ex.deleted.sort("key").rows() == sex.deleted.sort("key").rows(), (spec.id, d)


@pytest.mark.db
@pytest.mark.parametrize("engine", ["postgres", "mysql"])
def test_server_schema_change_and_bad_credentials(
    engine: str, request, world: World, tmp_path: Path
) -> None:
    make = request.getfixturevalue("pg" if engine == "postgres" else "mysql")
    spec = SPECS["court_enforcement_db" if engine == "postgres" else "vehicle_registry_db"]
    url = make(spec.id)
    store = _fresh(world, spec, url, tmp_path)
    table, column = ("zx_bzxr", "sfzh") if engine == "postgres" else ("jdc_syr", "sfzmhm")
    if engine == "postgres":
        import psycopg2

        con = psycopg2.connect(url)
    else:
        import pymysql

        from connectors.database import mysql_connect_args

        con = pymysql.connect(**mysql_connect_args(url))
    with con.cursor() as cur:
        cur.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    con.commit()
    con.close()
    with pytest.raises(
        SourceDatabaseError, match=rf"^{spec.id}: query failed .*{column}.*schema changed"
    ):
        extract(spec, url, store.load(spec.id))
    bad = (
        url.replace("postgres@", "nobody@")
        if engine == "postgres"
        else url.replace("root@", "root:wrong@")
    )
    t = time.monotonic()
    with pytest.raises(SourceDatabaseError, match=rf"^{spec.id}: cannot connect to "):
        extract(spec, bad, store.load(spec.id))
    assert time.monotonic() - t < 10


@pytest.mark.db
def test_deploy_dagster_yaml_puts_all_storage_on_postgres(pg, tmp_path: Path, monkeypatch) -> None:
    import dagster as dg

    url = pg("dagster")
    import psycopg2

    con = psycopg2.connect(PG_URL)
    con.autocommit = True
    with con.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{url.rsplit("/", 1)[1]}"')
    con.close()
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_bytes(
        (Path(__file__).parents[1] / "deploy" / "dagster.yaml").read_bytes()
    )
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    for var, value in (
        ("DAGSTER_HOME", str(home)),
        ("DAGSTER_PG_HOST", parts.hostname),
        ("DAGSTER_PG_USERNAME", parts.username or "postgres"),
        ("DAGSTER_PG_PASSWORD", parts.password or ""),
        ("DAGSTER_PG_DB", parts.path.lstrip("/")),
    ):
        monkeypatch.setenv(var, value)
    instance = dg.DagsterInstance.get()
    try:
        kinds = (
            type(instance.run_storage).__name__,
            type(instance.event_log_storage).__name__,
            type(instance.schedule_storage).__name__,
        )
        assert kinds == ("PostgresRunStorage", "PostgresEventLogStorage", "PostgresScheduleStorage")
        assert instance.get_runs() == []
    finally:
        instance.dispose()


# ---------------------------------------------------------------- computed cursors


def _execute(url: str, *statements: str) -> None:
    """Run statements on the database at ``url`` with the engine's own driver."""
    engine = engine_of(url)
    if engine == "sqlite":
        con = sqlite3.connect(sqlite_path(url))
    elif engine == "postgres":
        import psycopg2

        con = psycopg2.connect(url)
    else:
        import pymysql

        con = pymysql.connect(**mysql_connect_args(url))
    try:
        cur = con.cursor()
        for sql in statements:
            cur.execute(sql)
        con.commit()
    finally:
        con.close()


def _plain(spec: SourceSpec) -> SourceSpec:
    """The telecom spec as it was before ``cursor_columns``: the plain filter on the
    computed cursor, and no helper columns in the query."""
    helpers = ", s.update_time AS subs_update_time, c.update_time AS cust_update_time"
    assert helpers in spec.database.query
    return replace(
        spec,
        database=replace(
            spec.database, query=spec.database.query.replace(helpers, ""), cursor_columns=()
        ),
    )


def test_only_a_cursor_columns_spec_changes_its_query() -> None:
    mark = "2026-01-02 08:00:00"
    for spec in DATABASE_SPECS:
        db = spec.database
        if spec.id == "telecom_db":
            assert db.cursor_columns == ("subs_update_time", "cust_update_time")
            sql = incremental_query(spec, mark)
            assert sql.count(" UNION ALL ") == 1 and sql.count(f"q.update_time >= '{mark}'") == 2
            assert incremental_query(spec, None) == f"SELECT * FROM ({db.query}) q"
        else:
            assert db.cursor_columns == ()
            assert (
                incremental_query(spec, mark)
                == f"SELECT * FROM ({db.query}) q WHERE q.{db.cursor} >= '{mark}'"
            )


@pytest.mark.parametrize(
    "columns, message",
    [
        (("subs_update_time", "update_time"), "must be distinct columns other than the cursor"),
        (("subs_update_time", "subs_update_time"), "must be distinct"),
        (("s.update_time",), "cursor_columns column 's.update_time' is not a plain identifier"),
    ],
)
def test_bad_cursor_columns_are_refused_before_any_sql(
    columns: tuple[str, ...], message: str
) -> None:
    spec = SPECS["telecom_db"]
    bad = replace(spec, database=replace(spec.database, cursor_columns=columns))
    with pytest.raises(SourceDatabaseError, match=f"telecom_db: .*{message}"):
        incremental_query(bad, "2026-01-02 08:00:00")


def test_cursor_columns_come_from_toml_as_a_tuple() -> None:
    spec = SPECS["telecom_db"]
    db = spec.database
    data = {
        "id": "my_telecom",
        "entity": "person",
        "format": {"kind": "database"},
        "columns": [{"name": c.name, "field": c.field, "rule": c.rule} for c in spec.columns],
        "database": {
            "engine": db.engine,
            "database": "my_telecom",
            "query": db.query,
            "key": db.key,
            "cursor": db.cursor,
            "key_query": db.key_query,
            "deleted_flag": db.deleted_flag,
            "cursor_columns": list(db.cursor_columns),
        },
    }
    got = spec_from_dict(data)
    assert got.database.cursor_columns == db.cursor_columns
    assert hash(got) == hash(spec_from_dict(data)), "the spec stays hashable"


@pytest.mark.parametrize(
    "engine",
    [
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.db),
        pytest.param("mysql", marks=pytest.mark.db),
    ],
)
def test_cursor_columns_read_exactly_the_rows_of_the_computed_cursor(
    engine: str, request, world: World, tmp_path: Path
) -> None:
    """Changes in only one of the two telecom tables, in both, at the mark itself,
    a soft delete and null stamps: the indexed form returns the same rows as the
    plain filter on the computed cursor, and the extraction is the same."""
    spec = SPECS["telecom_db"]
    if engine == "sqlite":
        url = _sqlite_url(tmp_path, spec)
    else:
        url = request.getfixturevalue("pg" if engine == "postgres" else "mysql")(
            "telecom_cursor_columns"
        )
    store = _fresh(world, spec, url, tmp_path)
    state = store.load(spec.id)
    mark = state.high_water
    # Subscribers that are their customer's only subscription, so a change to
    # the customer changes exactly one record.
    single = read_sql(
        spec.id,
        url,
        "SELECT min(s.subs_id) AS subs_id, s.cust_id FROM subscriber s "
        "JOIN cust_info c ON c.cust_id = s.cust_id "
        f"WHERE s.update_time < '{mark}' AND c.update_time < '{mark}' "
        "GROUP BY s.cust_id HAVING count(*) = 1 ORDER BY 1",
    )
    assert single.height >= 9
    subs, cust = single["subs_id"].to_list(), dict(single.iter_rows())
    later, latest, old = "2026-02-01 10:00:00", "2026-02-01 11:00:00", "2025-06-01 00:00:00"
    s_only, c_only, both, s_at_mark, c_at_mark, gone, c_null, s_null, untouched = subs[:9]
    _execute(
        url,
        f"UPDATE subscriber SET msisdn = '13900000000', update_time = '{later}' "
        f"WHERE subs_id = '{s_only}'",
        f"UPDATE cust_info SET contact_addr = 'moved', update_time = '{later}' "
        f"WHERE cust_id = '{cust[c_only]}'",
        f"UPDATE subscriber SET update_time = '{later}' WHERE subs_id = '{both}'",
        f"UPDATE cust_info SET update_time = '{latest}' WHERE cust_id = '{cust[both]}'",
        # At the mark exactly (>=), with the other table's stamp older.
        f"UPDATE subscriber SET msisdn = '13900000001', update_time = '{mark}' "
        f"WHERE subs_id = '{s_at_mark}'",
        f"UPDATE cust_info SET update_time = '{old}' WHERE cust_id = '{cust[s_at_mark]}'",
        f"UPDATE cust_info SET contact_addr = 'moved too', update_time = '{mark}' "
        f"WHERE cust_id = '{cust[c_at_mark]}'",
        f"UPDATE subscriber SET update_time = '{old}' WHERE subs_id = '{c_at_mark}'",
        f"UPDATE subscriber SET del_flag = '2', update_time = '{later}' WHERE subs_id = '{gone}'",
        # A null customer stamp: the cursor is the subscriber's (taken). A null
        # subscriber stamp makes the computed cursor null (not taken, either way).
        f"UPDATE subscriber SET update_time = '{latest}' WHERE subs_id = '{c_null}'",
        f"UPDATE cust_info SET update_time = NULL WHERE cust_id = '{cust[c_null]}'",
        f"UPDATE subscriber SET update_time = NULL WHERE subs_id = '{s_null}'",
        f"UPDATE cust_info SET update_time = '{latest}' WHERE cust_id = '{cust[s_null]}'",
    )
    plain = _plain(spec)
    for hw in (mark, later):
        fast = read_sql(spec.id, url, incremental_query(spec, hw))
        slow = read_sql(spec.id, url, incremental_query(plain, hw))
        assert (
            fast.drop("subs_update_time", "cust_update_time")
            .sort("subs_id")
            .equals(slow.sort("subs_id"))
        ), hw
    assert set(fast["subs_id"]) == {s_only, c_only, both, gone, c_null}, "at `later` or after"

    new, old_form = extract(spec, url, state), extract(plain, url, state)
    assert new.rows.equals(old_form.rows) and new.deleted.equals(old_form.deleted)
    assert new.quarantine.height == 0 and new.new_state.high_water == latest
    assert (new.new_state.keys_hash, new.new_state.known_keys) == (
        old_form.new_state.keys_hash,
        old_form.new_state.known_keys,
    )
    assert "subs_update_time" not in new.rows.columns and "cust_update_time" not in new.rows.columns
    assert dict(zip(new.rows["subs_id"], new.rows["_op"], strict=True)) == {
        k: "update" for k in (s_only, c_only, both, s_at_mark, c_at_mark, c_null)
    }
    assert new.deleted.rows() == [(gone, "soft")]
    assert untouched not in set(new.rows["subs_id"]) and s_null not in set(new.rows["subs_id"])
    rows = {r["subs_id"]: r for r in new.rows.iter_rows(named=True)}
    assert rows[both]["update_time"] == latest and rows[c_only]["contact_addr"] == "moved"


def test_cursor_columns_are_each_served_by_their_index_on_sqlite(
    world: World, tmp_path: Path
) -> None:
    spec = SPECS["telecom_db"]
    url = _sqlite_url(tmp_path, spec)
    write_database_day(world, spec, DATABASE_PROFILES[spec.id], 0, url, tmp_path / "truth")
    with sqlite3.connect(sqlite_path(url)) as con:

        def plan(s: SourceSpec) -> str:
            sql = "EXPLAIN QUERY PLAN " + incremental_query(s, "2026-01-02 08:00:00")
            return "\n".join(row[-1] for row in con.execute(sql))

        fast, slow = plan(spec), plan(_plain(spec))
    assert "SEARCH s USING INDEX ix_subscriber_update_time (update_time>?)" in fast, fast
    assert "SEARCH c USING INDEX ix_cust_info_update_time (update_time>?)" in fast, fast
    assert "SCAN" not in fast, fast
    assert "SCAN s" in slow, "the computed cursor alone reads the whole table"
