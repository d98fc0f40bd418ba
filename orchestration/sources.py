"""One ``raw/<source>`` and one ``staged/<source>`` asset per source system,
built by a factory over the SourceSpecs and grouped by domain.

File-drop sources with a ``delta`` cadence are partitioned by delivery day
(``landing/<source>/<YYYY-MM-DD>/``): a partition lands and stages that day's
files only. Snapshot sources and the live databases are not partitioned: each
run lands whatever is new (the ledger and the database cursors make reruns no-ops).

Checks, computed with the asset (:mod:`connectors.checks`):

- ``raw/<source>``: ``schema_drift`` and ``duplicate_deliveries`` (warnings: the
  files concerned are quarantined as a whole, nothing bad moves on);
- ``staged/<source>``: ``file_accounting`` (blocking: read = staged + quarantined,
  recounted from the lake) and ``validity_rates`` (warning: IDs, phones and dates
  against the source's own earlier deliveries).

Database extraction retries with exponential backoff (a server that blinks).
"""

import dagster as dg
import polars as pl

from connectors import checks
from connectors.canonical import MENTION_SCHEMA
from connectors.daily import land_day, stage_day
from connectors.ingest import FileReport, Ledger, lake_paths, land, stage_source
from connectors.spec import SourceSpec
from orchestration.metadata import column_schema, md_table, preview
from orchestration.resources import QualityThresholds, TesseraHome

OWNER = "team:data-engineering"
EXTRACTION_RETRY = dg.RetryPolicy(
    max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)
PREVIEW_COLUMNS = (
    "mention_id",
    "entity_type",
    "name_native",
    "name_latin",
    "name",
    "dob",
    "sex",
    "id_number",
    "id_masked",
    "phone",
    "uscc",
    "city",
)


def is_daily(spec: SourceSpec) -> bool:
    """Delta file drops are partitioned by delivery day."""
    return spec.cadence == "delta" and spec.database is None


def _files_table(reports: list[FileReport]) -> dg.MetadataValue:
    return md_table(
        ((r.file, r.status, r.rows_read, r.rows_staged, r.rows_quarantined) for r in reports[:50]),
        ("file", "status", "read", "staged", "quarantined"),
    )


def _delivered_columns(reports: list[FileReport], spec: SourceSpec) -> list[str]:
    """The columns the new deliveries carried (the spec's when nothing new came)."""
    seen: list[str] = []
    for r in reports:
        for c in r.detail.get("columns") or []:
            if c not in seen and not c.startswith("_"):
                seen.append(c)
    return seen or [c.name for c in spec.columns]


def _read_preview(paths: list, columns: tuple[str, ...] | None = None) -> dg.MetadataValue:
    for p in paths:
        if p.exists():
            frame = pl.read_parquet(p, n_rows=5)
            if frame.height:
                cols = [c for c in (columns or frame.columns) if c in frame.columns]
                return preview(frame.select(cols))
    return dg.MetadataValue.md("(nothing new)")


def build_source_assets(
    spec: SourceSpec, days: dg.PartitionsDefinition | None = None
) -> list[dg.AssetsDefinition]:
    """The bronze and silver assets of one source system (day-partitioned by ``days``
    when the source is a delta file drop and ``days`` is given)."""
    kinds = {"polars", "parquet"} | ({spec.engine} if spec.database else {spec.format.kind})
    kinds = {k.replace("_", "") for k in kinds}
    partitions = days if days is not None and is_daily(spec) else None
    raw_key = dg.AssetKey(["raw", spec.id])
    staged_key = dg.AssetKey(["staged", spec.id])
    tags = {"domain": spec.domain, "entity": spec.entity}

    @dg.asset(
        key=raw_key,
        group_name=spec.domain,
        kinds=kinds,
        owners=[OWNER],
        partitions_def=partitions,
        retry_policy=EXTRACTION_RETRY if spec.database is not None else None,
        description=f"{spec.title}: new deliveries read as delivered (all columns, plus lineage) "
        f"into bronze Parquet; unreadable records go to quarantine. Format: "
        f"{spec.format.kind}, engine: {spec.engine}, cadence: {spec.cadence}"
        + (", one partition per delivery day." if partitions else "."),
        tags=tags,
        check_specs=[
            dg.AssetCheckSpec(
                "schema_drift",
                asset=raw_key,
                description="Delivered columns match the spec (a file missing a required "
                "column is quarantined as a whole; unknown columns are kept as attributes).",
            ),
            dg.AssetCheckSpec(
                "duplicate_deliveries",
                asset=raw_key,
                description="No delivery repeats an earlier file byte for byte "
                "(a repeat is quarantined as a whole, never ingested twice).",
            ),
        ],
    )
    def raw_asset(context: dg.AssetExecutionContext, tessera: TesseraHome) -> dg.MaterializeResult:
        home = tessera.home()
        day = context.partition_key if partitions else None
        book = Ledger(home.state / "ledger.jsonl")
        reports = land_day(home, spec, day, book) if day else land(home, spec, book)
        new = [r for r in reports if r.status in ("landed", "duplicate")]
        drift = checks.drifted_files(home, spec, day, book)
        dups = checks.duplicate_files(home, spec.id, day, book)
        raw_paths = [
            lake_paths(home, spec.id, r.day, r.detail["stem"])["raw"]
            for r in new
            if r.detail.get("stem")
        ]
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": sum(r.rows_read for r in new),
                "dagster/column_schema": column_schema(_delivered_columns(new, spec)),
                "files": len(new),
                "files_already_ingested": sum(r.status == "skipped" for r in reports),
                "duplicate_deliveries": sum(r.status == "duplicate" for r in new),
                "quarantined_on_read": sum(r.rows_quarantined for r in new),
                "deliveries": _files_table(new),
                "preview": _read_preview(raw_paths),
            },
            check_results=[
                dg.AssetCheckResult(
                    check_name="schema_drift",
                    passed=not drift,
                    severity=dg.AssetCheckSeverity.WARN,
                    metadata={
                        "drifted_files": len(drift),
                        "files": md_table(
                            ((d["file"], d["missing"], d["unexpected"]) for d in drift),
                            ("file", "missing", "unexpected columns"),
                        ),
                    },
                ),
                dg.AssetCheckResult(
                    check_name="duplicate_deliveries",
                    passed=not dups,
                    severity=dg.AssetCheckSeverity.WARN,
                    metadata={
                        "duplicates": len(dups),
                        "files": md_table(
                            ((d["file"], d["duplicate_of"]) for d in dups),
                            ("file", "identical to"),
                        ),
                    },
                ),
            ],
        )

    @dg.asset(
        key=staged_key,
        deps=[raw_key],
        group_name=spec.domain,
        kinds={"polars", "parquet"},
        owners=[OWNER],
        partitions_def=partitions,
        description=f"{spec.title}: canonical {spec.entity} mentions, records (facts with lineage) and "
        f"relationships; rows that cannot be parsed are quarantined with the reason. "
        f"Rows read = staged + quarantined is checked per file (blocking).",
        tags=tags,
        check_specs=[
            dg.AssetCheckSpec(
                "file_accounting",
                asset=staged_key,
                blocking=True,
                description="For every delivery: rows read = rows staged + rows quarantined, "
                "recounted from the lake; nothing vanishes, nothing is left half-staged.",
            ),
            dg.AssetCheckSpec(
                "validity_rates",
                asset=staged_key,
                description="Valid share of resident IDs, phones and birth dates in the newest "
                "delivery, against the source's own earlier deliveries.",
            ),
        ],
    )
    def staged_asset(
        context: dg.AssetExecutionContext, tessera: TesseraHome, quality: QualityThresholds
    ) -> dg.MaterializeResult:
        home = tessera.home()
        day = context.partition_key if partitions else None
        book = Ledger(home.state / "ledger.jsonl")
        reports = stage_day(home, spec, day, book) if day else stage_source(home, spec, book)
        accounting = checks.file_accounting(home, spec.id, day, book)
        bad = [a for a in accounting if not a["ok"]]
        rates = checks.validity_rates(home, spec.id, day, quality.source())
        mention_paths = [
            lake_paths(home, spec.id, r.day, r.detail["stem"])["mentions"]
            for r in reports
            if r.detail.get("stem")
        ]
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": sum(r.rows_staged for r in reports),
                "dagster/column_schema": column_schema(MENTION_SCHEMA),
                "rows_read": sum(r.rows_read for r in reports),
                "rows_quarantined": sum(r.rows_quarantined for r in reports),
                "mentions": sum(r.mentions for r in reports),
                "deliveries": _files_table(reports),
                "preview": _read_preview(mention_paths, PREVIEW_COLUMNS),
            },
            check_results=[
                dg.AssetCheckResult(
                    check_name="file_accounting",
                    passed=not bad,
                    metadata={
                        "deliveries_checked": len(accounting),
                        "violations": len(bad),
                        "files": md_table(
                            (
                                (a["file"], a["status"], a["read"], a["staged"], a["quarantined"])
                                for a in (bad or accounting)[:30]
                            ),
                            ("file", "status", "read", "staged", "quarantined"),
                        ),
                    },
                ),
                dg.AssetCheckResult(
                    check_name="validity_rates",
                    passed=all(r["ok"] for r in rates.values()),
                    severity=dg.AssetCheckSeverity.WARN,
                    metadata={
                        "rates": md_table(
                            (
                                (
                                    f,
                                    r["day"],
                                    r["rate"],
                                    r["values"],
                                    r["history_rate"],
                                    r["history_values"],
                                    "ok" if r["ok"] else "DROP",
                                )
                                for f, r in rates.items()
                            ),
                            ("field", "day", "valid share", "values", "history", "values", ""),
                        ),
                        "max_drop": quality.max_validity_drop,
                    },
                ),
            ],
        )

    return [raw_asset, staged_asset]
