"""Dagster: the definitions load, one raw and one staged asset per source, materialisable."""

from __future__ import annotations

import dagster as dg
import polars as pl

from connectors.catalog import builtin_specs
from connectors.lake import records
from orchestration.definitions import build_definitions
from orchestration.linkage import LINKAGE_KEYS
from orchestration.resources import TesseraHome
from orchestration.sources import build_source_assets
from tessera.config import Home

# Measured on the tiny world (600 persons, seed 11, 3 days): see the test below.
PERSON_P_FLOOR = 0.998
PERSON_R_FLOOR = 0.97


def test_definitions_hold_raw_and_staged_per_source(tmp_path) -> None:
    defs = build_definitions(Home(tmp_path))
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    for spec in builtin_specs():
        assert f"raw/{spec.id}" in keys and f"staged/{spec.id}" in keys
    groups = {a.group_names_by_key[k] for a in defs.assets for k in a.keys}  # type: ignore[union-attr]
    assert groups == {"municipal", "court", "commercial", "transport", "linkage"}


def test_definitions_hold_the_linkage_assets(tmp_path) -> None:
    defs = build_definitions(Home(tmp_path))
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    for name in ("person_mentions", "person_model", "person_predictions", "person_clusters",
                 "business_clusters", "evaluation"):  # fmt: skip
        assert f"linkage/{name}" in keys
    for key in LINKAGE_KEYS:
        node = graph.get(key)
        assert node.group_name == "linkage" and node.description, key
    staged = {dg.AssetKey(["staged", s.id]) for s in builtin_specs()}
    assert staged <= set(graph.get(dg.AssetKey(["linkage", "person_mentions"])).parent_keys)
    assert staged <= set(graph.get(dg.AssetKey(["linkage", "business_clusters"])).parent_keys)


def test_materialise_everything_and_evaluate(fresh_copy: Home) -> None:
    """The whole graph (48 sources, then linkage) on the tiny world; the evaluation
    carries the accuracy figures (floors measured on this world, see docs/febrl.md)."""
    defs = build_definitions(fresh_copy)
    result = dg.materialize(
        list(defs.assets),  # type: ignore[arg-type]
        resources={"tessera": TesseraHome(path=str(fresh_copy.root))},
    )
    assert result.success
    mats = {e.asset_key.to_user_string(): e for e in result.get_asset_materialization_events()}
    for key in LINKAGE_KEYS:
        assert key.to_user_string() in mats, key
    pred = mats["linkage/person_predictions"].materialization.metadata
    assert (
        pred["candidate_pairs"].value > 0 and "match weight" in pred["match_weight_histogram"].value
    )
    md = mats["linkage/evaluation"].materialization.metadata
    assert md["person_model_pairwise_precision"].value >= PERSON_P_FLOOR
    assert md["person_model_pairwise_recall"].value >= PERSON_R_FLOOR
    assert md["person_model_pairwise_recall"].value > md["person_naive_pairwise_recall"].value
    assert md["business_model_pairwise_f1"].value >= 0.99
    assert "| person | model |" in md["scores"].value


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
