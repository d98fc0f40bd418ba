"""The warehouse: atomic publish, the documented schema, masking, list status,
search and the entity file, on a small linked world built once for this module."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import duckdb
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from linked_world import warehouse_rows

from tessera.config import Home
from warehouse import schema
from warehouse.entity_file import file
from warehouse.publish import PublishError, building_path, connect, publish
from warehouse.search import KINDS, search

ROOT = Path(__file__).resolve().parents[1]
WORLD = {"persons": 500, "days": 2, "seed": 3}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    from linked_world import build_linked_home

    h = build_linked_home(Home(tmp_path_factory.mktemp("warehouse") / "home"), **WORLD)
    (h.root / "tessera.toml").write_text('[users]\nroot_admin = "admin"\n', encoding="utf-8")
    publish(h)
    return h


_q = warehouse_rows


@pytest.fixture(scope="module")
def person(home: Home) -> dict:
    """A real person (from the truth, test-only) and the warehouse entity holding
    most of their mentions."""
    from linkage.truth import mention_truth

    truth = pl.read_parquet(home.truth / "persons.parquet").with_columns(
        (pl.col("surname_native") + pl.col("given_native")).alias("name_native")
    )
    unique_names = truth.group_by("name_native").len().filter(pl.col("len") == 1)
    mt = mention_truth(home).rename({"entity_id": "person_id"})
    con = connect(home)
    try:
        members = pl.DataFrame(
            con.execute("SELECT mention_id, entity_id FROM memberships").fetchall(),
            schema=["mention_id", "entity_id"],
            orient="row",
        )
        ids = pl.DataFrame(
            con.execute(
                "SELECT entity_id, value FROM entity_identifiers WHERE kind = 'id_number'"
            ).fetchall(),
            schema=["entity_id", "id_number"],
            orient="row",
        )
    finally:
        con.close()
    votes = (
        mt.join(members, on="mention_id")
        .group_by("person_id", "entity_id")
        .len()
        .sort("len", "entity_id", descending=[True, False])
        .group_by("person_id", maintain_order=True)
        .first()
    )
    pick = (
        truth.join(unique_names.select("name_native"), on="name_native")
        .filter(pl.col("phone").is_not_null() & (pl.col("given_native").str.len_chars() == 2))
        .join(votes, on="person_id")
        .join(ids, on=["entity_id", "id_number"])  # linkage kept the ID on that entity
        .sort("len", "person_id", descending=[True, False])
    )
    assert pick.height > 0
    return pick.row(0, named=True)


# -- publish ---------------------------------------------------------------------------


def test_publish_builds_every_table_and_records_the_run(home: Home) -> None:
    counts = dict(_q(home, "SELECT table_name, estimated_size FROM duckdb_tables()"))
    for t in schema.TABLES:
        assert t in counts
    mentions = _q(home, "SELECT count(*), count(DISTINCT mention_id) FROM memberships")[0]
    assert mentions[0] == mentions[1] > 0  # every mention in exactly one entity
    assert _q(home, "SELECT count(*) FROM runs")[0][0] >= 1
    assert not building_path(home).exists()


def test_failed_build_leaves_the_old_warehouse(home: Home, monkeypatch) -> None:
    before = _q(home, "SELECT count(*) FROM entities")[0][0]
    runs = _q(home, "SELECT count(*) FROM runs")[0][0]
    real_build = schema.build

    def half_build(con: duckdb.DuckDBPyConnection, ref: object) -> None:
        real_build(con, ref)
        con.execute("DELETE FROM entities")  # a half-written warehouse ...
        raise RuntimeError("disk full")  # ... then the build dies

    monkeypatch.setattr(schema, "build", half_build)
    with pytest.raises(RuntimeError, match="disk full"):
        publish(home)
    assert _q(home, "SELECT count(*) FROM entities")[0][0] == before
    assert _q(home, "SELECT count(*) FROM runs")[0][0] == runs
    assert not building_path(home).exists()


def test_smoke_check_failure_is_not_published(home: Home, monkeypatch) -> None:
    before = _q(home, "SELECT count(*) FROM memberships")[0][0]
    real_build = schema.build

    def losing_build(con: duckdb.DuckDBPyConnection, ref: object) -> None:
        real_build(con, ref)
        con.execute(
            "DELETE FROM memberships WHERE mention_id IN "
            "(SELECT mention_id FROM memberships LIMIT 3)"
        )

    monkeypatch.setattr(schema, "build", losing_build)
    with pytest.raises(PublishError, match="mention in no entity"):
        publish(home)
    assert _q(home, "SELECT count(*) FROM memberships")[0][0] == before


# -- documentation -----------------------------------------------------------------------


def _documented() -> dict[str, list[tuple[str, str]]]:
    doc = (ROOT / "docs" / "warehouse.md").read_text(encoding="utf-8")
    out: dict[str, list[tuple[str, str]]] = {}
    for m in re.finditer(r"^### `(\w+)`\n(.*?)(?=^### |^## |\Z)", doc, re.M | re.S):
        rows = re.findall(r"^\| `(\w+)` \| ([^|]+?) \|", m.group(2), re.M)
        out[m.group(1)] = [(c, t.strip()) for c, t in rows]
    return out


def test_doc_matches_the_database(home: Home) -> None:
    documented = _documented()
    actual: dict[str, list[tuple[str, str]]] = {}
    for table, column, dtype in _q(
        home,
        "SELECT table_name, column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'main' ORDER BY table_name, ordinal_position",
    ):
        actual.setdefault(table, []).append((column, dtype))
    assert sorted(documented) == sorted(actual)
    for table, cols in actual.items():
        assert documented[table] == cols, table


# -- masking and lists -----------------------------------------------------------------------


def test_analyst_views_mask_identifiers(home: Home) -> None:
    rows = _q(
        home,
        "SELECT e.id_number, a.id_number, e.phone, a.phone FROM entities e "
        "JOIN analyst_entities a USING (entity_id) WHERE e.id_number IS NOT NULL",
    )
    assert rows
    for full_id, masked_id, full_phone, masked_phone in rows:
        assert masked_id == full_id[:6] + "********" + full_id[-4:]
        if full_phone is not None:
            assert masked_phone == full_phone[3:6] + "****" + full_phone[-4:]
    leaks = _q(
        home,
        "SELECT count(*) FROM analyst_identifiers WHERE "
        "(kind = 'id_number' AND regexp_matches(value, '^[0-9]{17}[0-9X]$')) OR "
        "(kind = 'phone' AND regexp_matches(value, '[0-9]{11}'))",
    )[0][0]
    assert leaks == 0
    assert _q(home, "SELECT count(*) FROM analyst_identifiers WHERE kind = 'phone'")[0][0] > 0


def test_list_status_against_the_reference_date(home: Home) -> None:
    entries = _q(home, "SELECT start_date, expiry_date FROM list_entries")
    assert entries
    ref = sorted(e[1] for e in entries if e[1] is not None)[len(entries) // 2]
    publish(home, reference_date=ref)
    rows = _q(home, "SELECT start_date, expiry_date, status, reference_date FROM list_entries")
    seen = set()
    for start, expiry, status, reference in rows:
        assert reference == ref
        expected = (
            "not_started"
            if start is not None and start > ref
            else "expired"
            if expiry is not None and expiry < ref
            else "active"
        )
        assert status == expected
        seen.add(status)
    assert {"active", "expired"} <= seen  # the expiry day itself is still active
    active = _q(home, "SELECT count(*) FROM list_entries WHERE status = 'active'")[0][0]
    assert _q(home, "SELECT count(*) FROM analyst_list_entries")[0][0] == active
    early = min(e[0] for e in entries if e[0] is not None) - dt.timedelta(days=1)
    publish(home, reference_date=early)
    assert {r[0] for r in _q(home, "SELECT DISTINCT status FROM list_entries")} == {"not_started"}
    assert _q(home, "SELECT count(*) FROM runs")[0][0] >= 3  # history is carried over


# -- search -----------------------------------------------------------------------------


def test_search_by_full_and_masked_id(home: Home, person: dict) -> None:
    hits = search(home, person["id_number"])
    assert hits[0]["entity_id"] == person["entity_id"] and hits[0]["score"] == 1.0
    assert hits[0]["id_number"] == person["id_number"][:6] + "********" + person["id_number"][-4:]
    masked = person["id_number"][:6] + "********" + person["id_number"][-4:]
    hits = search(home, masked)
    assert person["entity_id"] in [h["entity_id"] for h in hits]
    assert all(
        h["id_number"] is None or h["id_number"] == masked
        for h in hits
        if h["reason"] == "ID matches the masked pattern"
    )


def test_search_by_phone(home: Home, person: dict) -> None:
    con = connect(home)
    try:
        phones = [
            r[0]
            for r in con.execute(
                "SELECT value FROM entity_identifiers WHERE entity_id = ? AND kind = 'phone'",
                [person["entity_id"]],
            ).fetchall()
        ]
    finally:
        con.close()
    assert phones
    national = phones[0].removeprefix("+86")
    for q in (national, phones[0], f"{national[:3]} {national[3:7]} {national[7:]}"):
        assert search(home, q)[0]["entity_id"] == person["entity_id"], q
    hits = search(home, national[:3] + "****" + national[-4:])
    assert person["entity_id"] in [h["entity_id"] for h in hits]


def test_search_by_name_with_typos(home: Home, person: dict) -> None:
    pinyin = f"{person['surname_latin']} {person['given_latin']}"
    assert search(home, person["name_native"])[0]["entity_id"] == person["entity_id"]
    assert search(home, pinyin.replace(" ", ""))[0]["entity_id"] == person["entity_id"]
    # a pinyin typo: two letters of the given name transposed (or one dropped)
    given = person["given_latin"].replace(" ", "")
    typo_given = given[:-2] + given[-1] + given[-2] if given[-1] != given[-2] else given[:-1]
    typo = f"{person['surname_latin']} {typo_given}"
    hits = search(home, typo, dob=person["dob"])
    assert hits[0]["entity_id"] == person["entity_id"], (typo, hits[:3])
    assert "similar" in hits[0]["reason"] and hits[0]["reason"].endswith("dob agrees")
    assert all(h["score"] < 1.0 for h in search(home, typo))  # no bonus, no exact match
    # a hanzi typo: the last character replaced, narrowed by dob and sex
    typo_native = person["name_native"][:-1] + ("鑫" if person["name_native"][-1] != "鑫" else "淼")
    hits = search(home, typo_native, dob=person["dob"], sex=person["sex"])
    assert hits and hits[0]["entity_id"] == person["entity_id"], (typo_native, hits[:3])
    other_sex = "F" if person["sex"] == "M" else "M"
    assert person["entity_id"] not in [
        h["entity_id"] for h in search(home, person["name_native"], sex=other_sex)
    ]


def test_masked_id_with_hidden_suffix_and_one_edit_names(home: Home, person: dict) -> None:
    # Visible parts other than the usual first 6 + last 4: the LIKE fallback still finds it.
    odd_mask = person["id_number"][:14] + "****"
    assert person["entity_id"] in [h["entity_id"] for h in search(home, odd_mask, limit=50)]
    # One letter dropped from the unspaced pinyin: within one edit, found without a dob.
    py = f"{person['surname_latin']}{person['given_latin']}".replace(" ", "")
    dropped = py[:-2] + py[-1]
    hits = search(home, dropped, limit=20)
    assert person["entity_id"] in [h["entity_id"] for h in hits], (dropped, hits[:3])


def test_search_by_uscc(home: Home) -> None:
    entity_id, uscc = _q(
        home,
        "SELECT entity_id, uscc FROM entities WHERE uscc IS NOT NULL "
        "ORDER BY n_mentions DESC, entity_id LIMIT 1",
    )[0]
    hits = search(home, uscc.lower())
    assert hits[0]["entity_id"] == entity_id and hits[0]["reason"] == "uscc exact"


@pytest.mark.parametrize(
    "query, kind",
    [
        ("110101%%%%%%%%123X", "id"),
        ("%" * 18, "id"),
        ("_" * 18, "id"),
        ("1%", "phone"),
        ("138____5678", "phone"),
        ("%", "plate"),
        ("_", "email"),
        ("' OR 1=1 --", "uscc"),
    ],
)
def test_wildcards_are_literal(home: Home, query: str, kind: str) -> None:
    assert search(home, query, kind=kind) == []


_FRAGMENTS = [
    "'",
    '"',
    "; DROP TABLE entities; --",
    "%",
    "_",
    "\\",
    "' OR '1'='1",
    "1",
    "a",
    "张",
    ")",
    "--",
    "/*",
]


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.sampled_from(_FRAGMENTS), min_size=1, max_size=5).map("".join))
def test_injection_looking_input_is_harmless(home: Home, query: str) -> None:
    size = home.warehouse.stat().st_size
    n = _q(home, "SELECT count(*) FROM entities")[0][0]
    for kind in (*KINDS, None):
        hits = search(home, query, kind=kind, sex=query, dob=None)
        if kind not in ("name", None):
            assert hits == [], (kind, query)
        for h in hits:
            assert h["score"] >= 0.8
    assert _q(home, "SELECT count(*) FROM entities")[0][0] == n
    assert home.warehouse.stat().st_size == size


def test_search_connection_is_read_only(home: Home) -> None:
    con = connect(home)
    try:
        with pytest.raises(duckdb.Error):
            con.execute("DROP TABLE entities")
    finally:
        con.close()


# -- entity file -----------------------------------------------------------------------------


def test_entity_file(home: Home, person: dict) -> None:
    doc = file(home, person["entity_id"])
    assert doc["entity_type"] == "person"
    assert (
        doc["golden"]["id_number"]
        == person["id_number"][:6] + "********" + person["id_number"][-4:]
    )
    assert doc["lineage"]["id_number"]["source"] in {s["source_id"] for s in doc["sources"]}
    assert person["name_native"] in {n["name_native"] for n in doc["names"]}
    assert sum(s["mentions"] for s in doc["sources"]) == doc["n_mentions"] == len(doc["mentions"])
    assert doc["facts"] and all(isinstance(f["facts"], dict | None) for f in doc["facts"])
    dates = [f["event_date"] for f in doc["facts"] if f["event_date"]]
    assert dates == sorted(dates)
    full = file(home, person["entity_id"], masked=False, user="root_admin")
    assert full["golden"]["id_number"] == person["id_number"]
    with pytest.raises(KeyError):
        file(home, "no-such-entity' OR '1'='1")


# -- publish reads the lake in SQL: the same rows as the lake's polars readers ----------------


def test_facts_are_the_lakes_current_records(home: Home) -> None:
    """``_current`` (SQL over the staged records) equals ``lake.current_records``."""
    from connectors import lake

    want = (
        lake.current_records(home)
        .select("source_id", "record_key", "mention_id", "file", "line")
        .collect()
        .sort(pl.all())
        .rows()
    )
    got = sorted(_q(home, "SELECT source_id, record_key, mention_id, file, line FROM facts"))
    assert got == want


def test_memberships_are_the_lakes_mentions(home: Home) -> None:
    """One membership per distinct staged mention, with the role and source of the row
    ``lake.mentions`` keeps (the first file's where a mention is staged twice)."""
    from connectors import lake

    want = lake.mentions(home).select("mention_id", "source_id", "role").collect()
    got = _q(home, "SELECT mention_id, source_id, role FROM memberships")
    assert sorted(got) == sorted(want.rows())


def test_link_evidence_packs_every_edge(home: Home) -> None:
    """The view over edges and distinct contributions gives every edge's JSON exactly as
    packing that edge's own columns does."""
    path = home.lake / "linkage" / "person_evidence.parquet"
    con = connect(home)
    try:
        cols = [
            r[0] for r in con.execute(f"DESCRIBE SELECT * FROM read_parquet('{path}')").fetchall()
        ]
        extra = [
            c for c in cols if c.endswith("_level") or c.endswith("_log2_bf") or c == "prior_log2"
        ]
        packed = "to_json(struct_pack(" + ", ".join(f"{c} := {c}" for c in extra) + "))"
        diff = con.execute(
            f"""SELECT count(*) FROM (
                SELECT mention_id_l, mention_id_r, CAST({packed} AS VARCHAR)
                FROM read_parquet('{path}')
                EXCEPT ALL
                SELECT mention_id_l, mention_id_r, CAST(contributions AS VARCHAR)
                FROM link_evidence WHERE entity_type = 'person')"""
        ).fetchall()[0][0]
        n = con.execute(
            f"SELECT (SELECT count(*) FROM read_parquet('{path}')), "
            "(SELECT count(*) FROM link_evidence WHERE entity_type = 'person')"
        ).fetchall()[0]
    finally:
        con.close()
    assert diff == 0 and n[0] == n[1] > 0


def test_name_search_shortcut_ranks_as_the_full_lookup(home: Home) -> None:
    """Without dob or sex, a name that ``limit`` entities carry exactly is answered from
    its exact references alone: the same rows, in the same order, as the full lookup."""
    from warehouse import search as ws

    con = connect(home)
    try:
        common = con.execute(
            "SELECT name_native FROM entity_names WHERE entity_type = 'person' "
            "AND name_native IS NOT NULL GROUP BY 1 ORDER BY count(DISTINCT entity_id) DESC, 1 "
            "LIMIT 3"
        ).fetchall()
        for (name,) in common:
            for query in (name, ws._name_keys(name)[1]):
                native, latin = ws._name_keys(query)
                refs = [
                    r[0]
                    for r in con.execute(
                        "SELECT DISTINCT name_ref FROM name_variants WHERE list_contains(?, variant)",
                        [ws.name_variants(native, latin)],
                    ).fetchall()
                ]
                if native and len(native) >= 2:
                    refs += sorted({"b:" + native[i : i + 2] for i in range(len(native) - 1)})
                for limit in (1, 2, 10):
                    full = con.execute(
                        ws._candidates_sql(),
                        {
                            "native": native or "",
                            "latin": latin or "",
                            "refs": refs,
                            "dob": None,
                            "sex": None,
                            "limit": limit,
                        },
                    ).fetchall()
                    got = ws._name_candidates(con, query, None, None, limit)
                    assert got == [tuple(r) for r in full], (query, limit)
    finally:
        con.close()


def test_entity_file_evidence_is_the_link_evidence(home: Home, person: dict) -> None:
    """The file reads edges and contributions apart; it shows what ``link_evidence`` holds."""
    import json

    doc = file(home, person["entity_id"], masked=False, user="root_admin")
    want = _q(
        home,
        "SELECT mention_id_l, mention_id_r, match_weight, contributions FROM link_evidence "
        "WHERE entity_id = ?",
        [person["entity_id"]],
    )
    got = [
        (e["mention_id_l"], e["mention_id_r"], e["match_weight"], e["contributions"])
        for e in doc["evidence"]
    ]
    assert doc["evidence"] and all(isinstance(g[3], dict) for g in got)
    assert sorted(got, key=repr) == sorted(
        [(a, b, w, json.loads(c)) for a, b, w, c in want], key=repr
    )
