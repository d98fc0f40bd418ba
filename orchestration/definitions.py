"""The Dagster code location: ``dagster dev`` / ``dg dev`` load this module."""

from __future__ import annotations

import dagster as dg

from connectors.catalog import load_specs
from orchestration.resources import TesseraHome
from orchestration.sources import build_source_assets
from tessera.config import Home


def build_definitions(home: Home | None = None) -> dg.Definitions:
    """Assets for every source in the catalog (built-in and the home's TOML specs)."""
    home = home or Home.resolve()
    assets = [a for spec in load_specs(home.sources_dir) for a in build_source_assets(spec)]
    return dg.Definitions(
        assets=assets,
        resources={"tessera": TesseraHome(path=str(home.root))},
    )


defs = build_definitions()
