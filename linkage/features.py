"""Derived person columns for linkage, computed once in polars before Splink.

Each column exists so that a comparison or blocking rule can be a plain equality
or a cheap string function in SQL:

- ``dob_any``: the stated date of birth, else the one read from the resident ID.
- ``id_any``: the valid ID, else the ID as delivered (transposed digits keep it
  close in edit distance); ``id_key``: its first 6 + last 4 characters, or the
  visible parts of a masked ID (``110101********123X`` → ``110101123X``), so a masked
  and a full ID can agree.
- ``phone_any``: the 11-digit national number (valid, else the delivered digits);
  ``phone_key``: its first 3 + last 4 digits, or the visible parts of a masked phone.
- ``name_py``: pinyin without spaces (homophones agree), ``name_py_rev``: given
  name then surname (agrees with a swapped-order mention), ``surname_py``,
  ``given_py``.
"""

from __future__ import annotations

import polars as pl

PERSON_FEATURES = (
    "mention_id",
    "source_id",
    "role",
    "name_native",
    "name_py",
    "name_py_rev",
    "surname_py",
    "given_py",
    "dob_any",
    "sex",
    "id_any",
    "id_key",
    "phone_any",
    "phone_key",
    "email",
    "plate",
    "passport",
    "province",
    "city",
    "district",
)


def _nospace(col: str) -> pl.Expr:
    return pl.col(col).str.replace_all(r"[\s·\-]", "").str.to_lowercase()


def person_features(mentions: pl.LazyFrame | pl.DataFrame) -> pl.DataFrame:
    """Person mentions with the derived comparison columns (``PERSON_FEATURES``)."""
    m = mentions.lazy().filter(pl.col("entity_type") == "person")
    id_any = pl.coalesce("id_number", pl.col("id_raw").str.to_uppercase())
    masked = pl.col("id_masked").str.to_uppercase()
    phone_digits = pl.col("phone_raw").str.replace_all(r"\D", "").str.slice(-11)
    phone_any = pl.coalesce(pl.col("phone").str.strip_prefix("+86"), phone_digits)
    phone_masked = pl.col("phone_masked").str.replace_all(r"[^\d*]", "").str.slice(-11)
    out = m.with_columns(
        pl.coalesce("dob", "id_dob").alias("dob_any"),
        id_any.alias("id_any"),
        pl.coalesce(
            id_any.str.slice(0, 6) + id_any.str.slice(-4),
            masked.str.slice(0, 6) + masked.str.slice(-4),
        ).alias("id_key"),
        phone_any.alias("phone_any"),
        pl.coalesce(
            phone_any.str.slice(0, 3) + phone_any.str.slice(-4),
            phone_masked.str.slice(0, 3) + phone_masked.str.slice(-4),
        ).alias("phone_key"),
        _nospace("name_latin").alias("name_py"),
        (_nospace("given_latin") + _nospace("surname_latin")).alias("name_py_rev"),
        _nospace("surname_latin").alias("surname_py"),
        _nospace("given_latin").alias("given_py"),
        pl.col("email").str.to_lowercase(),
    )
    out = out.with_columns(
        pl.when(pl.col(c).str.len_chars() > 0).then(pl.col(c)).alias(c)
        for c in (
            "id_any",
            "id_key",
            "phone_any",
            "phone_key",
            "name_py",
            "name_py_rev",
            "email",
            "plate",
            "passport",
            "name_native",
        )
    )
    return out.select(PERSON_FEATURES).collect()
