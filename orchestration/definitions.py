"""The Dagster code location: ``dagster dev`` / ``dg dev`` load this module."""

from __future__ import annotations

import dagster as dg

from connectors.catalog import load_specs
from orchestration.linkage import build_linkage_assets
from orchestration.resources import TesseraHome
from orchestration.sources import build_source_assets
from tessera.config import Home


def build_definitions(home: Home | None = None) -> dg.Definitions:
    """Assets for every source in the catalog (built-in and the home's TOML specs), and
    the linkage assets over all of them (group ``linkage``)."""
    home = home or Home.resolve()
    specs = load_specs(home.sources_dir)
    assets = [a for spec in specs for a in build_source_assets(spec)]
    assets += build_linkage_assets(specs)
    return dg.Definitions(
        assets=assets,
        resources={"tessera": TesseraHome(path=str(home.root))},
    )


defs = build_definitions()
