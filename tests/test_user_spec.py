"""A user brings a table no one here wrote, described by a TOML SourceSpec."""

from __future__ import annotations

import json

import polars as pl
import pytest

from connectors.catalog import load_specs
from connectors.ingest import ingest
from connectors.lake import mentions, quarantine, records
from connectors.spec import SpecError, load_toml
from tessera.config import Home

SPEC = """
id = "library_members"
title = "City library members"
domain = "external"
entity = "person"
cadence = "snapshot"
fact_type = "library_membership"

[format]
kind = "delimited"
delimiter = "^"
encoding = "gb18030"

[[columns]]
name = "读者证号"
field = "key"

[[columns]]
name = "Reader"
field = "name"
rule = "name:pinyin_western"

[[columns]]
name = "Mobile"
field = "phone"
rule = "phone:dashed"

[[columns]]
name = "Born"
field = "dob"
rule = "date:dmy"

[[columns]]
name = "Branch"
field = "fact:branch"
"""

ROWS = [
    "读者证号^Reader^Mobile^Born^Branch^Notes",
    "LIB001^Wei Zhang^138-1234-5678^03/05/1990^东城分馆^借阅频繁",
    "LIB002^Nana Ouyang^139-0000-1111^28/02/1985^西城分馆^",
    "LIB003^Xiaoming Li^137-2222-3333^31/02/1985^西城分馆^",  # impossible date -> quarantine
]


@pytest.fixture
def user_home(tmp_path) -> Home:
    home = Home(tmp_path).ensure()
    (home.sources_dir / "library.toml").write_text(SPEC, encoding="utf-8")
    day = home.landing / "library_members" / "2026-01-05"
    day.mkdir(parents=True)
    (day / "members.txt").write_bytes(("\n".join(ROWS) + "\n").encode("gb18030"))
    return home


def test_user_toml_spec_is_ingested(user_home: Home) -> None:
    specs = [s for s in load_specs(user_home.sources_dir) if s.id == "library_members"]
    assert len(specs) == 1
    report = ingest(user_home, specs)
    (f,) = report.files
    assert (f.rows_read, f.rows_staged, f.rows_quarantined) == (3, 2, 1)
    m = mentions(user_home).sort("name_latin").collect()
    assert m["name_latin"].to_list() == ["ou yang na na", "zhang wei"]
    assert m["phone"].to_list() == ["+8613900001111", "+8613812345678"]
    # The undeclared column is kept as an attribute of the mention, not thrown away.
    assert "借阅频繁" in (m.filter(pl.col("name_latin") == "zhang wei")["attributes"][0] or "")
    r = records(user_home).collect()
    assert set(r["fact_type"]) == {"library_membership"}
    q = quarantine(user_home).collect()
    assert q.height == 1 and "Born" in q["reason"][0] and q["line"][0] == 4


def test_bad_toml_spec_names_the_file_and_problem(tmp_path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(SPEC.replace('field = "dob"', 'field = "religion"'), encoding="utf-8")
    with pytest.raises(SpecError, match=r"bad\.toml.*religion"):
        load_toml(bad)


def test_user_spec_cannot_shadow_a_builtin(tmp_path) -> None:
    home = Home(tmp_path).ensure()
    (home.sources_dir / "x.toml").write_text(
        SPEC.replace("library_members", "rail_tickets"), encoding="utf-8"
    )
    with pytest.raises(SpecError, match="clashes"):
        load_specs(home.sources_dir)


def test_attribute_columns_without_undeclared_columns(tmp_path) -> None:
    """A spec with attr: columns on a file that carries nothing undeclared (regression)."""
    home = Home(tmp_path).ensure()
    spec = SPEC.replace('field = "fact:branch"', 'field = "attr:branch"')
    (home.sources_dir / "library.toml").write_text(spec, encoding="utf-8")
    day = home.landing / "library_members" / "2026-01-05"
    day.mkdir(parents=True)
    rows = [r.rsplit("^", 1)[0] for r in ROWS[:3]]  # drop the undeclared Notes column
    (day / "members.txt").write_bytes(("\n".join(rows) + "\n").encode("gb18030"))
    specs = [s for s in load_specs(home.sources_dir) if s.id == "library_members"]
    report = ingest(home, specs)
    assert report.totals()["staged"] == 2
    m = mentions(home).sort("name_latin").collect()
    assert [json.loads(a)["branch"] for a in m["attributes"]] == ["西城分馆", "东城分馆"]
