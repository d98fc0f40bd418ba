"""Render canonical truth values in a source system's style: the inverse of
``connectors.parsing.parse_column`` for every rule, so that
``parse_column(rule, field, render_column(rule, field, truth))`` gives the
truth back.

Truth columns read per rule (``f`` = the field):

- ``name:*``: ``surname_native``, ``given_native`` (Hanzi), ``surname_latin``,
  ``given_latin`` (lower-case spaced pinyin, e.g. ``ou yang``, ``na na``;
  ``connectors.parsing.hanzi_latin`` computes them); for field ``surname`` /
  ``given`` only that part's columns.
- ``date:*``: ``f`` (pl.Date). ``sex:*``: ``f`` ('M'/'F').
- ``id:full`` / ``id:masked``: ``id_number`` (the masked style masks it).
- ``phone:*``: ``phone`` (11-digit national number).
- ``uscc``, ``email``, ``plate``, ``passport``, ``text``, ``int``, ``decimal``:
  ``f``. A plate is written with ``·`` after the region letter (京A·12345).
- ``address:full``: ``province``, ``city``, ``district``, ``street`` (a city
  equal to its province, or a district equal to its city, is not repeated).
  ``address:city``: ``province``, ``city``.

Nulls in the truth give null output. Everything is polars expressions.
"""

from __future__ import annotations

import polars as pl

from connectors.parsing import RULES, ParseRuleError
from connectors.parsing.addresses import render_address
from connectors.parsing.dates import render_date
from connectors.parsing.ids import render_id
from connectors.parsing.names import render_name
from connectors.parsing.phones import render_phone
from connectors.parsing.simple import render_simple


def render_expr(rule: str, field: str) -> pl.Expr:
    """The polars expression rendering ``field`` with ``rule`` from truth columns."""
    if rule not in RULES:
        raise ParseRuleError(f"unknown parse rule {rule!r}")
    kind = rule.split(":", 1)[0]
    if kind == "name":
        out = render_name(rule, field)
    elif kind == "date":
        out = render_date(rule, pl.col(field))
    elif kind == "id":
        out = render_id(rule, pl.col(field))
    elif kind == "phone":
        out = render_phone(rule, pl.col(field))
    elif kind == "address":
        out = render_address(rule, "" if field == "address" else f"{field}_")
    else:
        out = render_simple(rule, pl.col(field))
    return out.cast(pl.String)


def render_column(rule: str, field: str, truth: pl.DataFrame) -> pl.Series:
    """Render one source column (pl.String, named ``field``) from ``truth``."""
    return truth.select(render_expr(rule, field).alias(field)).to_series()
