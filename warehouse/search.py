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
  typo tolerant: candidates are pre-filtered on the pinyin initials (``zw``; the
  table is sorted on them, so the filter prunes by zone map): the same surname
  initial, or the same initials but the surname's, then
  scored with DuckDB's ``jaro_winkler_similarity`` on hanzi and on pinyin (kept if
  ≥ 0.8); business names also match on containment.

``dob`` / ``sex`` narrow the result (an entity whose golden dob / sex is known and
different is dropped) and rank it: an agreeing dob adds 0.1 to the score (and lets
a name down to 0.6 similarity through), an agreeing sex 0.02; an entity whose dob
is unknown is kept but gets no bonus. Results are ranked by score, then by how many mentions
the entity has; each carries a ``reason``. Identifiers in the results are masked
(they come from ``analyst_entities``) unless the role is admin. Every user value is
a bound parameter. :func:`search` is audited; :func:`run_search` is the query on an
open connection.
"""

from __future__ import annotations

import datetime as dt
import re
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


def _identifier_hits(kind: str, query: str) -> tuple[list[str], list[Any]]:
    """SELECT arms (entity_id, score, reason) and their bound parameters."""
    q = re.sub(r"[\s-]", "", query).upper()
    arms: list[str] = []
    params: list[Any] = []

    def arm(score: float, reason: str, where: str, *args: Any) -> None:
        arms.append(
            f"SELECT entity_id, CAST({score} AS DOUBLE) AS score, '{reason}' AS reason "
            f"FROM entity_identifiers WHERE {where}"
        )
        params.extend(args)

    if kind == "id":
        if "*" in q:
            pattern = _like_escape(q).replace("*", "_")
            arm(
                0.8,
                "ID matches the masked pattern",
                "kind = 'id_number' AND value LIKE ? ESCAPE '\\'",
                pattern,
            )
            arm(0.7, "same masked ID", "kind = 'id_masked' AND value = ?", q)
        else:
            arm(1.0, "ID exact", "kind = 'id_number' AND value = ?", q)
            arm(
                0.6,
                "masked ID compatible",
                "kind = 'id_masked' AND left(value, 6) = ? AND right(value, 4) = ? "
                "AND ? LIKE replace(value, '*', '_')",
                q[:6],
                q[-4:],
                q,
            )
    elif kind == "phone":
        m = _PHONE.match(q) or _PHONE_MASKED.match(q)
        national = m.group(1) if m else q
        if "*" in national:
            pattern = "+86" + _like_escape(national).replace("*", "_")
            arm(
                0.8,
                "phone matches the masked pattern",
                "kind = 'phone' AND value LIKE ? ESCAPE '\\'",
                pattern,
            )
            arm(0.7, "same masked phone", "kind = 'phone_masked' AND value = ?", national)
        else:
            arm(1.0, "phone exact", "kind = 'phone' AND value = ?", "+86" + national)
            arm(
                0.6,
                "masked phone compatible",
                "kind = 'phone_masked' AND value = ?",
                national[:3] + "****" + national[-4:],
            )
    else:
        value = query.strip().lower() if kind == "email" else q
        arm(1.0, f"{kind} exact", "kind = ? AND value = ?", kind, value)
    return arms, params


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


def _name_hits(query: str) -> tuple[list[str], list[Any]]:
    native, latin = _name_keys(query)
    if native is None and latin is None:
        return [], []
    initials = "".join(w[0] for w in latin.split()) if latin else ""
    sql = """
    SELECT entity_id,
           greatest(coalesce(jaro_winkler_similarity(name_native, ?), 0),
                    coalesce(jaro_winkler_similarity(name_latin, ?), 0),
                    CASE WHEN name_initials IS NULL AND ? <> '' AND contains(name_native, ?)
                         THEN 0.9 ELSE 0 END) AS score,
           CASE WHEN name_native = ? THEN 'name exact'
                WHEN name_latin = ? THEN 'pinyin exact'
                WHEN name_initials IS NULL AND ? <> '' AND contains(name_native, ?)
                     THEN 'business name contains the query'
                ELSE 'name similar to ' || coalesce(name_native, name_latin) || ' ('
                     || CASE WHEN name_native IS NOT NULL AND ? <> '' THEN
                            -- characters, not bytes: DuckDB's levenshtein counts UTF-8 bytes
                            CAST(abs(length(name_native) - length(?)) + length(list_filter(
                                range(1, least(length(name_native), length(?)) + 1),
                                lambda k: substr(name_native, k, 1) <> substr(?, k, 1)))
                            AS VARCHAR) || ' character(s) differ, '
                        ELSE '' END
                     || 'pinyin edit distance '
                     || coalesce(CAST(levenshtein(name_latin, ?) AS VARCHAR), 'n/a') || ')'
           END AS reason
    FROM entity_names
    WHERE name_native = ? OR name_latin = ?
       OR left(name_initials, 1) = left(?, 1)
       OR (length(name_initials) = length(?) AND substr(name_initials, 2) = substr(?, 2))
       OR (name_initials IS NULL AND ? <> '' AND (contains(name_native, ?)
           OR left(name_native, 1) = left(?, 1)))
    """
    n, la, i = native or "", latin or "", initials
    params = [n, la, n, n, n, la, n, n, n, n, n, n, la, n, la, i, i, i, n, n, n]
    wrapped = f"SELECT * FROM ({sql}) WHERE score >= {NAME_FLOOR}"
    return [wrapped], params


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
    arms, params = _name_hits(query) if kind == "name" else _identifier_hits(kind, query)
    if not arms:
        return []
    if isinstance(dob, str):
        dob = dt.date.fromisoformat(dob)
    min_score = NAME_THRESHOLD if kind == "name" else 0.0
    view = "analyst_entities" if masked else "entities"
    sql = f"""
    WITH hits AS ({" UNION ALL ".join(arms)}),
    best AS (SELECT entity_id, max(score) AS score, arg_max(reason, score) AS reason
             FROM hits GROUP BY entity_id),
    narrowed AS (
        SELECT b.*, e.*  EXCLUDE (entity_id),
               coalesce(e.dob = CAST(? AS DATE), false) AS dob_ok,
               coalesce(e.sex = CAST(? AS VARCHAR), false) AS sex_ok
        FROM best b JOIN {view} e USING (entity_id)
        WHERE (CAST(? AS DATE) IS NULL OR e.dob IS NULL OR e.dob = CAST(? AS DATE))
          AND (CAST(? AS VARCHAR) IS NULL OR e.sex IS NULL OR e.sex = CAST(? AS VARCHAR))
    )
    SELECT entity_id, entity_type,
           round(least(1.0, score + CASE WHEN dob_ok THEN {DOB_BONUS} ELSE 0 END
                              + CASE WHEN sex_ok THEN {SEX_BONUS} ELSE 0 END), 4) AS score,
           reason || CASE WHEN dob_ok THEN '; dob agrees' ELSE '' END
                  || CASE WHEN sex_ok THEN '; sex agrees' ELSE '' END AS reason,
           name_native, name_latin, name, dob, sex, id_number, phone, uscc, n_sources
    FROM narrowed
    WHERE score >= {min_score} OR dob_ok
    ORDER BY 3 DESC, n_mentions DESC, entity_id
    LIMIT ?
    """
    cur = con.execute(sql, [*params, dob, sex, dob, dob, sex, sex, int(limit)])
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]
