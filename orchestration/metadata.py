"""Metadata helpers shared by the assets: column schemas, markdown previews and tables."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import dagster as dg
import polars as pl


def column_schema(columns: dict[str, Any] | Sequence[str]) -> dg.TableSchema:
    """A ``dagster/column_schema`` from a name → dtype mapping or plain names (strings)."""
    if isinstance(columns, dict):
        return dg.TableSchema(columns=[dg.TableColumn(n, str(t)) for n, t in columns.items()])
    return dg.TableSchema(columns=[dg.TableColumn(n, "string") for n in columns])


def _cell(v: Any, width: int = 40) -> str:
    text = "" if v is None else str(v)
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def md_table(rows: Iterable[Sequence[Any]], header: Sequence[str]) -> dg.MetadataValue:
    """A markdown table (cells shortened, pipes escaped)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return dg.MetadataValue.md("\n".join(lines))


def preview(frame: pl.DataFrame, n: int = 5, max_columns: int = 10) -> dg.MetadataValue:
    """The first ``n`` rows of a frame (columns that are all null left out)."""
    head = frame.head(n)
    cols = [c for c in head.columns if head[c].null_count() < head.height][:max_columns]
    if not cols:
        return dg.MetadataValue.md("(no rows)")
    return md_table(head.select(cols).iter_rows(), cols)


def jsonable(obj: Any) -> dg.MetadataValue:
    """Any JSON-ish object (dates and paths as strings)."""
    import json

    return dg.MetadataValue.json(json.loads(json.dumps(obj, default=str)))
