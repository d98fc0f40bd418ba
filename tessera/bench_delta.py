"""``tessera bench --delta N``: one day's delta of about N records, landing to published.

On a home whose world is linked and published (``tessera run``), the simulated
file-drop delta sources deliver the next day with about N records in all
(:func:`tessera.world_clock.advance` with ``delta_records``; the snapshot files and
the live databases wait for a later day). Then ``tessera run`` in a child process
materialises it the way the daily schedule does (ingest, incremental linking,
checks, build, publish, analyst export), and the bench reports its wall time, peak
RSS and the seconds of each Dagster step (``until_swap_seconds``: the same without
the analyst export, which runs after the new warehouse is live). Delivering is the
agencies' side and is timed apart.
"""

from __future__ import annotations

import time
from typing import Any

from tessera.config import Home

# Dagster step keys (an asset key's parts joined by "__") by stage of the day.
_STAGES = {
    "ingest": ("raw__", "staged__"),
    "linking": ("linkage__",),
    "publish": ("warehouse__build", "warehouse__publish"),
    "analyst_export": ("warehouse__analyst_export",),
}


def bench_delta(home: str, records: int = 10_000, mode: str = "auto") -> dict[str, Any]:
    """Deliver one day of about ``records`` delta records into ``home``, then time
    ``tessera run --mode mode`` on it (a child process). The home must hold a
    published world: the day is linked incrementally into it (``mode`` ``auto``)."""
    from tessera.bench import _run_stage
    from tessera.world_clock import advance

    h = Home.resolve(home)
    if not h.warehouse.exists():
        raise FileNotFoundError(f"{h.warehouse}: publish the world first (tessera run)")
    t = time.perf_counter()
    (day,) = advance(h, 1, delta_records=records)
    delivered = time.perf_counter() - t
    secs, rss, out = _run_stage(["run", "--home", str(h.root), "--mode", mode])
    steps: dict[str, float] = {}
    for run in out.get("runs", []):
        for key, s in run.get("steps", {}).items():
            steps[key] = steps.get(key, 0.0) + s
    stages = {
        name: round(sum(s for k, s in steps.items() if k.startswith(prefixes)), 2)
        for name, prefixes in _STAGES.items()
    }
    return {
        "day": day.day,
        "records_delivered": day.rows,
        "files": day.files,
        "deliver_seconds": round(delivered, 2),
        "landing_to_published_seconds": round(secs, 2),
        # The analyst export runs after the swap: analysts see the new warehouse then.
        "until_swap_seconds": round(secs - stages["analyst_export"], 2),
        "peak_rss_bytes": rss,
        "success": out.get("success"),
        "stages": stages,
        "steps": dict(sorted(steps.items(), key=lambda kv: -kv[1])),
        "publish": out.get("publish", {}),
    }
