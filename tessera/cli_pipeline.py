"""``tessera run``, ``tessera ui`` and ``tessera advance``: the Dagster pipeline from the
command line.

``tessera run`` materialises the graph in this process with ``dagster.materialize``
over the same :func:`orchestration.definitions.build_definitions` the UI loads, on
the Dagster instance under ``$TESSERA_HOME/dagster`` (so its runs show in the UI):
one run per pending delivery day lands and stages that day's delta files (in day
order), then one run over the day's partition does the rest (snapshots, databases,
linking, evaluation, build, checks, publish). Linking is ``auto`` unless
``--mode`` says otherwise; a full link also retrains the model.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tessera.config import Home

INSTANCE_YAML = """\
# Written by `tessera ui` / `tessera run`: the local Dagster instance of this home.
# One pipeline run writes the lake at a time, in the order runs were asked for.
concurrency:
  runs:
    max_concurrent_runs: 4
    tag_concurrency_limits:
      - key: tessera/pipeline
        limit: 1
telemetry:
  enabled: false
# Dagster's SQLite event log without a disk sync per event (orchestration/storage.py).
event_log_storage:
  module: orchestration.storage
  class: UnsyncedSqliteEventLogStorage
  config:
    base_dir: {events}
"""


def project_root() -> Path | None:
    """The directory whose ``pyproject.toml`` names the code location, if any."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "pyproject.toml").exists() else None


def dagster_home(home: Home) -> Path:
    """``$TESSERA_HOME/dagster`` with its instance configuration, written again when it
    differs (the event log's directory is absolute: a moved or copied home gets its
    own)."""
    path = home.dagster_home
    path.mkdir(parents=True, exist_ok=True)
    cfg = path / "dagster.yaml"
    text = INSTANCE_YAML.format(events=json.dumps(str(path.resolve() / "history" / "runs")))
    if not cfg.exists() or cfg.read_text(encoding="utf-8") != text:
        cfg.write_text(text, encoding="utf-8")
    return path


def _instance(home: Home):
    import dagster as dg

    return dg.DagsterInstance.from_config(str(dagster_home(home)))


def _failed_checks(result: Any) -> list[str]:
    out = []
    for ev in result.get_asset_check_evaluations():
        if not ev.passed:
            sev = ev.severity.value if ev.severity is not None else "ERROR"
            out.append(f"{ev.asset_key.to_user_string()}:{ev.check_name} ({sev})")
    return out


def _step_seconds(instance: Any, run_id: str) -> dict[str, float]:
    """Seconds per step of a run (the step key is the asset's, ``linkage__person_clusters``),
    from the instance's event log, longest first."""
    stats = instance.get_run_step_stats(run_id)
    secs = {
        st.step_key: round(st.end_time - st.start_time, 2)
        for st in stats
        if st.start_time is not None and st.end_time is not None
    }
    return dict(sorted(secs.items(), key=lambda kv: -kv[1]))


def run_pipeline(
    home: Home,
    mode: str = "auto",
    *,
    instance: Any = None,
    thresholds: dict[str, Any] | None = None,
    progress: Any = None,
    log_level: str = "WARNING",
) -> dict[str, Any]:
    """Materialise everything pending in ``home``; returns per run what was
    materialised, the failed checks and the publish metadata. ``success`` is False
    when a run failed (a blocking check, an error): the live warehouse is then the
    previous one."""
    import dagster as dg

    from connectors.catalog import load_specs
    from connectors.daily import delivered_days, pending_files
    from orchestration.automation import daily_selection, link_run_config
    from orchestration.definitions import build_definitions, resources
    from orchestration.linkage import choose_mode
    from orchestration.sources import is_daily
    from orchestration.warehouse import PUBLISH

    home = home.ensure()
    # A large world's heavy steps run in forked children: the fork server imports
    # their modules while the ingest runs (orchestration.isolate).
    from orchestration import isolate

    isolate.warm(home)
    defs = build_definitions(home)
    assets = list(defs.assets or [])
    res = resources(home, **(thresholds or {}))
    instance = instance or _instance(home)
    specs = load_specs(home.sources_dir)
    daily_keys = [
        dg.AssetKey([layer, s.id]) for s in specs if is_daily(s) for layer in ("raw", "staged")
    ]
    pending = list(pending_files(home, specs))
    delivered = sorted({d for s in specs if is_daily(s) for d in delivered_days(home, s)})
    last = pending[-1] if pending else (delivered[-1] if delivered else None)
    runs: list[dict[str, Any]] = []
    loggers = {"console": {"config": {"log_level": log_level}}}

    def record(name: str, result: Any, t0: float) -> bool:
        mats = result.get_asset_materialization_events()
        runs.append(
            {
                "run": name,
                "run_id": result.run_id,
                "success": result.success,
                "materialised": len(mats),
                "failed_checks": _failed_checks(result),
                "seconds": round(time.perf_counter() - t0, 2),
                "steps": _step_seconds(instance, result.run_id),
            }
        )
        if progress:
            progress(runs[-1])
        return bool(result.success)

    ok = True
    for day in pending[:-1]:
        t0 = time.perf_counter()
        result = dg.materialize(
            assets,
            selection=daily_keys,
            partition_key=day,
            resources=res,
            instance=instance,
            raise_on_error=False,
            tags={"tessera/pipeline": "writer"},
            run_config=dg.RunConfig(loggers=loggers),
        )
        if not record(f"ingest {day}", result, t0):
            ok = False
            break
    publish_md: dict[str, Any] = {}
    if ok:
        full = mode == "full" or any(
            choose_mode(home, t, mode) == "full" for t in ("person", "business")
        )
        selection = dg.AssetSelection.all() if full else daily_selection()
        if not full:
            # The incremental publish starts from a copy of the live warehouse: made
            # while the ingest runs (its steps leave a core idle), not in the build.
            # The person mentions asset starts it too, for runs launched elsewhere.
            from warehouse import prefetch

            prefetch.start(home.warehouse)
        t0 = time.perf_counter()
        result = dg.materialize(
            assets,
            selection=selection,
            partition_key=last,
            resources=res,
            instance=instance,
            run_config=dg.RunConfig(ops=link_run_config(mode).ops, loggers=loggers),
            raise_on_error=False,
            tags={"tessera/pipeline": "writer"},
        )
        ok = record(f"pipeline {last or '(no delivery day)'}", result, t0)
        for ev in result.get_asset_materialization_events():
            if ev.asset_key == PUBLISH:
                md = ev.materialization.metadata
                publish_md = {k: getattr(v, "value", v) for k, v in md.items() if k != "preview"}
    return {"success": ok, "home": str(home.root), "runs": runs, "publish": publish_md}


def _print_run(r: dict[str, Any]) -> None:
    from rich.console import Console

    mark = "[green]ok[/]" if r["success"] else "[red]FAILED[/]"
    Console().print(
        f"{r['run']}: {mark}, {r['materialised']} assets in {r['seconds']} s"
        + (f"; failed checks: {', '.join(r['failed_checks'])}" if r["failed_checks"] else "")
    )


def _print_publish(pub: dict[str, Any]) -> None:
    from rich.console import Console

    if not pub:
        Console().print("nothing published: the live warehouse is unchanged")
        return
    ents = ", ".join(
        f"{k.removesuffix('_entities')} {v:,}"
        for k, v in pub.items()
        if k.endswith("_entities") and not k.startswith("changed_")
    )
    ch = {k.removeprefix("changed_"): v for k, v in pub.items() if k.startswith("changed_")}
    Console().print(
        f"published {pub.get('path')}: {ents}; since the last publish: {ch.get('new', 0):,} new, "
        f"{ch.get('grown', 0):,} grown, {ch.get('merged', 0):,} merged, {ch.get('split', 0):,} "
        f"split, {ch.get('retired', 0):,} retired entities ({ch.get('new_mentions', 0):,} new mentions)"
    )


def cmd_run(args: argparse.Namespace) -> int:
    home = Home.resolve(args.home)
    out = run_pipeline(home, args.mode, progress=None if args.json else _print_run)
    if args.json:
        sys.stdout.write(json.dumps(out, indent=2, default=str) + "\n")
    else:
        _print_publish(out["publish"])
    return 0 if out["success"] else 1


def cmd_advance(args: argparse.Namespace) -> int:
    from tessera.world_clock import advance

    home = Home.resolve(args.home)
    days = []
    for _ in range(args.days):
        (day,) = advance(home, 1)
        out = run_pipeline(home, args.mode, progress=None if args.json else _print_run)
        days.append({"day": day.day, "files": day.files, "rows": day.rows, **out})
        if not args.json:
            from rich.console import Console

            Console().print(
                f"[bold]day {day.day}[/]: {day.files} files, {day.rows:,} rows delivered"
            )
            _print_publish(out["publish"])
        if not out["success"]:
            break
    if args.json:
        sys.stdout.write(json.dumps(days, indent=2, default=str) + "\n")
    return 0 if all(d["success"] for d in days) else 1


def ui_command(port: int, host: str = "127.0.0.1") -> list[str]:
    """``dagster dev`` on ``host:port`` (the code location from pyproject.toml, or the
    module when run outside the project)."""
    exe = Path(sys.executable).with_name("dagster")
    cmd = [str(exe) if exe.exists() else "dagster", "dev", "-h", host, "-p", str(port)]
    return cmd if project_root() else [*cmd, "-m", "orchestration.definitions"]


def ui_environment(home: Home) -> dict[str, str]:
    return {
        **os.environ,
        "TESSERA_HOME": str(home.root),
        "DAGSTER_HOME": str(dagster_home(home)),
    }


def cmd_ui(args: argparse.Namespace) -> int:
    home = Home.resolve(args.home).ensure()
    cmd = ui_command(args.port, args.host)
    print(
        f"Dagster UI on http://{args.host}:{args.port} (DAGSTER_HOME={home.dagster_home}); "
        "Ctrl-C stops it",
        flush=True,
    )
    proc = subprocess.Popen(
        cmd, cwd=project_root(), env=ui_environment(home), start_new_session=True
    )
    try:
        return proc.wait()
    except KeyboardInterrupt:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            return proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            return proc.wait()


def add_commands(add: Any) -> None:
    """Register ``run``, ``ui`` and ``advance`` with the CLI's ``add(name, help)``."""
    r = add("run", "materialise the Dagster graph in-process: pending days, link, check, publish")
    r.add_argument(
        "--mode",
        choices=["auto", "full", "incremental"],
        default="auto",
        help="linking: auto (incremental when a previous link exists), full, incremental",
    )
    r.set_defaults(fn=cmd_run)
    u = add("ui", "start the Dagster UI (dagster dev) on localhost for this home")
    u.add_argument("--port", type=int, default=3000)
    u.add_argument("--host", default="127.0.0.1")
    u.set_defaults(fn=cmd_ui)
    a = add("advance", "demo: the simulated world delivers N more days, each one processed")
    a.add_argument("--days", type=int, default=1)
    a.add_argument("--mode", choices=["auto", "full", "incremental"], default="auto")
    a.set_defaults(fn=cmd_advance)
