"""Parquet files that carry the state of the files they were computed from.

The records an incremental link keeps for the next one (entity sizes, the edges
between entities, term-frequency counts) are each valid only for the files they
counted: the state of those (sizes, modification times) is written into the file's
Parquet metadata, and a reader gets the frame only while the state is the same.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from linkage.parts import file_stat

KEY = "tessera_state"


def file_state(path: Path) -> str | None:
    """The size and modification time of ``path`` (None when it does not exist)."""
    stat = file_stat(path)
    return None if stat is None else json.dumps(stat)


def write(path: Path, frame: pl.DataFrame, state: str) -> None:
    """Write ``frame`` with ``state`` (atomically). LZ4: the 1M entity sizes of a
    1,000,000-person world took 0.09 s with zstd, 0.04 s so (14 MB instead of 8)."""
    tmp = path.with_name(path.name + ".tmp")
    frame.write_parquet(tmp, metadata={KEY: state}, compression="lz4")
    tmp.replace(path)


def matches(path: Path, state: str | None) -> bool:
    """Whether ``path`` exists and records ``state``."""
    if state is None or not path.exists():
        return False
    try:
        return pl.read_parquet_metadata(path).get(KEY) == state
    except (OSError, pl.exceptions.ComputeError):
        return False


def read(path: Path, state: str | None) -> pl.DataFrame | None:
    """The frame at ``path`` when it records ``state``, else None."""
    return pl.read_parquet(path) if matches(path, state) else None
