"""Value-level parse rules: how one source column is read into canonical fields.

A source column has a ``field`` (what it means) and a ``rule`` (how it is
written, see ``connectors.spec.Column``). :func:`parse_column` reads a whole
column at once with polars expressions; libraries that must be called per
value (pypinyin, phonenumbers, python-stdnum) are called once per distinct
value. The simulator renders with the same rule names
(``simulation.render.render_column``), and ``parse(render(x)) == x``.

Output columns per rule (``f`` = the field):

=====================  ========================================================
rule                   outputs
=====================  ========================================================
text                   f (String, stripped)
int / decimal          f (Int64 / Float64)
date:*                 f (Date)
date:ymd_lenient       f (Date, null if impossible), f_raw (the impossible value)
sex:*                  f ('M' / 'F')
name:hanzi             name_native, surname_native, given_native, name_latin,
                       surname_latin, given_latin (field ``name``);
                       f_native, f_latin (field ``surname`` / ``given``)
name:pinyin_*          name_latin, surname_latin, given_latin (field ``name``);
                       f_latin (field ``surname`` / ``given``)
name:latin             the same columns, for non-pinyin Latin-script names:
                       lower-cased and trimmed as given, never segmented;
                       field ``name`` fills only name_latin
id:full / id:masked    id_number, id_raw, id_dob, id_masked (field
                       ``id_number``; another field f gives f, f_raw, f_dob,
                       f_masked)
phone:*                f (E.164), f_raw, f_masked
uscc                   f, f_raw
email / plate /        f
passport
address:full           province, city, district, street (field ``address``;
                       another field f gives f_province, ...)
address:city           province, city
=====================  ========================================================

Every result also has ``_error`` (String): null when the value parsed (or was
null/blank, which is missing, not wrong), else the reason.
"""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

from ._base import ERROR, ParseRuleError
from .addresses import parse_address
from .dates import STYLES as DATE_STYLES
from .dates import parse_date
from .ids import parse_id, parse_uscc
from .names import LATIN_STYLES, hanzi_latin, parse_name, syllabify
from .phones import parse_phone
from .simple import SEX_CODES, parse_simple

_Parser = Callable[[str, str, pl.Series], pl.DataFrame]

_PARSERS: dict[str, _Parser] = {
    "text": parse_simple,
    "int": parse_simple,
    "decimal": parse_simple,
    **{r: parse_date for r in DATE_STYLES},
    **{r: parse_simple for r in SEX_CODES},
    "name:hanzi": parse_name,
    **{r: parse_name for r in LATIN_STYLES},
    "name:latin": parse_name,
    "id:full": parse_id,
    "id:masked": parse_id,
    "phone:plain": parse_phone,
    "phone:e164_spaced": parse_phone,
    "phone:dashed": parse_phone,
    "phone:masked": parse_phone,
    "uscc": parse_uscc,
    "email": parse_simple,
    "plate": parse_simple,
    "passport": parse_simple,
    "address:full": parse_address,
    "address:city": parse_address,
}

RULES: list[str] = list(_PARSERS)
_FULL_WIDTH = "[\u3000\uff01-\uffee]"


def parse_column(rule: str, field: str, values: pl.Series) -> pl.DataFrame:
    """Parse one source column written with ``rule`` into the canonical
    outputs of ``field`` (see the module table), plus ``_error``.

    The result has ``values``' height and order. Null or blank values give null
    outputs and a null ``_error``. Except for ``text``, full-width forms
    (１３８, ＡＢ, ideographic space) are read as their ASCII equivalents
    (NFKC). Raises :class:`ParseRuleError` for an unknown rule.
    """
    parser = _PARSERS.get(rule)
    if parser is None:
        raise ParseRuleError(f"unknown parse rule {rule!r}; known: {', '.join(RULES)}")
    if rule.startswith("date:") and values.dtype == pl.Date:
        return pl.DataFrame(
            {field: values, ERROR: pl.Series([None] * len(values), dtype=pl.String)}
        )
    text = values.cast(pl.String)
    if rule != "text" and text.str.contains(_FULL_WIDTH).any():
        text = text.str.normalize("NFKC")  # full-width digits, letters, punctuation
    v = pl.col("v").str.strip_chars()
    text = pl.DataFrame({"v": text}).select(pl.when(v != "").then(v).alias("v")).to_series()
    out = parser(rule, field, text)
    assert out.height == len(values), (rule, out.height, len(values))
    return out


__all__ = [
    "RULES",
    "ParseRuleError",
    "hanzi_latin",
    "parse_column",
    "syllabify",
]
