"""``tessera bench``: time each stage (simulate, ingest, link, publish) in its own
process, with its peak RSS.

Each stage runs as ``tessera <stage> --json`` in a child process; seconds are
wall-clock, peak RSS comes from ``wait4``'s rusage of that child alone. With
``--repeat N`` every stage runs N times on a fresh home and the median is
reported. Database extraction is measured per engine (SQLite, PostgreSQL,
MariaDB) on one system's full load. Results are also written to
``bench/results/`` as JSON.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def _run_stage(args: list[str]) -> tuple[float, int, dict]:
    """Run ``tessera`` with args; returns (seconds, peak RSS bytes, parsed JSON output)."""
    cmd = [sys.executable, "-m", "tessera.cli", *args, "--json"]
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        secs = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        if proc.returncode != 0:
            raise RuntimeError(f"stage {args[0]} failed ({proc.returncode}): {err[-2000:]}")
        out.seek(0)
        payload = json.loads(out.read().decode() or "{}")
    return secs, usage.ru_maxrss * 1024, payload


def run_bench(
    persons: int, days: int, seed: int, home: str | None, repeat: int = 1
) -> dict[str, Any]:
    """Simulate, ingest, link and publish ``repeat`` times on a scratch home; median
    seconds per stage. Rows: file rows delivered, rows read, person mentions linked,
    entities published."""
    base = Path(home) if home else Path(tempfile.mkdtemp(prefix="tessera-bench-"))
    samples: dict[str, list[tuple[float, int, int]]] = {
        "simulate": [],
        "ingest": [],
        "link": [],
        "publish": [],
        "queries": [],  # warehouse/bench_queries.py: latency percentiles in "query_latency"
    }
    query_latency: dict[str, Any] = {}
    for i in range(repeat):
        h = base / f"run{i}"
        if h.exists():
            shutil.rmtree(h)
        secs, rss, out = _run_stage(
            [
                "simulate",
                "--home",
                str(h),
                "--persons",
                str(persons),
                "--days",
                str(days),
                "--seed",
                str(seed),
            ]
        )
        samples["simulate"].append((secs, rss, int(out.get("rows", 0))))
        secs, rss, out = _run_stage(["ingest", "--home", str(h)])
        samples["ingest"].append((secs, rss, int(out.get("totals", {}).get("read", 0))))
        # Rows: person mentions linked; entities published.
        secs, rss, out = _run_stage(["link", "--home", str(h)])
        samples["link"].append((secs, rss, int(out["link"]["person"]["mentions"])))
        secs, rss, out = _run_stage(["publish", "--home", str(h)])
        samples["publish"].append((secs, rss, int(out["counts"]["entities"])))
        secs, rss, query_latency = _run_stage(["bench-queries", "--home", str(h)])
        samples["queries"].append((secs, rss, int(query_latency["queries"])))
        if i < repeat - 1:
            shutil.rmtree(h, ignore_errors=True)
    stages = []
    for name, runs in samples.items():
        med = statistics.median(r[0] for r in runs)
        rows = runs[0][2]
        stages.append(
            {
                "stage": name,
                "seconds_median": round(med, 2),
                "seconds_all": [round(r[0], 2) for r in runs],
                "rows": rows,
                "rows_per_second": round(rows / med, 1) if med else 0.0,
                "peak_rss_mib": round(max(r[1] for r in runs) / 2**20, 1),
            }
        )
    extraction = bench_extraction(min(persons, 100_000), seed, repeat=max(3, repeat))
    result = {
        "persons": persons,
        "days": days,
        "seed": seed,
        "repeat": repeat,
        "extraction": extraction,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "stages": stages,
        "query_latency": query_latency,
    }
    outdir = Path("bench/results")
    if outdir.parent.is_dir():
        outdir.mkdir(exist_ok=True)
        (outdir / f"bench-{persons}.json").write_text(
            json.dumps(result, indent=2), encoding="utf-8"
        )
    if not home:
        shutil.rmtree(base, ignore_errors=True)
    return result


def bench_pipeline(persons: int, days: int, seed: int, home: str | None) -> dict[str, Any]:
    """The ``pipeline`` stage: simulate, then the whole Dagster graph with ``tessera run``
    (ingest every day, full link, evaluation, checks, publish) in a child process;
    seconds, peak RSS and the entities published. Written to
    ``bench/results/pipeline-<persons>.json``."""
    base = Path(home) if home else Path(tempfile.mkdtemp(prefix="tessera-pbench-"))
    h = base / "pipeline"
    if h.exists():
        shutil.rmtree(h)
    sim = ["simulate", "--home", str(h), "--persons", str(persons), "--days", str(days),
           "--seed", str(seed)]  # fmt: skip
    _run_stage(sim)
    secs, rss, out = _run_stage(["run", "--home", str(h)])
    result = {
        "persons": persons,
        "days": days,
        "seed": seed,
        "stage": "pipeline",
        "seconds": round(secs, 2),
        "peak_rss_mib": round(rss / 2**20, 1),
        "entities": sum(
            v
            for k, v in out.get("publish", {}).items()
            if k.endswith("_entities") and not k.startswith("changed_")
        ),  # fmt: skip
        "runs": [{k: r[k] for k in ("run", "seconds", "materialised")} for r in out["runs"]],
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    outdir = Path("bench/results")
    if outdir.parent.is_dir():
        outdir.mkdir(exist_ok=True)
        (outdir / f"pipeline-{persons}.json").write_text(json.dumps(result, indent=2), "utf-8")
    if not home:
        shutil.rmtree(base, ignore_errors=True)
    return result


def bench_linkage(home: str, repeat: int = 1, entity_type: str = "person") -> dict[str, Any]:
    """Train, predict and cluster ``entity_type`` on an ingested home ``repeat`` times,
    each in a child process with a fresh model (so training is timed): median
    seconds per step, candidate pairs, pairs per mention, pairs per second (Splink's
    blocking + scoring) and peak RSS."""
    runs = []
    with tempfile.TemporaryDirectory(prefix="tessera-lbench-") as tmp:
        for i in range(repeat):
            secs, rss, out = _run_stage(
                ["link-model", "--home", home, "--type", entity_type,
                 "--model", str(Path(tmp) / f"model{i}.json")]
            )  # fmt: skip
            runs.append({**out, "wall_seconds": round(secs, 2), "peak_rss_mib": rss / 2**20})
    first = runs[0]
    steps = sorted({k for r in runs for k in r["seconds"]})
    result = {
        "home": home,
        "entity_type": entity_type,
        "repeat": repeat,
        "mentions": first["mentions"],
        "candidate_pairs": first["candidate_pairs"],
        "pairs_per_mention": first["pairs_per_mention"],
        "seconds_median": {
            k: round(statistics.median(r["seconds"].get(k, 0.0) for r in runs), 2) for k in steps
        },
        "train_predict_cluster_seconds_median": round(
            statistics.median(r["train_predict_cluster_seconds"] for r in runs), 2
        ),
        "train_predict_cluster_seconds_all": [r["train_predict_cluster_seconds"] for r in runs],
        "pairs_per_second_median": round(statistics.median(r["pairs_per_second"] for r in runs)),
        "peak_rss_mib_max": round(max(r["peak_rss_mib"] for r in runs), 1),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    outdir = Path("bench/results")
    if outdir.parent.is_dir():
        outdir.mkdir(exist_ok=True)
        (outdir / f"linkage-{entity_type}-{first['mentions']}.json").write_text(
            json.dumps(result, indent=2), encoding="utf-8"
        )
    return result


DEFAULT_SERVERS = {
    "postgres": "postgresql://postgres@127.0.0.1:5432/postgres",
    "mysql": "mysql://root@127.0.0.1:3306/",
}


def _drop_database(engine: str, server: str, name: str) -> None:
    if engine == "postgres":
        import psycopg2

        con = psycopg2.connect(server)
        con.autocommit = True
        con.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        con.close()
    elif engine == "mysql":
        import pymysql

        from connectors.database import mysql_connect_args

        con = pymysql.connect(**mysql_connect_args(server))
        con.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
        con.close()


def bench_extraction(
    persons: int, seed: int, repeat: int = 3, source_id: str = "hukou_db"
) -> list[dict]:
    """Full-load extraction rows/s of one database system on each engine that answers.

    SQLite always; PostgreSQL and MariaDB at ``TESSERA_PG_URL`` / ``TESSERA_MYSQL_URL``
    (else the machine's local servers). A throwaway database is filled once per
    engine, extracted ``repeat`` times from an empty cursor, and dropped.
    """
    from connectors.catalog.databases import DATABASE_PROFILES, DATABASE_SPECS
    from connectors.database import SourceDatabaseError, extract, preflight, with_database
    from simulation.databases import write_database_day
    from simulation.world import WorldConfig, generate_world

    spec = {s.id: s for s in DATABASE_SPECS}[source_id]
    world = generate_world(WorldConfig(persons=persons, seed=seed, days=1))
    servers = {
        "postgres": os.environ.get("TESSERA_PG_URL") or DEFAULT_SERVERS["postgres"],
        "mysql": os.environ.get("TESSERA_MYSQL_URL") or DEFAULT_SERVERS["mysql"],
    }
    out = []
    with tempfile.TemporaryDirectory(prefix="tessera-xbench-") as tmp:
        for engine in ("sqlite", "postgres", "mysql"):
            name = f"tessera_bench_{os.getpid()}_{source_id}"
            url = (
                f"sqlite://{tmp}/{name}.sqlite"
                if engine == "sqlite"
                else with_database(servers[engine], name)
            )
            if engine != "sqlite":
                try:
                    preflight(source_id, servers[engine])
                except SourceDatabaseError as exc:
                    out.append({"engine": engine, "skipped": str(exc)})
                    continue
            try:
                t0 = time.perf_counter()
                log = write_database_day(
                    world, spec, DATABASE_PROFILES[source_id], 0, url, Path(tmp) / "truth"
                )
                fill = time.perf_counter() - t0
                secs, rows = [], 0
                for _ in range(repeat):
                    t0 = time.perf_counter()
                    ext = extract(spec, url, None)
                    secs.append(time.perf_counter() - t0)
                    rows = ext.rows.height
                med = statistics.median(secs)
                out.append(
                    {
                        "engine": engine,
                        "source": source_id,
                        "rows": rows,
                        "fill_seconds": round(fill, 2),
                        "fill_rows": log.inserted,
                        "extract_seconds_median": round(med, 3),
                        "extract_seconds_all": [round(s, 3) for s in secs],
                        "rows_per_second": round(rows / med),
                    }
                )
            finally:
                if engine != "sqlite":
                    _drop_database(engine, servers[engine], name)
    return out
