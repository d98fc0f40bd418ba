"""Warehouse assets (group ``warehouse``): build a candidate, check it, swap it in.

``warehouse/build`` runs :func:`warehouse.publish.publish` against a home whose
warehouse path is ``warehouse.candidate.duckdb``: the library builds, smoke-checks
and atomically renames its file there, next to the live ``warehouse.duckdb``,
which it never touches. The blocking ``smoke`` check then looks at the candidate
(invariants, core tables, no sudden loss of entities against the live file).
Only if every blocking check upstream passed does ``warehouse/publish`` move the
candidate over the live file (``os.replace``: analysts see the old or the new
warehouse, never a mix). A failing check anywhere upstream (file accounting,
over-merge guards, accuracy, smoke) stops the run before the swap, so the last
good warehouse stays live.

``warehouse/analyst_export`` then writes the published warehouse's masked analyst
export (:meth:`warehouse.session.Session.export_analyst`, what ``tessera export``
writes) to ``$TESSERA_HOME/export/analyst.duckdb``, as the pipeline's own identity
:data:`SYSTEM_USER` (admin), audited like any export: after an incremental publish by
updating a copy of the previous export for the entities that changed
(:mod:`warehouse.export`), else in full.
"""

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg

from orchestration import isolate
from orchestration.linkage import BUSINESS_CLUSTERS, EVALUATION, PERSON_CLUSTERS
from orchestration.metadata import jsonable, md_table
from orchestration.resources import QualityThresholds, TesseraHome
from tessera import quality as qc
from tessera.config import Home

GROUP = "warehouse"
OWNER = "team:data-engineering"
BUILD = dg.AssetKey(["warehouse", "build"])
PUBLISH = dg.AssetKey(["warehouse", "publish"])
ANALYST_EXPORT = dg.AssetKey(["warehouse", "analyst_export"])
WAREHOUSE_KEYS = (BUILD, PUBLISH, ANALYST_EXPORT)
# Who the pipeline is in the audit log. Not a ``tessera.toml`` user: the role is given
# here (admin, which the export needs), never resolved from ``--user``/``$TESSERA_USER``,
# so naming this user on the command line grants nothing.
SYSTEM_USER = "tessera-pipeline"
PUBLISH_RETRY = dg.RetryPolicy(max_retries=2, delay=1, backoff=dg.Backoff.EXPONENTIAL)


@dataclass(frozen=True)
class CandidateHome(Home):
    """The same home, with the warehouse file redirected to the candidate path."""

    @property
    def warehouse(self) -> Path:
        return self.root / "warehouse.candidate.duckdb"


def candidate_path(home: Home) -> Path:
    return CandidateHome(home.root).warehouse


def build_candidate(home: Home) -> dict:
    """Build the candidate warehouse with ``warehouse.publish.publish``; the live file
    is hard-linked in first so the library carries its run history over."""
    from warehouse.publish import publish

    cand = candidate_path(home)
    cand.unlink(missing_ok=True)
    if home.warehouse.exists():
        try:
            os.link(home.warehouse, cand)
        except OSError:
            pass  # no run history carried over; the build itself does not need it
    # Incremental from the live warehouse where the library can (it falls back to a
    # full build itself and says why); in a child process on a large world.
    base = home.warehouse if home.warehouse.exists() else None
    return isolate.call(home, publish, CandidateHome(home.root), base=base)


def analyst_export_path(home: Home) -> Path:
    """Where the pipeline keeps the current analyst export: ``export/analyst.duckdb``."""
    return home.root / "export" / "analyst.duckdb"


def write_analyst_export(home: Home) -> dict[str, Any]:
    """Export the live warehouse for analysts (``Session.export_analyst``: masked
    identifiers, active list entries only, no match features) as :data:`SYSTEM_USER`
    with the admin role; one audit row (action ``export``). Incremental from the
    current export where it is the export of the warehouse the publish started from
    (:mod:`warehouse.export`; else in full, and ``full_reason`` says why). The library
    writes a new file only, so the export goes to ``export/analyst.next.duckdb`` and
    is then moved over ``export/analyst.duckdb`` (``os.replace``: a reader sees the old
    or the new export). Returns the row count per table (``counts``), ``mode``,
    ``full_reason``, ``touched`` (entities whose rows were replaced) and ``seconds``."""
    from warehouse.access import Principal
    from warehouse.export import read_lineage
    from warehouse.session import Session

    final = analyst_export_path(home)
    staging = final.with_name("analyst.next.duckdb")
    final.parent.mkdir(parents=True, exist_ok=True)
    staging.unlink(missing_ok=True)  # left by a run killed between export and move
    t = time.perf_counter()
    with Session(home, user=SYSTEM_USER) as session:
        session.principal = Principal(SYSTEM_USER, "admin")
        counts = session.export_analyst(staging, previous=final if final.exists() else None)
    lineage = read_lineage(staging)
    os.replace(staging, final)
    return {
        "counts": counts,
        "mode": lineage["mode"],
        "full_reason": lineage["full_reason"],
        "touched": lineage["touched"],
        "seconds": round(time.perf_counter() - t, 2),
    }


def _counts_by_type(path: Path) -> list[tuple[str, int]]:
    import duckdb

    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(
            "SELECT entity_type, count(*) FROM entities GROUP BY 1 ORDER BY 1"
        ).fetchall()
    finally:
        con.close()


def _top_entities(path: Path) -> dg.MetadataValue:
    import duckdb

    con = duckdb.connect(str(path), read_only=True)
    try:
        rows = con.execute(
            "SELECT entity_id, entity_type, coalesce(name_native, name) AS name, n_mentions, "
            "n_sources FROM entities ORDER BY n_sources DESC, entity_id LIMIT 5"
        ).fetchall()
    finally:
        con.close()
    return md_table(rows, ("entity", "type", "name", "mentions", "sources"))


def _tables_schema(counts: dict[str, int]) -> dg.TableSchema:
    """The tables of a warehouse file as a Dagster schema, each with its row count."""
    return dg.TableSchema(
        columns=[dg.TableColumn(t, "table", description=f"{n:,} rows") for t, n in counts.items()]
    )


def build_warehouse_assets() -> list[dg.AssetsDefinition]:
    """``warehouse/build`` (candidate + blocking smoke check), ``warehouse/publish`` and
    ``warehouse/analyst_export``."""
    common = {"group_name": GROUP, "owners": [OWNER]}

    @dg.asset(
        key=BUILD,
        deps=[PERSON_CLUSTERS, BUSINESS_CLUSTERS, EVALUATION],
        kinds={"duckdb"},
        check_specs=[
            dg.AssetCheckSpec(
                "smoke",
                asset=BUILD,
                blocking=True,
                description="The candidate holds every mention in exactly one entity, unique "
                "entity IDs, no empty core table, and not suddenly fewer entities than the live "
                "warehouse (QualityThresholds.max_entity_drop). A candidate updated from the "
                "live warehouse is checked on the entities it rebuilt (the rest are the live "
                "file's rows, which passed). Blocks the swap.",
            )
        ],
        **common,
    )
    def build(
        context: dg.AssetExecutionContext, tessera: TesseraHome, quality: QualityThresholds
    ) -> dg.MaterializeResult:
        """The next warehouse, built next to the live one (``warehouse.candidate.duckdb``)
        by ``warehouse.publish.publish``: incrementally from the live file (only the
        entities changed since it was built are rebuilt; metadata ``mode``,
        ``entities_rebuilt``), or in full when a relink or a rewritten input requires
        it (``full_reason``): entities with
        golden records, memberships, facts, lists, relationships, evidence, search
        tables and analyst views, with the library's own smoke checks. Not visible to
        analysts until ``warehouse/publish`` swaps it in."""
        home = tessera.home()
        # The analyst export starts from a copy of the current one: usually made by the
        # last run's export (below); else started now, to be made while the build runs.
        from warehouse import prefetch

        prefetch.start(analyst_export_path(home))
        out = build_candidate(home)
        smoke = qc.warehouse_smoke(candidate_path(home), home.warehouse, quality.max_entity_drop)
        counts = out["counts"]
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": counts.get("entities", 0),
                "dagster/column_schema": _tables_schema(counts),
                "path": str(candidate_path(home)),
                "reference_date": out["reference_date"],
                "mode": out.get("mode", "full"),
                "full_reason": out.get("full_reason") or "",
                "entities_rebuilt": out.get("touched") if out.get("touched") is not None else -1,
                "seconds": out["seconds"],
                "steps": jsonable(out.get("steps", {})),
                "tables": md_table(counts.items(), ("table", "rows")),
            },
            check_results=[
                dg.AssetCheckResult(
                    check_name="smoke",
                    passed=bool(smoke["ok"]),
                    metadata={
                        "violations": jsonable(smoke["violations"]),
                        "empty_tables": ", ".join(smoke["empty_tables"]) or "none",
                        "entities": smoke["counts"]["entities"],
                        "entities_live": smoke["entities_live"] or 0,
                        "entity_drop_too_large": smoke["entity_drop_too_large"],
                        "scope": smoke["scope"],
                    },
                )
            ],
        )

    @dg.asset(
        key=PUBLISH,
        deps=[BUILD],
        kinds={"duckdb"},
        retry_policy=PUBLISH_RETRY,
        **common,
    )
    def publish(context: dg.AssetExecutionContext, tessera: TesseraHome) -> dg.MaterializeResult:
        """The live warehouse (``warehouse.duckdb``): the checked candidate moved over it
        atomically. Metadata: entities per type, and what changed since the last
        publish (new, grown, merged, split and retired entities, new mentions)."""
        home = tessera.home()
        cand = candidate_path(home)
        if not cand.exists():
            raise FileNotFoundError(
                f"no candidate warehouse at {cand}: materialise warehouse/build"
            )
        changes = qc.warehouse_changes(home.warehouse, cand)
        by_type = _counts_by_type(cand)
        os.replace(cand, home.warehouse)
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": changes["entities_after"],
                "path": str(home.warehouse),
                **{f"{t}_entities": n for t, n in by_type},
                **{f"changed_{k}": v for k, v in changes.items()},
                "changes": md_table(changes.items(), ("since last publish", "count")),
                "preview": _top_entities(home.warehouse),
            }
        )

    @dg.asset(key=ANALYST_EXPORT, deps=[PUBLISH], kinds={"duckdb"}, **common)
    def analyst_export(
        context: dg.AssetExecutionContext, tessera: TesseraHome
    ) -> dg.MaterializeResult:
        """The masked analyst warehouse as its own DuckDB file
        (``export/analyst.duckdb``), rewritten after every publish: what
        ``tessera export`` writes (analyst views as tables, masked IDs and phones,
        active list entries only, no match features), exported as the system user
        ``tessera-pipeline`` (admin) and audited. After an incremental publish, a copy
        of the previous export with the changed entities' rows replaced (``mode``,
        ``entities_replaced``), else written in full (``full_reason``). Then it starts
        copying the new warehouse and export for the next day's run
        (``warehouse.prefetch``; ``next_day_copies``). Metadata: path, rows per table,
        size."""
        home = tessera.home()
        out = write_analyst_export(home)
        counts = out["counts"]
        path = analyst_export_path(home)
        # The next incremental publish and export start from copies of these two files
        # (warehouse.prefetch): made now, between runs, instead of while the next
        # run's ingest and linkage share the two cores with them.
        from warehouse import prefetch

        next_copies = {p.name: prefetch.start(p) for p in (home.warehouse, path)}
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": counts.get("entities", 0),
                "dagster/column_schema": _tables_schema(counts),
                "path": dg.MetadataValue.path(str(path)),
                "size_bytes": path.stat().st_size,
                "rows_per_table": dg.MetadataValue.json(counts),
                "exported_by": SYSTEM_USER,
                "mode": out["mode"],
                "full_reason": out["full_reason"] or "",
                "entities_replaced": out["touched"] if out["touched"] is not None else -1,
                "seconds": out["seconds"],
                "next_day_copies": dg.MetadataValue.json(next_copies),
            }
        )

    return [build, publish, analyst_export]
