"""``tessera bench``: time each stage in its own process, with its peak RSS.

Each stage runs as ``tessera <stage> --json`` in a child process; seconds are
wall-clock, peak RSS comes from ``wait4``'s rusage of that child alone. With
``--repeat N`` every stage runs N times on a fresh home and the median is
reported. Results are also written to ``bench/results/`` as JSON.
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
    """Simulate then ingest ``repeat`` times on a scratch home; median seconds per stage."""
    base = Path(home) if home else Path(tempfile.mkdtemp(prefix="tessera-bench-"))
    samples: dict[str, list[tuple[float, int, int]]] = {"simulate": [], "ingest": []}
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
    result = {
        "persons": persons,
        "days": days,
        "seed": seed,
        "repeat": repeat,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "stages": stages,
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
