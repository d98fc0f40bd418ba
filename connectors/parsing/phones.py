"""Phone rules: ``phone:plain|e164_spaced|dashed|masked`` → ``{field}`` (E.164),
``{field}_raw`` (the delivered digits), ``{field}_masked`` (``138****5678``).

Every style accepts every visible layout (separators are dropped), so the
styles differ only in rendering and in whether a mask is expected. Validity is
``phonenumbers.is_valid_number`` with region CN. Chinese mobile numbers (the
bulk) are checked vectorised against phonenumbers' own CN mobile pattern; every
other distinct value is parsed by phonenumbers once.
"""

from __future__ import annotations

import functools

import phonenumbers
import polars as pl

from ._base import ERROR, V, error_when, map_unique

_SEPARATORS = r"[\s\-().·]"
_VISIBLE = r"^\+?[0-9]{3,17}$"
_MASKED = r"^(?:\+?86)?([0-9]{3})\*{4}([0-9]{4})$"


def _names(field: str) -> tuple[str, str, str]:
    return field, f"{field}_raw", f"{field}_masked"


@functools.cache
def _cn_mobile_pattern() -> str:
    """phonenumbers' CN mobile national-number pattern as an anchored regex."""
    meta = phonenumbers.PhoneMetadata.metadata_for_region("CN")
    return f"^(?:{meta.mobile.national_number_pattern})$"


def _e164(raw: str) -> str | None:
    try:
        num = phonenumbers.parse(raw, "CN")
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(num):
        return None
    return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)


def parse_phone(rule: str, field: str, v: pl.Series) -> pl.DataFrame:
    number, raw, masked = _names(field)
    n = V.str.replace_all(_SEPARATORS, "")
    df = pl.DataFrame({"v": v}).with_columns(n.alias("_n"))
    n = pl.col("_n")
    visible = n.str.contains(_VISIBLE)
    is_masked = n.str.contains(_MASKED)
    hint = "a masked number like 138****5678" if rule == "phone:masked" else "a phone number"
    df = df.with_columns(
        error_when(~(visible | is_masked), f"phone '{{}}' is not {hint}"),
        pl.when(visible).then(n).alias("_raw"),
        pl.when(is_masked).then(n.str.replace(_MASKED, "${1}****${2}")).alias("_masked"),
    )
    # national 11-digit form of +86 / 0086 / 86-prefixed mobiles
    national = pl.col("_raw").str.replace(r"^(?:\+86|0086|86)(1[0-9]{10})$", "${1}")
    fast = national.str.contains(_cn_mobile_pattern())
    df = df.with_columns(
        pl.when(fast).then(pl.lit("+86") + national).alias("_fast"),
        pl.when(~fast).then(pl.col("_raw")).alias("_slow"),
    )
    df = map_unique(df, "_slow", lambda x: (_e164(x),), {"_e164": pl.String})
    return df.select(
        pl.coalesce("_fast", "_e164").alias(number),
        pl.col("_raw").alias(raw),
        pl.col("_masked").alias(masked),
        ERROR,
    )


def render_phone(rule: str, x: pl.Expr) -> pl.Expr:
    """Render an 11-digit national mobile number in ``rule``'s layout."""
    a, b, c = x.str.slice(0, 3), x.str.slice(3, 4), x.str.slice(7, 4)
    if rule == "phone:plain":
        return x
    if rule == "phone:e164_spaced":
        return pl.concat_str([pl.lit("+86"), a, b, c], separator=" ")
    if rule == "phone:dashed":
        return pl.concat_str([a, b, c], separator="-")
    if rule == "phone:masked":
        return pl.concat_str([a, pl.lit("****"), c])
    raise KeyError(rule)
