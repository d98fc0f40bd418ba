"""Data-quality measurements over the ledger and the lake, for the per-source checks.

Plain functions (no Dagster): the asset checks in ``orchestration/`` call them and
decide what blocks.

- :func:`file_accounting`: for each staged delivery, rows read against what the
  lake holds (staged records + quarantined rows), recounted from the Parquet files.
- :func:`drifted_files`: deliveries whose columns no longer match the spec.
- :func:`duplicate_files`: deliveries that repeat an earlier file byte for byte.
- :func:`validity_rates`: the share of valid resident IDs, phones and birth dates in
  a day's mentions against the source's own earlier deliveries.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from connectors.daily import ledger
from connectors.ingest import lake_paths
from connectors.spec import SourceSpec
from connectors.staging import schema_drift
from tessera.config import Home

# field -> (valid column, invalid-as-delivered column) in the mention schema
VALIDITY_FIELDS: dict[str, tuple[str, str]] = {
    "id_number": ("id_number", "id_raw"),
    "phone": ("phone", "phone_raw"),
    "dob": ("dob", "dob_raw"),
}


@dataclass(frozen=True)
class SourceThresholds:
    """How far a day's validity rate may fall below the source's history, and how
    many values a day needs before its rate is judged at all."""

    max_validity_drop: float = 0.10
    min_values: int = 20


def entries(home: Home, source_id: str, day: str | None = None) -> list[dict[str, Any]]:
    """The latest ledger entry of each delivery of ``source_id`` (of ``day`` if given)."""
    return sorted(
        (
            e
            for e in ledger(home).by_path.values()
            if e["source_id"] == source_id and (day is None or e["day"] == day)
        ),
        key=lambda e: (e["day"], e["file"]),
    )


def _rows(path: Path) -> int:
    return pl.scan_parquet(path).select(pl.len()).collect().item() if path.exists() else 0


def file_accounting(home: Home, source_id: str, day: str | None = None) -> list[dict[str, Any]]:
    """One row per delivery: ``file, status, read, staged, quarantined, ok``. Staged and
    quarantined are recounted from the lake files (records, read and stage
    quarantine), not taken from the ledger; ``ok`` is read = staged + quarantined.
    A delivery landed but not staged is not ok (nothing may wait half-way); a
    duplicate delivery is quarantined as a whole and is ok."""
    out = []
    for e in entries(home, source_id, day):
        if e["status"] in ("skipped", "duplicate"):
            continue
        stem = (e.get("detail") or {}).get("stem")
        if e["status"] != "ingested" or stem is None:
            out.append(
                {
                    "file": e["file"],
                    "status": e["status"],
                    "read": e["rows_read"],
                    "staged": 0,
                    "quarantined": 0,
                    "ok": False,
                }
            )
            continue
        p = lake_paths(home, source_id, e["day"], stem)
        staged = _rows(p["records"])
        quarantined = _rows(p["read_quarantine"]) + _rows(p["stage_quarantine"])
        out.append(
            {
                "file": e["file"],
                "status": e["status"],
                "read": int(e["rows_read"]),
                "staged": staged,
                "quarantined": quarantined,
                "ok": int(e["rows_read"]) == staged + quarantined
                and staged == int(e["rows_staged"]),
            }
        )
    return out


def drifted_files(home: Home, spec: SourceSpec, day: str | None = None) -> list[dict[str, str]]:
    """Deliveries whose columns lack a required column of the spec (the whole file
    went to quarantine), with the reason, and deliveries with columns the spec
    does not know (kept as attributes)."""
    known = {c.name for c in spec.columns}
    if spec.database is not None:  # the extraction's own columns
        known |= {spec.database.key, spec.database.cursor, spec.database.deleted_flag or ""}
    out = []
    for e in entries(home, spec.id, day):
        cols = (e.get("detail") or {}).get("columns")
        if e["status"] not in ("landed", "ingested") or not cols or not e["rows_read"]:
            continue
        reason = schema_drift(spec, cols)
        extra = sorted(set(cols) - known - {c for c in cols if c.startswith("_")})
        if reason or extra:
            out.append(
                {
                    "file": e["file"],
                    "missing": reason or "",
                    "unexpected": ", ".join(extra),
                }
            )
    return out


def duplicate_files(home: Home, source_id: str, day: str | None = None) -> list[dict[str, str]]:
    """Deliveries recorded as byte-identical repeats of an earlier file."""
    return [
        {"file": e["file"], "duplicate_of": e.get("duplicate_of") or ""}
        for e in entries(home, source_id, day)
        if e["status"] == "duplicate"
    ]


def _mention_files(home: Home, source_id: str) -> dict[str, list[Path]]:
    root = home.lake / "staged" / source_id
    out: dict[str, list[Path]] = {}
    for p in sorted(root.glob("*/*.mentions.parquet")):
        out.setdefault(p.parent.name, []).append(p)
    return out


def _rates(paths: list[Path]) -> dict[str, tuple[int, int]]:
    """field -> (valid, invalid) among subject mentions."""
    if not paths:
        return {f: (0, 0) for f in VALIDITY_FIELDS}
    frame = pl.scan_parquet(paths, missing_columns="insert")
    names = frame.collect_schema().names()
    frame = frame.filter(pl.col("role") == "") if "role" in names else frame
    exprs = []
    for f, (ok, bad) in VALIDITY_FIELDS.items():
        exprs.append(
            (pl.col(ok).is_not_null().sum() if ok in names else pl.lit(0)).alias(f"{f}_ok")
        )
        exprs.append(
            (pl.col(bad).is_not_null().sum() if bad in names else pl.lit(0)).alias(f"{f}_bad")
        )
    row = frame.select(exprs).collect().row(0, named=True)
    return {f: (int(row[f"{f}_ok"]), int(row[f"{f}_bad"])) for f in VALIDITY_FIELDS}


def validity_rates(
    home: Home,
    source_id: str,
    day: str | None = None,
    thresholds: SourceThresholds | None = None,
) -> dict[str, dict[str, Any]]:
    """Per field (``id_number``, ``phone``, ``dob``): the valid share of the values in
    ``day``'s mentions (default: the latest delivery day) and in the source's
    earlier days, and ``ok`` = the day's rate is at most ``max_validity_drop``
    below the history (always ok without history or with fewer than
    ``min_values`` values on either side)."""
    th = thresholds or SourceThresholds()
    files = _mention_files(home, source_id)
    if not files:
        return {}
    day = day or max(files)
    today = _rates(files.get(day, []))
    before = _rates([p for d, ps in files.items() if d < day for p in ps])
    out: dict[str, dict[str, Any]] = {}
    for f in VALIDITY_FIELDS:
        (ok_t, bad_t), (ok_h, bad_h) = today[f], before[f]
        n_t, n_h = ok_t + bad_t, ok_h + bad_h
        if n_t == 0 and n_h == 0:
            continue
        rate_t = ok_t / n_t if n_t else None
        rate_h = ok_h / n_h if n_h else None
        judged = rate_t is not None and rate_h is not None and min(n_t, n_h) >= th.min_values
        out[f] = {
            "day": day,
            "rate": None if rate_t is None else round(rate_t, 4),
            "history_rate": None if rate_h is None else round(rate_h, 4),
            "values": n_t,
            "history_values": n_h,
            "ok": not judged or rate_t >= rate_h - th.max_validity_drop,  # type: ignore[operator]
        }
    return out
