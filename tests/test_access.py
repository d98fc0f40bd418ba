"""Access and accountability: roles, masking, the audit log, subject access, the
analyst export, corrections, search by example (agreeing with Splink) and injection
attempts in every search field; on a private copy of the shared linked world."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import duckdb
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from linked_world import warehouse_rows

from tessera.config import Home
from warehouse import access, audit, matching
from warehouse.entity_file import file
from warehouse.publish import connect, publish
from warehouse.search import KINDS, search
from warehouse.session import Session

ROOT = Path(__file__).resolve().parents[1]
USERS = {"alice": "analyst", "bob": "auditor", "carol": "admin"}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    from linked_world import copy_of_linked_world

    h = copy_of_linked_world(tmp_path_factory, "access")
    (h.root / "tessera.toml").write_text(
        "[users]\n" + "".join(f'{u} = "{r}"\n' for u, r in USERS.items()), encoding="utf-8"
    )
    publish(h)
    return h


_q = warehouse_rows


@pytest.fixture(scope="module")
def person(home: Home) -> dict:
    """A well-known person entity with a full ID and phone."""
    cols = ["entity_id", "name_native", "dob", "sex", "id_number", "phone"]
    row = _q(
        home,
        f"SELECT {', '.join(cols)} FROM entities WHERE entity_type = 'person' "
        "AND id_number IS NOT NULL AND phone IS NOT NULL AND name_native IS NOT NULL "
        "ORDER BY n_mentions DESC, entity_id LIMIT 1",
    )[0]
    return dict(zip(cols, row, strict=True))


def _rows(home: Home) -> int:
    return len(audit.read(home))


# -- roles and masking ---------------------------------------------------------------------


def test_roles_come_from_config(home: Home, tmp_path: Path) -> None:
    assert access.principal(home, "carol").role == "admin"
    assert access.principal(home, "bob").role == "auditor"
    assert access.principal(home, "nobody-configured").role == "analyst"  # least privilege
    bad = Home(tmp_path)
    (tmp_path / "tessera.toml").write_text('[users]\neve = "superuser"\n', encoding="utf-8")
    with pytest.raises(access.AccessError, match="unknown role"):
        access.principal(bad, "eve")


def test_masking_per_role(home: Home, person: dict) -> None:
    masked_id = person["id_number"][:6] + "********" + person["id_number"][-4:]
    with Session(home, "alice") as s:
        assert s.search(person["id_number"])[0]["id_number"] == masked_id
        doc = s.file(person["entity_id"])
        assert doc["golden"]["id_number"] == masked_id
        assert doc["golden"]["phone"].count("*") == 4
        assert all("*" in i["value"] for i in doc["identifiers"] if i["kind"] == "id_number")
        with pytest.raises(access.AccessError):
            s.file(person["entity_id"], masked=False)
    with Session(home, "carol") as s:
        assert s.search(person["id_number"])[0]["id_number"] == person["id_number"]
        assert s.file(person["entity_id"])["golden"]["phone"] == person["phone"]


def test_expired_lists_hidden_from_analysts(home: Home) -> None:
    entries = _q(home, "SELECT expiry_date FROM list_entries WHERE expiry_date IS NOT NULL")
    ref = sorted(e[0] for e in entries)[len(entries) // 2]
    publish(home, reference_date=ref)
    eid = _q(
        home,
        "SELECT entity_id FROM list_entries GROUP BY entity_id "
        "HAVING count(*) FILTER (WHERE status <> 'active') > 0 ORDER BY entity_id LIMIT 1",
    )[0][0]
    hidden = {
        r[0]
        for r in _q(
            home,
            "SELECT record_key FROM list_entries WHERE entity_id = ? AND status <> 'active'",
            [eid],
        )
    }
    with Session(home, "alice") as s:
        doc = s.file(eid)
    assert all(entry["status"] == "active" for entry in doc["lists"])
    assert not hidden & {f["record_key"] for f in doc["facts"]}
    with Session(home, "carol") as s:
        full = s.file(eid)
    assert hidden <= {entry["record_key"] for entry in full["lists"]}
    assert hidden <= {f["record_key"] for f in full["facts"]}


# -- audit -------------------------------------------------------------------------------


def test_every_api_call_leaves_exactly_one_audit_row(
    home: Home, person: dict, tmp_path: Path
) -> None:
    eid = person["entity_id"]
    calls = [
        ("alice", "search", lambda s: s.search(person["name_native"]), "ok"),
        ("alice", "search", lambda s: s.search("no such name at all"), "ok"),
        ("alice", "search_example", lambda s: s.search_example({"id_number": person["id_number"]}), "ok"),
        ("alice", "file", lambda s: s.file(eid), "ok"),
        ("alice", "subject_access", lambda s: s.subject_access(eid), "denied"),
        ("alice", "export", lambda s: s.export_analyst(tmp_path / "x.duckdb"), "denied"),
        ("bob", "audit", lambda s: s.audit(limit=5), "ok"),
        ("bob", "subject_access", lambda s: s.subject_access(eid), "ok"),
        ("carol", "file", lambda s: s.file("E-no-such-entity"), "error"),
    ]  # fmt: skip
    for user, action, call, outcome in calls:
        before = _rows(home)
        with Session(home, user) as s:
            try:
                result = call(s)
            except (access.AccessError, KeyError):
                result = None
        rows = audit.read(home)
        assert len(rows) == before + 1, action
        row = rows[-1]
        assert (row["user"], row["role"], row["action"]) == (user, USERS[user], action)
        assert row["outcome"].startswith(outcome), row
        if action in ("search", "search_example") and result is not None:
            assert row["entity_ids"] == [h["entity_id"] for h in result]
        if action in ("file", "subject_access") and outcome == "ok":
            assert row["entity_ids"] == [eid]
    # the module functions are audited too, as the current user
    before = _rows(home)
    search(home, person["name_native"], user="alice")
    file(home, eid, user="alice")
    rows = audit.read(home)
    assert len(rows) == before + 2 and [r["action"] for r in rows[-2:]] == ["search", "file"]
    assert audit.verify(home)["ok"]


def test_audit_log_is_append_only(home: Home, person: dict) -> None:
    search(home, person["name_native"], user="alice")
    con = sqlite3.connect(audit.audit_path(home))
    try:
        for sql in ("UPDATE audit_log SET user = 'nobody'", "DELETE FROM audit_log"):
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                con.execute(sql)
        # Someone who bypasses the triggers is caught by the hash chain.
        con.execute("DROP TRIGGER audit_no_update")
        con.execute("UPDATE audit_log SET entity_ids = '[]' WHERE id = 1")
        con.commit()
        assert audit.verify(home) == {"rows": _rows(home), "ok": False, "first_bad_id": 1}
    finally:
        con.close()


def test_audit_from_two_processes(tmp_path: Path, home: Home, person: dict) -> None:
    """Two CLI processes, one after the other, each append their row."""
    h = Home(tmp_path / "h")
    h.root.mkdir()
    import shutil

    shutil.copy(home.warehouse, h.warehouse)
    env = {**os.environ, "TESSERA_USER": "zed"}
    for q in (person["name_native"], person["id_number"]):
        out = subprocess.run(
            [sys.executable, "-m", "tessera.cli", "search", q, "--home", str(h.root), "--json"],
            env=env, capture_output=True, text=True, cwd=ROOT, check=True,
        )  # fmt: skip
        assert json.loads(out.stdout)[0]["entity_id"] == person["entity_id"]
    rows = audit.read(h)
    assert [(r["user"], r["role"], r["query"]["query"]) for r in rows] == [
        ("zed", "analyst", person["name_native"]),
        ("zed", "analyst", person["id_number"]),
    ]
    assert audit.verify(h)["ok"]


def test_open_writers_interleave_without_breaking_the_chain(home: Home, person: dict) -> None:
    """Two sessions keep their audit connections open and write in turn (as two
    processes would): every call is one row and the hash chain holds."""
    before = _rows(home)
    with Session(home, "alice") as a, Session(home, "carol") as c:
        for _ in range(3):
            a.search(person["id_number"])
            c.search(person["name_native"])
    rows = audit.read(home)
    assert len(rows) == before + 6
    assert [r["user"] for r in rows[-6:]] == ["alice", "carol"] * 3
    # Each row chains to the one before it, whichever writer wrote that one (the start of
    # the chain was tampered with on purpose above, so verify() over all rows fails).
    con = sqlite3.connect(audit.audit_path(home))
    try:
        chain = con.execute("SELECT prev_hash, hash FROM audit_log ORDER BY id DESC LIMIT 7")
        links = chain.fetchall()[::-1]
    finally:
        con.close()
    assert all(after[0] == before_[1] for before_, after in zip(links, links[1:], strict=False))
    assert len({h for _, h in links}) == 7


# -- read-only, export, subject access, corrections ----------------------------------------------


def test_analyst_connection_is_read_only(home: Home) -> None:
    with Session(home, "alice") as s:
        with pytest.raises(duckdb.Error):
            s.con.execute("DROP TABLE entities")
        with pytest.raises(duckdb.Error):
            s.con.execute("UPDATE entities SET sex = 'X'")


def test_analyst_export_is_masked(home: Home, tmp_path: Path) -> None:
    path = tmp_path / "analyst.duckdb"
    with Session(home, "carol") as s:
        counts = s.export_analyst(path)
    assert counts["entities"] == _q(home, "SELECT count(*) FROM entities")[0][0]
    con = duckdb.connect(str(path), read_only=True)
    try:
        tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        assert not {"person_match_features", "business_match_features", "match_models"} & tables
        leaks = con.execute(
            "SELECT (SELECT count(*) FROM entities WHERE regexp_matches(id_number, '^[0-9]{17}')"
            " OR regexp_matches(phone, '[0-9]{11}'))"
            " + (SELECT count(*) FROM entity_identifiers WHERE kind IN ('id_number', 'phone')"
            "    AND regexp_matches(value, '[0-9]{11}'))"
            " + (SELECT count(*) FROM list_entries WHERE status <> 'active')"
        ).fetchall()[0][0]
        assert leaks == 0
        assert con.execute("SELECT mask_id('110101199001011234')").fetchall()[0][0].count("*") == 8
    finally:
        con.close()


def test_subject_access_is_complete(home: Home, person: dict) -> None:
    eid = person["entity_id"]
    with Session(home, "alice") as s:
        s.search(person["id_number"])
    with Session(home, "bob") as s:
        doc = s.subject_access(eid)
    members = {
        r[0] for r in _q(home, "SELECT mention_id FROM memberships WHERE entity_id = ?", [eid])
    }
    assert {m["mention_id"] for m in doc["mentions"]} == members
    assert {m["mention_id"] for m in doc["mention_records"]} == members
    from connectors import lake

    n_records = (
        lake.records(home).filter(pl.col("mention_id").is_in(list(members))).collect().height
    )
    assert len(doc["source_records"]) == n_records > 0
    assert all(r["file"] and r["line"] is not None for r in doc["source_records"])
    named = [r["id"] for r in audit.read(home) if eid in r["entity_ids"]]
    assert [r["id"] for r in doc["audit"]] == named[: len(doc["audit"])] and named
    assert doc["golden"]["id_number"] == person["id_number"]  # unmasked: it is theirs
    assert audit.read(home)[-1]["action"] == "subject_access"
    json.dumps(doc, ensure_ascii=False)  # JSON-ready


def test_corrections_and_decisions_show_after_publish(home: Home, person: dict) -> None:
    from linkage.decisions import record_decision

    eid = person["entity_id"]
    new_sex = "F" if person["sex"] == "M" else "M"
    with Session(home, "alice") as s, pytest.raises(access.AccessError):
        s.correct(eid, "sex", new_sex, reason="letter")
    with Session(home, "carol") as s:
        c = s.correct(eid, "sex", new_sex, reason="registry letter of 2024-03-01")
        assert c.who == "carol"
        assert s.file(eid)["golden"]["sex"] == person["sex"]  # not before the next publish
    mentions = [
        r[0]
        for r in _q(
            home, "SELECT mention_id FROM memberships WHERE entity_id = ? ORDER BY 1 LIMIT 2", [eid]
        )
    ]
    record_decision(home, mentions[0], mentions[1], same=True, reason="same passport", who="dora")
    publish(home)
    with Session(home, "alice") as s:
        doc = s.file(eid)
    assert doc["golden"]["sex"] == new_sex
    assert doc["lineage"]["sex"] == {
        "source": "correction",
        "record": f"correction #{c.correction_id}",
    }
    assert [(x["who"], x["reason"], x["applied"]) for x in doc["corrections"]] == [
        ("carol", "registry letter of 2024-03-01", True)
    ]
    assert [(d["who"], d["kind"]) for d in doc["decisions"]] == [("dora", "must_link")]


# -- search by example ----------------------------------------------------------------------------


def test_example_scores_agree_with_splink(home: Home) -> None:
    """The weight of two mentions' features is Splink's weight of that pair, as kept in
    the link evidence (same model, same levels, same term frequencies)."""
    con = connect(home)
    try:
        for etype in ("person", "business"):
            edges = con.execute(
                "SELECT mention_id_l, mention_id_r, match_weight FROM link_evidence "
                "WHERE entity_type = ? AND decided_by = 'model' ORDER BY match_weight, "
                "mention_id_l LIMIT 40",
                [etype],
            ).fetchall()
            assert edges
            cols = list(matching.FEATURES[etype])
            for left, right, weight in edges:
                q = con.sql(
                    f"SELECT * FROM {matching.TABLES[etype]} WHERE mention_id = ?", params=[right]
                ).pl()
                q = q.with_columns(pl.lit("").alias("role")).select(cols)
                got = matching.score_features(con, etype, q, mention_ids=[left])
                assert got[0]["match_weight"] == pytest.approx(weight, abs=1e-6), (left, right)
    finally:
        con.close()


def test_search_by_example_finds_the_person(home: Home, person: dict) -> None:
    masked = person["id_number"][:6] + "********" + person["id_number"][-4:]
    with Session(home, "alice") as s:
        for example in (
            {"name": person["name_native"], "dob": str(person["dob"])},
            {"id_number": masked, "sex": person["sex"], "dob": str(person["dob"])},
            {"phone": person["phone"]},
        ):
            hits = s.search_example(example)
            assert hits[0]["entity_id"] == person["entity_id"], (example, hits[:2])
            assert hits[0]["score"] > 0.9 and hits[0]["reason"].startswith("agrees:")
        with pytest.raises(matching.ExampleError, match="unknown field"):
            s.search_example({"religion": "x"})


# -- injection -----------------------------------------------------------------------------------

_FRAGMENTS = [
    "'",
    '"',
    "; DROP TABLE entities; --",
    "%",
    "_",
    "\\",
    "' OR 1=1 --",
    "1",
    "张",
    ")",
    "*",
]
_INJECTION = st.one_of(
    st.lists(st.sampled_from(_FRAGMENTS), min_size=1, max_size=4).map("".join),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12),
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    value=_INJECTION,
    field=st.sampled_from(
        [
            "query",
            "sex",
            *matching.EXAMPLE_FIELDS["person"],
            "b_name",
            "b_uscc",
            "b_legal_rep",
            "b_city",
        ]
    ),
)
def test_injection_in_every_search_field(home: Home, value: str, field: str) -> None:
    n, size = _q(home, "SELECT count(*) FROM entities")[0][0], home.warehouse.stat().st_size
    with Session(home, "alice") as s:
        if field == "query":
            for kind in (*KINDS, None):
                hits = s.search(value, kind=kind)
                if kind not in ("name", None):
                    assert hits == [], (kind, value)  # no identifier is made of these
        elif field == "sex":
            assert s.search("张伟", sex=value) == s.search("张伟", sex=value)
            assert all(h["sex"] in (None, value) for h in s.search("张伟", sex=value))
        else:
            etype = "business" if field.startswith("b_") else "person"
            try:
                hits = s.search_example({field.removeprefix("b_"): value}, entity_type=etype)
            except matching.ExampleError:
                hits = []  # refused as unparsable: a clean answer
            for h in hits:
                assert 0.0 <= h["score"] <= 1.0 and h["reason"]
    assert _q(home, "SELECT count(*) FROM entities")[0][0] == n
    assert home.warehouse.stat().st_size == size
