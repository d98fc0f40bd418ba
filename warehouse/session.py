"""The analyst API: one user's session on the published warehouse, every call audited.

``Session(home, user=...)`` resolves the user's role (:mod:`warehouse.access`),
opens the warehouse read-only once (a warm connection for many queries) and
offers :meth:`~Session.search`, :meth:`~Session.search_example`,
:meth:`~Session.file`, :meth:`~Session.subject_access`,
:meth:`~Session.export_analyst`, :meth:`~Session.correct` and
:meth:`~Session.audit`. Each call writes exactly one row to the audit log
(:mod:`warehouse.audit`): who, role, when, the action, its parameters and the
entities returned, also when the call is refused or fails (``outcome``). The row is
written after the answer is computed and before it is returned: if it cannot be
written, the caller gets the error, not the answer.

The CLI (``tessera search / show / subject-access / export / correct / audit``) and
the module functions :func:`warehouse.search.search` and
:func:`warehouse.entity_file.file` go through this class, so they are audited alike.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import polars as pl

from connectors import lake
from tessera.config import Home
from warehouse import access, audit, corrections, matching, schema
from warehouse.entity_file import _plain, _rows, read_file
from warehouse.publish import connect
from warehouse.search import run_search

T = TypeVar("T")

# Tables of the analyst export: name in the export ← SELECT over the warehouse.
ANALYST_EXPORT = {
    "entities": "SELECT * FROM w.analyst_entities",
    "entity_identifiers": "SELECT * FROM w.analyst_identifiers",
    "list_entries": "SELECT * FROM w.analyst_list_entries",
    "entity_names": "SELECT * FROM w.entity_names",
    "entity_addresses": "SELECT * FROM w.entity_addresses",
    "memberships": "SELECT * FROM w.memberships",
    "facts": "SELECT * FROM w.facts f WHERE NOT EXISTS (SELECT 1 FROM w.list_entries l "
    "WHERE l.source_id = f.source_id AND l.record_key = f.record_key "
    "AND l.entity_id = f.entity_id AND l.status <> 'active')",
    "relationships": "SELECT * FROM w.relationships",
    # The edges and, once per distinct combination, their contributions; the export's
    # ``link_evidence`` is the warehouse's view over the two (materialising one JSON
    # per edge was most of an export's time at 1,000,000 persons).
    "evidence_edges": "SELECT * FROM w.evidence_edges",
    "evidence_contributions": "SELECT * FROM w.evidence_contributions",
    "sources": "SELECT * FROM w.sources",
    "runs": "SELECT * FROM w.runs",
    "corrections": "SELECT * REPLACE (CASE WHEN attribute IN ('id_number', 'phone') "
    "THEN mask_identifier(attribute, value) ELSE value END AS value) FROM w.corrections",
    "human_decisions": "SELECT * FROM w.human_decisions",
}


class Session:
    """A user's audited, read-only session on ``home``'s warehouse."""

    def __init__(self, home: Home, user: str | None = None) -> None:
        self.home = home
        self.principal = access.principal(home, user)
        self._con: duckdb.DuckDBPyConnection | None = None
        self._audit = audit.AuditLog(home)  # one SQLite connection for the session's rows

    # -- connection -------------------------------------------------------------

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """The read-only warehouse connection (opened on first use, then kept warm)."""
        if self._con is None:
            self._con = connect(self.home)
            # The session's queries are index lookups and small scans: one thread each
            # (100,000 persons, 2 cores: ID lookup p99 3.0 ms with one, 5.6 with two).
            self._con.execute("SET threads = 1")
        return self._con

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None
        self._audit.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- auditing ---------------------------------------------------------------

    def _audited(
        self,
        action: str,
        permission: str,
        query: dict[str, Any],
        run: Callable[[], T],
        entity_ids: Callable[[T], list[str]],
        n_results: Callable[[T], int] | None = None,
    ) -> T:
        """Check the permission, run, write the one audit row, return."""
        p = self.principal
        try:
            p.require(permission)
            result = run()
        except BaseException as exc:
            outcome = "denied" if isinstance(exc, access.AccessError) else "error"
            self._audit.record(
                user=p.user,
                role=p.role,
                action=action,
                query=query,
                entity_ids=[],
                outcome=f"{outcome}: {type(exc).__name__}: {exc}"[:500],
            )
            raise
        ids = entity_ids(result)
        self._audit.record(
            user=p.user,
            role=p.role,
            action=action,
            query=query,
            entity_ids=ids,
            n_results=n_results(result) if n_results else None,
        )
        return result

    def _masked(self, masked: bool | None) -> bool:
        if masked is None:
            return self.principal.masked
        if not masked:
            self.principal.require("unmasked")
        return masked

    # -- the API ----------------------------------------------------------------

    def search(
        self,
        query: str,
        *,
        kind: str | None = None,
        dob: dt.date | str | None = None,
        sex: str | None = None,
        limit: int = 20,
    ) -> list[dict[str, Any]]:
        """Search by identifier or name (:func:`warehouse.search.run_search`)."""
        params = {"query": query, "kind": kind, "dob": dob, "sex": sex, "limit": limit}
        return self._audited(
            "search",
            "search",
            params,
            lambda: run_search(
                self.con,
                query,
                kind=kind,
                dob=dob,
                sex=sex,
                limit=limit,
                masked=self.principal.masked,
            ),
            lambda hits: [h["entity_id"] for h in hits],
        )

    def search_example(
        self, example: dict[str, Any], *, entity_type: str = "person", limit: int = 10
    ) -> list[dict[str, Any]]:
        """Search by a partial record scored with the Splink model
        (:func:`warehouse.matching.search_example`)."""
        params = {"example": example, "entity_type": entity_type, "limit": limit}
        return self._audited(
            "search_example",
            "search",
            params,
            lambda: matching.search_example(
                self.con,
                example,
                entity_type=entity_type,
                limit=limit,
                masked=self.principal.masked,
            ),
            lambda hits: [h["entity_id"] for h in hits],
        )

    def file(self, entity_id: str, *, masked: bool | None = None) -> dict[str, Any]:
        """The entity file (:func:`warehouse.entity_file.read_file`); ``masked=None``:
        as the role allows, ``False`` needs admin."""
        return self._audited(
            "file",
            "file",
            {"entity_id": entity_id, "masked": masked},
            lambda: read_file(self.con, entity_id, masked=self._masked(masked)),
            lambda doc: [doc["entity_id"]],
        )

    def subject_access(self, entity_id: str) -> dict[str, Any]:
        """Everything held on one entity, unmasked, as one JSON-ready document: the
        file (golden record, lineage, names, identifiers, addresses, facts, every list
        entry, relationships, link evidence, corrections, decisions), every mention as
        staged and every record version behind it (with file, line and ingest time),
        its entity-ID history and every audit row that returned it (up to this
        request; the request itself is the next row). Auditor or admin."""
        return self._audited(
            "subject_access",
            "subject_access",
            {"entity_id": entity_id},
            lambda: self._subject_access(entity_id),
            lambda doc: [doc["entity_id"]],
        )

    def _subject_access(self, entity_id: str) -> dict[str, Any]:
        doc = read_file(self.con, entity_id, masked=False)
        mention_ids = [m["mention_id"] for m in doc["mentions"]]
        mentions = lake.mentions(self.home).filter(pl.col("mention_id").is_in(mention_ids))
        records = lake.records(self.home).filter(pl.col("mention_id").is_in(mention_ids))
        doc["mention_records"] = [
            {k: _plain(v) for k, v in row.items() if v is not None}
            for row in mentions.sort("mention_id").collect().iter_rows(named=True)
        ]
        doc["source_records"] = [
            {k: _plain(v) for k, v in row.items()}
            for row in records.sort("source_id", "record_key", "ingested_at")
            .collect()
            .iter_rows(named=True)
        ]
        doc["id_events"] = corrections.id_events_for(self.home, entity_id)
        doc["runs"] = _rows(self.con, "SELECT * FROM runs ORDER BY published_at", [])
        doc["audit"] = audit.read(self.home, entity_id=entity_id)
        doc["exported_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        doc["exported_by"] = self.principal.user
        return doc

    def export_analyst(self, path: str | Path) -> dict[str, int]:
        """Write the masked analyst export to a new DuckDB file at ``path`` (must not
        exist): the analyst views as tables, facts of hidden list entries left out,
        no unmasked identifier anywhere (no match features), and the warehouse's
        ``link_evidence`` view over its evidence tables. Admin only. Returns the row
        count per table."""
        target = Path(path)
        return self._audited(
            "export",
            "export",
            {"path": str(target.resolve())},
            lambda: self._export(target),
            lambda counts: [],
            lambda counts: counts.get("entities", 0),
        )

    def _export(self, target: Path) -> dict[str, int]:
        if target.exists():
            raise FileExistsError(f"{target} exists; the export writes a new file")
        tmp = target.with_name(target.name + ".building")
        tmp.unlink(missing_ok=True)
        counts: dict[str, int] = {}
        try:
            con = duckdb.connect(str(tmp))
            try:
                for sql in schema.MACROS:  # the analysts' masking macros, in the export too
                    con.execute(sql)
                con.execute("ATTACH ? AS w (READ_ONLY)", [str(self.home.warehouse)])
                for name, sql in ANALYST_EXPORT.items():
                    con.execute(f"CREATE TABLE {name} AS {sql}")
                    counts[name] = int(con.execute(f"SELECT count(*) FROM {name}").fetchall()[0][0])
                con.execute("DETACH w")
                con.execute(schema.VIEWS["link_evidence"])
                con.execute("CHECKPOINT")
            finally:
                con.close()
            tmp.replace(target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return counts

    def correct(
        self, entity_id: str, attribute: str, value: str, *, reason: str
    ) -> corrections.Correction:
        """Record a field correction, authored by this session's user (admin only);
        applied on the next publish."""
        return self._audited(
            "correct",
            "correct",
            {"entity_id": entity_id, "attribute": attribute, "value": value, "reason": reason},
            lambda: corrections.record_correction(
                self.home, entity_id, attribute, value, who=self.principal.user, reason=reason
            ),
            lambda c: [c.entity_id],
        )

    def audit(
        self,
        *,
        entity_id: str | None = None,
        user: str | None = None,
        action: str | None = None,
        since: str | None = None,
        limit: int | None = 100,
    ) -> list[dict[str, Any]]:
        """Read the audit log (auditor or admin); this read is itself logged."""
        params = {
            "entity_id": entity_id,
            "user": user,
            "action": action,
            "since": since,
            "limit": limit,
        }
        return self._audited(
            "audit",
            "audit",
            params,
            lambda: audit.read(
                self.home, entity_id=entity_id, user=user, action=action, since=since, limit=limit
            ),
            lambda rows: [],
            len,
        )
