"""The synthetic world: valid identifiers, realistic names, no special categories, determinism."""

from __future__ import annotations

import hashlib
from pathlib import Path

import polars as pl
import pytest
from stdnum.cn import ric, uscc

from simulation.world import WorldConfig, generate_world


@pytest.fixture(scope="module")
def world():
    return generate_world(WorldConfig(persons=5000, seed=3))


def test_resident_ids_are_valid_and_consistent(world) -> None:
    p = world.persons
    assert p["id_number"].n_unique() == p.height
    assert all(ric.is_valid(x) for x in p["id_number"])
    # The ID embeds the birth date, the birth region and (17th digit) the sex.
    assert (p["id_number"].str.slice(6, 8) == p["dob"].dt.strftime("%Y%m%d")).all()
    assert (p["id_number"].str.slice(0, 6) == p["birth_code"]).all()
    odd = p["id_number"].str.slice(16, 1).cast(pl.Int32) % 2 == 1
    assert (odd == (p["sex"] == "M")).all()


def test_business_codes_are_valid_and_reps_exist(world) -> None:
    b = world.businesses
    assert b.height == 500
    assert all(uscc.is_valid(x) for x in b["uscc"])
    assert b["uscc"].n_unique() == b.height
    assert b["legal_rep"].is_in(world.persons["person_id"].implode()).all()


def test_common_names_are_shared(world) -> None:
    names = world.persons.group_by("surname_native", "given_native").len()
    # Realistic frequency: some full names are held by several people, surnames are skewed.
    assert names["len"].max() >= 4
    top = world.persons["surname_native"].value_counts().sort("count", descending=True)
    assert set(top["surname_native"].head(5)) & {"王", "李", "张", "刘", "陈"}


def test_pinyin_matches_hanzi(world) -> None:
    row = world.persons.filter(pl.col("surname_native") == "张").row(0, named=True)
    assert row["surname_latin"] == "zhang"
    assert all(
        " " not in s or s.replace(" ", "").isalpha() for s in world.persons["given_latin"].head(100)
    )


def test_no_special_category_data(world) -> None:
    banned = {
        "ethnicity",
        "nation",
        "minzu",
        "religion",
        "politics",
        "party",
        "health",
        "blood",
        "biometric",
    }
    for frame in (world.persons, world.businesses, world.cases, world.list_entries):
        assert not {c.lower() for c in frame.columns} & banned


def test_list_entries_expire_after_they_start(world) -> None:
    le = world.list_entries
    assert le.height > 0
    assert (le["expiry_date"] > le["start_date"]).all()
    assert set(le["list_type"]) == {
        "defaulter",
        "consumption_restriction",
        "flight_ban",
        "rail_ban",
    }


def test_same_seed_same_world_other_seed_other_world() -> None:
    a = generate_world(WorldConfig(persons=800, seed=5))
    b = generate_world(WorldConfig(persons=800, seed=5))
    c = generate_world(WorldConfig(persons=800, seed=6))
    assert a.persons.equals(b.persons) and a.businesses.equals(b.businesses)
    assert not a.persons.equals(c.persons)


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_simulation_is_byte_for_byte_deterministic(tmp_path: Path) -> None:
    from simulation.run import simulate
    from tessera.config import Home

    cfg = WorldConfig(persons=300, seed=9, days=2)
    simulate(Home(tmp_path / "a"), cfg)
    simulate(Home(tmp_path / "b"), cfg)
    a = _digest(tmp_path / "a")
    b = _digest(tmp_path / "b")
    assert len(a) > 40
    assert a == b
