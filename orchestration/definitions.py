"""The code location: ``dagster dev`` / ``dg dev`` / ``tessera ui`` load this module,
``tessera run`` materialises from the same :func:`build_definitions`."""

from __future__ import annotations

from typing import Any

import dagster as dg

from connectors.catalog import load_specs
from orchestration.automation import advance_world, build_automation, build_jobs, delivery_days
from orchestration.linkage import build_linkage_assets
from orchestration.resources import QualityThresholds, TesseraHome
from orchestration.sources import build_source_assets
from orchestration.warehouse import build_warehouse_assets
from tessera.config import Home


def resources(home: Home, **thresholds: Any) -> dict[str, Any]:
    """The resources every asset, check, sensor and schedule uses."""
    return {
        "tessera": TesseraHome(path=str(home.root)),
        "quality": QualityThresholds(**thresholds),
    }


def build_definitions(home: Home | None = None) -> dg.Definitions:
    """Assets for every source in the catalog (built-in and the home's TOML specs;
    delta file drops partitioned by delivery day), the linkage assets over all of
    them, the warehouse build and publish; the jobs, schedules and landing sensor."""
    home = home or Home.resolve()
    specs = load_specs(home.sources_dir)
    days = delivery_days(home)
    assets = [a for spec in specs for a in build_source_assets(spec, days)]
    assets += build_linkage_assets(specs)
    assets += build_warehouse_assets()
    jobs = build_jobs(days)
    schedules, sensors = build_automation(specs, days, jobs)
    return dg.Definitions(
        assets=assets,
        jobs=[*jobs.values(), advance_world],
        schedules=schedules,
        sensors=sensors,
        resources=resources(home),
    )


defs = build_definitions()
