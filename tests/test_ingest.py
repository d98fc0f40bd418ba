"""Ingest: every row accounted for, faults (and only faults) quarantined, idempotent reruns."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import polars as pl
import pytest

from connectors.catalog import load_specs
from connectors.ingest import Ledger, ingest
from connectors.lake import mentions, quarantine, records
from simulation.run import load_faults
from tessera.config import Home

FAULT_REASONS = {
    "malformed_rows": ("fields, expected", "invalid JSON", "XML", "fixed-width line"),
    "truncated": ("fields, expected", "invalid JSON", "XML", "fixed-width line", "truncated"),
    "wrong_encoding": ("not valid utf-8",),
    "duplicate_delivery": ("duplicate delivery",),
    "schema_change": ("schema drift",),
}


def test_every_file_accounts_for_every_row(ingested_home) -> None:
    home, report = ingested_home
    assert len(report.files) >= 90
    for f in report.files:
        assert f.rows_read == f.rows_staged + f.rows_quarantined, f
    totals = report.totals()
    assert totals["read"] == totals["staged"] + totals["quarantined"]
    staged_rows = records(home).select(pl.len()).collect().item()
    assert staged_rows == totals["staged"]


def test_faults_and_only_faults_are_quarantined(ingested_home) -> None:
    home, _ = ingested_home
    faults = load_faults(home)
    assert {f.kind for f in faults} >= set(FAULT_REASONS)
    q = quarantine(home).collect()
    by_file = {f: set(g["reason"]) for (f,), g in q.group_by("file")}
    fault_files = {f.file: f.kind for f in faults}
    assert set(by_file) == set(fault_files), "quarantine holds exactly the faulty deliveries"
    for file, kind in fault_files.items():
        assert any(any(frag in r for frag in FAULT_REASONS[kind]) for r in by_file[file]), (
            file,
            by_file[file],
        )


def test_quarantine_rows_keep_file_line_and_raw_text(ingested_home) -> None:
    home, _ = ingested_home
    q = quarantine(home).collect()
    row_level = q.filter(pl.col("line").is_not_null())
    assert row_level.height > 0
    assert row_level["raw"].str.len_chars().min() > 0
    assert q["reason"].null_count() == 0


def test_rerun_changes_nothing(fresh_copy: Home) -> None:
    specs = load_specs(fresh_copy.sources_dir)
    first = ingest(fresh_copy, specs)
    lake_before = _digest(fresh_copy.lake)
    second = ingest(fresh_copy, specs)
    assert second.files and all(f.status == "skipped" for f in second.files)
    assert second.totals()["staged"] == 0
    assert _digest(fresh_copy.lake) == lake_before
    assert first.totals()["read"] > 0


def test_interrupted_stage_is_finished_by_the_next_run(fresh_copy: Home) -> None:
    """Land everything, stage nothing (as if killed between the steps): the rerun stages it all once."""
    from connectors.ingest import land

    specs = [s for s in load_specs(fresh_copy.sources_dir) if s.database is None]
    ledger = Ledger(fresh_copy.state / "ledger.jsonl")
    landed = sum(r.rows_read for s in specs for r in land(fresh_copy, s, ledger))
    report = ingest(fresh_copy, specs)
    assert report.totals()["read"] == landed
    assert report.totals()["read"] == report.totals()["staged"] + report.totals()["quarantined"]


def test_mentions_collapse_repeated_identities(ingested_home) -> None:
    home, _ = ingested_home
    rec = records(home).collect()
    m = mentions(home).collect()
    assert m["mention_id"].n_unique() == m.height
    assert set(rec["mention_id"]) <= set(m["mention_id"])
    # Event sources repeat people: fewer mentions than records there.
    ev = rec.filter(pl.col("source_id") == "mobile_payments")
    assert ev["mention_id"].n_unique() < ev.height


def test_lineage_leads_back_to_the_raw_row(ingested_home) -> None:
    home, _ = ingested_home
    rec = records(home).filter(pl.col("source_id") == "rail_tickets").collect()
    one = rec.row(0, named=True)
    raw = pl.read_parquet(
        home.lake
        / "raw"
        / "rail_tickets"
        / str(one["delivered"])
        / (Path(one["file"]).name.rsplit(".", 1)[0] + ".parquet")
    )
    row = raw.filter(pl.col("_line") == one["line"]).row(0, named=True)
    assert row["票号"] == one["record_key"]
    assert row["_file"] == one["file"]


def test_staged_values_are_canonical(ingested_home) -> None:
    home, _ = ingested_home
    m = mentions(home).collect()
    persons = m.filter(pl.col("entity_type") == "person")
    assert persons["phone"].drop_nulls().str.contains(r"^\+861\d{10}$").all()
    assert persons["sex"].drop_nulls().is_in(["M", "F"]).all()
    assert persons["id_number"].drop_nulls().str.len_chars().eq(18).all()
    assert persons["name_latin"].drop_nulls().str.contains(r"^[a-z]+( [a-z]+)*$").all()
    biz = m.filter(pl.col("entity_type") == "business")
    assert biz.height > 0 and biz["uscc"].drop_nulls().str.len_chars().eq(18).all()
    # Related mentions (legal representatives, employers) are staged with their role.
    assert {"legal_rep", "employer"} <= set(m["role"])


def test_ingest_never_needs_the_truth(fresh_copy: Home) -> None:
    shutil.rmtree(fresh_copy.truth)
    report = ingest(fresh_copy, load_specs(fresh_copy.sources_dir))
    assert report.totals()["staged"] > 0


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_quarantine_equals_the_fault_log_for_other_seeds(tmp_path, seed: int) -> None:
    from simulation.run import simulate
    from simulation.world import WorldConfig

    home = Home(tmp_path / "h")
    simulate(home, WorldConfig(persons=500, seed=seed, days=3))
    report = ingest(home, load_specs(home.sources_dir))
    faults = load_faults(home)
    assert len(faults) == 6
    assert set(quarantine(home).collect()["file"]) == {f.file for f in faults}
    assert report.totals()["read"] == report.totals()["staged"] + report.totals()["quarantined"]


def test_a_failing_source_does_not_stop_the_others(fresh_copy: Home, monkeypatch) -> None:
    """A database server that is down fails its source with a clear error; the rest ingest."""
    monkeypatch.setenv("TESSERA_PG_URL", "postgresql://postgres@127.0.0.1:1/postgres")
    specs = load_specs(fresh_copy.sources_dir)
    report = ingest(fresh_copy, specs)
    pg = {s.id for s in specs if s.engine == "postgres"}
    assert set(report.failures) == pg
    assert all(sid in err for sid, err in report.failures.items())
    done = {f.source_id for f in report.files}
    assert not done & pg
    assert {s.id for s in specs if s.engine != "postgres"} <= done
    # Nothing of the failed sources was written, and their cursors did not move.
    for sid in pg:
        assert not (fresh_copy.lake / "raw" / sid).exists()
        assert not (fresh_copy.state / "cursors" / f"{sid}.json").exists()
