"""The canonical (silver) schemas every source is staged into.

One mention table holds persons and businesses (``entity_type`` tells which);
fields that do not apply are null. Facts keep one row per staged source row,
with lineage to the raw row. Quarantine keeps what could not be staged.
"""

from __future__ import annotations

import polars as pl

PERSON_MENTION_FIELDS: dict[str, pl.DataType] = {
    "name_native": pl.String(),
    "surname_native": pl.String(),
    "given_native": pl.String(),
    "name_latin": pl.String(),
    "surname_latin": pl.String(),
    "given_latin": pl.String(),
    "dob": pl.Date(),
    "dob_raw": pl.String(),  # an impossible date as delivered (lenient date rules)
    "sex": pl.String(),
    "birth_place": pl.String(),
    "id_number": pl.String(),
    "id_raw": pl.String(),
    "id_masked": pl.String(),
    "id_dob": pl.Date(),
    "phone": pl.String(),
    "phone_raw": pl.String(),
    "phone_masked": pl.String(),
    "email": pl.String(),
    "plate": pl.String(),
    "passport": pl.String(),
}
BUSINESS_MENTION_FIELDS: dict[str, pl.DataType] = {
    "name": pl.String(),
    "uscc": pl.String(),
    "uscc_raw": pl.String(),
    "industry": pl.String(),
}
ADDRESS_FIELDS: dict[str, pl.DataType] = {
    "province": pl.String(),
    "city": pl.String(),
    "district": pl.String(),
    "street": pl.String(),
    "postcode": pl.String(),
}

MENTION_SCHEMA: dict[str, pl.DataType] = {
    "mention_id": pl.String(),
    "source_id": pl.String(),
    "entity_type": pl.String(),
    "role": pl.String(),  # "" for the row's subject, else legal_rep / employer / ...
    **PERSON_MENTION_FIELDS,
    **BUSINESS_MENTION_FIELDS,
    **ADDRESS_FIELDS,
    "attributes": pl.String(),  # JSON object of source columns with no canonical field
}
IDENTITY_FIELDS: tuple[str, ...] = tuple(
    c for c in MENTION_SCHEMA if c not in ("mention_id", "role")
)

# One row per staged source row: which mention it is about, and what it says.
RECORD_SCHEMA: dict[str, pl.DataType] = {
    "source_id": pl.String(),
    "record_key": pl.String(),
    "mention_id": pl.String(),
    "fact_type": pl.String(),
    "event_date": pl.Date(),
    "amount": pl.Float64(),
    "list_type": pl.String(),
    "legal_basis": pl.String(),
    "issuing_body": pl.String(),
    "start_date": pl.Date(),
    "expiry_date": pl.Date(),
    "facts": pl.String(),  # JSON object of every fact column, parsed
    "op": pl.String(),  # insert / update (databases), or "" for files
    "file": pl.String(),
    "line": pl.Int64(),
    "delivered": pl.Date(),
    "ingested_at": pl.Datetime("us", "UTC"),
}

RELATIONSHIP_SCHEMA: dict[str, pl.DataType] = {
    "source_id": pl.String(),
    "record_key": pl.String(),
    "mention_id": pl.String(),
    "role": pl.String(),
    "related_mention_id": pl.String(),
}

QUARANTINE_SCHEMA: dict[str, pl.DataType] = {
    "source_id": pl.String(),
    "file": pl.String(),
    "line": pl.Int64(),
    "raw": pl.String(),
    "reason": pl.String(),
    "ingested_at": pl.Datetime("us", "UTC"),
}


def empty(schema: dict[str, pl.DataType]) -> pl.DataFrame:
    return pl.DataFrame(schema=schema)


def conform(df: pl.DataFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """Select ``schema``'s columns in order, adding missing ones as nulls, casting strictly."""
    if df.width == 0:
        return (
            pl.DataFrame(schema=schema)
            if df.height == 0
            else df.select(pl.lit(None).cast(t).alias(c) for c, t in schema.items())
        )
    return df.select(
        (pl.col(c) if c in df.columns else pl.lit(None)).cast(t, strict=True).alias(c)
        for c, t in schema.items()
    )
