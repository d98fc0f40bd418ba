"""Ingest deliveries: landing → raw (bronze) → staged (silver) + quarantine.

Every delivery is accounted for in the ledger (``state/ledger.jsonl``): rows
read = rows staged + rows quarantined, checked for each file. A file whose
content was already ingested (same SHA-256) is not ingested again: the same path
is skipped (reruns change nothing; a file whose size and modification time are
the ones it had when last hashed is not hashed again, see
:class:`connectors.lake_stats.LakeStats`); another file of the same source with
the same bytes (and at least one record) is recorded as a duplicate delivery and
quarantined as a whole. Outputs are written to temporary names and
renamed, and the ledger line is appended last, so an interrupted ingest is
simply redone by the next run.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl

from connectors.canonical import QUARANTINE_SCHEMA, conform
from connectors.lake_stats import LakeStats
from connectors.ledger import Ledger
from connectors.readers import read_delivery
from connectors.spec import SourceSpec
from connectors.staging import schema_drift, stage
from tessera.config import Home


class AccountingError(RuntimeError):
    """Rows read != rows staged + rows quarantined for a delivery."""


@dataclass
class FileReport:
    """What happened to one delivered file (or one database extraction)."""

    source_id: str
    file: str
    day: str
    status: str  # landed | ingested (landed and staged) | skipped | duplicate
    rows_read: int = 0
    rows_staged: int = 0
    rows_quarantined: int = 0
    mentions: int = 0
    sha256: str = ""
    duplicate_of: str | None = None
    detail: dict = field(default_factory=dict)


@dataclass
class IngestReport:
    files: list[FileReport]
    failures: dict[str, str] = field(default_factory=dict)  # source id -> error

    def by_source(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for f in self.files:
            s = out.setdefault(
                f.source_id,
                {
                    "files": 0,
                    "read": 0,
                    "staged": 0,
                    "quarantined": 0,
                    "duplicates": 0,
                    "skipped": 0,
                    "inserted": 0,
                    "updated": 0,
                    "deleted": 0,
                },
            )
            for k in ("inserted", "updated", "deleted"):
                s[k] += int(f.detail.get(k, 0)) if f.status != "skipped" else 0
            s["files"] += 1
            s["read"] += f.rows_read
            s["staged"] += f.rows_staged
            s["quarantined"] += f.rows_quarantined
            s["duplicates"] += f.status == "duplicate"
            s["skipped"] += f.status == "skipped"
        return out

    def totals(self) -> dict[str, int]:
        t = {"files": 0, "read": 0, "staged": 0, "quarantined": 0, "duplicates": 0, "skipped": 0}
        for s in self.by_source().values():
            for k in t:
                t[k] += s[k]
        return t


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_parquet_atomic(
    df: pl.DataFrame, path: Path, stats: LakeStats | None = None, *, mentions: bool = False
) -> None:
    """Write ``df`` to ``path`` under a temporary name, then rename it; record its
    statistics in ``stats`` (the source's :class:`LakeStats`) when given."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    df.write_parquet(tmp)
    os.replace(tmp, path)
    if stats is not None:
        stats.record(path, df, mentions=mentions)


def deliveries(
    landing: Path, spec: SourceSpec, day: date | None = None
) -> Iterator[tuple[date, Path]]:
    """Files a source has delivered, oldest day first (only those of ``day`` if given:
    the other days' folders are not listed)."""
    root = landing / spec.id
    if not root.is_dir():
        return
    for day_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        try:
            delivered = date.fromisoformat(day_dir.name)
        except ValueError:
            continue
        if day is not None and delivered != day:
            continue
        for f in sorted(day_dir.glob(spec.format.file_glob)):
            if f.is_file() and not f.name.startswith("."):
                yield delivered, f


def lake_paths(home: Home, source_id: str, day: str, stem: str) -> dict[str, Path]:
    staged = home.lake / "staged" / source_id / day
    quarantine = home.lake / "quarantine" / source_id / day
    return {
        "raw": home.lake / "raw" / source_id / day / f"{stem}.parquet",
        "mentions": staged / f"{stem}.mentions.parquet",
        "records": staged / f"{stem}.records.parquet",
        "relationships": staged / f"{stem}.relationships.parquet",
        "read_quarantine": quarantine / f"{stem}.read.parquet",
        "stage_quarantine": quarantine / f"{stem}.stage.parquet",
    }


def with_lineage(quarantine: pl.DataFrame, source_id: str, rel: str, now: datetime) -> pl.DataFrame:
    """A reader's quarantine rows (line, raw, reason) in the canonical quarantine schema."""
    return conform(
        quarantine.with_columns(
            pl.lit(source_id).alias("source_id"),
            pl.lit(rel).alias("file"),
            pl.lit(now).alias("ingested_at"),
        ),
        QUARANTINE_SCHEMA,
    )


def bronze(rows: pl.DataFrame, source_id: str, rel: str, now: datetime) -> pl.DataFrame:
    """Rows as delivered plus their lineage columns."""
    return rows.with_columns(
        pl.lit(source_id).alias("_source_id"),
        pl.lit(rel).alias("_file"),
        pl.lit(now).alias("_ingested_at"),
    )


def _file_quarantine(spec: SourceSpec, rel: str, reason: str, now: datetime) -> pl.DataFrame:
    return conform(
        pl.DataFrame(
            {
                "source_id": [spec.id],
                "file": [rel],
                "line": [None],
                "raw": [""],
                "reason": [reason],
                "ingested_at": [now],
            }
        ),
        QUARANTINE_SCHEMA,
    )


def land_file(
    home: Home,
    spec: SourceSpec,
    day: date,
    path: Path,
    ledger: Ledger,
    stats: LakeStats | None = None,
) -> FileReport:
    """Read one delivered file into bronze (raw Parquet with lineage) and the
    read-level quarantine. Idempotent: see the module docstring. ``stats`` (the
    source's :class:`LakeStats`, saved by the caller) when landing many files."""
    own = stats is None
    stats = stats or LakeStats(home, spec.id)
    report = _land_file(home, spec, day, path, ledger, stats)
    if own:
        stats.save()
    return report


def _land_file(
    home: Home, spec: SourceSpec, day: date, path: Path, ledger: Ledger, stats: LakeStats
) -> FileReport:
    rel = str(path.relative_to(home.root))
    seen = ledger.by_path.get(rel)
    # A file hashed before and not written since is not read again (a snapshot
    # source's landing/ keeps every full snapshot it ever delivered).
    digest = stats.landed_digest(path, rel)
    if digest is None:
        st = path.stat()
        digest = sha256_of(path)
        stats.record_landed_digest(rel, st, digest)
    if seen is not None and seen["sha256"] == digest:
        return FileReport(spec.id, rel, day.isoformat(), "skipped", sha256=digest)
    now = datetime.now(UTC)
    stem = path.name.rsplit(".", 1)[0]
    paths = lake_paths(home, spec.id, day.isoformat(), stem)
    original = ledger.by_sha.get((spec.id, digest))
    if original is not None and original["file"] != rel:
        reason = f"duplicate delivery: identical to {original['file']} (sha256 {digest[:12]}…)"
        write_parquet_atomic(
            _file_quarantine(spec, rel, reason, now), paths["read_quarantine"], stats
        )
        stats.save()
        report = FileReport(
            spec.id, rel, day.isoformat(), "duplicate", sha256=digest, duplicate_of=original["file"]
        )
        ledger.append(report)
        return report
    delivery = read_delivery(spec.format, path, [c.name for c in spec.columns])
    read_q = with_lineage(delivery.quarantine, spec.id, rel, now)
    raw = bronze(delivery.rows, spec.id, rel, now).with_columns(
        pl.lit(day).alias("_delivered"),
    )
    write_parquet_atomic(raw, paths["raw"])
    write_parquet_atomic(read_q, paths["read_quarantine"], stats)
    stats.save()
    report = FileReport(
        spec.id,
        rel,
        day.isoformat(),
        "landed",
        rows_read=delivery.rows_read,
        rows_quarantined=read_q.height,
        sha256=digest,
        detail={"columns": delivery.columns, "stem": stem},
    )
    ledger.append(report)
    return report


def stage_file(home: Home, spec: SourceSpec, landed: dict, ledger: Ledger) -> FileReport:
    """Stage one landed file from bronze: silver mentions, records, relationships
    and the stage-level quarantine. Checks rows read = staged + quarantined."""
    day, rel, stem = landed["day"], landed["file"], landed["detail"]["stem"]
    paths = lake_paths(home, spec.id, day, stem)
    raw = pl.read_parquet(paths["raw"])
    now = raw["_ingested_at"][0] if raw.height else datetime.now(UTC)
    rows = raw.drop("_source_id", "_file", "_ingested_at", "_delivered", strict=False)
    # An empty delivery (no records) cannot drift: formats like XML and JSON only
    # reveal their columns through records.
    drift = schema_drift(spec, landed["detail"]["columns"]) if rows.height else None
    stage_q = []
    if drift is not None:
        names = [c for c in rows.columns if not c.startswith("_")]
        stage_q.append(
            conform(
                rows.select(
                    pl.lit(spec.id).alias("source_id"),
                    pl.lit(rel).alias("file"),
                    pl.col("_line").alias("line"),
                    pl.concat_str([pl.col(c).fill_null("") for c in names], separator="|").alias(
                        "raw"
                    ),
                    pl.lit(drift).alias("reason"),
                    pl.lit(now).alias("ingested_at"),
                ),
                QUARANTINE_SCHEMA,
            )
        )
        rows = rows.clear()
    delivered = date.fromisoformat(landed["detail"].get("delivered", day))
    staged = stage(spec, rows, file=rel, delivered=delivered, ingested_at=now)
    quarantine = pl.concat([*stage_q, staged.quarantine], how="vertical")
    stats = LakeStats(home, spec.id)
    write_parquet_atomic(staged.mentions, paths["mentions"], stats, mentions=True)
    write_parquet_atomic(staged.records, paths["records"], stats)
    write_parquet_atomic(staged.relationships, paths["relationships"])
    write_parquet_atomic(quarantine, paths["stage_quarantine"], stats)
    stats.save()
    report = FileReport(
        spec.id,
        rel,
        day,
        "ingested",
        rows_read=landed["rows_read"],
        rows_staged=staged.rows_staged,
        rows_quarantined=landed["rows_quarantined"] + quarantine.height,
        mentions=staged.mentions.height,
        sha256=landed["sha256"],
        detail=landed["detail"],
    )
    check_accounting(report)
    ledger.append(report)
    return report


def check_accounting(report: FileReport) -> None:
    if report.rows_read != report.rows_staged + report.rows_quarantined:
        raise AccountingError(
            f"{report.source_id}: {report.file}: read {report.rows_read} rows but staged "
            f"{report.rows_staged} and quarantined {report.rows_quarantined}"
        )


def land(home: Home, spec: SourceSpec, ledger: Ledger | None = None) -> list[FileReport]:
    """Land every new delivery of one source into bronze (the ``raw/<source>`` step)."""
    ledger = ledger or Ledger(home.state / "ledger.jsonl")
    if spec.database is not None:
        from connectors.database_ingest import land_database

        return land_database(home, spec, ledger)
    return land_deliveries(home, spec, ledger, deliveries(home.landing, spec))


def land_deliveries(
    home: Home, spec: SourceSpec, ledger: Ledger, found: Iterable[tuple[date, Path]]
) -> list[FileReport]:
    """Land the delivered files ``found`` (``(day, path)``, from :func:`deliveries`) of
    a file-drop source, with one :class:`LakeStats` saved at the end (also when a file
    fails: the error names the source and the file)."""
    reports = []
    stats = LakeStats(home, spec.id)
    try:
        for day, path in found:
            try:
                reports.append(land_file(home, spec, day, path, ledger, stats))
            except Exception as exc:  # name the source and file, never swallow
                raise RuntimeError(f"{spec.id}: reading {path}: {exc}") from exc
    finally:
        stats.save()
    return reports


def stage_source(home: Home, spec: SourceSpec, ledger: Ledger | None = None) -> list[FileReport]:
    """Stage every landed, not yet staged delivery of one source (the ``staged/<source>`` step)."""
    ledger = ledger or Ledger(home.state / "ledger.jsonl")
    pending = [e for e in ledger.entries(spec.id) if e["status"] == "landed"]
    reports = []
    for entry in pending:
        try:
            reports.append(stage_file(home, spec, entry, ledger))
        except AccountingError:
            raise
        except Exception as exc:
            raise RuntimeError(f"{spec.id}: staging {entry['file']}: {exc}") from exc
    return reports


def ingest(
    home: Home,
    specs: Iterable[SourceSpec],
    *,
    progress: Callable[[str], None] | None = None,
    keep_going: bool = True,
) -> IngestReport:
    """Land and stage every pending delivery of every source; one report per file.

    A source that fails (server down, schema changed, unreadable spec) is
    recorded in ``failures`` with its error, and the other sources carry on
    (``keep_going=False`` raises instead). Nothing of a failed step is
    half-written: outputs are renamed into place and the ledger line comes
    last, so a rerun picks up where it stopped. An accounting error always raises.
    """
    ledger = Ledger(home.state / "ledger.jsonl")
    reports: list[FileReport] = []
    failures: dict[str, str] = {}
    for spec in specs:
        if progress:
            progress(spec.id)
        try:
            landed = land(home, spec, ledger)
            staged = {r.file: r for r in stage_source(home, spec, ledger)}
        except AccountingError:
            raise
        except Exception as exc:
            if not keep_going:
                raise
            failures[spec.id] = f"{type(exc).__name__}: {exc}"
            continue
        for r in landed:
            reports.append(staged.pop(r.file, r))
        reports.extend(staged.values())
    return IngestReport(reports, failures)
