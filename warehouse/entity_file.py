"""The per-entity file: everything the warehouse holds on one person or business.

``file(home, entity_id)`` reads the published warehouse (read-only) and returns
one JSON-ready document: the golden record with the source and record behind
each attribute, every name / identifier / address with when and where it was
seen, the sources that know the entity, its mentions, the facts timeline, list
entries with their status, relationships and the link evidence that holds the
entity together, field corrections (with author and reason) and the human link
decisions about it. Identifiers are masked and list entries that are expired or
not yet started are left out unless ``masked=False`` (the admin role).
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import duckdb

from tessera.config import Home
from warehouse.schema import ADDRESS_PARTS, GOLDEN_ATTRIBUTES


def _plain(v: Any) -> Any:
    if isinstance(v, dt.date | dt.datetime):
        return v.isoformat()
    if isinstance(v, Decimal):
        return float(v)
    return v


def _rows(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    params: list[Any] | dict[str, Any],
    json_cols: tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    cur = con.execute(sql, params)
    cols = [d[0] for d in cur.description]
    out = []
    for row in cur.fetchall():
        d = {c: _plain(v) for c, v in zip(cols, row, strict=True)}
        for c in json_cols:
            if isinstance(d.get(c), str):
                d[c] = json.loads(d[c])
        out.append(d)
    return out


def file(
    home: Home, entity_id: str, *, masked: bool | None = True, user: str | None = None
) -> dict[str, Any]:
    """The file of ``entity_id`` as ``user`` (default: the current user), audited.
    ``masked=False`` needs the admin role; ``None``: as the role allows. Raises
    ``KeyError`` if the warehouse has no such entity."""
    from warehouse.session import Session

    with Session(home, user=user) as session:
        return session.file(entity_id, masked=masked)


# Facts that are list records no longer (or not yet) active: hidden with the list entry.
# The entity is a parameter of the subquery too, so it is an index lookup on
# ``list_entries`` (correlated on ``f.entity_id`` it became a hash join over the table).
_HIDDEN_LIST_FACT = (
    "EXISTS (SELECT 1 FROM list_entries l WHERE l.entity_id = $entity_id "
    "AND l.source_id = f.source_id AND l.record_key = f.record_key AND l.status <> 'active')"
)


def _relationships(con: duckdb.DuckDBPyConnection, entity_id: str) -> list[dict[str, Any]]:
    """Outgoing and incoming relationships with the other entity's name: two index
    lookups on ``relationships`` and one on ``entities`` (a join would scan it)."""
    rels = _rows(
        con,
        "SELECT 'outgoing' AS direction, role, related_entity_id AS other_entity_id, "
        "n_records, sources, first_seen, last_seen FROM relationships WHERE entity_id = ? "
        "UNION ALL "
        "SELECT 'incoming', role, entity_id, n_records, sources, first_seen, last_seen "
        "FROM relationships WHERE related_entity_id = ? AND entity_id <> related_entity_id "
        "ORDER BY 1, 2, 3",
        [entity_id, entity_id],
    )
    ids = sorted({r["other_entity_id"] for r in rels})
    names = dict(
        con.execute(
            "SELECT entity_id, coalesce(name_native, name, name_latin) FROM entities "
            "WHERE list_contains(?, entity_id)",
            [ids],
        ).fetchall()
        if ids
        else []
    )
    keys = ("direction", "role", "other_entity_id")
    return [
        {
            **{k: r[k] for k in keys},
            "other_name": names.get(r["other_entity_id"]),
            **{k: v for k, v in r.items() if k not in keys},
        }
        for r in rels
    ]


def _evidence(con: duckdb.DuckDBPyConnection, entity_id: str) -> list[dict[str, Any]]:
    """The kept edges of the entity with their contributions: the edges by an index
    lookup on ``evidence_edges``, then their few distinct contributions by key (the
    ``link_evidence`` view would join the whole ``evidence_contributions`` table);
    a warehouse published before that split has ``link_evidence`` as a table."""
    cols = "mention_id_l, mention_id_r, match_weight, match_probability, decided_by, decision_id"
    try:
        edges = _rows(
            con,
            f"SELECT {cols}, contributions_key FROM evidence_edges WHERE entity_id = ? "
            "ORDER BY match_weight DESC",
            [entity_id],
        )
    except duckdb.CatalogException:
        return _rows(
            con,
            f"SELECT {cols}, contributions FROM link_evidence WHERE entity_id = ? "
            "ORDER BY match_weight DESC",
            [entity_id],
            json_cols=("contributions",),
        )
    keys = sorted({e["contributions_key"] for e in edges if e["contributions_key"] is not None})
    packed = (
        dict(
            con.execute(
                "SELECT contributions_key, contributions FROM evidence_contributions "
                "WHERE list_contains(?::UBIGINT[], contributions_key)",
                [keys],
            ).fetchall()
        )
        if keys
        else {}
    )
    for e in edges:
        text = packed.get(e.pop("contributions_key"))
        e["contributions"] = json.loads(text) if isinstance(text, str) else text
    return edges


def _sources(con: duckdb.DuckDBPyConnection, members: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per source system of the entity's mentions (``members``, ordered by source): its
    title and domain, mentions, first and last seen (ISO dates compare as dates)."""
    ids = sorted({m["source_id"] for m in members})
    titles = {
        r[0]: (r[1], r[2])
        for r in con.execute(
            "SELECT source_id, title, domain FROM sources WHERE list_contains(?, source_id)", [ids]
        ).fetchall()
    }
    out = []
    for sid in ids:
        rows = [m for m in members if m["source_id"] == sid]
        firsts = [m["first_seen"] for m in rows if m["first_seen"] is not None]
        lasts = [m["last_seen"] for m in rows if m["last_seen"] is not None]
        title, domain = titles.get(sid, (None, None))
        out.append(
            {
                "source_id": sid,
                "title": title,
                "domain": domain,
                "mentions": len(rows),
                "first_seen": min(firsts) if firsts else None,
                "last_seen": max(lasts) if lasts else None,
            }
        )
    return out


def _decisions(con: duckdb.DuckDBPyConnection, entity_id: str) -> list[dict[str, Any]]:
    """The human link decisions naming the entity or one of its mentions (none to look
    for in most warehouses: then no join of the decisions with the memberships)."""
    if not con.execute("SELECT count(*) FROM human_decisions").fetchall()[0][0]:
        return []
    return _rows(
        con,
        "SELECT decision_id, kind, a, b, who, reason, decided_at FROM human_decisions d "
        "WHERE ? IN (d.a, d.b) OR EXISTS (SELECT 1 FROM memberships m "
        "WHERE m.entity_id = ? AND list_contains(d.mention_ids, m.mention_id)) "
        "ORDER BY decision_id",
        [entity_id, entity_id],
    )


def read_file(
    con: duckdb.DuckDBPyConnection, entity_id: str, *, masked: bool = True
) -> dict[str, Any]:
    """The file on an open warehouse connection, not audited. ``masked``: identifiers
    masked, only active list entries (and their facts), corrected values masked."""
    entities = "analyst_entities" if masked else "entities"
    identifiers = "analyst_identifiers" if masked else "entity_identifiers"
    lists = "analyst_list_entries" if masked else "list_entries"
    hide = f"AND NOT {_HIDDEN_LIST_FACT}" if masked else ""
    corrected = (
        "CASE WHEN attribute IN ('id_number', 'phone') THEN mask_identifier(attribute, value) "
        "ELSE value END"
        if masked
        else "value"
    )
    head = _rows(con, f"SELECT * FROM {entities} WHERE entity_id = ?", [entity_id])
    if not head:
        raise KeyError(entity_id)
    e = head[0]
    golden: dict[str, Any] = {}
    lineage: dict[str, dict[str, Any]] = {}
    for attr in GOLDEN_ATTRIBUTES:
        if attr == "address":
            value = {p: e[p] for p in ADDRESS_PARTS}
            present = any(v is not None for v in value.values())
        else:
            value, present = e[attr], e[attr] is not None
        if present:
            golden[attr] = value
            lineage[attr] = {"source": e[f"{attr}_source"], "record": e[f"{attr}_record"]}
    p = [entity_id]
    # One read of the memberships serves both the mentions and the per-source summary.
    members = _rows(
        con,
        "SELECT mention_id, source_id, role, match_probability, record_key, first_seen, "
        "last_seen FROM memberships WHERE entity_id = ? ORDER BY source_id, mention_id",
        p,
    )
    doc: dict[str, Any] = {
        "entity_id": entity_id,
        "entity_type": e["entity_type"],
        "golden": golden,
        "lineage": lineage,
        "n_mentions": e["n_mentions"],
        "first_seen": e["first_seen"],
        "last_seen": e["last_seen"],
        "names": _rows(
            con,
            "SELECT name_native, name_latin, n_mentions, sources, first_seen, last_seen "
            "FROM entity_names WHERE entity_id = ? ORDER BY n_mentions DESC, name_native",
            p,
        ),
        "identifiers": _rows(
            con,
            f"SELECT kind, value, n_mentions, sources, first_seen, last_seen "
            f"FROM {identifiers} WHERE entity_id = ? ORDER BY kind, n_mentions DESC, value",
            p,
        ),
        "addresses": _rows(
            con,
            "SELECT province, city, district, street, postcode, n_mentions, sources, "
            "first_seen, last_seen FROM entity_addresses WHERE entity_id = ? "
            "ORDER BY last_seen DESC NULLS LAST, n_mentions DESC",
            p,
        ),
        "sources": _sources(con, members),
        "mentions": [
            {
                k: m[k]
                for k in ("mention_id", "source_id", "role", "match_probability", "record_key")
            }
            for m in members
        ],
        "facts": _rows(
            con,
            "SELECT event_date, source_id, record_key, fact_type, amount, facts, file, line "
            f"FROM facts f WHERE entity_id = $entity_id {hide} "
            "ORDER BY event_date NULLS LAST, source_id, record_key",
            {"entity_id": entity_id},
            json_cols=("facts",),
        ),
        "lists": _rows(
            con,
            "SELECT list_type, status, start_date, expiry_date, legal_basis, issuing_body, "
            f"source_id, record_key, reference_date FROM {lists} "
            "WHERE entity_id = ? ORDER BY start_date",
            p,
        ),
        "corrections": _rows(
            con,
            f"SELECT correction_id, attribute, {corrected} AS value, who, reason, corrected_at, "
            "applied FROM corrections WHERE entity_id = ? ORDER BY correction_id",
            p,
        ),
        "decisions": _decisions(con, entity_id),
        "relationships": _relationships(con, entity_id),
        "evidence": _evidence(con, entity_id),
    }
    return {k: _plain(v) for k, v in doc.items()}
