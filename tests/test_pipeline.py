"""The Dagster pipeline end to end on the tiny world: the whole graph materialises and
publishes, a failing blocking check keeps the old warehouse, the landing sensor's
cursor prevents double runs, a killed run rerun gives the same warehouse, the UI
lists every asset and check, and incremental linking agrees with a full relink."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from linked_world import unmasked_identifiers

from orchestration.automation import landing_requests
from orchestration.definitions import build_definitions, resources
from orchestration.linkage import BUSINESS_CLUSTERS, EVALUATION, PERSON_CLUSTERS
from orchestration.warehouse import (
    ANALYST_EXPORT,
    BUILD,
    PUBLISH,
    SYSTEM_USER,
    analyst_export_path,
    candidate_path,
)
from tessera.cli_pipeline import run_pipeline
from tessera.config import Home

ROOT = Path(__file__).resolve().parents[1]
TESSERA = [sys.executable, "-m", "tessera.cli"]


@pytest.fixture(scope="module")
def piped(simulated_home: Home, tmp_path_factory: pytest.TempPathFactory):
    """The tiny world after one `tessera run` (full link, published): (home, output,
    instance). Read-only: tests copy it."""
    home = Home(tmp_path_factory.mktemp("piped") / "home")
    shutil.copytree(simulated_home.root, home.root)
    instance = dg.DagsterInstance.ephemeral()
    out = run_pipeline(home, "full", instance=instance)
    return home, out, instance


def _copy(home: Home, tmp_path: Path) -> Home:
    dst = Home(tmp_path / "home")
    shutil.copytree(home.root, dst.root, ignore=shutil.ignore_patterns("dagster"))
    return dst


def test_whole_graph_materialises_and_publishes(piped) -> None:
    home, out, instance = piped
    assert out["success"], out["runs"]
    # One ingest run per earlier delivery day, then the pipeline run on the last day.
    assert [r["run"] for r in out["runs"]] == [
        "ingest 2026-01-01",
        "ingest 2026-01-02",
        "pipeline 2026-01-03",
    ]
    graph = build_definitions(home).resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.description, f"{key.to_user_string()} has no description"
        ev = instance.get_latest_materialization_event(key)
        assert ev is not None, f"{key.to_user_string()} was not materialised"
        md = ev.asset_materialization.metadata
        assert "dagster/row_count" in md, key
    # The only failing checks of the tiny world are the deliberate faults (warnings).
    failed = {c for r in out["runs"] for c in r["failed_checks"]}
    assert failed and all(c.endswith("(WARN)") for c in failed), failed
    assert any("duplicate_deliveries" in c for c in failed)
    assert any("schema_drift" in c for c in failed)
    pub = out["publish"]
    with duckdb.connect(str(home.warehouse), read_only=True) as con:
        persons = con.execute("SELECT count(*) FROM entities WHERE entity_type='person'").fetchone()
    assert pub["person_entities"] == persons[0] > 0
    assert pub["changed_new"] == pub["changed_entities_after"] == pub["dagster/row_count"]
    assert not candidate_path(home).exists(), "the candidate was moved over the live file"
    ev = instance.get_latest_materialization_event(EVALUATION).asset_materialization.metadata
    assert ev["person_model_pairwise_precision"].value >= 0.998
    assert ev["person_model_pairwise_recall"].value >= 0.97
    clusters = instance.get_latest_materialization_event(PERSON_CLUSTERS)
    md = clusters.asset_materialization.metadata
    assert md["mode"].value == "full" and "match weight" in md["match_weight_histogram"].value
    # The export started the next day's copies of the warehouse and the export.
    exp = instance.get_latest_materialization_event(ANALYST_EXPORT).asset_materialization
    started = exp.metadata["next_day_copies"].value
    assert set(started) == {home.warehouse.name, analyst_export_path(home).name}
    assert set(started.values()) <= {"started", "ready", "running"}, started
    from warehouse import prefetch

    for live in (home.warehouse, analyst_export_path(home)):
        assert prefetch.take(live, live.with_name(live.name + ".taken"))
        taken = live.with_name(live.name + ".taken")
        assert taken.read_bytes() == live.read_bytes()
        taken.unlink()


def test_failing_blocking_check_keeps_the_old_warehouse(piped, tmp_path) -> None:
    home = _copy(piped[0], tmp_path)
    before = home.warehouse.read_bytes()
    defs = build_definitions(home)
    result = dg.materialize(
        list(defs.assets or []),
        selection=[PERSON_CLUSTERS, BUSINESS_CLUSTERS, EVALUATION, BUILD, PUBLISH],
        resources=resources(home, max_entity_mentions=1),  # every real entity is "too big"
        raise_on_error=False,
    )
    assert not result.success
    failed = {
        (e.asset_key, e.check_name) for e in result.get_asset_check_evaluations() if not e.passed
    }
    assert (PERSON_CLUSTERS, "entity_size") in failed
    done = {e.asset_key for e in result.get_asset_materialization_events()}
    assert BUILD not in done and PUBLISH not in done
    assert home.warehouse.read_bytes() == before
    with duckdb.connect(str(home.warehouse), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM entities").fetchone()[0] > 0


def test_failing_smoke_check_blocks_the_swap(piped, tmp_path) -> None:
    """A candidate with far fewer entities than the live warehouse is not swapped in."""
    home = _copy(piped[0], tmp_path)
    before = home.warehouse.read_bytes()
    defs = build_definitions(home)
    result = dg.materialize(
        list(defs.assets or []),
        selection=[BUILD, PUBLISH],
        resources=resources(home, max_entity_drop=-1.0),  # any candidate "lost" entities
        raise_on_error=False,
    )
    assert not result.success
    assert [e.check_name for e in result.get_asset_check_evaluations() if not e.passed] == ["smoke"]
    assert PUBLISH not in {e.asset_key for e in result.get_asset_materialization_events()}
    assert home.warehouse.read_bytes() == before
    assert candidate_path(home).exists(), "the rejected candidate stays for inspection"


def _unmasked_in_export(home: Home) -> list[tuple[str, str]]:
    """(column, value) of every resident ID or phone number of the live warehouse that
    appears unmasked anywhere in the analyst export: in any column of any table, JSON
    included, also with spaces or dashes inside (decimals of floats are not numbers)."""
    con = duckdb.connect()
    try:
        con.execute("ATTACH ? AS w (READ_ONLY)", [str(home.warehouse)])
        con.execute("ATTACH ? AS x (READ_ONLY)", [str(analyst_export_path(home))])
        return unmasked_identifiers(con)
    finally:
        con.close()


def test_analyst_export_is_written_masked_and_audited(piped, tmp_path) -> None:
    """After the publish, ``warehouse/analyst_export`` holds the masked analyst warehouse
    in ``export/analyst.duckdb`` (no resident ID or phone number in clear anywhere in
    it), exported by the pipeline's system user and audited; materialised again, it
    replaces the file and writes one more audit row."""
    from warehouse import audit
    from warehouse.session import Session

    home, _, instance = piped
    path = analyst_export_path(home)
    assert path.exists() and not path.with_name("analyst.next.duckdb").exists()
    md = instance.get_latest_materialization_event(ANALYST_EXPORT).asset_materialization.metadata
    assert md["path"].value == str(path) and md["size_bytes"].value == path.stat().st_size
    counts = md["rows_per_table"].value
    with duckdb.connect(str(path), read_only=True) as con:
        got = {
            t: con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]
            for (t,) in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()
        }
        masked = con.execute(
            "SELECT count(*) FILTER (WHERE regexp_full_match(id_number, '[0-9]{6}\\*{8}[0-9]{3}[0-9X]')), "
            "count(*) FILTER (WHERE regexp_full_match(phone, '[0-9]{3}\\*{4}[0-9]{4}')), "
            "count(id_number), count(phone) FROM entities"
        ).fetchone()
    assert got == counts and "person_match_features" not in got
    with duckdb.connect(str(home.warehouse), read_only=True) as con:
        assert counts["entities"] == con.execute("SELECT count(*) FROM entities").fetchone()[0]
    assert masked[0] == masked[2] > 0 and masked[1] == masked[3] > 0, masked
    assert _unmasked_in_export(home) == []
    exports = audit.read(home, action="export")
    assert [(r["user"], r["role"], r["outcome"]) for r in exports] == [(SYSTEM_USER, "admin", "ok")]
    # Naming the system user on the command line grants nothing: it is an analyst there.
    with Session(home, user=SYSTEM_USER) as s:
        assert s.principal.role == "analyst"

    again = _copy(home, tmp_path)
    before = analyst_export_path(again).stat().st_mtime_ns
    result = dg.materialize(
        list(build_definitions(again).assets or []),
        selection=[ANALYST_EXPORT],
        resources=resources(again),
    )
    assert result.success
    assert analyst_export_path(again).stat().st_mtime_ns > before
    assert len(audit.read(again, action="export")) == 2
    assert _unmasked_in_export(again) == []


def test_landing_sensor_cursor_prevents_double_runs(fresh_copy: Home) -> None:
    defs = build_definitions(fresh_copy)
    sensor = defs.resolve_sensor_def("landing_sensor")
    ctx = dg.build_sensor_context(cursor=None, resources=resources(fresh_copy))
    first = sensor(ctx)
    assert [r.partition_key for r in first.run_requests] == [
        "2026-01-01",
        "2026-01-02",
        "2026-01-03",
    ]
    assert len({r.run_key for r in first.run_requests}) == 3
    again = sensor(dg.build_sensor_context(cursor=first.cursor, resources=resources(fresh_copy)))
    assert again.run_requests == [] and again.cursor == first.cursor
    # A late file for day 2 changes that day's fingerprint: exactly one new request.
    late = next((fresh_copy.landing / "rail_tickets").glob("2026-01-02/*"))
    shutil.copyfile(late, late.with_name("late_" + late.name))
    third = sensor(dg.build_sensor_context(cursor=first.cursor, resources=resources(fresh_copy)))
    assert [r.partition_key for r in third.run_requests] == ["2026-01-02"]
    assert third.run_requests[0].run_key not in {r.run_key for r in first.run_requests}


def test_landing_requests_skip_ingested_days(piped) -> None:
    """After a run, the ledger knows every delivered file: nothing is pending."""
    home = piped[0]
    from connectors.catalog import load_specs
    from orchestration.automation import delivery_days

    requests, cursor = landing_requests(home, load_specs(home.sources_dir), {}, delivery_days(home))
    assert requests == [] and cursor == {}


def test_daily_schedule_asks_for_pending_days(fresh_copy: Home) -> None:
    defs = build_definitions(fresh_copy)
    schedule = defs.resolve_schedule_def("daily_ingest_link_publish")
    ctx = dg.build_schedule_context(
        scheduled_execution_time=datetime(2026, 1, 4, 6, tzinfo=UTC),
        resources=resources(fresh_copy),
        repository_def=defs.get_repository_def(),
    )
    requests = list(schedule.evaluate_tick(ctx).run_requests or [])
    assert [r.partition_key for r in requests] == ["2026-01-01", "2026-01-02", "2026-01-03"]
    assert all(r.tags.get("tessera/pipeline") == "writer" for r in requests)


def test_advance_delivers_the_next_day(fresh_copy: Home) -> None:
    from tessera.world_clock import advance, world_config

    assert world_config(fresh_copy).days == 3
    before = {
        p.relative_to(fresh_copy.root): p.read_bytes() for p in fresh_copy.landing.rglob("*.*")
    }
    (day,) = advance(fresh_copy, 1)
    assert day.day == "2026-01-04" and day.files > 0
    assert world_config(fresh_copy).days == 4
    after = {p.relative_to(fresh_copy.root): p for p in fresh_copy.landing.rglob("*.*")}
    assert all(after[k].read_bytes() == v for k, v in before.items()), "old days unchanged"
    assert {k.parts[2] for k in set(after) - set(before)} == {"2026-01-04"}


# ------------------------------------------------------------------ slow


def _tables(path: Path) -> dict[str, list[tuple]]:
    """Every published table's rows, sorted, without timestamp columns and run metadata."""
    out = {}
    with duckdb.connect(str(path), read_only=True) as con:
        tables = [
            r[0]
            for r in con.execute(
                "SELECT table_name FROM duckdb_tables() "
                "WHERE table_name NOT IN ('runs', 'publish_inputs')"
            ).fetchall()
        ]
        for t in sorted(tables):
            cols = [
                c
                for c, typ in con.execute(
                    "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = ?", [t]
                ).fetchall()
                if "TIMESTAMP" not in typ and c not in ("ingested_at", "detected_at")
            ]
            sel = ", ".join(f'CAST("{c}" AS VARCHAR)' for c in cols)
            out[t] = sorted(con.execute(f'SELECT {sel} FROM "{t}"').fetchall(), key=repr)
    return out


@pytest.mark.slow
def test_killed_run_rerun_gives_the_same_warehouse(simulated_home: Home, tmp_path) -> None:
    env = {**os.environ, "TESSERA_LOG": "ERROR"}
    whole = Home(tmp_path / "whole")
    shutil.copytree(simulated_home.root, whole.root)
    subprocess.run(
        [*TESSERA, "run", "--home", str(whole.root), "--json"],
        env=env,
        check=True,
        capture_output=True,
        cwd=ROOT,
        timeout=900,
    )

    killed = Home(tmp_path / "killed")
    shutil.copytree(simulated_home.root, killed.root)
    proc = subprocess.Popen(
        [*TESSERA, "run", "--home", str(killed.root), "--json"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    # Kill it in the middle of linking: the features are written, the entities not yet.
    marker = killed.lake / "linkage" / "person_features.parquet"
    deadline = time.monotonic() + 600
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not killed.warehouse.exists()
    rerun = subprocess.run(
        [*TESSERA, "run", "--home", str(killed.root), "--json"],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=900,
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    a, b = _tables(whole.warehouse), _tables(killed.warehouse)
    assert a.keys() == b.keys()
    for t in a:
        assert a[t] == b[t], f"table {t} differs after kill and rerun"
    # Nothing ingested twice: one ledger line per delivery and status.
    lines = [json.loads(x) for x in (killed.state / "ledger.jsonl").read_text().splitlines()]
    keys = [(e["file"], e["status"]) for e in lines]
    assert len(keys) == len(set(keys))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


QUERY = """{ assetNodes { assetKey { path }
  assetChecksOrError { ... on AssetChecks { checks { name blocking } } } } }"""


@pytest.mark.slow
def test_ui_lists_every_asset_and_check(tmp_path) -> None:
    from tessera.cli_pipeline import ui_command, ui_environment

    home = Home(tmp_path / "home").ensure()
    port = _free_port()
    defs = build_definitions(home)
    graph = defs.resolve_asset_graph()
    want_assets = {k.to_user_string() for k in graph.get_all_asset_keys()}
    want_checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    log = (tmp_path / "ui.log").open("w")
    proc = subprocess.Popen(
        ui_command(port),
        cwd=ROOT,
        env=ui_environment(home),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        data = None
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                req = urllib.request.Request(
                    f"http://127.0.0.1:{port}/graphql",
                    data=json.dumps({"query": QUERY}).encode(),
                    headers={"Content-Type": "application/json"},
                )
                body = json.loads(urllib.request.urlopen(req, timeout=10).read())
                if body.get("data", {}).get("assetNodes"):
                    data = body["data"]
                    break
            except OSError:
                pass
            time.sleep(1)
        assert data is not None, (tmp_path / "ui.log").read_text()[-3000:]
        got_assets = {"/".join(n["assetKey"]["path"]) for n in data["assetNodes"]}
        got_checks = {
            ("/".join(n["assetKey"]["path"]), c["name"])
            for n in data["assetNodes"]
            for c in n["assetChecksOrError"].get("checks", [])
        }
        assert got_assets == want_assets
        assert got_checks == want_checks
        blocking = {
            c["name"]
            for n in data["assetNodes"]
            for c in n["assetChecksOrError"].get("checks", [])
            if c["blocking"]
        }
        assert {
            "file_accounting",
            "entity_size",
            "duplicate_free_sources",
            "smoke",
            "accuracy_against_truth",
        } <= blocking
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@pytest.mark.slow
def test_incremental_days_agree_with_full_relink(piped, tmp_path) -> None:
    """Two more days linked incrementally by the pipeline, then compared with a full
    relink of the same lake (``linkage.incremental.compare_with_full``)."""
    from linkage.incremental import compare_with_full
    from tessera.world_clock import advance

    home = _copy(piped[0], tmp_path)
    instance = dg.DagsterInstance.ephemeral()
    for _ in range(2):
        advance(home, 1)
        out = run_pipeline(home, "auto", instance=instance)
        assert out["success"], out["runs"]
        md = instance.get_latest_materialization_event(PERSON_CLUSTERS).asset_materialization
        assert md.metadata["mode"].value == "incremental"
        assert out["publish"]["changed_new_mentions"] > 0
    report = compare_with_full(home)
    print(json.dumps(report, indent=2, default=str))
    for etype in ("person", "business"):
        r = report[etype]
        differing = r["pairs_only_incremental"] + r["pairs_only_full"]
        assert differing <= 0.01 * max(r["pairs_full"], 1), (etype, r)


def test_run_reports_seconds_per_step(piped) -> None:
    """Each run's ``steps``: the seconds of every Dagster step it executed, keyed like the
    asset (what `tessera bench --delta` sums into ingest, linking and publish)."""
    _, out, _ = piped
    pipeline = out["runs"][-1]
    steps = pipeline["steps"]
    for key in ("linkage__person_clusters", "warehouse__build", "warehouse__publish"):
        assert key in steps, sorted(steps)
    assert all(s >= 0 for s in steps.values())
    assert 0 < sum(steps.values()) <= pipeline["seconds"] * 1.05
    assert list(steps.values()) == sorted(steps.values(), reverse=True)
