"""Field corrections: a person says a golden value is wrong, an admin records the right one.

Corrections live in ``$TESSERA_HOME/decisions.duckdb`` (table ``field_corrections``,
next to linkage's human decisions; never rebuilt), append-only: this module only
inserts. The next :func:`warehouse.publish.publish` applies the newest correction
per (entity, attribute) to the golden record: the value wins over survivorship,
``<attr>_source`` becomes ``correction`` and ``<attr>_record`` ``correction #<id>``,
and the entity file lists it with its author and reason. A correction names a
stable entity ID; if linkage later retires that ID (a merge or split), the
correction is kept but no longer applied (``applied = false`` in the warehouse's
``corrections`` table) until it is recorded again on the new ID.

Human link decisions (:mod:`linkage.decisions`) are read from the same file here
(read-only) so the warehouse can show who decided what about an entity.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import duckdb
import polars as pl

from tessera.config import Home

CORRECTABLE = (
    "name_native",
    "name_latin",
    "dob",
    "sex",
    "id_number",
    "phone",
    "name",
    "uscc",
    "industry",
)
PERSON_ATTRIBUTES = CORRECTABLE[:6]
BUSINESS_ATTRIBUTES = CORRECTABLE[6:]
_DDL = (
    "CREATE SEQUENCE IF NOT EXISTS field_correction_seq START 1",
    """CREATE TABLE IF NOT EXISTS field_corrections (
        correction_id BIGINT PRIMARY KEY DEFAULT nextval('field_correction_seq'),
        entity_id VARCHAR NOT NULL,
        attribute VARCHAR NOT NULL,
        value VARCHAR NOT NULL,
        who VARCHAR NOT NULL,
        reason VARCHAR NOT NULL CHECK (length(reason) > 0),
        corrected_at TIMESTAMP NOT NULL
    )""",
)
CORRECTION_SCHEMA = {
    "correction_id": pl.Int64,
    "entity_id": pl.String,
    "attribute": pl.String,
    "value": pl.String,
    "who": pl.String,
    "reason": pl.String,
    "corrected_at": pl.Datetime("us"),
}
DECISION_SCHEMA = {
    "decision_id": pl.Int64,
    "entity_type": pl.String,
    "kind": pl.String,
    "a": pl.String,
    "b": pl.String,
    "who": pl.String,
    "reason": pl.String,
    "decided_at": pl.Datetime("us"),
    "mention_ids": pl.List(pl.String),
}


class CorrectionError(ValueError):
    """A correction that cannot be recorded (unknown entity or attribute, bad value)."""


@dataclass(frozen=True)
class Correction:
    correction_id: int
    entity_id: str
    attribute: str
    value: str
    who: str
    reason: str
    corrected_at: datetime


def normalise(attribute: str, value: str) -> str:
    """The value as the warehouse stores it; raises :class:`CorrectionError` if invalid."""
    v = value.strip()
    if attribute not in CORRECTABLE:
        raise CorrectionError(f"attribute must be one of {', '.join(CORRECTABLE)}")
    if not v:
        raise CorrectionError("empty value")
    if attribute == "dob":
        try:
            return dt.date.fromisoformat(v).isoformat()
        except ValueError as e:
            raise CorrectionError(f"dob must be YYYY-MM-DD: {e}") from None
    if attribute == "sex":
        if v.upper() not in ("M", "F"):
            raise CorrectionError("sex must be M or F")
        return v.upper()
    if attribute == "id_number":
        if not re.fullmatch(r"\d{17}[\dXx]", v):
            raise CorrectionError("id_number must be 17 digits and a digit or X")
        return v.upper()
    if attribute == "phone":
        m = re.fullmatch(r"(?:\+?86)?(1\d{10})", re.sub(r"[\s-]", "", v))
        if not m:
            raise CorrectionError("phone must be an 11-digit mainland mobile number")
        return "+86" + m.group(1)
    if attribute == "name_latin":
        return re.sub(r"\s+", " ", v.lower())
    if attribute == "uscc":
        return v.upper()
    return v


def record_correction(
    home: Home, entity_id: str, attribute: str, value: str, *, who: str, reason: str
) -> Correction:
    """Append a correction (validated; the entity must be in the published warehouse)."""
    from warehouse.publish import connect as warehouse

    value = normalise(attribute, value)
    if not reason or not reason.strip():
        raise CorrectionError("a correction needs a reason")
    con = warehouse(home)
    try:
        rows = con.execute(
            "SELECT entity_type FROM entities WHERE entity_id = ?", [entity_id]
        ).fetchall()
    finally:
        con.close()
    if not rows:
        raise CorrectionError(f"no entity {entity_id!r} in the published warehouse")
    allowed = PERSON_ATTRIBUTES if rows[0][0] == "person" else BUSINESS_ATTRIBUTES
    if attribute not in allowed:
        raise CorrectionError(f"a {rows[0][0]} has no {attribute!r}; one of {', '.join(allowed)}")
    home.decisions.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(home.decisions))
    try:
        for ddl in _DDL:
            con.execute(ddl)
        out = con.execute(
            "INSERT INTO field_corrections (entity_id, attribute, value, who, reason, "
            "corrected_at) VALUES (?, ?, ?, ?, ?, ?) RETURNING *",
            [
                entity_id,
                attribute,
                value,
                who,
                reason.strip(),
                datetime.now(UTC).replace(tzinfo=None),
            ],
        ).fetchall()[0]
    finally:
        con.close()
    assert out is not None
    return Correction(*out)


def _read(home: Home, sql: str, table: str, schema: dict[str, Any]) -> pl.DataFrame:
    if not home.decisions.exists():
        return pl.DataFrame(schema=schema)
    con = duckdb.connect(str(home.decisions), read_only=True)
    try:
        found = con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", [table]
        ).fetchall()
        if not found[0][0]:
            return pl.DataFrame(schema=schema)
        return pl.from_arrow(con.sql(sql).to_arrow_table()).cast(schema)  # type: ignore[union-attr]
    finally:
        con.close()


def corrections_frame(home: Home) -> pl.DataFrame:
    """Every recorded correction (:data:`CORRECTION_SCHEMA`), oldest first."""
    return _read(
        home,
        "SELECT * FROM field_corrections ORDER BY correction_id",
        "field_corrections",
        CORRECTION_SCHEMA,
    )


def decisions_frame(home: Home) -> pl.DataFrame:
    """Linkage's human decisions with every mention each side named (:data:`DECISION_SCHEMA`)."""
    return _read(
        home,
        "SELECT d.decision_id, d.entity_type, d.kind, d.a, d.b, d.who, d.reason, d.decided_at, "
        "coalesce(list(m.mention_id ORDER BY m.mention_id) FILTER (WHERE m.mention_id IS NOT NULL), "
        "[]) AS mention_ids FROM decisions d LEFT JOIN decision_mentions m USING (decision_id) "
        "GROUP BY ALL ORDER BY d.decision_id",
        "decisions",
        DECISION_SCHEMA,
    )


def id_events_for(home: Home, entity_id: str) -> list[dict[str, Any]]:
    """Linkage's entity-ID events (new, merge, split, retired) naming ``entity_id``."""
    frame = _read(
        home,
        "SELECT * FROM id_events ORDER BY event_id",
        "id_events",
        {
            "event_id": pl.Int64,
            "entity_type": pl.String,
            "run_at": pl.Datetime("us"),
            "kind": pl.String,
            "old_ids": pl.List(pl.String),
            "new_ids": pl.List(pl.String),
            "mentions": pl.Int64,
            "reason": pl.String,
        },
    )
    hit = frame.filter(
        pl.col("old_ids").list.contains(entity_id) | pl.col("new_ids").list.contains(entity_id)
    )
    return [
        {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in r.items()}
        for r in hit.iter_rows(named=True)
    ]
