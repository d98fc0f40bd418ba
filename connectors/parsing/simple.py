"""Scalar rules: ``text``, ``int``, ``decimal``, ``sex:*``, ``email``, ``plate``,
``passport``. Each writes one output column named ``{field}``."""

from __future__ import annotations

import polars as pl

from ._base import ERROR, V, error_when

# style → (code → canonical), codes compared after upper-casing.
SEX_CODES: dict[str, dict[str, str]] = {
    "sex:zh": {"男": "M", "女": "F", "男性": "M", "女性": "F"},
    "sex:mf": {"M": "M", "F": "F", "MALE": "M", "FEMALE": "F"},
    "sex:12": {"1": "M", "2": "F"},
}
# Codes that explicitly say "not known" (GB/T 2261.1: 0 未知的性别, 9 未说明的性别):
# null without an error.
SEX_UNKNOWN: dict[str, tuple[str, ...]] = {
    "sex:zh": ("未知", "未说明"),
    "sex:mf": ("U",),
    "sex:12": ("0", "9"),
}
SEX_RENDER: dict[str, dict[str, str]] = {
    "sex:zh": {"M": "男", "F": "女"},
    "sex:mf": {"M": "M", "F": "F"},
    "sex:12": {"M": "1", "F": "2"},
}
_SEX_HINT = {"sex:zh": "男/女", "sex:mf": "M/F", "sex:12": "1/2"}

_PLATE_NOISE = r"[\s\-·•・.．]"


def _one(field: str, value: pl.Expr, error: pl.Expr) -> list[pl.Expr]:
    return [pl.when(error.is_null()).then(value).alias(field), error]


def parse_simple(rule: str, field: str, v: pl.Series) -> pl.DataFrame:
    df = pl.DataFrame({"v": v})
    if rule == "text":
        exprs = [V.alias(field), pl.lit(None, dtype=pl.String).alias(ERROR)]
    elif rule == "int":
        n = V.str.replace_all(r"^\+", "").str.to_integer(strict=False)
        exprs = _one(field, n, error_when(n.is_null(), "int '{}' is not an integer"))
    elif rule == "decimal":
        x = V.cast(pl.Float64, strict=False)
        exprs = _one(
            field, x, error_when(~x.is_finite().fill_null(False), "decimal '{}' is not a number")
        )
    elif rule in SEX_CODES:
        up = V.str.to_uppercase()
        sex = up.replace_strict(SEX_CODES[rule], default=None, return_dtype=pl.String)
        bad = sex.is_null() & ~up.is_in(list(SEX_UNKNOWN[rule]))
        exprs = _one(field, sex, error_when(bad, f"sex '{{}}' is not {rule} ({_SEX_HINT[rule]})"))
    elif rule == "email":
        e = V.str.to_lowercase()
        exprs = _one(
            field,
            e,
            error_when(
                ~e.str.contains(r"^[^@\s]+@[^@\s]+$"),
                "email '{}' is not an address (no single '@')",
            ),
        )
    elif rule == "plate":
        p = V.str.to_uppercase().str.replace_all(_PLATE_NOISE, "")
        exprs = _one(
            field, p, error_when(p.str.len_chars() < 5, "plate '{}' is too short for a plate")
        )
    elif rule == "passport":
        p = V.str.to_uppercase().str.replace_all(r"\s", "")
        exprs = _one(
            field,
            p,
            error_when(
                ~p.str.contains(r"^[A-Z0-9]{5,20}$"), "passport '{}' is not 5-20 letters or digits"
            ),
        )
    else:  # pragma: no cover - dispatch guarantees the rule
        raise KeyError(rule)
    return df.select(exprs)


def render_simple(rule: str, x: pl.Expr) -> pl.Expr:
    """The inverse of :func:`parse_simple` for the canonical column ``x``."""
    if rule in SEX_RENDER:
        return x.replace_strict(SEX_RENDER[rule], default=None, return_dtype=pl.String)
    if rule == "plate":
        return pl.concat_str([x.str.slice(0, 2), pl.lit("·"), x.str.slice(2)])
    return x.cast(pl.String)
