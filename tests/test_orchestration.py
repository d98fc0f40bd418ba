"""Dagster: the definitions load, one raw and one staged asset per source (delta file
drops partitioned by delivery day), checks, jobs, schedules and the sensor, materialisable.
The whole graph end to end is in tests/test_pipeline.py."""

from __future__ import annotations

import dagster as dg
import polars as pl
import pytest

from connectors.catalog import builtin_specs
from connectors.lake import records
from orchestration.automation import delivery_days
from orchestration.definitions import build_definitions, resources
from orchestration.linkage import LINKAGE_KEYS
from orchestration.sources import build_source_assets, is_daily
from orchestration.warehouse import WAREHOUSE_KEYS
from tessera.config import Home


def test_definitions_hold_raw_and_staged_per_source(tmp_path) -> None:
    defs = build_definitions(Home(tmp_path))
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    for spec in builtin_specs():
        assert f"raw/{spec.id}" in keys and f"staged/{spec.id}" in keys
    groups = {a.group_names_by_key[k] for a in defs.assets for k in a.keys}  # type: ignore[union-attr]
    assert groups == {"municipal", "court", "commercial", "transport", "linkage", "warehouse"}


def test_definitions_hold_the_linkage_assets(tmp_path) -> None:
    defs = build_definitions(Home(tmp_path))
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    for name in (
        "person_mentions",
        "person_model",
        "person_predictions",
        "person_clusters",
        "business_clusters",
        "evaluation",
    ):
        assert f"linkage/{name}" in keys
    for key in LINKAGE_KEYS:
        node = graph.get(key)
        assert node.group_name == "linkage" and node.description, key
    staged = {dg.AssetKey(["staged", s.id]) for s in builtin_specs()}
    assert staged <= set(graph.get(dg.AssetKey(["linkage", "person_mentions"])).parent_keys)
    assert staged <= set(graph.get(dg.AssetKey(["linkage", "business_clusters"])).parent_keys)


def test_materialise_a_source(fresh_copy: Home) -> None:
    spec = next(s for s in builtin_specs() if s.id == "rail_tickets")
    result = dg.materialize(build_source_assets(spec), resources=resources(fresh_copy))
    assert result.success
    mats = {e.asset_key.to_user_string(): e for e in result.get_asset_materialization_events()}
    raw_md = mats["raw/rail_tickets"].materialization.metadata
    staged_md = mats["staged/rail_tickets"].materialization.metadata
    staged = (
        records(fresh_copy)
        .filter(pl.col("source_id") == "rail_tickets")
        .select(pl.len())
        .collect()
        .item()
    )
    assert staged_md["dagster/row_count"].value == staged > 0
    assert raw_md["dagster/row_count"].value == staged + staged_md["rows_quarantined"].value
    assert "dagster/column_schema" in raw_md


def test_materialise_one_delivery_day(fresh_copy: Home) -> None:
    """A delta source's day partition lands and stages that day's files only; the
    checks come with the materialisation, accounting passes."""
    spec = next(s for s in builtin_specs() if s.id == "rail_tickets")
    assert is_daily(spec)
    result = dg.materialize(
        build_source_assets(spec, delivery_days(fresh_copy)),
        partition_key="2026-01-02",
        resources=resources(fresh_copy),
    )
    assert result.success
    days = (
        records(fresh_copy)
        .filter(pl.col("source_id") == "rail_tickets")
        .select(pl.col("delivered").unique())
        .collect()["delivered"]
        .to_list()
    )
    assert [d.isoformat() for d in days] == ["2026-01-02"]
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["file_accounting"] is True
    assert set(checks) == {
        "file_accounting",
        "validity_rates",
        "schema_drift",
        "duplicate_deliveries",
    }


def test_definitions_hold_checks_jobs_schedules_and_sensor(tmp_path) -> None:
    defs = build_definitions(Home(tmp_path))
    graph = defs.resolve_asset_graph()
    for key in WAREHOUSE_KEYS:
        assert graph.get(key).group_name == "warehouse" and graph.get(key).description
    checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    for spec in builtin_specs():
        assert (f"staged/{spec.id}", "file_accounting") in checks
        assert (f"raw/{spec.id}", "schema_drift") in checks
        partitioned = graph.get(dg.AssetKey(["raw", spec.id])).partitions_def is not None
        assert partitioned == is_daily(spec), spec.id
    assert ("linkage/person_clusters", "entity_size") in checks
    assert ("warehouse/build", "smoke") in checks
    assert {j.name for j in defs.resolve_all_job_defs()} >= {
        "daily_pipeline",
        "full_relink",
        "advance_world",
    }
    assert {s.name for s in defs.schedules or []} == {
        "daily_ingest_link_publish",
        "weekly_full_relink",
        "demo_advance_world",
    }
    assert defs.resolve_sensor_def("landing_sensor") is not None
    # Retry policies on database extraction and on the swap.
    raw_db = next(a for a in defs.assets if dg.AssetKey(["raw", "hukou_db"]) in a.keys)  # type: ignore[union-attr]
    assert raw_db.op.retry_policy is not None  # type: ignore[union-attr]


def test_dagster_definitions_validate(tmp_path) -> None:
    """The code location loads the way `dagster dev` loads it (pyproject's [tool.dagster])."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    exe = Path(sys.executable).with_name("dagster")
    env = {**os.environ, "TESSERA_HOME": str(tmp_path), "DAGSTER_HOME": str(tmp_path / "dagster")}
    (tmp_path / "dagster").mkdir()
    proc = subprocess.run(
        [str(exe), "definitions", "validate"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Validation successful for code location tessera" in proc.stderr + proc.stdout


def test_dg_lists_every_asset_and_check(tmp_path) -> None:
    """``dg list defs --json`` from the repository root (pyproject's [tool.dg]) loads the
    code location and lists exactly the assets, checks, jobs, schedules and sensor that
    build_definitions holds."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    venv = Path(sys.executable).parent
    (tmp_path / "dagster").mkdir()
    (tmp_path / "dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {
        **os.environ,
        "TESSERA_HOME": str(tmp_path / "home"),
        "DAGSTER_HOME": str(tmp_path / "dagster"),
        "VIRTUAL_ENV": str(venv.parent),  # as if activated: dg uses the project's .venv
    }
    proc = subprocess.run(
        [str(venv / "dg"), "list", "defs", "--json"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    listed = json.loads(proc.stdout)
    defs = build_definitions(Home(tmp_path / "home"))
    graph = defs.resolve_asset_graph()
    assert {a["asset_key"] for a in listed["assets"]} == {
        k.to_user_string() for k in graph.get_all_asset_keys()
    }
    assert {(c["asset_key"], c["name"]) for c in listed["asset_checks"]} == {
        (k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys
    }
    assert "warehouse/analyst_export" in {a["asset_key"] for a in listed["assets"]}
    assert {j["name"] for j in listed["jobs"]} == {
        "daily_pipeline",
        "full_relink",
        "advance_world",
    }
    assert {s["name"] for s in listed["schedules"]} == {s.name for s in defs.schedules or []}
    assert {s["name"] for s in listed["sensors"]} == {"landing_sensor"}


def test_daily_job_links_after_the_day_is_staged(tmp_path) -> None:
    """In the daily job (no model training, no full prediction) each clusters asset
    still comes after every staged source and the mentions, so a day's new mentions
    are linked in the run that stages them."""
    from orchestration.automation import daily_selection
    from orchestration.definitions import build_definitions
    from orchestration.linkage import BUSINESS_CLUSTERS, PERSON_CLUSTERS, PERSON_MENTIONS

    defs = build_definitions(Home(tmp_path / "home"))
    graph = defs.resolve_asset_graph()
    selected = daily_selection().resolve(graph)
    staged = {k for k in selected if k.path[0] == "staged"}
    assert staged

    def ancestors(key: dg.AssetKey) -> set[dg.AssetKey]:
        seen: set[dg.AssetKey] = set()
        todo = [key]
        while todo:
            for parent in graph.get(todo.pop()).parent_keys:
                if parent in selected and parent not in seen:
                    seen.add(parent)
                    todo.append(parent)
        return seen

    for key in (PERSON_CLUSTERS, BUSINESS_CLUSTERS):
        assert staged <= ancestors(key), key
    assert PERSON_MENTIONS in ancestors(PERSON_CLUSTERS)


def test_embedded_instance_stores_events_without_a_sync(tmp_path) -> None:
    """`tessera run` / `tessera ui`'s instance: Dagster's SQLite event log under the home's
    own ``history/runs`` (the YAML follows a copied home), connections with
    ``synchronous=OFF``, events stored and read back as usual."""
    import shutil

    import dagster as dg

    from orchestration.storage import OPEN_SHARDS, UnsyncedSqliteEventLogStorage
    from tessera.cli_pipeline import _instance, dagster_home

    home = Home(tmp_path / "a")
    with _instance(home) as instance:
        storage = instance.event_log_storage
        assert isinstance(storage, UnsyncedSqliteEventLogStorage)
        with storage.index_connection() as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 0

        @dg.asset
        def one() -> int:
            return 1

        result = dg.materialize([one], instance=instance)
        assert result.success
        mats = instance.fetch_materializations(dg.AssetKey("one"), limit=5).records
        assert len(mats) == 1
        assert storage.get_logs_for_run(result.run_id)
        # One connection per shard for the run's ~20 events, and only a few run
        # shards keep theirs open.
        from sqlalchemy import event

        connects: list[str] = []

        for shard, engine in storage._engines.items():
            event.listen(engine, "connect", lambda *_, s=shard: connects.append(s))
        second = dg.materialize([one], instance=instance)
        assert second.success
        assert len(instance.fetch_materializations(dg.AssetKey("one"), limit=5).records) == 2
        assert connects.count("index") == 0  # the index shard's connection is reused
        for _ in range(3):
            assert dg.materialize([one], instance=instance).success
        assert len(storage._engines) <= 1 + OPEN_SHARDS
    assert (home.dagster_home / "history" / "runs" / f"{result.run_id}.db").exists()

    copy = Home(tmp_path / "b")
    shutil.copytree(home.root, copy.root)
    text = (dagster_home(copy) / "dagster.yaml").read_text()
    assert str(copy.dagster_home.resolve() / "history" / "runs") in text
    assert str(home.dagster_home.resolve()) not in text


def test_isolated_calls_run_in_a_child_process(tmp_path, monkeypatch) -> None:
    """orchestration.isolate: with TESSERA_ISOLATE_STEPS=1 a step's call runs in another
    process and its exceptions come back; =0 runs it here; auto decides by the size of
    the staged mention files."""
    import os

    from orchestration import isolate

    home = Home(tmp_path / "home")
    monkeypatch.setenv("TESSERA_ISOLATE_STEPS", "1")
    assert isolate.warm(home)
    first, second = isolate.call(home, os.getpid), isolate.call(home, os.getpid)
    # A child per call (its memory goes back when it ends), none of them this process.
    assert os.getpid() not in (first, second) and first != second
    with pytest.raises(ValueError, match="invalid literal"):
        isolate.call(home, int, "not a number")
    monkeypatch.setenv("TESSERA_ISOLATE_STEPS", "0")
    assert isolate.call(home, os.getpid) == os.getpid()
    monkeypatch.delenv("TESSERA_ISOLATE_STEPS")
    assert not isolate.isolate(home)  # nothing staged
    monkeypatch.setattr(isolate, "AUTO_BYTES", -1)
    assert isolate.isolate(home)


def test_largest_entities_equal_those_of_a_full_sort() -> None:
    """The clusters asset's five largest entities (only the entities at least as large as
    the fifth are sorted) are those of sorting every entity by size, then ID: ties at
    the fifth size, fewer than five entities, none."""
    import random

    from orchestration.linkage import _largest
    from orchestration.metadata import md_table

    rng = random.Random(11)
    for _ in range(200):
        n = rng.randint(0, 12)
        sizes = pl.DataFrame(
            {
                "cluster_id": rng.sample([f"P{i:03d}" for i in range(50)], n),
                "len": [rng.randint(1, 4) for _ in range(n)],
            },
            schema={"cluster_id": pl.String, "len": pl.UInt32},
        )
        full = sizes.sort(["len", "cluster_id"], descending=[True, False]).head(5)
        assert _largest(sizes).value == md_table(full.iter_rows(), ("entity", "mentions")).value
