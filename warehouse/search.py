"""Search the published warehouse by identifier or by name.

``search(home, query)`` guesses what ``query`` is (or takes ``kind``):

- a full resident ID (``110101199001011234``) → that ID exactly (1.0), or a masked
  ID whose visible parts agree (0.6);
- a masked ID (``110101********123X``) → IDs matching it, one ``_`` per star (0.8),
  or the same masked ID (0.7);
- a phone (``13812345678``, ``+8613812345678``) → exactly (1.0) or a masked phone
  agreeing on the visible parts (0.6); a masked phone (``138****5678``) → phones
  matching it (0.8), or the same masked phone (0.7);
- a plate, passport, USCC or e-mail → that identifier exactly (1.0);
- anything else → a name, in hanzi or pinyin (``张伟``, ``zhang wei``, ``zhangwei``),
  typo tolerant: candidates are index lookups of the query's one-character deletions
  in ``name_variants`` (which holds every name under its own deletions, so a name
  within one edit shares a key), plus the dob route (``d:<dob>:<initial>``) and, for
  hanzi, businesses sharing two characters (``name_refs``); scored with DuckDB's
  ``jaro_winkler_similarity`` on hanzi and on pinyin (kept if ≥ 0.8); business names
  also match on containment.

Identifiers are looked up by equality in ``identifier_keys`` (an ART index scan; a
masked value is found by its visible parts), then checked against the query.

``dob`` / ``sex`` narrow the result (an entity whose golden dob / sex is known and
different is dropped) and rank it: an agreeing dob adds 0.1 to the score (and lets
a name down to 0.6 similarity through), an agreeing sex 0.02; an entity whose dob
is unknown is kept but gets no bonus. Results are ranked by score, then by how many mentions
the entity has; each carries a ``reason``. Identifiers in the results are masked
(with the macros of ``analyst_entities``) unless the role is admin. Every user value is
a bound parameter. :func:`search` is audited; :func:`run_search` is the query on an
open connection.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

import duckdb
import polars as pl

from connectors.parsing.names import parse_name, syllabify
from tessera.config import Home

KINDS = ("id", "phone", "plate", "passport", "uscc", "email", "name")
NAME_THRESHOLD = 0.8  # a name result needs this similarity ...
NAME_FLOOR = 0.6  # ... or this much and a confirmed dob
DOB_BONUS = 0.1  # added to the score when the given dob is the entity's golden dob
SEX_BONUS = 0.02

_ID = re.compile(r"^\d{17}[\dX]$")
_ID_MASKED = re.compile(r"^[\dX*]{18}$")
_PHONE = re.compile(r"^(?:\+?86)?(1\d{10})$")
_PHONE_MASKED = re.compile(r"^(?:\+?86)?(1[\d*]{10})$")
_USCC = re.compile(r"^[0-9A-HJ-NPQRTUWXY]{18}$")
_PLATE = re.compile(r"^[\u4e00-\u9fff][A-Z][A-Z0-9]{5,6}$")
_PASSPORT = re.compile(r"^[A-Z]{1,2}\d{7,8}$")
_HAN = re.compile(r"[\u3400-\u9fff]")


def _like_escape(value: str) -> str:
    """Make a user value literal inside a LIKE pattern (ESCAPE '\\')."""
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def guess_kind(query: str) -> str:
    """What the query looks like: one of :data:`KINDS`."""
    q = re.sub(r"[\s-]", "", query).upper()
    if _ID.match(q) or (_ID_MASKED.match(q) and "*" in q):
        return "id"
    if _PHONE.match(q) or (_PHONE_MASKED.match(q) and "*" in q):
        return "phone"
    if _USCC.match(q):
        return "uscc"
    if _PLATE.match(q):
        return "plate"
    if _PASSPORT.match(q):
        return "passport"
    if "@" in q:
        return "email"
    return "name"


Hit = tuple[str, float, str]  # entity_id, score, reason
# An identifier rule: (score, reason, kind, does the stored value match?)
Rule = tuple[float, str, str, Callable[[str], bool]]


def _star_match(masked: str, full: str) -> bool:
    """``masked`` (stars hide characters) agrees with ``full`` on every visible
    character: what ``full LIKE masked-with-stars-as-_`` tests."""
    return len(masked) == len(full) and all(
        m in ("*", f) for m, f in zip(masked, full, strict=True)
    )


def _identifier_plan(kind: str, query: str) -> tuple[list[str], list[Rule], list[tuple[str, str]]]:
    """The ``identifier_keys`` keys to look up, the rules scoring the rows found (the
    first that holds wins) and, for a masked query whose first 6 / last 4 (ID) or first
    3 / last 4 (phone) are not all visible, a LIKE scan ``(kind, pattern)``."""
    q = re.sub(r"[\s-]", "", query).upper()
    if kind == "id":
        if "*" in q:
            exact: Rule = (0.7, "same masked ID", "id_masked", lambda v: v == q)
            pattern: Rule = (
                0.8, "ID matches the masked pattern", "id_number", lambda v: _star_match(q, v)
            )  # fmt: skip
            visible = q[:6] + q[-4:]
            if "*" in visible or len(q) != 18:
                return [f"id_masked:{q}"], [exact], [("id_number", q)]
            return [f"id_key:{visible}", f"id_masked:{q}"], [pattern, exact], []
        return (
            [f"id_number:{q}", f"id_key:{q[:6]}{q[-4:]}"],
            [
                (1.0, "ID exact", "id_number", lambda v: v == q),
                (0.6, "masked ID compatible", "id_masked", lambda v: _star_match(v, q)),
            ],
            [],
        )
    if kind == "phone":
        m = _PHONE.match(q) or _PHONE_MASKED.match(q)
        national = m.group(1) if m else q
        if "*" in national:
            exact = (0.7, "same masked phone", "phone_masked", lambda v: v == national)
            full = "+86" + national
            pattern = (
                0.8, "phone matches the masked pattern", "phone", lambda v: _star_match(full, v)
            )  # fmt: skip
            visible = national[:3] + national[-4:]
            if "*" in visible or len(national) != 11:
                return [f"phone_masked:{national}"], [exact], [("phone", full)]
            return [f"phone_key:{visible}", f"phone_masked:{national}"], [pattern, exact], []
        masked = national[:3] + "****" + national[-4:]
        return (
            [f"phone:+86{national}", f"phone_masked:{masked}"],
            [
                (1.0, "phone exact", "phone", lambda v: True),
                (0.6, "masked phone compatible", "phone_masked", lambda v: True),
            ],
            [],
        )
    value = query.strip().lower() if kind == "email" else q
    return [f"{kind}:{value}"], [(1.0, f"{kind} exact", kind, lambda v: True)], []


def _identifier_hits(con: duckdb.DuckDBPyConnection, kind: str, query: str) -> list[Hit]:
    """Entities holding the identifier: one index lookup in ``identifier_keys``, the
    few rows found scored by :func:`_identifier_plan`'s rules."""
    keys, rules, scans = _identifier_plan(kind, query)
    rows = con.execute(
        "SELECT entity_id, kind, value FROM identifier_keys WHERE list_contains(?, key)", [keys]
    ).fetchall()
    hits: list[Hit] = []
    for entity_id, k, value in rows:
        for score, reason, rule_kind, test in rules:
            if k == rule_kind and test(value):
                hits.append((entity_id, score, reason))
                break
    for scan_kind, masked in scans:  # rare: the visible parts are not the usual ones
        pattern = _like_escape(masked).replace("*", "_")
        score, reason = (
            (0.8, "ID matches the masked pattern")
            if scan_kind == "id_number"
            else (0.8, "phone matches the masked pattern")
        )
        hits += [
            (r[0], score, reason)
            for r in con.execute(
                "SELECT entity_id FROM entity_identifiers WHERE kind = ? "
                "AND value LIKE ? ESCAPE '\\'",
                [scan_kind, pattern],
            ).fetchall()
        ]
    return hits


def _name_keys(query: str) -> tuple[str | None, str | None]:
    """(hanzi, pinyin) forms of a name query, pinyin lower-case and syllable-spaced."""
    q = query.strip()
    if _HAN.search(q):
        parsed = parse_name("name:hanzi", "name", pl.Series([q], dtype=pl.String))
        return q, parsed["name_latin"][0]
    latin = re.sub(r"[\s/,._]+", " ", q.lower()).strip()
    if latin and " " not in latin:
        latin = syllabify(latin) or latin
    return None, latin or None


def _deletions(s: str) -> list[str]:
    """``s`` with one character deleted, each position (as ``name_variants`` stores them)."""
    return [s[:i] + s[i + 1 :] for i in range(len(s))]


def name_variants(native: str | None, latin: str | None) -> list[str]:
    """The ``name_variants`` keys a name query looks up: its hanzi and pinyin (without
    spaces) references and their one-character deletions."""
    out: list[str] = []
    if native:
        out.append("h:" + native)
        out += ["h:" + d for d in _deletions(native) if len(d) >= 2]
    py = (latin or "").replace(" ", "")
    if py:
        out.append("p:" + py)
        out += ["p:" + d for d in _deletions(py) if len(d) >= 2]
    return sorted(set(out))


_NAME_SCORE = """
    SELECT entity_id, entity_type, dob, sex, n_mentions,
           greatest(coalesce(jaro_winkler_similarity(name_native, $native), 0),
                    coalesce(jaro_winkler_similarity(name_latin, $latin), 0),
                    CASE WHEN entity_type = 'business' AND $native <> ''
                              AND contains(name_native, $native) THEN 0.9 ELSE 0 END) AS score,
           CASE WHEN name_native = $native THEN 'name exact'
                WHEN name_latin = $latin THEN 'pinyin exact'
                WHEN entity_type = 'business' AND $native <> '' AND contains(name_native, $native)
                     THEN 'business name contains the query'
                ELSE 'name similar to ' || coalesce(name_native, name_latin) || ' ('
                     || CASE WHEN name_native IS NOT NULL AND $native <> '' THEN
                            -- characters, not bytes: DuckDB's levenshtein counts UTF-8 bytes
                            CAST(abs(length(name_native) - length($native)) + length(list_filter(
                                range(1, least(length(name_native), length($native)) + 1),
                                lambda k: substr(name_native, k, 1) <> substr($native, k, 1)))
                            AS VARCHAR) || ' character(s) differ, '
                        ELSE '' END
                     || 'pinyin edit distance '
                     || coalesce(CAST(levenshtein(name_latin, $latin) AS VARCHAR), 'n/a') || ')'
           END AS reason
    FROM name_refs WHERE list_contains($refs, name_ref)
"""


def _name_candidates(
    con: duckdb.DuckDBPyConnection,
    query: str,
    dob: dt.date | None,
    sex: str | None,
    limit: int,
) -> list[tuple[str, float, str]]:
    """The best ``limit`` entities by name (``entity_id, score, reason``, before the dob /
    sex bonus), ranked as :func:`run_search` ranks: candidates are the name references
    sharing a variant with the query (``name_variants``), its dob route and, for a hanzi
    query, the businesses sharing two characters with it; all index lookups."""
    native, latin = _name_keys(query)
    if native is None and latin is None:
        return []
    variants = name_variants(native, latin)
    # Two index lookups: the full build's variants and those daily publishes added.
    refs = [r[0] for r in con.execute(
        "SELECT DISTINCT name_ref FROM (SELECT name_ref FROM name_variants "
        "WHERE list_contains($v, variant) UNION ALL SELECT name_ref FROM name_variants_added "
        "WHERE list_contains($v, variant))", {"v": variants}
    ).fetchall()]  # fmt: skip
    py = (latin or "").replace(" ", "")
    if dob is not None and py:
        refs.append(f"d:{dob.isoformat()}:{py[0]}")
    if native and len(native) >= 2:
        refs += sorted({"b:" + native[i : i + 2] for i in range(len(native) - 1)})
    if not refs:
        return []
    params = {
        "native": native or "",
        "latin": latin or "",
        "dob": dob,
        "sex": sex,
        "limit": int(limit),
    }
    if dob is None and sex is None:
        # A common name's one-edit neighbours are thousands of entities. Only a name
        # equal to the query (its ``h:`` / ``p:`` reference) scores 1.0, and without a
        # dob or sex bonus nothing else can reach it: if ``limit`` entities score 1.0
        # on the exact references alone, they are the answer (same order, same ties).
        exact = [r for r in ("h:" + native if native else None, "p:" + py if py else None) if r]
        first = con.execute(_candidates_sql(), {**params, "refs": exact}).fetchall()
        if len(first) >= int(limit) and all(r[1] >= 1.0 for r in first):
            return [tuple(r) for r in first]
    return [tuple(r) for r in con.execute(_candidates_sql(), {**params, "refs": refs}).fetchall()]


def _candidates_sql() -> str:
    """The name query of :func:`_name_candidates` (parameters ``native, latin, refs,
    dob, sex, limit``)."""
    return f"""
    WITH hits AS ({_NAME_SCORE}),
    best AS (SELECT entity_id, any_value(dob) AS dob, any_value(sex) AS sex,
                    any_value(n_mentions) AS n_mentions, max(score) AS score,
                    arg_max(reason, score) AS reason
             FROM hits GROUP BY entity_id),
    narrowed AS (
        SELECT *, coalesce(dob = CAST($dob AS DATE), false) AS dob_ok,
               coalesce(sex = CAST($sex AS VARCHAR), false) AS sex_ok
        FROM best
        WHERE (CAST($dob AS DATE) IS NULL OR dob IS NULL OR dob = CAST($dob AS DATE))
          AND (CAST($sex AS VARCHAR) IS NULL OR sex IS NULL OR sex = CAST($sex AS VARCHAR))
    )
    SELECT entity_id, score, reason FROM narrowed
    WHERE score >= {NAME_FLOOR} AND (score >= {NAME_THRESHOLD} OR dob_ok)
    ORDER BY round(least(1.0, score + CASE WHEN dob_ok THEN {DOB_BONUS} ELSE 0 END
                              + CASE WHEN sex_ok THEN {SEX_BONUS} ELSE 0 END), 4) DESC,
             n_mentions DESC, entity_id
    LIMIT $limit
    """


def search(
    home: Home,
    query: str,
    *,
    kind: str | None = None,
    dob: dt.date | str | None = None,
    sex: str | None = None,
    limit: int = 20,
    user: str | None = None,
) -> list[dict[str, Any]]:
    """Entities matching ``query`` (an identifier or a name), best first, as ``user``
    (default: the current user, :mod:`warehouse.access`); audited (one row in the
    audit log, :mod:`warehouse.audit`).

    ``kind`` forces the interpretation (one of :data:`KINDS`; default: guessed).
    Each result: ``entity_id, entity_type, score, reason`` and the golden record
    (``name_native, name_latin, name, dob, sex, id_number, phone, uscc,
    n_sources``), identifiers masked unless the role is admin."""
    from warehouse.session import Session

    with Session(home, user=user) as session:
        return session.search(query, kind=kind, dob=dob, sex=sex, limit=limit)


def run_search(
    con: duckdb.DuckDBPyConnection,
    query: str,
    *,
    kind: str | None = None,
    dob: dt.date | str | None = None,
    sex: str | None = None,
    limit: int = 20,
    masked: bool = True,
) -> list[dict[str, Any]]:
    """The search itself on an open (read-only) warehouse connection, not audited:
    :func:`search` and :class:`warehouse.session.Session` call it."""
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    if not isinstance(query, str) or not query.strip():
        return []
    kind = kind or guess_kind(query)
    if isinstance(dob, str):
        dob = dt.date.fromisoformat(dob)
    if sex is not None and not isinstance(sex, str):
        sex = str(sex)
    if kind == "name":
        hits = _name_candidates(con, query, dob, sex, limit)
    else:
        hits = _identifier_hits(con, kind, query)
    if not hits:
        return []
    return _rank(con, hits, kind=kind, dob=dob, sex=sex, limit=limit, masked=masked)


_RESULT = (
    "entity_id, entity_type, name_native, name_latin, name, dob, sex, {id_number}, {phone}, "
    "uscc, n_sources, n_mentions"
)
# The analyst view's masks (``analyst_entities``), applied to the few rows fetched:
# binding the whole view costs more than the lookup itself.
_MASKED = {"id_number": "mask_id(id_number) AS id_number", "phone": "mask_phone(phone) AS phone"}
_PLAIN = {"id_number": "id_number", "phone": "phone"}


def _rank(
    con: duckdb.DuckDBPyConnection,
    hits: list[Hit],
    *,
    kind: str,
    dob: dt.date | None,
    sex: str | None,
    limit: int,
    masked: bool,
) -> list[dict[str, Any]]:
    """The result: each entity's best hit with its golden record (one index lookup on
    ``entity_id``, masked unless ``masked=False``), narrowed by dob / sex, the bonuses
    added, best first (score, then mentions, then entity_id)."""
    best: dict[str, tuple[float, str]] = {}
    for entity_id, score, reason in hits:
        if entity_id not in best or score > best[entity_id][0]:
            best[entity_id] = (score, reason)
    cols_sql = _RESULT.format(**(_MASKED if masked else _PLAIN))
    cur = con.execute(
        f"SELECT {cols_sql} FROM entities WHERE list_contains(?, entity_id)", [sorted(best)]
    )
    cols = [d[0] for d in cur.description]
    min_score = NAME_THRESHOLD if kind == "name" else 0.0
    out = []
    for row in cur.fetchall():
        e = dict(zip(cols, row, strict=True))
        if (dob is not None and e["dob"] is not None and e["dob"] != dob) or (
            sex is not None and e["sex"] is not None and e["sex"] != sex
        ):
            continue
        score, reason = best[e["entity_id"]]
        dob_ok, sex_ok = dob is not None and e["dob"] == dob, sex is not None and e["sex"] == sex
        if score < min_score and not dob_ok:
            continue
        bonus = (DOB_BONUS if dob_ok else 0.0) + (SEX_BONUS if sex_ok else 0.0)
        e["score"] = round(min(1.0, score + bonus), 4)
        e["reason"] = (
            reason + ("; dob agrees" if dob_ok else "") + ("; sex agrees" if sex_ok else "")
        )
        out.append(e)
    out.sort(key=lambda e: (-e["score"], -e["n_mentions"], e["entity_id"]))
    keys = ("entity_id", "entity_type", "score", "reason", *cols[2:-1])
    return [{k: e[k] for k in keys} for e in out[: int(limit)]]
