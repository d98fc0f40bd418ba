"""Human decisions: append-only store, must-link / cannot-link honoured by every run
(including through transitive chains), the later-wins conflict rule, the review
queue and the CLI round trip, on a small linked world."""

from __future__ import annotations

import json

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from linked_world import copy_of_linked_world

import linkage.decisions as dec
from tessera.config import Home


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    return copy_of_linked_world(tmp_path_factory, "decisions")


@pytest.fixture(scope="module")
def base(home: Home):
    """The model's person clusters and edges (before decisions) and the guard keys."""
    from linkage.report import duplicate_free_keys
    from linkage.run import link

    res = link(home, entity_type="person")
    return res.clusters, res.edges, duplicate_free_keys(home, "person")


def _entities(home: Home) -> pl.DataFrame:
    return pl.read_parquet(home.lake / "linkage" / "person_entities.parquet")


def _chain(clusters: pl.DataFrame, edges: pl.DataFrame) -> tuple[str, str]:
    """Two mentions of one cluster that no edge joins directly (a transitive link)."""
    e = edges.join(clusters.rename({"mention_id": "mention_id_l"}), on="mention_id_l")
    big = clusters.group_by("cluster_id").len().filter(pl.col("len") >= 4).sort("cluster_id")
    direct = set(zip(e["mention_id_l"].to_list(), e["mention_id_r"].to_list(), strict=True))
    for cid in big["cluster_id"].to_list():
        ms = sorted(clusters.filter(pl.col("cluster_id") == cid)["mention_id"].to_list())
        for i, a in enumerate(ms):
            for b in ms[i + 1 :]:
                if (a, b) not in direct and (b, a) not in direct:
                    return a, b
    raise AssertionError("no transitive pair in this world")


def _reset(home: Home) -> None:
    home.decisions.unlink(missing_ok=True)


def _apply(home: Home, base) -> pl.DataFrame:
    clusters, edges, guard = base
    out, _ = dec.apply_decisions(clusters, edges, dec.active_decisions(home, "person"), guard)
    return out


def test_store_is_append_only_and_latest_wins(home: Home) -> None:
    _reset(home)
    a, b = sorted(_entities(home)["mention_id"].to_list())[:2]
    first = dec.record_decision(home, a, b, same=True, reason="same ID card", who="ana")
    second = dec.record_decision(home, b, a, same=False, reason="twins, checked", who="bo")
    assert second.decision_id > first.decision_id
    # No way to change or remove a decision: the module only inserts.
    assert not [n for n in dir(dec) if n.startswith(("update", "delete", "remove", "edit"))]
    hist = dec.history(home)
    assert [(d.kind, d.who) for d in hist] == [("must_link", "ana"), ("cannot_link", "bo")]
    act = dec.active_decisions(home, "person")
    assert set(act["decision_id"].to_list()) == {second.decision_id}
    assert set(act["kind"].to_list()) == {"cannot_link"}


def test_decisions_are_validated(home: Home) -> None:
    _reset(home)
    m = _entities(home)["mention_id"][0]
    biz = pl.read_parquet(home.lake / "linkage" / "business_entities.parquet")["mention_id"][0]
    with pytest.raises(dec.DecisionError, match="no mention"):
        dec.record_decision(home, m, "Mdoesnotexist", same=True, reason="x")
    with pytest.raises(dec.DecisionError, match="no entity"):
        dec.record_decision(home, m, "E000000000000", same=True, reason="x")
    with pytest.raises(dec.DecisionError, match="business"):
        dec.record_decision(home, m, biz, same=True, reason="x")
    with pytest.raises(dec.DecisionError, match="reason"):
        dec.record_decision(home, m, biz, same=True, reason="  ")
    assert dec.history(home) == []


def test_cannot_link_splits_a_transitive_chain(home: Home, base) -> None:
    _reset(home)
    clusters, edges, guard = base
    a, b = _chain(clusters, edges)
    d = dec.record_decision(home, a, b, same=False, reason="different people", who="t")
    out, rep = dec.apply_decisions(clusters, edges, dec.active_decisions(home, "person"), guard)
    cid = dict(zip(out["mention_id"].to_list(), out["cluster_id"].to_list(), strict=True))
    assert cid[a] != cid[b]
    assert rep.cannot_split_clusters == 1 and rep.refused_edges >= 1
    # Only the offending cluster changed; every mention is still in exactly one cluster.
    assert out["mention_id"].is_unique().all() and out.height == clusters.height
    before = clusters.filter(
        pl.col("cluster_id") != clusters.filter(pl.col("mention_id") == a)["cluster_id"][0]
    )
    assert before.join(out, on=["mention_id", "cluster_id"]).height == before.height
    assert d.decision_id in dec.active_decisions(home, "person")["decision_id"].to_list()


def test_conflict_the_later_decision_wins(home: Home, base) -> None:
    _reset(home)
    clusters, edges, guard = base
    ents = clusters.group_by("cluster_id").agg(pl.col("mention_id").min()).sort("mention_id")
    a, b, c = ents["mention_id"].to_list()[:3]
    dec.record_decision(home, a, b, same=False, reason="old belief", who="t")
    dec.record_decision(home, a, c, same=True, reason="new evidence", who="t")
    dec.record_decision(home, b, c, same=True, reason="new evidence", who="t")
    out, rep = dec.apply_decisions(clusters, edges, dec.active_decisions(home, "person"), guard)
    cid = dict(zip(out["mention_id"].to_list(), out["cluster_id"].to_list(), strict=True))
    assert cid[a] == cid[b] == cid[c]
    assert any("overrides the earlier cannot-link #1" in x for x in rep.conflicts)
    # And the other way round: a newer cannot-link beats older must-links.
    _reset(home)
    dec.record_decision(home, a, c, same=True, reason="old", who="t")
    dec.record_decision(home, b, c, same=True, reason="old", who="t")
    dec.record_decision(home, a, b, same=False, reason="newer", who="t")
    out, rep = dec.apply_decisions(clusters, edges, dec.active_decisions(home, "person"), guard)
    cid = dict(zip(out["mention_id"].to_list(), out["cluster_id"].to_list(), strict=True))
    assert cid[a] != cid[b]
    assert any("cannot-link #3 overrides the earlier must-link" in x for x in rep.conflicts)


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_random_decisions_hold(home: Home, base, data: st.DataObject) -> None:
    """Consistent random decisions (mentions labelled into groups: must-link within a
    group, cannot-link across) all hold after applying them to the model's clusters."""
    _reset(home)
    clusters = base[0]
    multi = (
        clusters.filter(pl.len().over("cluster_id") > 1).sort("mention_id")["mention_id"].to_list()
    )
    picked = data.draw(st.lists(st.sampled_from(multi), min_size=2, max_size=6, unique=True))
    labels = data.draw(st.lists(st.integers(0, 2), min_size=len(picked), max_size=len(picked)))
    must, cannot = [], []
    for i, a in enumerate(picked):
        for j in range(i + 1, len(picked)):
            if data.draw(st.booleans()):
                b = picked[j]
                same = labels[i] == labels[j]
                dec.record_decision(home, a, b, same=same, reason="hypothesis", who="h")
                (must if same else cannot).append((a, b))
    out = _apply(home, base)
    cid = dict(zip(out["mention_id"].to_list(), out["cluster_id"].to_list(), strict=True))
    assert all(cid[a] == cid[b] for a, b in must)
    assert all(cid[a] != cid[b] for a, b in cannot)
    assert out.height == clusters.height and out["mention_id"].is_unique().all()


def test_decide_review_and_full_rerun_via_cli(
    home: Home, base, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI records decisions on entity and mention IDs; a full ``tessera link``
    honours them; the review queue lists pairs with evidence and drops decided ones."""
    from tessera.cli import main

    _reset(home)
    h = str(home.root)
    clusters, edges, _ = base
    ents = _entities(home)
    two = ents.group_by("entity_id").agg(pl.col("mention_id").sort()).sort("entity_id")
    e1, e2 = two["entity_id"].to_list()[:2]
    a, b = _chain(clusters, edges)

    assert (
        main(
            [
                "decide",
                e1,
                e2,
                "--same",
                "--reason",
                "same passport",
                "--who",
                "qa",
                "--home",
                h,
                "--json",
            ]
        )
        == 0
    )
    d1 = json.loads(capsys.readouterr().out)
    assert d1["kind"] == "must_link" and d1["who"] == "qa" and d1["mentions_a"]
    assert main(["decide", a, b, "--different", "--reason", "father and son", "--home", h]) == 0
    capsys.readouterr()
    assert main(["decide", a, "Mnope", "--same", "--reason", "x", "--home", h]) == 2

    assert main(["review", "--json", "--limit", "200", "--home", h]) == 0
    queue = json.loads(capsys.readouterr().out)
    assert queue and {"kind", "left", "right", "match_weight"} <= set(queue[0])
    assert all(q["left"]["mention_id"] == q["mention_id_l"] for q in queue)
    assert not any({q["mention_id_l"], q["mention_id_r"]} == {a, b} for q in queue)

    assert main(["link", "--json", "--home", h]) == 0
    linked = json.loads(capsys.readouterr().out)["link"]["person"]
    assert linked["decisions"]["must_link"] == 1 and linked["decisions"]["cannot_link"] == 1
    after = dict(
        zip(*(_entities(home)[c].to_list() for c in ("mention_id", "entity_id")), strict=True)
    )
    m1 = set(two["mention_id"][0]) | set(two["mention_id"][1])
    assert len({after[m] for m in m1}) == 1, "must-linked entities are one"
    assert after[a] != after[b], "cannot-linked mentions are apart"
