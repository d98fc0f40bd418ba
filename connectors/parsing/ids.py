"""Identifier rules: ``id:full``, ``id:masked`` (resident ID) and ``uscc``.

Resident ID validity is exactly ``stdnum.cn.ric.is_valid``, computed with
polars expressions: the ISO 7064 MOD 11-2 check digit, the birth date, and the
region code against the years its names were in use (python-stdnum's own
``cn/loc`` database, :func:`regions.region_year_spans`). ``stdnum`` itself is
not called per row (1M mostly distinct IDs would take seconds); a test checks
the two agree. Note: stdnum 2.2's ``is_valid`` raises ``KeyError`` (instead of
returning False) for an unknown county code under a known prefix; such IDs are
invalid here.

A value of the right shape whose checksum, date or region fails is data, not
an error: ``id_number`` is null and ``id_raw`` keeps what was delivered.
"""

from __future__ import annotations

import functools

import polars as pl
from stdnum.cn import uscc as stdnum_uscc

from ._base import ERROR, V, error_when, map_unique
from .regions import region_year_spans

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"  # index: weighted sum mod 11
_FULL = r"^[0-9]{17}[0-9X]$"
_MASKED = r"^[0-9]{6}\*{8}[0-9]{3}[0-9X]$"


def _names(field: str) -> tuple[str, str, str, str]:
    """number, raw, dob, masked output names: ``id_number`` → ``id_*``."""
    base = "id" if field == "id_number" else field
    return field, f"{base}_raw", f"{base}_dob", f"{base}_masked"


@functools.cache
def _spans_wide() -> pl.DataFrame:
    """One row per region code with its year spans as columns s0,e0,s1,e1,..."""
    spans = region_year_spans().with_columns(pl.int_range(pl.len()).over("code").alias("i"))
    n = int(spans.get_column("i").max()) + 1  # type: ignore[arg-type]
    return spans.group_by("code").agg(
        *[pl.col("start").filter(pl.col("i") == k).first().alias(f"s{k}") for k in range(n)],
        *[pl.col("end").filter(pl.col("i") == k).first().alias(f"e{k}") for k in range(n)],
        pl.len().alias("_spans"),
    )


def check_digit_expr(id17: pl.Expr) -> pl.Expr:
    """The resident-ID check character for a 17-digit string expression."""
    total = pl.sum_horizontal(
        [id17.str.slice(i, 1).cast(pl.Int32) * w for i, w in enumerate(_WEIGHTS)]
    )
    return (total % 11).replace_strict(dict(enumerate(_CHECK)), return_dtype=pl.String)


def valid_ids(frame: pl.DataFrame, col: str) -> pl.DataFrame:
    """Add ``_dob`` (the ID's date, when real) and ``_valid`` (stdnum's
    verdict) for a column of upper-case 18-character IDs of the right shape."""
    x = pl.col(col)
    dob = x.str.slice(6, 8).str.to_date("%Y%m%d", strict=False)
    frame = frame.with_columns(
        pl.when(dob.dt.year() >= 1).then(dob).alias("_dob"),
        (x.str.slice(17, 1) == check_digit_expr(x.str.slice(0, 17))).alias("_sum_ok"),
        x.str.slice(0, 6).alias("_region"),
    )
    wide = _spans_wide()
    n = (len(wide.columns) - 2) // 2
    frame = frame.join(wide, left_on="_region", right_on="code", how="left", maintain_order="left")
    year = pl.col("_dob").dt.year()
    place_ok = pl.any_horizontal(
        [
            (pl.col(f"s{k}").is_null() | (year >= pl.col(f"s{k}")))
            & (pl.col(f"e{k}").is_null() | (year <= pl.col(f"e{k}")))
            & (pl.col("_spans") > k)
            for k in range(n)
        ]
    )
    valid = pl.col("_sum_ok") & pl.col("_dob").is_not_null() & place_ok.fill_null(False)
    return frame.with_columns(valid.fill_null(False).alias("_valid")).drop(
        [c for c in wide.columns if c != "code"] + ["_sum_ok", "_region"]
    )


def parse_id(rule: str, field: str, v: pl.Series) -> pl.DataFrame:
    number, raw, dob, masked = _names(field)
    norm = V.str.replace_all(r"[\s\-]", "").str.to_uppercase()
    df = pl.DataFrame({"v": v}).with_columns(norm.alias("_n"))
    n = pl.col("_n")
    full = n.str.contains(_FULL)
    if rule == "id:full":
        df = df.with_columns(
            error_when(~full, "id '{}' is not id:full (17 digits + check digit)"),
            full.alias("_full"),
        )
    else:
        df = df.with_columns(
            error_when(
                ~(full | n.str.contains(_MASKED)),
                "id '{}' is not id:masked (6 digits, 8 '*', 4 digits)",
            ),
            full.alias("_full"),
        )
    df = df.with_columns(pl.when(pl.col("_full")).then(n).alias("_id"))
    df = valid_ids(df, "_id")
    is_full = pl.col("_full").fill_null(False)
    return df.select(
        pl.when(pl.col("_valid")).then(pl.col("_id")).alias(number),
        pl.when(is_full).then(n).alias(raw),
        pl.when(is_full).then(pl.col("_dob")).alias(dob),
        pl.when(~is_full & pl.col(ERROR).is_null()).then(n).alias(masked),
        ERROR,
    )


def render_id(rule: str, x: pl.Expr) -> pl.Expr:
    if rule == "id:full":
        return x
    return pl.concat_str([x.str.slice(0, 6), pl.lit("*" * 8), x.str.slice(14, 4)])


# --- USCC --------------------------------------------------------------------

_USCC_SHAPE = r"^[0-9A-Z]{18}$"


def parse_uscc(rule: str, field: str, v: pl.Series) -> pl.DataFrame:
    norm = V.str.replace_all(r"[\s\-]", "").str.to_uppercase()
    df = pl.DataFrame({"v": v}).with_columns(norm.alias("_n"))
    df = df.with_columns(
        error_when(
            ~pl.col("_n").str.contains(_USCC_SHAPE), "uscc '{}' is not uscc (18 letters or digits)"
        )
    )
    df = df.with_columns(pl.when(pl.col(ERROR).is_null()).then(pl.col("_n")).alias("_raw"))
    df = map_unique(df, "_raw", lambda x: (stdnum_uscc.is_valid(x),), {"_ok": pl.Boolean})
    return df.select(
        pl.when(pl.col("_ok")).then(pl.col("_raw")).alias(field),
        pl.col("_raw").alias(f"{field}_raw"),
        ERROR,
    )
