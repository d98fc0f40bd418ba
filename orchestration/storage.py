"""The embedded Dagster instance's event log, without a disk sync per event.

Dagster's SQLite event log opens a connection, commits and closes it for every event
(a step writes ~11: start, output, materialisation, check evaluations, success...),
and each commit waits for the disk. On this project's machines a commit with its
sync took ~7 ms and the close ~6 ms, and a daily run writes ~1,100 events: of a
77 s run on a 3,000-person world, 58 s went to storing events (cProfile). This
storage is Dagster's own (:class:`SqliteEventLogStorage`, same files under
``history/runs``) with ``PRAGMA synchronous=OFF`` on its connections: a process
that dies loses nothing (the writes are in the operating system's cache), an
operating-system crash may lose or damage the last events of the run history.
That is the embedded instance of ``tessera run`` / ``tessera ui`` (a laptop, the
demo, CI); a deployment keeps its instance in PostgreSQL (``deploy/dagster.yaml``).

It also keeps a shard's connection open between events (a few recent shards: the
index and the runs being written), and remembers the schema facts Dagster looks up
again for every event (``has_table`` made a new engine and connection per asset check
event, and every asset event inspected the asset key table's columns): at 1,000,000
persons a daily run's ~1,100 events spent ~2 s of the run's own process on connecting
and inspecting (py-spy).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    INDEX_SHARD_NAME,
    SqliteEventLogStorage,
)
from dagster._core.storage.sql import create_engine
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.pool import StaticPool

# Shards whose connection stays open (the index shard always): a UI process reads many
# runs' shards, and each would otherwise keep a file open.
OPEN_SHARDS = 4


def _no_sync(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous=OFF")
    cursor.close()


class UnsyncedSqliteEventLogStorage(SqliteEventLogStorage):
    """:class:`SqliteEventLogStorage` whose connections do not sync to disk on commit.

    ``dagster.yaml``::

        event_log_storage:
          module: orchestration.storage
          class: UnsyncedSqliteEventLogStorage
          config:
            base_dir: /abs/path/to/dagster/history/runs
    """

    @classmethod
    def from_config_value(cls, inst_data: Any, config_value: Any) -> UnsyncedSqliteEventLogStorage:  # type: ignore[override]
        return cls(inst_data=inst_data, **config_value)

    def _engine(self, shard: str) -> Any:
        """One engine per shard, with one connection kept open (``StaticPool``: every
        use is under the storage's lock, never nested, so one connection serves them
        all; Dagster made an engine per event, and each compiled every statement
        again). Only the index shard and the ``OPEN_SHARDS`` most recently used run
        shards keep theirs; an older one is disposed (its connection closed)."""
        engines: dict[str, Any] = self.__dict__.setdefault("_engines", {})
        if shard in engines:
            engines[shard] = engines.pop(shard)  # most recently used last
            return engines[shard]
        engine = create_engine(
            self.conn_string_for_shard(shard),
            poolclass=StaticPool,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
        )
        event.listen(engine, "connect", _no_sync)
        engines[shard] = engine
        runs = [s for s in engines if s != INDEX_SHARD_NAME]
        for old in runs[: max(0, len(runs) - OPEN_SHARDS)]:
            engines.pop(old).dispose()
        return engine

    def dispose(self) -> None:
        super().dispose()
        with self._db_lock:
            for engine in self.__dict__.pop("_engines", {}).values():
                engine.dispose()

    def has_table(self, table_name: str) -> bool:
        """Dagster's check, remembered once a table exists (tables are not dropped
        while the storage lives)."""
        known: set[str] = self.__dict__.setdefault("_tables", set())
        if table_name in known:
            return True
        found = super().has_table(table_name)
        if found:
            known.add(table_name)
        return found

    def _has_asset_key_index_cols_on_connection(self, conn: Connection) -> bool:
        """Dagster's column check of the asset key table, remembered once true."""
        if self.__dict__.get("_asset_key_index_cols"):
            return True
        found = super()._has_asset_key_index_cols_on_connection(conn)
        self.__dict__["_asset_key_index_cols"] = found
        return found

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        # Dagster's own _connect, with the pragma on every new connection.
        with self._db_lock:
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn:
                with conn.begin():
                    yield conn
