"""The term-frequency counts of the stored features, as the last link took them.

An incremental link counts the values of each term-frequency column over every
stored feature row (:meth:`linkage.incremental.FeatureView.value_counts`) for
Splink. The warehouse publishes the same counts (``person_tf_<column>``,
:mod:`warehouse.matching`); recounting them there read two columns of all 7.2M rows
of a 1,000,000-person world each day (1.1-1.5 s). So each increment records them
and so does a full link (:func:`record_full`):
``lake/linkage/<type>_tf_<column>.parquet`` (``<column>, n``), with the state of the
features files they count (each part's name, size and modification time); a
reader whose features files are not the recorded ones counts afresh.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from linkage import stamped
from linkage.parts import linkage_parts
from tessera.config import Home


def tf_columns(settings: dict[str, Any]) -> list[str]:
    """The term-frequency columns of a saved Splink model's settings."""
    return sorted(
        {
            lv["tf_adjustment_column"]
            for c in settings["comparisons"]
            for lv in c["comparison_levels"]
            if lv.get("tf_adjustment_column")
        }
    )


def record_full(home: Home, entity_type: str) -> None:
    """After a full link: the counts of the model's term-frequency columns over the
    features file it wrote (the only stored features then), so the first increment
    does not count them from it."""
    target = home.lake / "linkage"
    model = target / f"{entity_type}_model.json"
    features = target / f"{entity_type}_features.parquet"
    if not (model.exists() and features.exists()):
        return
    columns = tf_columns(json.loads(model.read_text(encoding="utf-8")))
    scan = pl.scan_parquet(features)
    record(
        home,
        entity_type,
        {c: scan.select(c).drop_nulls().group_by(c).len().collect() for c in columns},
    )


def counts_path(home: Home, entity_type: str, column: str) -> Path:
    return home.lake / "linkage" / f"{entity_type}_tf_{column}.parquet"


def features_state(home: Home, entity_type: str) -> str:
    """The state of the stored features files (each part's name, size and modification
    time): what a record computed from them is stamped with."""
    parts = linkage_parts(home, entity_type, "features")
    return json.dumps([[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in parts])


def record(home: Home, entity_type: str, counts: dict[str, pl.DataFrame]) -> None:
    """Write each column's counts (``<column>, len`` or ``<column>, n``) as those of
    the current features files."""
    state = features_state(home, entity_type)
    for column, frame in counts.items():
        n = "len" if "len" in frame.columns else "n"
        stamped.write(
            counts_path(home, entity_type, column),
            frame.select(column, pl.col(n).cast(pl.Int64).alias("n")),
            state,
        )


def stored(home: Home, entity_type: str, column: str) -> Path | None:
    """The recorded counts file of ``column`` when it counts the current features
    files, else None."""
    path = counts_path(home, entity_type, column)
    return path if stamped.matches(path, features_state(home, entity_type)) else None


def recorded(home: Home, entity_type: str) -> dict[str, Path]:
    """Every column whose recorded counts count the current features files."""
    prefix = f"{entity_type}_tf_"
    out: dict[str, Path] = {}
    for p in sorted((home.lake / "linkage").glob(f"{prefix}*.parquet")):
        column = p.name[len(prefix) : -len(".parquet")]
        if stored(home, entity_type, column) is not None:
            out[column] = p
    return out
