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
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._core.storage.sql import create_engine
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool


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
        """One engine per shard for the storage's life (Dagster makes one per event:
        each new engine compiles every statement again; at 100,000 persons a daily
        ingest of 96 steps spent ~2 s of CPU on it). Its pool holds no connection
        (``NullPool``), so nothing stays open between events."""
        engines: dict[str, Any] = self.__dict__.setdefault("_engines", {})
        if shard not in engines:
            engine = create_engine(
                self.conn_string_for_shard(shard),
                poolclass=NullPool,
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS},
            )
            event.listen(engine, "connect", _no_sync)
            engines[shard] = engine
        return engines[shard]

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
