"""Dagster: the definitions load, one raw and one staged asset per source, materialisable."""

from __future__ import annotations

import dagster as dg
import polars as pl

from connectors.catalog import builtin_specs
from connectors.lake import records
from orchestration.definitions import build_definitions
from orchestration.resources import TesseraHome
from orchestration.sources import build_source_assets
from tessera.config import Home


def test_definitions_hold_raw_and_staged_per_source(tmp_path) -> None:
    defs = build_definitions(Home(tmp_path))
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    for spec in builtin_specs():
        assert f"raw/{spec.id}" in keys and f"staged/{spec.id}" in keys
    groups = {a.group_names_by_key[k] for a in defs.assets for k in a.keys}  # type: ignore[union-attr]
    assert groups == {"municipal", "court", "commercial", "transport"}


def test_materialise_a_source(fresh_copy: Home) -> None:
    spec = next(s for s in builtin_specs() if s.id == "rail_tickets")
    result = dg.materialize(
        build_source_assets(spec), resources={"tessera": TesseraHome(path=str(fresh_copy.root))}
    )
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
