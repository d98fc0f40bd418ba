"""Stable entity IDs: kept by mention overlap from run to run, new ones derived
deterministically, every split / merge / new / retired ID recorded."""

from __future__ import annotations

import polars as pl
import pytest
from linked_world import LINKED, copy_of_linked_world

from linkage.decisions import id_events
from linkage.stable_ids import assign_entity_ids, derive_id
from tessera.config import Home


def _clusters(groups: list[list[str]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "mention_id": [m for g in groups for m in g],
            "cluster_id": [g[0] for g in groups for _ in g],
        }
    )


def _kinds(events: pl.DataFrame) -> list[tuple[str, list[str], list[str]]]:
    return sorted((r["kind"], r["old_ids"], r["new_ids"]) for r in events.iter_rows(named=True))


def test_first_run_is_deterministic_and_all_new() -> None:
    c = _clusters([["m1", "m2"], ["m3"]])
    a, b = assign_entity_ids("person", c, None), assign_entity_ids("person", c, None)
    assert a.entities.equals(b.entities)
    assert set(a.entities["entity_id"]) == {derive_id("person", "m1"), derive_id("person", "m3")}
    assert [k for k, _, _ in _kinds(a.events)] == ["new", "new"]


def test_rerun_keeps_ids_and_records_nothing() -> None:
    c = _clusters([["m1", "m2"], ["m3"]])
    first = assign_entity_ids("person", c, None)
    # Cluster IDs of the new run do not matter, only the mentions.
    again = assign_entity_ids("person", c.with_columns(pl.col("cluster_id") + "x"), first.entities)
    assert again.entities.equals(first.entities) and again.events.height == 0


def test_split_merge_and_retire_are_recorded() -> None:
    prev = assign_entity_ids("person", _clusters([["m1", "m2", "m3"], ["m4"], ["m5"]]), None)
    old = dict(zip(prev.entities["mention_id"], prev.entities["entity_id"], strict=True))
    # m1..m3 split into {m1, m2} and {m3}; m4 and m5 merge; m6 is new.
    nxt = assign_entity_ids(
        "person", _clusters([["m1", "m2"], ["m3"], ["m4", "m5"], ["m6"]]), prev.entities
    )
    new = dict(zip(nxt.entities["mention_id"], nxt.entities["entity_id"], strict=True))
    assert new["m1"] == new["m2"] == old["m1"], "the larger part keeps the ID"
    assert new["m3"] not in old.values()
    assert new["m4"] == new["m5"] == min(old["m4"], old["m5"]), "ties go to the smaller old ID"
    retired = max(old["m4"], old["m5"])
    kinds = _kinds(nxt.events)
    assert ("split", [old["m1"]], sorted([old["m1"], new["m3"]])) in kinds
    assert ("merge", sorted([old["m4"], old["m5"]]), [new["m4"]]) in kinds
    assert ("retired", [retired], [new["m4"]]) in kinds
    assert ("new", [], [new["m6"]]) in kinds
    # A retired ID is never issued again, even when its anchor mention comes back alone.
    back = assign_entity_ids(
        "person",
        _clusters([["m1", "m2"], ["m3"], ["m4"], ["m5"], ["m6"]]),
        nxt.entities,
        issued_before=set(old.values()) | set(new.values()),
    )
    fresh = set(back.entities["entity_id"]) - set(new.values())
    assert len(fresh) == 1 and not fresh & set(old.values())
    # The history asked for the IDs in question only (an increment on a large world):
    # the same IDs, the salted one checked too.
    ever = set(old.values()) | set(new.values())
    asked: list[list[str]] = []

    def issued(ids: list[str]) -> set[str]:
        asked.append(ids)
        return ever & set(ids)

    again = assign_entity_ids(
        "person",
        _clusters([["m1", "m2"], ["m3"], ["m4"], ["m5"], ["m6"]]),
        nxt.entities,
        issued_before=issued,
    )
    assert again.entities.equals(back.entities)
    assert len(asked) >= 2 and all(len(a) == 1 for a in asked[1:])


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    return copy_of_linked_world(tmp_path_factory, "stable_ids")


def _map(home: Home) -> dict[str, str]:
    e = pl.read_parquet(home.lake / "linkage" / "person_entities.parquet")
    return dict(zip(e["mention_id"], e["entity_id"], strict=True))


def test_ids_survive_a_rerun_and_a_new_day(home: Home) -> None:
    from connectors.catalog import load_specs
    from connectors.ingest import ingest
    from linkage.report import link_all
    from simulation.run import simulate
    from simulation.world import WorldConfig

    before = _map(home)
    n_events = id_events(home, "person").height
    out = link_all(home)
    assert _map(home) == before, "identical input → identical IDs"
    assert (
        id_events(home, "person").height == n_events and out["person"]["entity_ids"]["issued"] == 0
    )

    days = LINKED["days"]
    simulate(home, WorldConfig(**{**LINKED, "days": days + 1}), days=range(days, days + 1))
    ingest(home, load_specs(home.sources_dir))
    link_all(home)
    after = _map(home)
    assert set(before) <= set(after) and len(after) > len(before), "a day adds mentions"
    old_ids, new_ids = set(before.values()), set(after.values())
    assert len(old_ids & new_ids) / len(old_ids) >= 0.99
    ev = id_events(home, "person").slice(n_events)
    recorded_old = {i for ids in ev["old_ids"] for i in ids}
    recorded_new = {i for ids in ev["new_ids"] for i in ids}
    assert old_ids - new_ids <= recorded_old, "every ID that went is recorded"
    assert new_ids - old_ids <= recorded_new, "every ID that came is recorded"
    # An old mention that changed entity was in a split or merge.
    moved = {before[m] for m in before if after[m] != before[m]}
    assert moved <= recorded_old


def test_issued_ids_among_equals_the_whole_history_narrowed(tmp_path) -> None:
    """``issued_ids`` with ``among`` is the whole history's IDs of that type that are
    in ``among`` (old and new sides of every event; other types and unknown IDs out)."""
    from linkage.decisions import issued_ids, record_id_events

    home = Home(tmp_path).ensure()
    events = pl.DataFrame(
        {
            "kind": ["new", "merge", "split", "new"],
            "old_ids": [[], ["E1", "E2"], ["E3"], []],
            "new_ids": [["E1"], ["E4"], ["E5", "E6"], ["E1"]],
            "mentions": [1, 2, 3, 1],
            "reason": ["r"] * 4,
        },
        schema_overrides={"old_ids": pl.List(pl.String), "new_ids": pl.List(pl.String)},
    )
    record_id_events(home, "person", events)
    record_id_events(home, "business", events.head(1).with_columns(new_ids=pl.lit(["B9"])))
    whole = issued_ids(home, "person")
    assert whole == {"E1", "E2", "E3", "E4", "E5", "E6"}
    among = pl.Series(["E2", "E6", "E6", "B9", "nope", None])
    assert issued_ids(home, "person", among) == {"E2", "E6"}
    assert issued_ids(home, "business", among) == {"B9"}
    assert issued_ids(home, "person", pl.Series([], dtype=pl.String)) == set()
