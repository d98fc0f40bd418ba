"""The warehouse's tables and views, as set-based DuckDB SQL.

:func:`build` runs on a connection where the inputs are temporary tables or views
over the lake's Parquet files (see :mod:`warehouse.publish`):

- ``_mentions`` (one row per staged mention, ``publish.MENTION_COLUMNS``),
  ``_records`` (every staged record version, ``RECORD_SCHEMA``), ``_current`` (what
  each source says now, as ``lake.current_records`` defines it), ``_relationships``
  (``RELATIONSHIP_SCHEMA``), ``_map`` (``mention_id, entity_id``);
- ``_evidence_edges`` (``entity_type, entity_id, mention_id_l, mention_id_r,
  match_weight, match_probability, decided_by, decision_id, contributions_key``) and
  ``_evidence_contributions`` (``contributions_key, contributions``);
- ``_sources`` (the catalog, with its survivorship ``rank``), ``_corrections`` and
  ``_decisions`` (:mod:`warehouse.corrections`), ``_person_features``,
  ``_business_features`` and ``_models`` (:mod:`warehouse.matching`).

Field corrections override survivorship: the newest correction per entity and
attribute becomes the golden value, with ``<attr>_source = 'correction'``.

Survivorship (golden record), per entity and attribute, among the values its
mentions state: lowest source rank first (:func:`source_rank`: duplicate-free
registries 0, other municipal registries 1, courts 2, transport 3, commercial
4), then the value stated by most mentions, then the most recently seen, then
the smallest value (a deterministic tie-break). The address is chosen as one
tuple (province, city, district, street, postcode), never part by part.

Only identifiers written here (table, column and attribute names) are
interpolated into SQL; no value ever is.
"""

from __future__ import annotations

import time

import duckdb

from connectors.spec import SourceSpec
from warehouse import matching

DOMAIN_RANK = {"municipal": 1, "court": 2, "transport": 3, "commercial": 4}
OTHER_RANK = 5

# attribute -> SQL expression over a mention row ``m`` (values as VARCHAR)
ADDRESS_PARTS = ("province", "city", "district", "street", "postcode")
_ADDRESS_VALUE = (
    "CASE WHEN coalesce(m.province, m.city, m.district, m.street, m.postcode) IS NOT NULL "
    "THEN concat_ws(chr(31), " + ", ".join(f"coalesce(m.{p}, '')" for p in ADDRESS_PARTS) + ") END"
)
GOLDEN_ATTRIBUTES: dict[str, str] = {
    "name_native": "m.name_native",
    "name_latin": "m.name_latin",
    "dob": "CAST(coalesce(m.dob, m.id_dob) AS VARCHAR)",
    "sex": "m.sex",
    "id_number": "m.id_number",
    "phone": "m.phone",
    "address": _ADDRESS_VALUE,
    "name": "m.name",
    "uscc": "m.uscc",
    "industry": "m.industry",
}
IDENTIFIER_KINDS = (
    "id_number",
    "id_masked",
    "phone",
    "phone_masked",
    "plate",
    "passport",
    "email",
    "uscc",
)

# Masks used by the analyst views (persisted macros, so views can call them).
MACROS = (
    "CREATE OR REPLACE MACRO mask_id(v) AS CASE WHEN v IS NULL THEN NULL "
    "WHEN length(v) = 18 THEN left(v, 6) || '********' || right(v, 4) "
    "ELSE repeat('*', length(v)) END",
    "CREATE OR REPLACE MACRO mask_phone(v) AS CASE WHEN v IS NULL THEN NULL "
    "WHEN contains(v, '*') THEN v "
    "ELSE left(regexp_replace(v, '^\\+86', ''), 3) || '****' "
    "|| right(regexp_replace(v, '^\\+86', ''), 4) END",
    "CREATE OR REPLACE MACRO mask_passport(v) AS CASE WHEN v IS NULL THEN NULL "
    "ELSE left(v, 1) || repeat('*', greatest(length(v) - 4, 0)) || right(v, 3) END",
    "CREATE OR REPLACE MACRO mask_email(v) AS CASE WHEN v IS NULL THEN NULL "
    "ELSE left(v, 1) || '***@' || split_part(v, '@', 2) END",
    "CREATE OR REPLACE MACRO mask_identifier(kind, v) AS CASE "
    "WHEN kind = 'id_number' THEN mask_id(v) WHEN kind = 'phone' THEN mask_phone(v) "
    "WHEN kind = 'passport' THEN mask_passport(v) WHEN kind = 'email' THEN mask_email(v) "
    "ELSE v END",
)


def source_rank(spec: SourceSpec) -> int:
    """Survivorship rank of a source: lower wins (registries before commerce)."""
    if spec.duplicate_free:
        return 0
    return DOMAIN_RANK.get(spec.domain, OTHER_RANK)


def _seen() -> str:
    """Per mention: first/last seen and the record that states it most recently (of
    several on that day, the largest key: a deterministic choice, so that a build
    over some of the mentions picks what a build over all of them picks).

    A subject mention is dated by its own records; a role mention (a household
    head, an employer, a legal representative named on someone else's row) by
    the records that name it, through relationships (``_rel_dated``, which the
    ``relationships`` table reuses)."""
    return """
    CREATE TEMP TABLE _seen AS
    WITH dated AS (
        SELECT mention_id, record_key, coalesce(event_date, delivered) AS first_d,
               delivered AS last_d
        FROM _records
        UNION ALL
        SELECT related_mention_id, record_key, first_d, last_d FROM _rel_dated
    )
    SELECT mention_id, min(first_d) AS first_seen, max(last_d) AS last_seen,
           arg_max(record_key, {'d': last_d, 'k': coalesce(record_key, '')})
               FILTER (WHERE last_d IS NOT NULL) AS record_key
    FROM dated GROUP BY mention_id
    """


# Relationships with the dates of the record that states them (null without one).
_REL_DATED = """
    CREATE TEMP TABLE _rel_dated AS
    SELECT rel.source_id, rel.record_key, rel.mention_id, rel.role, rel.related_mention_id,
           coalesce(r.event_date, r.delivered) AS first_d, r.delivered AS last_d
    FROM _relationships rel
    LEFT JOIN _records r ON r.source_id = rel.source_id AND r.record_key = rel.record_key
                        AND r.mention_id = rel.mention_id
    """

# Each entity gets a small integer key for the aggregations (grouping by an integer
# is far cheaper than by the 13-character entity ID); the ID is carried along.
_KEYS = """
    CREATE TEMP TABLE _keys AS
    SELECT entity_id, CAST(row_number() OVER () AS INTEGER) AS ek
    FROM (SELECT DISTINCT entity_id FROM _map)
    """


def _mention_base() -> str:
    """Mentions with their entity, source rank and dates: the base of everything else."""
    return """
    CREATE TEMP TABLE _mb AS
    SELECT m.*, e.entity_id, k.ek, s.rank, d.first_seen, d.last_seen, d.record_key
    FROM _mentions m
    JOIN _map e USING (mention_id)
    JOIN _keys k USING (entity_id)
    LEFT JOIN _sources s ON s.source_id = m.source_id
    LEFT JOIN _seen d USING (mention_id)
    """


# The survivorship order of the mentions (lowest source rank, then most recently
# seen, then source and record key): ``pref`` numbers them in that order, so "the
# mention that states a value best" is the one with the smallest ``pref``. A narrow
# table (the window sorts only these columns), joined to ``_mb`` by row.
_PREF = f"""
    CREATE TEMP TABLE _pref AS
    SELECT rowid AS r, entity_id, source_id, record_key,
           row_number() OVER (ORDER BY coalesce(rank, {OTHER_RANK}), last_seen IS NULL,
                              last_seen DESC, source_id, record_key) AS pref
    FROM _mb
    """


def _golden() -> str:
    # Two hash aggregations on integer keys: per (entity, attribute, value) its support
    # and the best mention stating it (smallest ``pref``), then per (entity,
    # attribute) the winning value: ``arg_min`` over the tie-breaks of the
    # survivorship rules in order, packed into one integer (best rank, most mentions,
    # most recently seen; a missing date after every date) and then the value. One
    # scan of the mentions: each yields its (attribute, value) pairs by ``unnest``.
    pairs = ", ".join(
        f"{{'attr': '{attr}', 'value': {expr}}}" for attr, expr in GOLDEN_ATTRIBUTES.items()
    )
    packed = (
        "(CAST(best_rank AS BIGINT) << 48) + ((16777215 - least(n_val, 16777215)) << 24) "
        "+ CASE WHEN val_last IS NULL THEN 16777215 "
        "ELSE 8388608 - (val_last - DATE '1970-01-01') END"
    )
    return f"""
    CREATE TEMP TABLE _golden AS
    WITH u AS (
        SELECT m.ek, coalesce(m.rank, {OTHER_RANK}) AS rank, m.last_seen, p.pref,
               unnest([{pairs}]) AS av
        FROM _mb m JOIN _pref p ON p.r = m.rowid
    ),
    a AS (SELECT ek, av.attr AS attr, av.value AS value, rank, last_seen, pref FROM u
          WHERE av.value IS NOT NULL AND av.value <> ''),
    v AS (
        SELECT ek, attr, value, count(*) AS n_val, min(rank) AS best_rank,
               max(last_seen) AS val_last, min(pref) AS pref
        FROM a GROUP BY ek, attr, value
    ),
    w AS (
        SELECT ek, attr,
               arg_min({{'value': value, 'pref': pref}}, {{'k': {packed}, 'v': value}}) AS win
        FROM v GROUP BY ek, attr
    )
    SELECT p.entity_id, w.ek, w.attr, w.win.value AS value, p.source_id, p.record_key
    FROM w JOIN _pref p ON p.pref = w.win.pref
    """


def latest_corrections_sql(keys: str = "_keys") -> str:
    """``_latest_corrections``: the newest correction per (entity, attribute) among the
    entities of ``keys`` (``entity_id, ek``; an identifier written here, not a value)."""
    return f"""CREATE TEMP TABLE _latest_corrections AS
    SELECT c.*, k.ek FROM _corrections c JOIN {keys} k USING (entity_id)
    QUALIFY row_number() OVER (PARTITION BY entity_id, attribute ORDER BY correction_id DESC) = 1
    """


CORRECTIONS = (
    latest_corrections_sql(),
    """DELETE FROM _golden WHERE EXISTS (SELECT 1 FROM _latest_corrections c
        WHERE c.ek = _golden.ek AND c.attribute = _golden.attr)""",
    """INSERT INTO _golden
    SELECT entity_id, ek, attribute, value, 'correction', 'correction #' || correction_id
    FROM _latest_corrections""",
)


def _entities() -> str:
    cols = []
    for attr in GOLDEN_ATTRIBUTES:
        pick = f"any_value(g.value) FILTER (WHERE g.attr = '{attr}')"
        if attr == "address":
            for i, part in enumerate(ADDRESS_PARTS, start=1):
                cols.append(f"nullif(split_part({pick}, chr(31), {i}), '') AS {part}")
        elif attr == "dob":
            cols.append(f"CAST({pick} AS DATE) AS dob")
        else:
            cols.append(f"{pick} AS {attr}")
        cols.append(f"any_value(g.source_id) FILTER (WHERE g.attr = '{attr}') AS {attr}_source")
        cols.append(f"any_value(g.record_key) FILTER (WHERE g.attr = '{attr}') AS {attr}_record")
    return f"""
    CREATE TABLE entities AS
    WITH stats AS (
        SELECT ek, any_value(entity_id) AS entity_id, any_value(entity_type) AS entity_type,
               count(*) AS n_mentions, CAST(length(list_distinct(list(source_id))) AS BIGINT)
               AS n_sources, min(first_seen) AS first_seen, max(last_seen) AS last_seen
        FROM _mb GROUP BY ek
    ),
    gold AS (SELECT g.ek, {", ".join(cols)} FROM _golden g GROUP BY g.ek)
    SELECT s.entity_id, s.entity_type, gold.* EXCLUDE (ek),
           s.n_mentions, s.n_sources, s.first_seen, s.last_seen
    FROM stats s LEFT JOIN gold USING (ek)
    ORDER BY s.entity_id
    """


# Per group: mentions, the sorted distinct sources (list_sort of list_distinct: a
# DISTINCT ... ORDER BY aggregate costs a second aggregation and a join), dates.
_LINEAGE = """count(*) AS n_mentions, list_sort(list_distinct(list(source_id))) AS sources,
           min(first_seen) AS first_seen, max(last_seen) AS last_seen"""
# Per-entity groups are keyed by the entity's integer key; the ID comes along.
_BY_ENTITY = "any_value(entity_id) AS entity_id, any_value(entity_type) AS entity_type"

# A list entry's status on the reference date (the parameter ``$reference_date``).
LIST_STATUS = (
    "CASE WHEN {start} > $reference_date THEN 'not_started' "
    "WHEN {expiry} < $reference_date THEN 'expired' ELSE 'active' END"
)

_IDENTIFIER_ARMS = " UNION ALL ".join(
    f"SELECT ek, entity_id, entity_type, source_id, first_seen, last_seen, "
    f"'{kind}' AS kind, {kind} AS value FROM _mb WHERE {kind} IS NOT NULL"
    for kind in IDENTIFIER_KINDS
)

STATEMENTS_TABLES = {
    "memberships": """
    CREATE TABLE memberships AS
    WITH p AS (
        SELECT mention_id, max(match_probability) AS p FROM (
            SELECT mention_id_l AS mention_id, match_probability FROM _evidence_edges
            UNION ALL SELECT mention_id_r, match_probability FROM _evidence_edges)
        GROUP BY mention_id
    )
    SELECT m.mention_id, m.entity_id, m.entity_type, m.source_id, m.role,
           p.p AS match_probability, m.record_key, m.first_seen, m.last_seen
    FROM _mb m LEFT JOIN p USING (mention_id)
    ORDER BY m.entity_id, m.mention_id
    """,
    "entity_names": f"""
    CREATE TABLE entity_names AS
    SELECT {_BY_ENTITY}, name_native, name_latin,
           array_to_string(list_transform(string_split(name_latin, ' '), lambda x: left(x, 1)), '')
               AS name_initials,
           {_LINEAGE}
    FROM (SELECT ek, entity_id, entity_type, coalesce(name_native, name) AS name_native,
                 name_latin, source_id, first_seen, last_seen FROM _mb)
    WHERE name_native IS NOT NULL OR name_latin IS NOT NULL
    GROUP BY ek, name_native, name_latin
    ORDER BY entity_id
    """,
    "entity_identifiers": f"""
    CREATE TABLE entity_identifiers AS
    SELECT {_BY_ENTITY}, kind, value, {_LINEAGE}
    FROM ({_IDENTIFIER_ARMS})
    GROUP BY ek, kind, value ORDER BY entity_id, kind, value
    """,
    "entity_addresses": f"""
    CREATE TABLE entity_addresses AS
    SELECT {_BY_ENTITY}, {", ".join(ADDRESS_PARTS)}, {_LINEAGE}
    FROM _mb
    WHERE coalesce({", ".join(ADDRESS_PARTS)}) IS NOT NULL
    GROUP BY ek, {", ".join(ADDRESS_PARTS)}
    ORDER BY entity_id
    """,
    "facts": """
    CREATE TABLE facts AS
    SELECT e.entity_id, r.source_id, r.record_key, r.mention_id, r.fact_type, r.event_date,
           r.amount, r.list_type, r.facts::JSON AS facts, r.op, r.file, r.line, r.delivered,
           r.ingested_at
    FROM _current r JOIN _map e USING (mention_id)
    ORDER BY e.entity_id, r.event_date, r.source_id, r.record_key
    """,
    "list_entries": f"""
    CREATE TABLE list_entries AS
    SELECT e.entity_id, r.source_id, r.record_key, r.list_type, r.legal_basis,
           r.issuing_body, r.start_date, r.expiry_date,
           {LIST_STATUS.format(start="r.start_date", expiry="r.expiry_date")} AS status,
           CAST($reference_date AS DATE) AS reference_date, r.file, r.line
    FROM _current r JOIN _map e USING (mention_id)
    WHERE r.list_type IS NOT NULL
    ORDER BY e.entity_id, r.start_date
    """,
    "relationships": """
    CREATE TABLE relationships AS
    SELECT a.entity_id, rel.role, b.entity_id AS related_entity_id,
           CAST(length(list_distinct(list(rel.source_id || ':' || rel.record_key))) AS BIGINT)
               AS n_records,
           list_sort(list_distinct(list(rel.source_id))) AS sources,
           min(rel.first_d) AS first_seen, max(rel.last_d) AS last_seen
    FROM _rel_dated rel
    JOIN _map a ON a.mention_id = rel.mention_id
    JOIN _map b ON b.mention_id = rel.related_mention_id
    GROUP BY a.entity_id, rel.role, b.entity_id
    ORDER BY a.entity_id, rel.role
    """,
    # The kept edges, and the per-comparison contributions once per distinct
    # combination (``link_evidence`` joins them back): millions of edges share tens
    # of thousands of combinations, and storing the JSON of every edge was the
    # largest single cost of a publish.
    "evidence_edges": """
    CREATE TABLE evidence_edges AS
    SELECT entity_id, entity_type, mention_id_l, mention_id_r, match_weight, match_probability,
           decided_by, decision_id, contributions_key
    FROM _evidence_edges
    """,  # not sorted: linkage writes the edges grouped by entity; the index finds them
    "evidence_contributions": """
    CREATE TABLE evidence_contributions AS
    SELECT contributions_key, contributions FROM _evidence_contributions
    ORDER BY contributions_key
    """,
    "sources": """
    CREATE TABLE sources AS SELECT * FROM _sources ORDER BY source_id
    """,
    "corrections": """
    CREATE TABLE corrections AS
    SELECT c.*, c.correction_id IN (SELECT correction_id FROM _latest_corrections) AS applied
    FROM _corrections c ORDER BY correction_id
    """,
    "human_decisions": """
    CREATE TABLE human_decisions AS SELECT * FROM _decisions ORDER BY decision_id
    """,
    "person_match_features": matching.features_sql("person"),
    "business_match_features": matching.features_sql("business"),
    **{
        matching.tf_table(etype, c): matching.tf_sql(etype, c)
        for etype in matching.ENTITY_TYPES
        for c in matching.TF_COLUMNS[etype]
    },
    matching.TF_TOTALS: matching.tf_totals_sql(),
    "match_models": """
    CREATE TABLE match_models AS
    SELECT entity_type, settings::JSON AS settings, levels::JSON AS levels FROM _models
    """,
}

VIEWS = {
    "link_evidence": """
    CREATE VIEW link_evidence AS
    SELECT e.entity_id, e.entity_type, e.mention_id_l, e.mention_id_r, e.match_weight,
           e.match_probability, e.decided_by, e.decision_id, c.contributions
    FROM evidence_edges e
    LEFT JOIN evidence_contributions c ON c.contributions_key = e.contributions_key
    """,
    "analyst_entities": """
    CREATE VIEW analyst_entities AS
    SELECT * REPLACE (mask_id(id_number) AS id_number, mask_phone(phone) AS phone)
    FROM entities
    """,
    "analyst_identifiers": """
    CREATE VIEW analyst_identifiers AS
    SELECT * REPLACE (mask_identifier(kind, value) AS value) FROM entity_identifiers
    """,
    "analyst_list_entries": """
    CREATE VIEW analyst_list_entries AS SELECT * FROM list_entries WHERE status = 'active'
    """,
}

# Search tables: derived from the tables above, ordered by their lookup key.
SEARCH_TABLES = {
    # identifier → entity: the exact ``kind:value``, and for IDs and phones the visible
    # parts a masked value keeps (``id_key:`` first 6 + last 4, ``phone_key:`` 3 + 4 of
    # the national number), so masked queries are equality lookups too.
    "identifier_keys": r"""
    CREATE TABLE identifier_keys AS
    SELECT * FROM (
        SELECT kind || ':' || value AS key, entity_id, kind, value FROM entity_identifiers
        UNION ALL
        SELECT 'id_key:' || left(value, 6) || right(value, 4), entity_id, kind, value
        FROM entity_identifiers WHERE kind IN ('id_number', 'id_masked') AND length(value) = 18
        UNION ALL
        SELECT 'phone_key:' || left(n, 3) || right(n, 4), entity_id, kind, value
        FROM (SELECT *, regexp_replace(value, '^\+86', '') AS n FROM entity_identifiers
              WHERE kind IN ('phone', 'phone_masked'))
        WHERE length(n) = 11
    )
    ORDER BY key
    """,
    # name reference → the entity names it stands for, with what ranking needs: ``h:``
    # hanzi name, ``p:`` pinyin without spaces, ``d:<dob>:<initial>`` (a typo-tolerant
    # route when the dob is known), ``b:<two characters>`` of a business name.
    "name_refs": """
    CREATE TABLE name_refs AS
    WITH n AS (
        SELECT n.entity_id, n.entity_type, n.name_native, n.name_latin,
               lower(replace(n.name_latin, ' ', '')) AS py, e.dob, e.sex, e.n_mentions
        FROM entity_names n JOIN entities e USING (entity_id)
    )
    SELECT * FROM (
        SELECT 'h:' || name_native AS name_ref, * EXCLUDE (py) FROM n
        WHERE name_native IS NOT NULL
        UNION ALL
        SELECT 'p:' || py, * EXCLUDE (py) FROM n WHERE py <> ''
        UNION ALL
        SELECT DISTINCT 'd:' || CAST(dob AS VARCHAR) || ':' || left(py, 1), * EXCLUDE (py) FROM n
        WHERE entity_type = 'person' AND dob IS NOT NULL AND py <> ''
        UNION ALL
        SELECT DISTINCT 'b:' || substr(name_native, i, 2), * EXCLUDE (py, i)
        FROM (SELECT *, unnest(range(1, length(name_native))) AS i FROM n
              WHERE entity_type = 'business' AND name_native IS NOT NULL)
    )
    ORDER BY name_ref
    """,
    # typo keys → name references: each ``h:`` / ``p:`` reference under itself and under
    # every one-character deletion (hanzi of 3-4 characters, pinyin of 3 letters or
    # more), so a query within one edit (insertion, deletion, substitution,
    # transposition) shares a variant with the name (symmetric deletion).
    "name_variants": """
    CREATE TABLE name_variants AS
    WITH r AS (
        SELECT DISTINCT name_ref, left(name_ref, 2) AS ns, substr(name_ref, 3) AS s
        FROM name_refs WHERE left(name_ref, 2) IN ('h:', 'p:')
    )
    SELECT DISTINCT variant, name_ref FROM (
        SELECT name_ref AS variant, name_ref FROM r
        UNION ALL
        SELECT ns || left(s, i - 1) || substr(s, i + 1), name_ref
        FROM (SELECT *, unnest(range(1, length(s) + 1)) AS i FROM r
              WHERE (ns = 'p:' AND length(s) >= 3)
                 OR (ns = 'h:' AND length(s) BETWEEN 3 AND 4))
    )
    ORDER BY variant
    """,
    # The variants of name references an incremental publish added since the last full
    # build (warehouse.incremental): appended here, so name_variants and its index are
    # never rewritten by a daily update. Search reads both; a variant of a reference
    # that no longer exists leads to no name_refs row.
    "name_variants_added": """
    CREATE TABLE name_variants_added AS SELECT variant, name_ref FROM name_variants WHERE false
    """,
}

# ART indexes: point lookups with one equality (or IN-list) filter on the key become
# index scans; every per-entity table is also ordered by entity_id.
INDEXES = (
    "CREATE INDEX entities_id ON entities (entity_id)",
    "CREATE INDEX names_entity ON entity_names (entity_id)",
    "CREATE INDEX identifiers_entity ON entity_identifiers (entity_id)",
    "CREATE INDEX addresses_entity ON entity_addresses (entity_id)",
    "CREATE INDEX memberships_entity ON memberships (entity_id)",
    "CREATE INDEX facts_entity ON facts (entity_id)",
    "CREATE INDEX lists_entity ON list_entries (entity_id)",
    "CREATE INDEX relationships_entity ON relationships (entity_id)",
    "CREATE INDEX relationships_related ON relationships (related_entity_id)",
    "CREATE INDEX evidence_entity ON evidence_edges (entity_id)",
    "CREATE INDEX evidence_contributions_key ON evidence_contributions (contributions_key)",
    "CREATE INDEX identifier_keys_key ON identifier_keys (key)",
    "CREATE INDEX name_refs_ref ON name_refs (name_ref)",
    "CREATE INDEX name_variants_variant ON name_variants (variant)",
    "CREATE INDEX name_variants_added_variant ON name_variants_added (variant)",
    # Search by example: the identifier blocks are a few rows among millions, which a
    # scan of the unsorted column finds in 60-100 ms at 1,000,000 persons and an index
    # in well under one. (Name blocks stay scans: ``name_py`` is the sort key, and a
    # common hanzi name matches thousands of rows, faster scanned than fetched.)
    *(
        f"CREATE INDEX person_features_{c} ON person_match_features ({c})"
        for c in ("id_any", "id_key", "phone_any", "phone_key", "email", "plate", "passport")
    ),
    *(
        f"CREATE INDEX business_features_{c} ON business_match_features ({c})"
        for c in ("uscc_any", "uscc_key")
    ),
)


def indexed_columns(table: str) -> list[str]:
    """The columns of ``table`` that an index of :data:`INDEXES` holds."""
    import re

    found = (re.search(r" ON (\w+) \((\w+)\)", sql) for sql in INDEXES)
    return [m[2] for m in found if m and m[1] == table]


RUNS_DDL = """
CREATE TABLE runs (
    published_at TIMESTAMPTZ, reference_date DATE, seconds DOUBLE, counts JSON
)
"""

# What the warehouse was built from (see warehouse.incremental): one row per input
# file (path relative to the home, size, modification time) or setting (``stamp``).
PUBLISH_INPUTS_DDL = """
CREATE TABLE publish_inputs (
    kind VARCHAR, path VARCHAR, size BIGINT, modified TIMESTAMP_NS, stamp VARCHAR
)
"""

# The entities whose rows an incremental publish rebuilt (``_touched``, see
# warehouse.incremental); empty after a full build. Its base is the ``base_run`` stamp
# of ``publish_inputs``. An incremental analyst export (warehouse.export) reads both.
PUBLISH_TOUCHED_DDL = """
CREATE TABLE publish_touched (entity_id VARCHAR)
"""

# The tables an incremental publish updates row by row, and the condition naming the
# rows of the touched entities (``_touched``); the others are rebuilt whole.
ENTITY_TABLES: dict[str, str] = {
    "entities": "entity_id IN (SELECT entity_id FROM _touched)",
    "memberships": "entity_id IN (SELECT entity_id FROM _touched)",
    "entity_names": "entity_id IN (SELECT entity_id FROM _touched)",
    "entity_identifiers": "entity_id IN (SELECT entity_id FROM _touched)",
    "entity_addresses": "entity_id IN (SELECT entity_id FROM _touched)",
    "facts": "entity_id IN (SELECT entity_id FROM _touched)",
    "list_entries": "entity_id IN (SELECT entity_id FROM _touched)",
    "relationships": "entity_id IN (SELECT entity_id FROM _touched) "
    "OR related_entity_id IN (SELECT entity_id FROM _touched)",
    "identifier_keys": "entity_id IN (SELECT entity_id FROM _touched)",
    "name_refs": "entity_id IN (SELECT entity_id FROM _touched)",
}
WHOLE_TABLES = ("sources", "corrections", "human_decisions", "match_models")


def build_tables(
    con: duckdb.DuckDBPyConnection,
    reference_date: object,
    *,
    skip: tuple[str, ...] = (),
    applied_keys: str | None = None,
) -> dict[str, float]:
    """Create every table of :data:`TABLES` but ``runs`` and ``publish_inputs`` (minus
    ``skip``) in the default schema from the registered inputs; returns the seconds
    each took. ``applied_keys`` (``entity_id, ek``; default ``_keys``) are the entities
    whose corrections count as applied in ``corrections``: an incremental publish
    builds the golden records of a few entities but lists every correction."""
    seconds: dict[str, float] = {}

    def run(name: str, sql: str, params: dict[str, object] | None = None) -> None:
        t = time.perf_counter()
        con.execute(sql, params)
        seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - t

    def drop(*names: str) -> None:
        for name in names:  # temporary tables live in memory: free them once used
            con.execute(f"DROP TABLE IF EXISTS {name}")

    # The current records first (the facts and list entries), so they are freed
    # before the mention aggregations need the memory.
    run("facts", "CREATE TEMP TABLE _current AS SELECT * FROM _current_records")
    first = ("facts", "list_entries")
    for name in first:
        params = {"reference_date": reference_date} if name == "list_entries" else None
        run(name, STATEMENTS_TABLES[name], params)
    drop("_current")
    run("_seen", _REL_DATED)
    run("_seen", _seen())
    run("_mb", _KEYS)
    run("_mb", _mention_base())
    drop("_seen")
    run("_golden", _PREF)
    run("_golden", _golden())
    for sql in CORRECTIONS:
        run("corrections", sql)
    run("entities", _entities())
    drop("_golden", "_pref")
    if applied_keys:
        drop("_latest_corrections")
        run("corrections", latest_corrections_sql(applied_keys))
    free_after = {
        "entity_addresses": ("_mb",),
        "relationships": ("_rel_dated",),
        "corrections": ("_latest_corrections",),
        "evidence_contributions": ("_evidence_contributions",),
    }
    for name, sql in STATEMENTS_TABLES.items():
        if name not in first and name not in skip:
            run(name, sql)
        drop(*free_after.get(name, ()))
    for name, sql in SEARCH_TABLES.items():
        if name not in skip:
            run(name, sql)
    drop("_keys")
    return {k: round(v, 2) for k, v in seconds.items()}


def build(con: duckdb.DuckDBPyConnection, reference_date: object) -> dict[str, float]:
    """Create every table, macro, view and index from the registered inputs; returns
    the seconds each table (and all indexes together) took."""
    seconds = build_tables(con, reference_date)
    for sql in MACROS:
        con.execute(sql)
    for sql in VIEWS.values():
        con.execute(sql)
    t = time.perf_counter()
    for sql in INDEXES:
        con.execute(sql)
    seconds["indexes"] = round(time.perf_counter() - t, 2)
    con.execute(RUNS_DDL)
    con.execute(PUBLISH_INPUTS_DDL)
    con.execute(PUBLISH_TOUCHED_DDL)
    return seconds


TABLES = ("entities", *STATEMENTS_TABLES, *SEARCH_TABLES, "runs", "publish_inputs")


def fingerprint() -> str:
    """A hash of the SQL that defines the warehouse: an incremental publish only
    updates a warehouse built by the same statements (any change here, in the
    match features' SQL or in the indexes means a full build)."""
    import hashlib

    parts = [
        repr(sorted(STATEMENTS_TABLES.items())),
        repr(sorted(SEARCH_TABLES.items())),
        repr(INDEXES),
        repr(VIEWS),
        repr(MACROS),
        repr(CORRECTIONS),
        _seen(),
        _REL_DATED,
        _KEYS,
        _mention_base(),
        _PREF,
        _golden(),
        _entities(),
        RUNS_DDL,
        PUBLISH_INPUTS_DDL,
        PUBLISH_TOUCHED_DDL,
    ]
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()[:16]
