"""What a day's ingest reads does not grow with the history, and means the same: the
ledger parsed once and brought up to date, the per-source running statistics equal
to a count from scratch (and recounted when stale), the source checks still failing
when the lake is wrong, and landed files not hashed again while unchanged."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import polars as pl
import pytest

from connectors import checks
from connectors.catalog import load_specs
from connectors.ingest import FileReport, ingest, lake_paths, land
from connectors.lake_stats import VALIDITY_FIELDS, validity_counts
from connectors.ledger import Ledger
from tessera.config import Home


def _from_scratch(path: Path) -> dict[str, dict]:
    """The ledger read line by line, latest entry per file."""
    out: dict[str, dict] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            e = json.loads(line)
            out[e["file"]] = e
    return out


def _history_counts(home: Home, source_id: str, day: str) -> tuple[dict, dict]:
    """(the day's, the earlier days') validity counts, read from every mention file
    of the source at once, as the check did before it kept statistics."""

    def counts(paths: list[Path]) -> dict:
        if not paths:
            return {f: (0, 0) for f in VALIDITY_FIELDS}
        return validity_counts(pl.scan_parquet(paths, missing_columns="insert"))

    files = sorted((home.lake / "staged" / source_id).glob("*/*.mentions.parquet"))
    return (
        counts([p for p in files if p.parent.name == day]),
        counts([p for p in files if p.parent.name < day]),
    )


@pytest.fixture
def ingested_copy(ingested_home, tmp_path: Path) -> Home:
    home = Home(tmp_path / "home")
    shutil.copytree(ingested_home[0].root, home.root)
    return home


# ---------------------------------------------------------------- ledger


def test_ledger_reads_only_what_was_appended_and_equals_a_full_read(ingested_copy) -> None:
    path = ingested_copy.state / "ledger.jsonl"
    first = Ledger(path)
    assert first.by_path == _from_scratch(path)
    # Another writer appends a line behind this process's back.
    extra = FileReport("rail_tickets", "landing/rail_tickets/x.csv", "2026-01-09", "landed", 3)
    writer = Ledger(path)
    writer.append(extra)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({**writer.by_path[extra.file], "status": "ingested"}) + "\n")
    again = Ledger(path)
    assert again.by_path == _from_scratch(path)
    assert again.by_path[extra.file]["status"] == "ingested"
    assert extra.file not in first.by_path, "an instance is a snapshot plus its own appends"
    by_source = {s: sorted(f) for s, f in again.by_source.items()}
    assert by_source == {
        s: sorted(f for f, e in again.by_path.items() if e["source_id"] == s)
        for s in {e["source_id"] for e in again.by_path.values()}
    }
    assert again.entries("rail_tickets", "2026-01-09") == [again.by_path[extra.file]]


def test_ledger_rewritten_in_place_is_read_again_from_the_start(ingested_copy) -> None:
    path = ingested_copy.state / "ledger.jsonl"
    Ledger(path)
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    # Same inode, longer than before, but different content before the old offset.
    changed = [json.dumps({**json.loads(lines[0]), "status": "skipped"}) + "\n", *lines[1:]]
    with path.open("r+", encoding="utf-8") as fh:
        fh.write("".join(changed + changed[:1]))
    assert Ledger(path).by_path == _from_scratch(path)
    path.write_text("".join(lines[:5]), encoding="utf-8")  # shorter
    assert Ledger(path).by_path == _from_scratch(path)
    path.unlink()
    assert Ledger(path).by_path == {}


# ---------------------------------------------------------------- running statistics


def test_statistics_equal_a_count_from_scratch_after_several_days(ingested_copy) -> None:
    home = ingested_copy
    specs = load_specs(home.sources_dir)
    book = Ledger(home.state / "ledger.jsonl")
    days_seen = set()
    for spec in specs:
        stored = json.loads((home.state / "lake_stats" / f"{spec.id}.json").read_text())["files"]
        for key, rec in stored.items():
            path = home.lake / key
            assert rec["rows"] == pl.scan_parquet(path).select(pl.len()).collect().item(), key
            if key.endswith(".mentions.parquet"):
                want = validity_counts(pl.scan_parquet(path))
                assert {f: tuple(v) for f, v in rec["validity"].items()} == want, key
        for day in {e["day"] for e in book.entries(spec.id) if e["status"] == "ingested"}:
            days_seen.add(day)
            today, before = _history_counts(home, spec.id, day)
            rates = checks.validity_rates(home, spec.id, day)
            for f, r in rates.items():
                assert r["values"] == sum(today[f]), (spec.id, day, f)
                assert r["history_values"] == sum(before[f]), (spec.id, day, f)
                if r["history_values"]:
                    assert r["history_rate"] == round(before[f][0] / sum(before[f]), 4)
    assert len(days_seen) >= 3


def test_statistics_are_rebuilt_when_missing_damaged_or_stale(ingested_copy) -> None:
    home = ingested_copy
    sid, day = "rail_tickets", "2026-01-03"
    stats_file = home.state / "lake_stats" / f"{sid}.json"
    want = checks.validity_rates(home, sid, day)
    want_acc = checks.file_accounting(home, sid)
    assert want and all(a["ok"] for a in want_acc)

    stats_file.unlink()
    assert checks.validity_rates(home, sid, day) == want
    assert checks.file_accounting(home, sid) == want_acc
    assert stats_file.exists(), "recounted statistics are written back"

    stats_file.write_text("{not json", encoding="utf-8")
    assert checks.validity_rates(home, sid, day) == want
    assert checks.file_accounting(home, sid) == want_acc
    stored = json.loads(stats_file.read_text())
    key = next(k for k in stored["files"] if k.endswith(".mentions.parquet"))
    stored["files"][key]["validity"] = {"id_number": "garbage"}
    stats_file.write_text(json.dumps(stored), encoding="utf-8")
    assert checks.validity_rates(home, sid, day) == want

    # A file changed since it was counted (size or time differ) is counted again.
    stored = json.loads(stats_file.read_text())
    key = next(k for k in stored["files"] if k.endswith(".records.parquet"))
    stored["files"][key]["rows"] += 1000
    stored["files"][key]["mtime_ns"] -= 1
    stats_file.write_text(json.dumps(stored), encoding="utf-8")
    assert checks.file_accounting(home, sid) == want_acc
    assert json.loads(stats_file.read_text())["files"][key]["rows"] == (
        pl.read_parquet(home.lake / key).height
    )


# ---------------------------------------------------------------- the checks still fail


def test_accounting_fails_when_a_staged_file_shrinks_or_vanishes(ingested_copy) -> None:
    home = ingested_copy
    sid = "rail_tickets"
    entry = next(e for e in checks.entries(home, sid) if e["status"] == "ingested")
    paths = lake_paths(home, sid, entry["day"], entry["detail"]["stem"])
    assert all(a["ok"] for a in checks.file_accounting(home, sid, entry["day"]))
    records = pl.read_parquet(paths["records"])
    records.head(records.height - 1).write_parquet(paths["records"])
    bad = [a for a in checks.file_accounting(home, sid, entry["day"]) if not a["ok"]]
    assert [a["file"] for a in bad] == [entry["file"]]
    assert bad[0]["staged"] == records.height - 1
    paths["records"].unlink()
    bad = [a for a in checks.file_accounting(home, sid, entry["day"]) if not a["ok"]]
    assert bad and bad[0]["staged"] == 0


def test_validity_check_fails_when_a_day_degrades(ingested_copy) -> None:
    home = ingested_copy
    sid, day = "mobile_payments", "2026-01-03"
    judge = checks.SourceThresholds(min_values=5)
    before = checks.validity_rates(home, sid, day, judge)["phone"]
    assert before["ok"] and before["rate"] > 0.1
    for p in (home.lake / "staged" / sid / day).glob("*.mentions.parquet"):
        m = pl.read_parquet(p)
        m.with_columns(
            pl.coalesce("phone_raw", "phone").alias("phone_raw"),
            pl.lit(None, dtype=m.schema["phone"]).alias("phone"),
        ).write_parquet(p)
    after = checks.validity_rates(home, sid, day, judge)["phone"]
    assert not after["ok"] and after["rate"] == 0.0 and after["values"] >= 5
    assert (after["history_rate"], after["history_values"]) == (
        before["history_rate"],
        before["history_values"],
    )


# ---------------------------------------------------------------- landing


def test_unchanged_files_are_not_hashed_again_but_changed_ones_are(
    fresh_copy: Home, monkeypatch
) -> None:
    import connectors.ingest as ci

    specs = [s for s in load_specs(fresh_copy.sources_dir) if s.database is None]
    first = ingest(fresh_copy, specs)
    hashed: list[Path] = []
    real = ci.sha256_of
    monkeypatch.setattr(ci, "sha256_of", lambda p: hashed.append(p) or real(p))
    again = ingest(fresh_copy, specs)
    assert again.files and all(f.status == "skipped" for f in again.files)
    assert hashed == []

    # Statistics lost (or a home ingested before they existed): every file is hashed
    # once more, then no more.
    shutil.rmtree(fresh_copy.state / "lake_stats")
    assert all(f.status == "skipped" for f in ingest(fresh_copy, specs).files)
    assert len(hashed) == len(first.files)
    hashed.clear()
    assert all(f.status == "skipped" for f in ingest(fresh_copy, specs).files)
    assert hashed == []

    spec = next(s for s in specs if s.id == "rail_tickets")
    path = sorted((fresh_copy.landing / spec.id).glob("*/*"))[-1]
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched: hashed, skipped
    assert [r.status for r in land(fresh_copy, spec) if r.file.endswith(path.name)] == ["skipped"]
    assert hashed == [path]
    body = path.read_bytes()  # the same path delivered again with other bytes: landed
    path.write_bytes(body.replace(b"\n", b"\r\n", 1) if b"\n" in body else body + b" ")
    assert [r.status for r in land(fresh_copy, spec) if r.file.endswith(path.name)] == ["landed"]
