"""Explanations: every edge that holds a multi-mention entity together has an
evidence row whose contributions add up (in log2) to its match weight."""

from __future__ import annotations

import json

import polars as pl
import pytest
from linked_world import copy_of_linked_world

from linkage.explain import why
from tessera.config import Home


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    return copy_of_linked_world(tmp_path_factory, "explain")


@pytest.mark.parametrize("etype", ["person", "business"])
def test_every_kept_edge_has_evidence(home: Home, etype: str) -> None:
    d = home.lake / "linkage"
    ent = pl.read_parquet(d / f"{etype}_entities.parquet")
    edges = pl.read_parquet(d / f"{etype}_edges.parquet")
    ev = pl.read_parquet(d / f"{etype}_evidence.parquet")
    kept = (
        edges.join(ent.rename({"mention_id": "mention_id_l"}), on="mention_id_l")
        .join(ent.rename({"mention_id": "mention_id_r", "entity_id": "e_r"}), on="mention_id_r")
        .filter(pl.col("entity_id") == pl.col("e_r"))
    )
    key = ["mention_id_l", "mention_id_r", "entity_id"]
    assert kept.height > 0
    assert (
        kept.select(key)
        .sort(key)
        .equals(ev.filter(pl.col("source") == "model").select(key).sort(key))
    )
    # Every multi-mention entity is held together: at least size - 1 edges.
    sizes = ent.group_by("entity_id").len().filter(pl.col("len") > 1)
    n = ev.group_by("entity_id").len().rename({"len": "edges"})
    assert (
        sizes.join(n, on="entity_id", how="left")
        .filter(pl.col("edges").fill_null(0) < pl.col("len") - 1)
        .height
        == 0
    )


@pytest.mark.parametrize("etype", ["person", "business"])
def test_contributions_add_up_to_the_match_weight(home: Home, etype: str) -> None:
    ev = pl.read_parquet(home.lake / "linkage" / f"{etype}_evidence.parquet").filter(
        pl.col("source") == "model"
    )
    bf = [c for c in ev.columns if c.endswith("_log2_bf")]
    levels = [c for c in ev.columns if c.endswith("_level")]
    assert len(bf) == len(levels) >= 4
    total = ev.select(pl.col("prior_log2") + pl.sum_horizontal(bf) - pl.col("match_weight"))
    assert total.to_series().abs().max() < 1e-6
    assert ev.select(pl.col(levels).null_count()).sum_horizontal().item() == 0


def test_why_lists_an_entitys_pairs(home: Home, capsys: pytest.CaptureFixture[str]) -> None:
    from tessera.cli import main

    ev = pl.read_parquet(home.lake / "linkage" / "person_evidence.parquet")
    eid = (
        ev.group_by("entity_id")
        .len()
        .sort("len", "entity_id", descending=[True, False])["entity_id"][0]
    )
    pairs = why(home, eid)
    assert len(pairs) == ev.filter(pl.col("entity_id") == eid).height
    for p in pairs:
        s = p["prior_log2"] + sum(c["log2_bf"] for c in p["contributions"])
        assert s == pytest.approx(p["match_weight"], abs=1e-6)
        assert {c["comparison"] for c in p["contributions"]} >= {"id", "name", "dob", "phone"}
    assert main(["why", eid, "--json", "--home", str(home.root)]) == 0
    assert len(json.loads(capsys.readouterr().out)) == len(pairs)
    assert why(home, "E000000000000") == []
