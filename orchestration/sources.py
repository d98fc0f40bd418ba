"""One ``raw/<source>`` and one ``staged/<source>`` asset per source system,
built by a factory over the SourceSpecs and grouped by domain."""

import dagster as dg
import polars as pl

from connectors.canonical import MENTION_SCHEMA, RECORD_SCHEMA
from connectors.ingest import FileReport, Ledger, land, stage_source
from connectors.spec import SourceSpec
from orchestration.resources import TesseraHome

OWNER = "team:data-engineering"


def _schema(columns: dict[str, pl.DataType] | list[str]) -> dg.TableSchema:
    if isinstance(columns, dict):
        return dg.TableSchema(columns=[dg.TableColumn(n, str(t)) for n, t in columns.items()])
    return dg.TableSchema(columns=[dg.TableColumn(n, "string") for n in columns])


def _files_table(reports: list[FileReport]) -> dg.MetadataValue:
    lines = ["| file | status | read | staged | quarantined |", "|---|---|---|---|---|"]
    for r in reports[:50]:
        lines.append(
            f"| {r.file} | {r.status} | {r.rows_read} | {r.rows_staged} | {r.rows_quarantined} |"
        )
    return dg.MetadataValue.md("\n".join(lines))


def build_source_assets(spec: SourceSpec) -> list[dg.AssetsDefinition]:
    """The bronze and silver assets of one source system."""
    kinds = {"polars", "parquet"} | ({spec.engine} if spec.database else {spec.format.kind})
    kinds = {k.replace("_", "") for k in kinds}

    @dg.asset(
        key=["raw", spec.id],
        group_name=spec.domain,
        kinds=kinds,
        owners=[OWNER],
        description=f"{spec.title}: new deliveries read as delivered (all columns, plus lineage) "
        f"into bronze Parquet; unreadable records go to quarantine. Format: "
        f"{spec.format.kind}, cadence: {spec.cadence}.",
        tags={"domain": spec.domain, "entity": spec.entity},
    )
    def raw_asset(context: dg.AssetExecutionContext, tessera: TesseraHome) -> dg.MaterializeResult:
        reports = land(tessera.home(), spec)
        new = [r for r in reports if r.status in ("landed", "duplicate")]
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": sum(r.rows_read for r in new),
                "dagster/column_schema": _schema([c.name for c in spec.columns]),
                "files": len(new),
                "duplicate_deliveries": sum(r.status == "duplicate" for r in new),
                "quarantined_on_read": sum(r.rows_quarantined for r in new),
                "deliveries": _files_table(new),
            }
        )

    @dg.asset(
        key=["staged", spec.id],
        deps=[raw_asset.key],
        group_name=spec.domain,
        kinds={"polars", "parquet"},
        owners=[OWNER],
        description=f"{spec.title}: canonical {spec.entity} mentions, records (facts with lineage) and "
        f"relationships; rows that cannot be parsed are quarantined with the reason. "
        f"Rows read = staged + quarantined is checked per file.",
        tags={"domain": spec.domain, "entity": spec.entity},
    )
    def staged_asset(
        context: dg.AssetExecutionContext, tessera: TesseraHome
    ) -> dg.MaterializeResult:
        home = tessera.home()
        reports = stage_source(home, spec, Ledger(home.state / "ledger.jsonl"))
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": sum(r.rows_staged for r in reports),
                "dagster/column_schema": _schema(
                    {**RECORD_SCHEMA, **{f"mention.{k}": v for k, v in MENTION_SCHEMA.items()}}
                ),
                "rows_read": sum(r.rows_read for r in reports),
                "rows_quarantined": sum(r.rows_quarantined for r in reports),
                "mentions": sum(r.mentions for r in reports),
                "deliveries": _files_table(reports),
            }
        )

    return [raw_asset, staged_asset]
