"""The person names whose per-name statistics no mention can move any more.

An increment recomputes the per-name statistics (:func:`linkage.features.name_statistics`)
over every stored mention of the names its new mentions carry: on a 1,000,000-person
world's day, 1.9M stored rows for 7,800 names. Most of those rows belong to common
names whose statistics are *settled*: ``name_py_persons`` at its cap
(:data:`linkage.features.PERSONS_CAP`) and ``name_registered`` true. More mentions
only add distinct birth years, ID regions and phone keys, and a count that only
grows stays at the cap, so the stored rows of a settled name keep their statistics
and a new mention of it gets the settled values (:func:`settled_statistics`: not
thin, so no thin-name keys). One thing can lower a count: a 2-character name counts
phone keys too, and a mention of the same pinyin with a 3-character hanzi name
(咸宁 and 西安宁 are both ``xianning``) stops that. So a settled name also records
``long`` (some stored mention's hanzi name has 3+ characters), and a name that is
not long is skipped only while the new mentions of it are not long either.

``lake/linkage/person_names_settled.parquet`` (``name_py, long``), stamped with the
state of the features files (:mod:`linkage.stamped`): a full link writes it
(:func:`record_full`), each increment rewrites it for the names it recomputed. When
it is missing or not of the current files it is computed from the stored rows (~1 s
at 7.2M mentions). A name left out is only recomputed, never wrong.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from linkage import stamped
from linkage.features import PERSONS_CAP
from linkage.term_counts import features_state
from tessera.config import Home

KEY = "name_py"
# A hanzi name of this many characters or more: persons no longer counts phone keys.
LONG = 3
# What :func:`settled` reads of a stored row.
COLUMNS = (KEY, "name_py_persons", "name_registered", "name_native")


def path(home: Home) -> Path:
    return home.lake / "linkage" / "person_names_settled.parquet"


def _state(home: Home) -> str:
    return features_state(home, "person")


def settled(rows: pl.LazyFrame | pl.DataFrame) -> pl.DataFrame:
    """``name_py, long`` of the settled names among ``rows`` (every stored row of a
    name, with ``name_py_persons``, ``name_registered`` and ``name_native``)."""
    return (
        rows.lazy()
        .filter(pl.col(KEY).is_not_null())
        .group_by(KEY)
        .agg(
            (
                (pl.col("name_py_persons").min() >= PERSONS_CAP)
                & pl.col("name_registered").fill_null(False).all()
            ).alias("settled"),
            (pl.col("name_native").str.len_chars().max().fill_null(0) >= LONG).alias("long"),
        )
        .filter("settled")
        .select(KEY, "long")
        .collect()
    )


def stored(home: Home, features: pl.LazyFrame) -> pl.DataFrame:
    """The settled names recorded for the current features files, else computed from
    ``features`` (every stored row)."""
    frame = stamped.read(path(home), _state(home))
    if frame is not None:
        return frame
    return settled(features.select(*COLUMNS))


def skipped(names: pl.DataFrame, fresh: pl.DataFrame) -> pl.Series:
    """The names of ``fresh`` (new mentions) whose statistics the new rows cannot move:
    settled (``names``), and long or with no long new mention."""
    fresh_long = (
        fresh.filter(pl.col(KEY).is_not_null())
        .group_by(KEY)
        .agg((pl.col("name_native").str.len_chars().max().fill_null(0) >= LONG).alias("fresh_long"))
    )
    return names.join(fresh_long, on=KEY).filter(pl.col("long") | ~pl.col("fresh_long"))[KEY]


def settled_statistics() -> list[pl.Expr]:
    """The per-name statistics :func:`linkage.features.name_statistics` gives every
    mention of a settled name (cast to the stored schema by the caller)."""
    return [
        pl.lit(PERSONS_CAP).alias("name_py_persons"),
        pl.lit(None, pl.String).alias("name_py_thin"),
        pl.lit(None, pl.String).alias("name_native_rot_thin"),
        pl.lit(None, pl.String).alias("name_typo_a_thin"),
        pl.lit(None, pl.String).alias("name_typo_b_thin"),
        pl.lit(True).alias("name_registered"),
    ]


def updated(names: pl.DataFrame, recomputed: pl.DataFrame) -> pl.DataFrame:
    """``names`` after an increment that recomputed the statistics of every row of the
    names in ``recomputed`` (those rows, with their new statistics)."""
    return pl.concat(
        [
            names.join(recomputed.select(KEY).unique(), on=KEY, how="anti"),
            settled(recomputed),
        ]
    ).sort(KEY)


def record(home: Home, names: pl.DataFrame) -> None:
    """Write ``names`` as the settled names of the current features files."""
    stamped.write(path(home), names, _state(home))


def record_full(home: Home) -> None:
    """After a full link: the settled names of the features file it wrote."""
    features = home.lake / "linkage" / "person_features.parquet"
    if features.exists():
        record(home, settled(pl.scan_parquet(features).select(*COLUMNS)))
