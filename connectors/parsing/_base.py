"""Shared helpers for the parse rules.

Every rule function takes the rule name, the canonical field and the input as
a stripped pl.String Series (blank → null) named ``v``, and returns a frame of
the same height with its output columns and ``_error``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import polars as pl

V = pl.col("v")
ERROR = "_error"


class ParseRuleError(ValueError):
    """An unknown or malformed parse rule name."""


def shown(expr: pl.Expr = V, limit: int = 40) -> pl.Expr:
    """The offending value as quoted in an error message (shortened)."""
    return (
        pl.when(expr.str.len_chars() > limit).then(expr.str.slice(0, limit) + "…").otherwise(expr)
    )


def error_when(bad: pl.Expr, template: str, value: pl.Expr = V) -> pl.Expr:
    """``_error``: ``template`` with ``{}`` replaced by the value where ``bad``
    holds for a non-null value, else null."""
    before, _, after = template.partition("{}")
    return (
        pl.when(value.is_not_null() & bad)
        .then(pl.concat_str([pl.lit(before), shown(value), pl.lit(after)]))
        .otherwise(pl.lit(None, dtype=pl.String))
        .alias(ERROR)
    )


def null_str() -> pl.Expr:
    return pl.lit(None, dtype=pl.String)


def map_unique(
    frame: pl.DataFrame,
    key: str,
    fn: Callable[[str], Sequence[Any]],
    schema: dict[str, pl.DataType | type[pl.DataType]],
) -> pl.DataFrame:
    """Apply ``fn`` once per distinct non-null value of ``frame[key]`` and join
    the results (one column per ``schema`` entry) back onto ``frame`` in row
    order. ``fn`` returns a tuple with one value per output column."""
    uniques = frame.get_column(key).drop_nulls().unique().to_list()
    rows = [(u, *fn(u)) for u in uniques]
    lookup = pl.DataFrame(rows, schema={key: pl.String, **schema}, orient="row")
    return frame.join(lookup, on=key, how="left", maintain_order="left")
