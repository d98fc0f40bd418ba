"""Date rules: ``date:ymd|iso|dmy|cn|epoch|epoch_ms`` → ``{field}`` (pl.Date).

Each style is strict about its layout (a ``dmy`` column holding ``2024-01-31``
is an error, not a guess); impossible dates (``2024-02-30``) are errors.

``date:ymd_lenient`` is ``date:ymd`` for sources whose dates carry data errors
(Febrl's ``19551192``): the layout (8 digits) is still enforced, but a value of
that layout that is not a real date is data, not a parse failure. Its outputs
are ``{field}`` (null when impossible) and ``{field}_raw`` (the value as
delivered when it is not a real date, else null), like ``id_raw`` / ``phone_raw``.
"""

from __future__ import annotations

import polars as pl

from ._base import ERROR, V, error_when

STYLES: dict[str, str] = {
    "date:ymd": "YYYYMMDD",
    "date:iso": "YYYY-MM-DD",
    "date:dmy": "DD/MM/YYYY",
    "date:cn": "YYYY年M月D日",
    "date:epoch": "unix seconds",
    "date:epoch_ms": "unix milliseconds",
    "date:ymd_lenient": "YYYYMMDD; impossible dates kept raw",
}
LENIENT: dict[str, str] = {"date:ymd_lenient": "date:ymd"}

# style → (shape regex with groups year, month, day)
_SHAPES: dict[str, str] = {
    "date:ymd": r"^([0-9]{4})([0-9]{2})([0-9]{2})$",
    "date:iso": r"^([0-9]{4})-([0-9]{2})-([0-9]{2})$",
    "date:dmy": r"^([0-9]{1,2})/([0-9]{1,2})/([0-9]{4})$",
    "date:cn": r"^([0-9]{4})\s*年\s*([0-9]{1,2})\s*月\s*([0-9]{1,2})\s*日$",
}
_ORDER = {"date:dmy": (3, 2, 1)}  # capture group of year, month, day
_DIRECT = {"date:ymd": "%Y%m%d", "date:iso": "%Y-%m-%d"}  # shape checked, then chrono
_EPOCH_MS_LIMIT = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z


def _ymd_to_date(y: pl.Expr, m: pl.Expr, d: pl.Expr) -> pl.Expr:
    iso = pl.concat_str([y, m.str.zfill(2), d.str.zfill(2)], separator="-")
    return iso.str.to_date("%Y-%m-%d", strict=False)


def date_expr(rule: str, value: pl.Expr = V) -> pl.Expr:
    """The parsed date (null where the value is null or not a valid date in
    years 1..9999, the range Python's ``datetime.date`` can hold)."""
    d = _date_expr(rule, value)
    return pl.when(d.dt.year().is_between(1, 9999)).then(d)


def _date_expr(rule: str, value: pl.Expr) -> pl.Expr:
    if rule in ("date:epoch", "date:epoch_ms"):
        n = value.str.to_integer(strict=False)
        if rule == "date:epoch":
            ms = pl.when(n.abs() <= _EPOCH_MS_LIMIT // 1000).then(n * 1000)
        else:
            ms = pl.when(n.abs() <= _EPOCH_MS_LIMIT).then(n)
        return pl.from_epoch(ms, time_unit="ms").dt.date()
    shape = _SHAPES[rule]
    if rule in _DIRECT:
        return pl.when(value.str.contains(shape)).then(
            value.str.to_date(_DIRECT[rule], strict=False)
        )
    parts = value.str.extract_groups(shape)
    yi, mi, di = _ORDER.get(rule, (1, 2, 3))
    return _ymd_to_date(
        parts.struct.field(str(yi)), parts.struct.field(str(mi)), parts.struct.field(str(di))
    )


def parse_date(rule: str, field: str, v: pl.Series) -> pl.DataFrame:
    if rule in LENIENT:
        strict = LENIENT[rule]
        out = pl.DataFrame({"v": v}).with_columns(date_expr(strict).alias(field))
        shape_ok = V.str.contains(_SHAPES[strict])
        return out.select(
            pl.col(field),
            pl.when(pl.col(field).is_null() & shape_ok).then(V).alias(f"{field}_raw"),
            error_when(~shape_ok, f"date '{{}}' is not {rule} ({STYLES[strict]})"),
        )
    out = pl.DataFrame({"v": v}).with_columns(date_expr(rule).alias(field))
    return out.select(
        pl.col(field),
        error_when(pl.col(field).is_null(), f"date '{{}}' is not {rule} ({STYLES[rule]})").alias(
            ERROR
        ),
    )


def render_date(rule: str, d: pl.Expr) -> pl.Expr:
    """The inverse of :func:`date_expr` for a pl.Date expression."""
    y = d.dt.year().cast(pl.String).str.zfill(4)
    m = d.dt.month().cast(pl.String)
    dd = d.dt.day().cast(pl.String)
    if rule in ("date:ymd", "date:ymd_lenient"):
        return pl.concat_str([y, m.str.zfill(2), dd.str.zfill(2)])
    if rule == "date:iso":
        return pl.concat_str([y, m.str.zfill(2), dd.str.zfill(2)], separator="-")
    if rule == "date:dmy":
        return pl.concat_str([dd.str.zfill(2), m.str.zfill(2), y], separator="/")
    if rule == "date:cn":
        return pl.concat_str([y, pl.lit("年"), m, pl.lit("月"), dd, pl.lit("日")])
    days = d.cast(pl.Int64)
    if rule == "date:epoch":
        return (days * 86_400).cast(pl.String)
    if rule == "date:epoch_ms":
        return (days * 86_400_000).cast(pl.String)
    raise KeyError(rule)
