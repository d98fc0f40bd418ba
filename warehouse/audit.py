"""The audit log: who looked up what, when, and which entities they were shown.

One SQLite file, ``$TESSERA_HOME/audit/audit.sqlite``, apart from the warehouse
(which is rebuilt on every publish) and never rebuilt. SQLite rather than DuckDB:
every search writes one row, from any number of processes at once, and SQLite
serialises short writers with a busy timeout where DuckDB would refuse a second
process. A writer (:class:`AuditLog`, one per :class:`warehouse.session.Session`)
keeps its connection open (WAL journal, ``synchronous = NORMAL``; the insert is a
cached prepared statement) and appends each row in its own ``BEGIN IMMEDIATE``
transaction, which takes the write lock before the previous hash is read, so rows
from other processes interleave without breaking the chain.

Append-only, three ways: this module has no update or delete; triggers in the
file abort any ``UPDATE`` or ``DELETE`` (``audit log is append-only``); and every
row carries ``hash = sha256(prev_hash + row)``, chained from the previous row, so
an edit made around the triggers (another tool, a hand-edited file) shows up in
:func:`verify`. Protecting the file itself (owned by a service account that
analysts are not) is the deployment's part.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tessera.config import Home

COLUMNS = (
    "id",
    "at",
    "user",
    "role",
    "action",
    "query",
    "entity_ids",
    "n_results",
    "outcome",
    "prev_hash",
    "hash",
)
_DDL = (
    """CREATE TABLE IF NOT EXISTS audit_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        user TEXT NOT NULL,
        role TEXT NOT NULL,
        action TEXT NOT NULL,
        query TEXT NOT NULL,
        entity_ids TEXT NOT NULL,
        n_results INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS audit_at ON audit_log (at)",
    """CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit_log
       BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit_log
       BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END""",
)
GENESIS = "0" * 64


def audit_path(home: Home) -> Path:
    return home.root / "audit" / "audit.sqlite"


def _hash(prev: str, row: dict[str, Any]) -> str:
    body = json.dumps(
        [prev, *(row[c] for c in COLUMNS if c not in ("id", "prev_hash", "hash"))],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def _open(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(str(path), timeout=30, isolation_level=None)
    con.execute("PRAGMA journal_mode = WAL")
    con.execute("PRAGMA synchronous = NORMAL")
    for ddl in _DDL:
        con.execute(ddl)
    return con


_NAMES = [c for c in COLUMNS if c != "id"]
_INSERT = f"INSERT INTO audit_log ({', '.join(_NAMES)}) VALUES ({', '.join('?' * len(_NAMES))})"
_LAST = "SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1"


class AuditLog:
    """An open writer on ``home``'s audit log: one SQLite connection kept for many
    rows (opened on the first :meth:`record`). Any number of writers, in any number
    of processes, may append at once."""

    def __init__(self, home: Home) -> None:
        self.path = audit_path(home)
        self._con: sqlite3.Connection | None = None

    def record(
        self,
        *,
        user: str,
        role: str,
        action: str,
        query: dict[str, Any],
        entity_ids: list[str],
        n_results: int | None = None,
        outcome: str = "ok",
    ) -> int:
        """Append one row; returns its id. ``query`` is stored as JSON (its parameters,
        exactly as given), ``entity_ids`` as the JSON list of entities returned,
        ``n_results`` (default: how many entities) the size of the answer."""
        row: dict[str, Any] = {
            "at": datetime.now(UTC).isoformat(timespec="microseconds"),
            "user": user,
            "role": role,
            "action": action,
            "query": json.dumps(query, ensure_ascii=False, default=str, sort_keys=True),
            "entity_ids": json.dumps(list(entity_ids), ensure_ascii=False),
            "n_results": len(entity_ids) if n_results is None else int(n_results),
            "outcome": outcome,
        }
        if self._con is None:
            self._con = _open(self.path)
        con = self._con
        # The write lock first, then the last hash: another writer cannot append
        # between the read and the insert (reading the newest row is one b-tree seek).
        con.execute("BEGIN IMMEDIATE")
        try:
            last = con.execute(_LAST).fetchone()
            prev = last[0] if last else GENESIS
            row["prev_hash"], row["hash"] = prev, _hash(prev, row)
            cur = con.execute(_INSERT, [row[c] for c in _NAMES])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return int(cur.lastrowid or 0)

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None


def record(
    home: Home,
    *,
    user: str,
    role: str,
    action: str,
    query: dict[str, Any],
    entity_ids: list[str],
    n_results: int | None = None,
    outcome: str = "ok",
) -> int:
    """Append one row through a writer opened for this row only (see
    :meth:`AuditLog.record`); a session keeps its writer open instead."""
    log = AuditLog(home)
    try:
        return log.record(
            user=user,
            role=role,
            action=action,
            query=query,
            entity_ids=entity_ids,
            n_results=n_results,
            outcome=outcome,
        )
    finally:
        log.close()


def read(
    home: Home,
    *,
    entity_id: str | None = None,
    user: str | None = None,
    action: str | None = None,
    since: str | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Audit rows, oldest first, filtered by the entity returned, user, action and
    ``at >= since`` (ISO timestamp); ``query`` and ``entity_ids`` decoded."""
    path = audit_path(home)
    if not path.exists():
        return []
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        where, params = ["1 = 1"], []
        if entity_id is not None:
            where.append("EXISTS (SELECT 1 FROM json_each(entity_ids) WHERE value = ?)")
            params.append(entity_id)
        for col, val in (("user", user), ("action", action)):
            if val is not None:
                where.append(f"{col} = ?")
                params.append(val)
        if since is not None:
            where.append("at >= ?")
            params.append(since)
        sql = f"SELECT {', '.join(COLUMNS)} FROM audit_log WHERE {' AND '.join(where)} ORDER BY id"
        if limit is not None:
            sql = f"SELECT * FROM ({sql} DESC LIMIT ?) ORDER BY id"
            params.append(int(limit))
        rows = [dict(zip(COLUMNS, r, strict=True)) for r in con.execute(sql, params)]
    finally:
        con.close()
    for r in rows:
        r["query"] = json.loads(r["query"])
        r["entity_ids"] = json.loads(r["entity_ids"])
    return rows


def verify(home: Home) -> dict[str, Any]:
    """Recompute the hash chain: ``{"rows": n, "ok": bool, "first_bad_id": id | None}``."""
    path = audit_path(home)
    if not path.exists():
        return {"rows": 0, "ok": True, "first_bad_id": None}
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        rows = con.execute(f"SELECT {', '.join(COLUMNS)} FROM audit_log ORDER BY id").fetchall()
    finally:
        con.close()
    prev = GENESIS
    for values in rows:
        row = dict(zip(COLUMNS, values, strict=True))
        if row["prev_hash"] != prev or _hash(prev, row) != row["hash"]:
            return {"rows": len(rows), "ok": False, "first_bad_id": row["id"]}
        prev = row["hash"]
    return {"rows": len(rows), "ok": True, "first_bad_id": None}
