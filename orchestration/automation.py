"""Time: delivery-day partitions, jobs, schedules and the landing sensor.

- ``daily_pipeline`` (partitioned by delivery day): that day's delta files, whatever
  the snapshot sources and live databases have new, linking (incremental when a
  previous link exists), evaluation, build, publish and the analyst export. Not the
  model training and full prediction: those belong to the full relink.
- ``full_relink``: every linkage and warehouse asset with ``mode: full`` (weekly,
  or on demand from the launchpad).
- ``advance_world`` (demo): the simulated world delivers one more day.

The landing sensor asks for one ``daily_pipeline`` run per delivery day that has
files the ingest ledger does not know yet; its cursor holds a fingerprint of
those files per day, so the same files never start a second run. Runs carry the
``tessera/pipeline`` tag; the instance lets one such run write at a time
(``deploy/dagster.yaml``), in the order they were asked for.
"""

import json
from datetime import date
from typing import Any

import dagster as dg

from connectors.daily import fingerprint, pending_files
from connectors.spec import SourceSpec
from orchestration.linkage import (
    BUSINESS_CLUSTERS,
    EVALUATION,
    PERSON_CLUSTERS,
    PERSON_MENTIONS,
    PERSON_MODEL,
    PERSON_PREDICTIONS,
)
from orchestration.linkage import (
    GROUP as LINKAGE_GROUP,
)
from orchestration.resources import TesseraHome
from orchestration.warehouse import GROUP as WAREHOUSE_GROUP
from tessera.config import Home

PIPELINE_TAG = {"tessera/pipeline": "writer"}
# The assets whose work depends on the linking mode (the mentions asset derives every
# mention's features only for a full link; the evaluation recomputes the naive rule
# only then).
CLUSTER_OPS = (PERSON_MENTIONS, PERSON_CLUSTERS, BUSINESS_CLUSTERS, EVALUATION)


def delivery_days(home: Home) -> dg.DailyPartitionsDefinition:
    """One partition per delivery day, from the simulated world's first day (read
    from ``truth/world.json`` when there is one) up to today."""
    start = date(2026, 1, 1)
    world = home.truth / "world.json"
    if world.exists():
        start = date.fromisoformat(json.loads(world.read_text(encoding="utf-8"))["start"])
    return dg.DailyPartitionsDefinition(start_date=start.isoformat(), end_offset=1)


def link_run_config(mode: str = "auto") -> dg.RunConfig:
    """Run config that sets the linking mode of both cluster assets."""
    from orchestration.linkage import LinkConfig

    return dg.RunConfig(
        ops={"__".join(k.path): LinkConfig(mode=mode) for k in CLUSTER_OPS}  # type: ignore[arg-type]
    )


def daily_selection() -> dg.AssetSelection:
    """Everything except model training and full prediction."""
    return dg.AssetSelection.all() - dg.AssetSelection.assets(PERSON_MODEL, PERSON_PREDICTIONS)


def relink_selection() -> dg.AssetSelection:
    return dg.AssetSelection.groups(LINKAGE_GROUP, WAREHOUSE_GROUP)


def build_jobs(days: dg.PartitionsDefinition) -> dict[str, Any]:
    daily = dg.define_asset_job(
        "daily_pipeline",
        selection=daily_selection(),
        tags=PIPELINE_TAG,
        description="One delivery day: ingest it, link (incremental when possible), "
        "evaluate, build, check and publish the warehouse, write the analyst export.",
    )
    relink = dg.define_asset_job(
        "full_relink",
        selection=relink_selection(),
        config=link_run_config("full"),
        tags=PIPELINE_TAG,
        description="Retrain, re-predict and relink everything from the lake, then build, "
        "check and publish, write the analyst export (weekly, or on demand).",
    )
    return {"daily_pipeline": daily, "full_relink": relink}


@dg.op(out=dg.Out(dict))
def deliver_next_day(context: dg.OpExecutionContext, tessera: TesseraHome) -> dict:
    """The simulated world delivers its next day into ``landing/`` (and updates its
    live databases); the landing sensor then starts the daily pipeline."""
    from tessera.world_clock import advance

    (day,) = advance(tessera.home(), 1)
    context.add_output_metadata({"day": day.day, "files": day.files, "rows": day.rows})
    return {"day": day.day, "files": day.files, "rows": day.rows}


@dg.job(description="Demo: the simulated world delivers one more day.")
def advance_world() -> None:
    deliver_next_day()


def landing_requests(
    home: Home, specs: list[SourceSpec], cursor: dict[str, str], days: dg.PartitionsDefinition
) -> tuple[list[dg.RunRequest], dict[str, str]]:
    """Run requests for delivery days with files the ledger does not hold and the
    cursor has not seen in that state; returns them (oldest day first) and the new
    cursor (fingerprints of the days still pending)."""
    valid = set(days.get_partition_keys())
    pending = pending_files(home, specs)
    requests, new_cursor = [], {}
    for day, files in pending.items():
        fp = fingerprint(home, files)
        new_cursor[day] = fp
        if cursor.get(day) == fp or day not in valid:
            continue
        requests.append(
            dg.RunRequest(
                run_key=f"landing:{day}:{fp}",
                partition_key=day,
                tags={**PIPELINE_TAG, "tessera/files": str(len(files))},
            )
        )
    return requests, new_cursor


def build_automation(
    specs: list[SourceSpec], days: dg.PartitionsDefinition, jobs: dict
) -> tuple[list[dg.ScheduleDefinition], list[dg.SensorDefinition]]:
    """The daily and weekly schedules, the demo schedule and the landing sensor."""

    @dg.sensor(
        job=jobs["daily_pipeline"],
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Watches landing/ for deliveries the ingest ledger does not know and "
        "starts one daily_pipeline run per delivery day (cursor: a fingerprint per day).",
    )
    def landing_sensor(context: dg.SensorEvaluationContext, tessera: TesseraHome):
        cursor = json.loads(context.cursor) if context.cursor else {}
        requests, new_cursor = landing_requests(tessera.home(), specs, cursor, days)
        if not requests:
            return dg.SensorResult(
                skip_reason=dg.SkipReason("no new deliveries"), cursor=json.dumps(new_cursor)
            )
        return dg.SensorResult(run_requests=requests, cursor=json.dumps(new_cursor))

    @dg.schedule(
        job=jobs["daily_pipeline"],
        cron_schedule="0 6 * * *",
        execution_timezone="Asia/Shanghai",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Every morning: one daily_pipeline run per delivery day not yet ingested "
        "(oldest first), or, when nothing new landed, one run for the latest day (the live "
        "databases and snapshots still change): ingest, link, publish.",
    )
    def daily_ingest_link_publish(context: dg.ScheduleEvaluationContext, tessera: TesseraHome):
        home = tessera.home()
        tick = context.scheduled_execution_time.date().isoformat()
        requests, _ = landing_requests(home, specs, {}, days)
        if requests:
            return [
                dg.RunRequest(
                    run_key=f"daily:{tick}:{r.partition_key}",
                    partition_key=r.partition_key,
                    tags=PIPELINE_TAG,
                )
                for r in requests
            ]
        keys = days.get_partition_keys()
        delivered = [d.name for d in home.landing.glob("*/*") if d.is_dir() and d.name in keys]
        latest = max(delivered, default=None)
        if latest is None:
            return dg.SkipReason("nothing delivered yet")
        return dg.RunRequest(
            run_key=f"daily:{tick}:{latest}", partition_key=latest, tags=PIPELINE_TAG
        )

    weekly = dg.ScheduleDefinition(
        name="weekly_full_relink",
        job=jobs["full_relink"],
        cron_schedule="0 3 * * 0",
        execution_timezone="Asia/Shanghai",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Sunday night: retrain, relink everything and republish.",
    )
    demo = dg.ScheduleDefinition(
        name="demo_advance_world",
        job=advance_world,
        cron_schedule="*/5 * * * *",
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description="Demo only (off by default): the simulated world delivers a day every "
        "5 minutes; the landing sensor picks it up.",
    )
    return [daily_ingest_link_publish, weekly, demo], [landing_sensor]
