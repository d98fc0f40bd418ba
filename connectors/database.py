"""Incremental extraction from live source databases (PostgreSQL, MariaDB/MySQL, SQLite).

A database source is declared by its SourceSpec: ``DatabaseOptions.query``
yields one row per record with the ``key`` and ``cursor`` columns,
``key_query`` lists every current key, ``deleted_flag`` (optional) names a
soft-delete column and ``cursor_columns`` (optional) the indexed columns a
computed cursor is taken from (see :func:`incremental_query`). :func:`extract`
reads what changed since the stored :class:`CursorState` with
``polars.read_database_uri(..., engine="connectorx")`` (one code path for all
three engines) and returns the rows plus the new state; the caller commits
that state with :class:`CursorStore` only after it has staged the rows, so a
failed or interrupted run leaves the state unchanged and a rerun gets every
change exactly once.

Cursor semantics (chosen to be safe with equal timestamps and independent of
each engine's string collation): rows are selected with ``cursor >= high_water``
and a row is dropped if the known-key map already holds that key *with the same
cursor value*. The known-key map (key → last cursor seen) is kept next to the
cursor JSON; it also tells an ``insert`` from an ``update`` and, compared with
``key_query``'s result, finds hard deletes.

SQL interpolation: connectorx has no bound parameters, so the high-water value
is written into the SQL text. It only ever comes from our own state file and
is re-validated before use (an integer, or an ISO timestamp
``YYYY-MM-DD HH:MM:SS[.ffffff]``); the identifiers (key, cursor, cursor
columns) come from the spec and must be plain ASCII identifiers. No user input
reaches the SQL.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import polars as pl

from connectors.ingest import sha256_of
from connectors.spec import SourceSpec
from tessera.config import DatabaseServers, Home

CONNECT_TIMEOUT_S = 5
QUARANTINE_COLUMNS = {"line": pl.Int64, "raw": pl.String, "reason": pl.String}
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_INT = re.compile(r"-?\d{1,18}")
_TS = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d{1,6})?")
_LIVE_FLAGS = ("0", "false", "f", "n", "no", "")


class SourceDatabaseError(RuntimeError):
    """A live source that cannot be read: the message names the source and what is wrong."""


@dataclass(frozen=True)
class CursorState:
    """Where the last committed extraction of one source stopped.

    ``high_water`` is the largest cursor value seen (an integer or an ISO
    timestamp, as text); ``keys_hash`` identifies the known-key map (key → last
    cursor seen) and names its file; ``keys`` holds that map when loaded or
    freshly extracted (columns key, cursor; not part of equality).
    """

    source_id: str
    high_water: str | None
    keys_hash: str | None
    known_keys: int
    extracted_at: str
    keys: pl.DataFrame | None = field(default=None, compare=False, repr=False, hash=False)


@dataclass
class Extraction:
    """What changed in a source since its cursor state.

    ``rows``: changed or new records, every query column as pl.String plus
    ``_line`` (1-based, ordered by cursor then key) and ``_op`` (insert/update);
    ``deleted``: keys gone since the last run (``how`` soft or hard);
    ``quarantine``: rows that could not be taken (line, raw, reason);
    ``new_state``: not committed — commit it after staging the rows.
    """

    rows: pl.DataFrame
    deleted: pl.DataFrame
    quarantine: pl.DataFrame
    rows_read: int
    new_state: CursorState


# ---------------------------------------------------------------- URLs


def masked(url: str) -> str:
    """The URL with any password replaced by ``***`` (for messages and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def sqlite_path(url: str) -> Path:
    """The file of a ``sqlite://`` URL."""
    return Path(unquote(url.removeprefix("sqlite://")))


def mysql_connect_args(url: str) -> dict:
    """pymysql.connect keyword arguments for a ``mysql://`` URL."""
    p = urlsplit(url)
    args = {
        "host": p.hostname or "127.0.0.1",
        "port": p.port or 3306,
        "user": unquote(p.username or "root"),
        "password": unquote(p.password or ""),
        "charset": "utf8mb4",
        "connect_timeout": CONNECT_TIMEOUT_S,
    }
    db = p.path.lstrip("/")
    if db:
        args["database"] = unquote(db)
    return args


def with_database(url: str, database: str) -> str:
    """The server URL pointing at another database (query string kept)."""
    p = urlsplit(url)
    return urlunsplit(p._replace(path="/" + quote(database)))


def engine_of(url: str) -> str:
    scheme = urlsplit(url).scheme
    if scheme in ("postgresql", "postgres"):
        return "postgres"
    if scheme in ("mysql", "mariadb"):
        return "mysql"
    if scheme == "sqlite":
        return "sqlite"
    raise ValueError(f"unsupported database URL scheme {scheme!r} in {masked(url)}")


def database_url(spec: SourceSpec, servers: DatabaseServers, home: Home) -> str:
    """Where a database source lives: its own database (``DatabaseOptions.database``,
    ``tessera_<source_id>`` in the catalog) on the configured server for its
    engine, else the embedded SQLite file ``$TESSERA_HOME/databases/<id>.sqlite``."""
    db = _options(spec)
    server = {"postgres": servers.postgres_url, "mysql": servers.mysql_url}.get(db.engine)
    if server:
        if not _IDENT.fullmatch(db.database):
            raise SourceDatabaseError(
                f"{spec.id}: database name {db.database!r} is not a plain identifier"
            )
        return with_database(server, db.database)
    path = (home.databases / f"{spec.id}.sqlite").resolve()
    return "sqlite://" + quote(str(path))


# ---------------------------------------------------------------- state


class CursorStore:
    """Durable cursor state in ``state_dir`` (``Home.state / "cursors"``):
    ``<id>.json`` plus the known-key map ``<id>.keys-<hash>.parquet``. The key
    file is named by its content hash and written first; the JSON that points
    at it is replaced last (tmp file + ``os.replace``), so a commit is atomic
    as a whole. The JSON also holds the SHA-256 of the key file's bytes: loading
    checks the file against it (a read of the file, not a hash of a million keys);
    a state written before it had one is checked against the content hash."""

    def __init__(self, state_dir: Path):
        self.dir = Path(state_dir)

    def _json(self, source_id: str) -> Path:
        if not _IDENT.fullmatch(source_id):
            raise ValueError(f"source id {source_id!r} is not an identifier")
        return self.dir / f"{source_id}.json"

    def _keys(self, source_id: str, keys_hash: str) -> Path:
        return self.dir / f"{source_id}.keys-{keys_hash[:24]}.parquet"

    def load(self, source_id: str) -> CursorState | None:
        """The last committed state, or None if the source was never extracted."""
        path = self._json(source_id)
        if not path.exists():
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
        keys = None
        if data.get("keys_hash"):
            kpath = self._keys(source_id, data["keys_hash"])
            if not kpath.exists():
                raise SourceDatabaseError(
                    f"{source_id}: cursor state names missing key file {kpath.name}"
                )
            file_sha = data.get("keys_file_sha256")
            if file_sha is not None and sha256_of(kpath) != file_sha:
                raise SourceDatabaseError(
                    f"{source_id}: key file {kpath.name} does not match its hash"
                )
            keys = pl.read_parquet(kpath)
            if file_sha is None and _keys_hash(keys) != data["keys_hash"]:
                raise SourceDatabaseError(
                    f"{source_id}: key file {kpath.name} does not match its hash"
                )
        return CursorState(
            data["source_id"],
            data["high_water"],
            data.get("keys_hash"),
            int(data.get("known_keys", 0)),
            data.get("extracted_at", ""),
            keys,
        )

    def commit(self, state: CursorState) -> None:
        """Make ``state`` the committed one (atomically; old key files removed after)."""
        path = self._json(state.source_id)
        self.dir.mkdir(parents=True, exist_ok=True)
        keep: Path | None = None
        file_sha: str | None = None
        if state.keys_hash:
            if state.keys is None:
                raise ValueError(
                    f"{state.source_id}: a state with keys_hash needs its keys to commit"
                )
            keep = self._keys(state.source_id, state.keys_hash)
            # The committed state's file is known good (its digest was checked on
            # load); any other existing file of that name is written again.
            file_sha = self._committed_file_sha(state.source_id, state.keys_hash)
            if file_sha is None or not keep.exists():
                tmp = keep.with_name(keep.name + ".tmp")
                state.keys.write_parquet(tmp)
                _fsync(tmp)
                file_sha = sha256_of(tmp)
                os.replace(tmp, keep)
        body = {
            "source_id": state.source_id,
            "high_water": state.high_water,
            "keys_hash": state.keys_hash,
            "keys_file_sha256": file_sha,
            "known_keys": state.known_keys,
            "extracted_at": state.extracted_at,
        }
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(body, indent=2), encoding="utf-8")
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync_dir(self.dir)
        for old in self.dir.glob(f"{state.source_id}.keys-*.parquet"):
            if old != keep:
                old.unlink(missing_ok=True)

    def _committed_file_sha(self, source_id: str, keys_hash: str) -> str | None:
        """The key file digest the committed state records, if it names ``keys_hash``."""
        try:
            data = json.loads(self._json(source_id).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if data.get("keys_hash") != keys_hash:
            return None
        return data.get("keys_file_sha256")


def _fsync(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _keys_hash(keys: pl.DataFrame) -> str:
    """SHA-256 of the sorted (key, cursor) pairs: names the key file of a generation.
    (The text is ``key\\x1fcursor`` pairs joined by ``\\x1e``, built by polars: a
    million keys in a Python list and join took over a second.)"""
    text = keys.sort("key").select(
        pl.concat_str("key", pl.col("cursor").fill_null(""), separator="\x1f").str.join("\x1e")
    )
    return hashlib.sha256(text.item().encode()).hexdigest()


# ---------------------------------------------------------------- reading


def _options(spec: SourceSpec):
    db = spec.database
    if db is None:
        raise SourceDatabaseError(f"{spec.id}: not a database source")
    named = [("key", db.key), ("cursor", db.cursor), ("deleted_flag", db.deleted_flag)]
    named += [("cursor_columns", c) for c in db.cursor_columns]
    for what, name in named:
        if name is not None and not _IDENT.fullmatch(name):
            raise SourceDatabaseError(
                f"{spec.id}: {what} column {name!r} is not a plain identifier"
            )
    if db.cursor in db.cursor_columns or len(set(db.cursor_columns)) != len(db.cursor_columns):
        raise SourceDatabaseError(
            f"{spec.id}: cursor_columns {db.cursor_columns!r} must be distinct columns "
            f"other than the cursor {db.cursor!r}"
        )
    return db


def preflight(source_id: str, url: str) -> None:
    """Fail fast (seconds, not connectorx's 30 s pool timeout) with a clear reason
    if the server is down, the credentials are wrong or the database is missing."""
    engine = engine_of(url)
    try:
        if engine == "sqlite":
            path = sqlite_path(url)
            if not path.is_file():
                raise OSError(f"no database file {path}")
            sqlite3.connect(f"file:{path}?mode=ro", uri=True).close()
        elif engine == "postgres":
            import psycopg2

            psycopg2.connect(url, connect_timeout=CONNECT_TIMEOUT_S).close()
        else:
            import pymysql

            pymysql.connect(**mysql_connect_args(url)).close()
    except Exception as exc:  # OSError, sqlite3.Error, psycopg2.Error, pymysql.Error
        raise SourceDatabaseError(
            f"{source_id}: cannot connect to {masked(url)}: {_first_line(exc)}"
        ) from exc


def _first_line(exc: BaseException) -> str:
    args = getattr(exc, "args", ())
    if len(args) == 2 and isinstance(args[0], int):  # pymysql: (errno, message)
        return f"{args[1]} (error {args[0]})"
    text = str(exc).strip() or type(exc).__name__
    text = text.removeprefix("timed out waiting for connection: ")
    return text.splitlines()[0].strip()


def read_sql(source_id: str, url: str, sql: str) -> pl.DataFrame:
    """Run one query through connectorx; a failure becomes SourceDatabaseError."""
    try:
        return pl.read_database_uri(sql, url, engine="connectorx")
    except Exception as exc:
        reason = _first_line(exc)
        at = re.search(r"at index: (\d+)", reason)
        if at:  # connectorx names a value it could not convert only by column position
            try:
                names = pl.read_database_uri(
                    f"SELECT * FROM ({sql}) x WHERE 1 = 0", url, engine="connectorx"
                ).columns
                reason = f"column {names[int(at.group(1))]!r}: {reason}"
            except Exception:  # noqa: S110 - the original reason is still reported
                pass
        hint = (
            " (schema changed?)"
            if re.search(
                r"does(n't| not) exist|no such|unknown column|invalid input|conversion error",
                reason,
                re.I,
            )
            else ""
        )
        raise SourceDatabaseError(
            f"{source_id}: query failed on {masked(url)}: {reason}{hint}"
        ) from exc


def _literal(source_id: str, high_water: str) -> str:
    """The high-water mark as an SQL literal, validated (it is interpolated)."""
    if _INT.fullmatch(high_water):
        return str(int(high_water))
    if _TS.fullmatch(high_water):
        datetime.fromisoformat(high_water)  # a real instant, not just the right shape
        return f"'{high_water}'"
    raise SourceDatabaseError(
        f"{source_id}: stored high-water mark {high_water!r} is neither an integer "
        "nor an ISO timestamp; refusing to use it in SQL"
    )


def incremental_query(spec: SourceSpec, high_water: str | None) -> str:
    """The spec's query restricted to rows at or after the high-water mark.

    With ``cursor_columns`` the restriction is a ``UNION ALL`` with one arm per
    column: arm *i* takes the rows whose column *i* is at or after the mark and
    no earlier column is (null-safe), so no row comes twice, and every arm keeps
    the ``cursor >= mark`` filter, so the rows are exactly those of the plain
    form (the cursor is always one of the columns' values). A computed cursor
    can use no index; each arm's filter on one passed-through table column can
    (the engines merge the derived table and push the filter to that table).
    """
    db = _options(spec)
    base = f"SELECT * FROM ({db.query.strip().rstrip(';').strip()}) q"
    if high_water is None:
        return base
    mark = _literal(spec.id, high_water)
    since = f"q.{db.cursor} >= {mark}"
    if not db.cursor_columns:
        return f"{base} WHERE {since}"
    arms = []
    for i, column in enumerate(db.cursor_columns):
        # Not taken by an earlier arm (null-safe). Written so no planner turns it
        # into an index scan of the earlier column: SQLite would, for `IS NULL OR <`.
        earlier = [
            f"CASE WHEN q.{c} >= {mark} THEN 0 ELSE 1 END = 1" for c in db.cursor_columns[:i]
        ]
        arms.append(f"{base} WHERE " + " AND ".join([f"q.{column} >= {mark}", *earlier, since]))
    return " UNION ALL ".join(arms)


def _as_text(frame: pl.DataFrame) -> pl.DataFrame:
    """Every column as pl.String, written the same way whatever the engine."""
    exprs = []
    for name, dtype in frame.schema.items():
        c = pl.col(name)
        if dtype == pl.Date:
            e = c.dt.to_string("%Y-%m-%d")
        elif isinstance(dtype, pl.Datetime):
            e = c.dt.to_string("%Y-%m-%d %H:%M:%S%.f")
        elif isinstance(dtype, pl.Decimal) or dtype.is_float():
            e = c.cast(pl.Float64).cast(pl.String)
        elif dtype == pl.Binary:
            e = c.bin.encode("hex")
        else:
            e = c.cast(pl.String)
        exprs.append(e.alias(name))
    return frame.select(exprs)


def _cursor_values(spec: SourceSpec, frame: pl.DataFrame, cursor: str) -> tuple[pl.Series, str]:
    """The cursor column normalised to sortable text (``_cur``), and its kind (int/ts)."""
    col = frame.get_column(cursor)
    dtype = col.dtype
    if dtype.is_integer():
        return col.cast(pl.Int64).cast(pl.String), "int"
    if dtype == pl.Date:
        return col.dt.to_string("%Y-%m-%d 00:00:00"), "ts"
    if isinstance(dtype, pl.Datetime):
        return col.dt.to_string("%Y-%m-%d %H:%M:%S%.f"), "ts"
    if dtype == pl.String:
        s = col.str.strip_chars()
        if s.drop_nulls().str.contains(r"^-?\d{1,18}$").all() and s.drop_nulls().len() > 0:
            return s.str.to_integer(strict=False).cast(pl.String), "int"
        ts = s.str.to_datetime("%Y-%m-%d %H:%M:%S%.f", strict=False)
        ts = ts.fill_null(s.str.to_datetime("%Y-%m-%d %H:%M:%S", strict=False))
        ts = ts.fill_null(s.str.to_date("%Y-%m-%d", strict=False).cast(pl.Datetime("us")))
        return ts.dt.to_string("%Y-%m-%d %H:%M:%S%.f"), "ts"
    raise SourceDatabaseError(
        f"{spec.id}: cursor column {cursor!r} has type {dtype}, "
        "not a timestamp or integer (schema changed?)"
    )


def _check_columns(spec: SourceSpec, frame: pl.DataFrame) -> None:
    db = _options(spec)
    need = [c.name for c in spec.columns if c.required] + [db.key, db.cursor]
    need += [db.deleted_flag] if db.deleted_flag else []
    need += list(db.cursor_columns)
    for name in dict.fromkeys(need):
        if name not in frame.columns:
            raise SourceDatabaseError(
                f"{spec.id}: column {name!r} missing from query result (schema changed?)"
            )


def _helper_columns(spec: SourceSpec, present: list[str]) -> list[str]:
    """The ``cursor_columns`` that only serve the filter: present, and named nowhere else."""
    db = _options(spec)
    named = {c.name for c in spec.columns} | {db.key, db.cursor, db.deleted_flag}
    return [c for c in db.cursor_columns if c in present and c not in named]


def _empty(schema: dict) -> pl.DataFrame:
    return pl.DataFrame(schema=schema)


def extract(spec: SourceSpec, url: str, state: CursorState | None) -> Extraction:
    """Read the records of a database source that changed since ``state``.

    New and changed rows come back as text with ``_op`` insert/update; soft
    deletes (``deleted_flag`` set) and hard deletes (known keys no longer in
    ``key_query``) come back in ``deleted``; the new state is returned, not
    committed. Raises :class:`SourceDatabaseError` (state untouched) if the
    server cannot be reached or the schema no longer fits the spec.
    """
    db = _options(spec)
    preflight(spec.id, url)
    high_water = state.high_water if state else None
    known = (
        state.keys
        if state is not None and state.keys is not None
        else _empty({"key": pl.String, "cursor": pl.String})
    )
    raw = read_sql(spec.id, url, incremental_query(spec, high_water))
    _check_columns(spec, raw)
    raw = raw.drop(_helper_columns(spec, raw.columns))
    cur, kind = _cursor_values(spec, raw, db.cursor)
    if high_water is not None and (kind == "int") != bool(_INT.fullmatch(high_water)):
        raise SourceDatabaseError(
            f"{spec.id}: cursor column {db.cursor!r} is now {kind} but the stored "
            f"high-water mark is {high_water!r} (schema changed?)"
        )
    text = _as_text(raw)
    columns = text.columns
    work = text.with_columns(cur.alias("_cur"), pl.col(db.key).alias("_key"))
    if (
        raw.height
        and work["_cur"].null_count() == raw.height
        and raw[db.cursor].null_count() < raw.height
    ):
        raise SourceDatabaseError(
            f"{spec.id}: cursor column {db.cursor!r} holds no timestamps or integers "
            "(schema changed?)"
        )
    # Stable order: by cursor (as a sortable value), then key.
    order = pl.col("_cur").cast(pl.Int64, strict=False) if kind == "int" else pl.col("_cur")
    work = work.sort(order, pl.col("_key"), nulls_last=True)
    # Already seen: same key with the same cursor value (the >= boundary).
    work = work.join(
        known.rename({"key": "_key", "cursor": "_known_cur"}),
        on="_key",
        how="left",
        maintain_order="left",
    )
    work = work.filter(
        pl.col("_known_cur").is_null()
        | (pl.col("_known_cur") != pl.col("_cur"))
        | pl.col("_cur").is_null()
    )
    reason = (
        pl.when(pl.col("_key").is_null())
        .then(pl.lit(f"key column '{db.key}' is null"))
        .when(pl.col("_cur").is_null())
        .then(pl.lit(f"cursor column '{db.cursor}' is not a {kind}"))
        .when(pl.col("_key").is_duplicated())
        .then(pl.lit("key repeated in query result (join fan-out?)"))
    )
    work = work.with_columns(reason.alias("_reason"))
    bad = work.filter(pl.col("_reason").is_not_null())
    good = work.filter(pl.col("_reason").is_null())
    if db.deleted_flag:
        flag = pl.col(db.deleted_flag).str.strip_chars().str.to_lowercase()
        good = good.with_columns((flag.is_not_null() & ~flag.is_in(_LIVE_FLAGS)).alias("_gone"))
    else:
        good = good.with_columns(pl.lit(False).alias("_gone"))
    was_known = pl.col("_known_cur").is_not_null()
    soft = good.filter(pl.col("_gone") & was_known).select(pl.col("_key").alias("key"))
    live = good.filter(~pl.col("_gone"))
    rows = live.with_row_index("_line", offset=1).select(
        *columns,
        pl.col("_line").cast(pl.Int64),
        pl.when(was_known).then(pl.lit("update")).otherwise(pl.lit("insert")).alias("_op"),
    )
    quarantine = bad.with_row_index("line", offset=1).select(
        pl.col("line").cast(pl.Int64) + rows.height,
        pl.struct(columns).struct.json_encode().alias("raw"),
        pl.col("_reason").alias("reason"),
    )
    current = read_sql(spec.id, url, db.key_query)
    if current.width != 1:
        raise SourceDatabaseError(
            f"{spec.id}: key_query must return one column, got {current.columns}"
        )
    current_keys = _as_text(current).to_series().rename("key").to_frame()
    hard = (
        known.select("key")
        .join(current_keys, on="key", how="anti")
        .join(soft, on="key", how="anti")
    )
    deleted = pl.concat(
        [
            soft.with_columns(pl.lit("soft").alias("how")),
            hard.with_columns(pl.lit("hard").alias("how")),
        ]
    ).sort("key")
    seen = live.select(pl.col("_key").alias("key"), pl.col("_cur").alias("cursor"))
    unchanged = not seen.height and not deleted.height
    if unchanged and state is not None and state.keys is not None and state.keys_hash:
        # Nothing changed: the known keys (and so their hash) are the committed ones.
        new_known, keys_hash = known, state.keys_hash
    else:
        new_known = (
            pl.concat([known.join(seen, on="key", how="anti"), seen])
            .join(deleted, on="key", how="anti")
            .sort("key")
        )
        keys_hash = _keys_hash(new_known)
    marks = work.filter(pl.col("_cur").is_not_null())["_cur"]
    new_high = high_water
    if marks.len():
        top = marks.cast(pl.Int64).max() if kind == "int" else marks.max()
        if new_high is None or _later(str(top), new_high, kind):
            new_high = str(top)
    new_state = CursorState(
        source_id=spec.id,
        high_water=new_high,
        keys_hash=keys_hash,
        known_keys=new_known.height,
        extracted_at=datetime.now(UTC).isoformat(timespec="seconds"),
        keys=new_known,
    )
    return Extraction(
        rows=rows,
        deleted=deleted,
        quarantine=quarantine,
        rows_read=rows.height + quarantine.height,
        new_state=new_state,
    )


def _later(a: str, b: str, kind: str) -> bool:
    if kind == "int":
        return int(a) > int(b)
    return datetime.fromisoformat(a) > datetime.fromisoformat(b)
