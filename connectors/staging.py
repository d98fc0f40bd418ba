"""From raw rows to canonical mentions, records and relationships (bronze → silver).

``stage(spec, rows)`` parses every spec column with its rule, sends rows whose
values cannot be parsed to quarantine (with the column and the reason), and
collapses the rest to one mention per distinct identity per source. Each staged
row keeps a record (fact) row with its lineage, so nothing is lost and every
fact leads back to its file and line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache

import duckdb
import polars as pl

from connectors.canonical import (
    IDENTITY_FIELDS,
    MENTION_SCHEMA,
    QUARANTINE_SCHEMA,
    RECORD_SCHEMA,
    RELATIONSHIP_SCHEMA,
    conform,
    empty,
)
from connectors.parsing import parse_column
from connectors.spec import RELATED_ROLES, SourceSpec

LIST_FACTS = ("legal_basis", "issuing_body", "start_date", "expiry_date")


@dataclass
class Staged:
    """The silver output of one delivery."""

    mentions: pl.DataFrame
    records: pl.DataFrame
    relationships: pl.DataFrame
    quarantine: pl.DataFrame

    @property
    def rows_staged(self) -> int:
        return self.records.height


def schema_drift(spec: SourceSpec, found: list[str]) -> str | None:
    """A reason if the delivery lacks a required column, else None."""
    missing = [c.name for c in spec.columns if c.required and c.name not in found]
    if not missing:
        return None
    known = {c.name for c in spec.columns}
    extra = [c for c in found if c not in known and not c.startswith("_")]
    msg = f"schema drift: required column(s) {', '.join(missing)} missing"
    return msg + (f"; unexpected column(s) {', '.join(extra)}" if extra else "")


def _blank_to_null(rows: pl.DataFrame, names: list[str]) -> pl.DataFrame:
    return rows.with_columns(
        pl.when(pl.col(c).str.strip_chars() == "")
        .then(None)
        .otherwise(pl.col(c).str.strip_chars())
        .alias(c)
        for c in names
    )


def _raw_text(rows: pl.DataFrame, names: list[str]) -> pl.Expr:
    if not names:
        return pl.lit("")
    return pl.concat_str([pl.col(c).fill_null("") for c in names], separator="|")


def _mention_ids(df: pl.DataFrame) -> pl.Series:
    """A content hash of the identity columns: the same identity from the same
    source always gets the same id (DuckDB's md5, stable across versions)."""
    key = df.select(
        pl.concat_str(
            [
                pl.col(c).cast(pl.String).fill_null("\x00")
                for c in IDENTITY_FIELDS
                if c in df.columns
            ],
            separator="\x1f",
        ).alias("k")
    )
    con = _duckdb().cursor()
    try:
        con.register("k", key)
        return con.sql("SELECT 'M' || substr(md5(k), 1, 20) AS id FROM k").pl()["id"]
    finally:
        con.close()


@cache
def _duckdb() -> duckdb.DuckDBPyConnection:
    """One in-memory DuckDB per process for hashing (connecting costs ~20 ms)."""
    return duckdb.connect()


def _complete_names(df: pl.DataFrame) -> pl.DataFrame:
    """Fill a whole name from its parts and vice versa where a source gave only one form."""
    out = df
    for script in ("native", "latin"):
        sep = "" if script == "native" else " "
        name, sur, giv = f"name_{script}", f"surname_{script}", f"given_{script}"
        if sur in out.columns and giv in out.columns:
            whole = pl.concat_str([pl.col(sur), pl.col(giv)], separator=sep)
            out = out.with_columns(
                (pl.col(name).fill_null(whole) if name in out.columns else whole).alias(name)
            )
    return out


def stage(
    spec: SourceSpec,
    rows: pl.DataFrame,
    *,
    file: str,
    delivered,
    ingested_at: datetime | None = None,
) -> Staged:
    """Stage one delivery's rows (all columns as strings, plus ``_line``; ``_op`` for databases)."""
    ingested_at = ingested_at or datetime.now(UTC)
    if rows.height == 0:
        return Staged(
            empty(MENTION_SCHEMA),
            empty(RECORD_SCHEMA),
            empty(RELATIONSHIP_SCHEMA),
            empty(QUARANTINE_SCHEMA),
        )
    present = [c for c in spec.columns if c.name in rows.columns]
    names = [c.name for c in present]
    rows = _blank_to_null(rows, names)
    parsed: dict[str, pl.Series] = {}
    errors: list[pl.Series] = []
    for col in present:
        field = (
            col.canonical
            if not col.field.startswith(("fact:", "attr:"))
            else col.field.split(":", 1)[1]
        )
        rule = col.rule
        if col.field == "key":
            parsed["_key"] = rows[col.name]
            continue
        out = parse_column(rule, field, rows[col.name])
        err = out["_error"]
        errors.append(
            pl.select(pl.when(err.is_not_null()).then(pl.lit(f"{col.name}: ") + err)).to_series()
        )
        prefix = (
            "fact:"
            if col.field.startswith("fact:")
            else "attr:"
            if col.field.startswith("attr:")
            else (f"{col.role}." if col.role else "")
        )
        for c in out.columns:
            if c != "_error":
                parsed[prefix + c] = out[c]
    reason = (
        pl.select(pl.concat_str(errors, separator="; ", ignore_nulls=True)).to_series()
        if errors
        else pl.Series([None] * rows.height, dtype=pl.String)
    )
    reason = pl.select(pl.when(reason.str.len_chars() > 0).then(reason)).to_series()
    if spec.key_column is not None:
        missing_key = rows[spec.key_column].is_null()
        reason = pl.select(
            pl.when(missing_key).then(pl.lit("record key column is empty")).otherwise(reason)
        ).to_series()
    frame = pl.DataFrame(parsed) if parsed else pl.DataFrame(height=rows.height)
    frame = frame.with_columns(
        rows["_line"].alias("_line"),
        (rows["_op"] if "_op" in rows.columns else pl.lit("")).alias("_op"),
        reason.alias("_reason"),
    )
    if "_key" not in frame.columns:
        frame = frame.with_columns(
            (pl.lit(f"{file}:") + pl.col("_line").cast(pl.String)).alias("_key")
        )
    bad = frame["_reason"].is_not_null()
    quarantine = conform(
        rows.filter(bad)
        .select(
            pl.lit(spec.id).alias("source_id"),
            pl.lit(file).alias("file"),
            pl.col("_line").alias("line"),
            _raw_text(rows, names).alias("raw"),
        )
        .with_columns(
            frame.filter(bad)["_reason"].alias("reason"), pl.lit(ingested_at).alias("ingested_at")
        ),
        QUARANTINE_SCHEMA,
    )
    good = frame.filter(~bad)
    extra_cols = [c for c in rows.columns if c not in names and not c.startswith("_")]
    attrs = _attributes(good, rows.filter(~bad), extra_cols)

    main = _mention_frame(good, "", spec.entity, spec.id, attrs)
    mentions = [main]
    rels = []
    for role, etype in RELATED_ROLES.items():
        if any(c.startswith(f"{role}.") for c in good.columns):
            rel = _mention_frame(good, f"{role}.", etype, spec.id, None)
            has_any = rel.select(
                pl.any_horizontal(
                    pl.col(c).is_not_null()
                    for c in IDENTITY_FIELDS
                    if c in rel.columns and c not in ("source_id", "entity_type", "attributes")
                )
            ).to_series()
            rel = rel.with_columns(pl.lit(role).alias("role"))
            mentions.append(rel.filter(has_any))
            rels.append(
                pl.DataFrame(
                    {
                        "source_id": spec.id,
                        "record_key": good["_key"],
                        "mention_id": main["mention_id"],
                        "role": role,
                        "related_mention_id": rel["mention_id"],
                    }
                ).filter(has_any)
            )
    all_mentions = conform(
        pl.concat([conform(m, MENTION_SCHEMA) for m in mentions]), MENTION_SCHEMA
    )
    all_mentions = all_mentions.unique(subset=["mention_id"], keep="first", maintain_order=True)
    records = _records(spec, good, main["mention_id"], file, delivered, ingested_at)
    relationships = (
        conform(pl.concat(rels), RELATIONSHIP_SCHEMA) if rels else empty(RELATIONSHIP_SCHEMA)
    )
    return Staged(all_mentions, records, relationships, quarantine)


def _attributes(
    good: pl.DataFrame, raw_good: pl.DataFrame, extra_cols: list[str]
) -> pl.Series | None:
    attr_cols = [c for c in good.columns if c.startswith("attr:")]
    if not attr_cols and not extra_cols:
        return None
    base = raw_good.select(extra_cols) if extra_cols else pl.DataFrame(height=good.height)
    parts = base.with_columns(
        good[c].cast(pl.String).alias(c.removeprefix("attr:")) for c in attr_cols
    )
    return parts.select(pl.struct(pl.all()).struct.json_encode().alias("attributes")).to_series()


def _mention_frame(
    good: pl.DataFrame, prefix: str, etype: str, source_id: str, attrs: pl.Series | None
) -> pl.DataFrame:
    cols = {
        c.removeprefix(prefix): good[c]
        for c in good.columns
        if c.startswith(prefix)
        and not c.startswith(("fact:", "attr:", "_"))
        and (prefix or "." not in c)
    }
    df = pl.DataFrame(cols) if cols else pl.DataFrame(height=good.height)
    if etype == "business" and "name_native" in df.columns and "name" not in df.columns:
        df = df.rename({"name_native": "name"})
    df = _complete_names(df).with_columns(
        pl.lit(source_id).alias("source_id"),
        pl.lit(etype).alias("entity_type"),
        pl.lit("").alias("role"),
    )
    if attrs is not None:
        df = df.with_columns(attrs.alias("attributes"))
    df = conform(df, MENTION_SCHEMA)
    return df.with_columns(_mention_ids(df).alias("mention_id"))


def _records(
    spec: SourceSpec,
    good: pl.DataFrame,
    mention_ids: pl.Series,
    file: str,
    delivered,
    ingested_at: datetime,
) -> pl.DataFrame:
    fact_cols = [c for c in good.columns if c.startswith("fact:")]
    facts = good.select(pl.col(c).alias(c.removeprefix("fact:")) for c in fact_cols)
    list_type = (
        spec.fact_type.removeprefix("list:") if (spec.fact_type or "").startswith("list:") else None
    )

    def fact(name: str, dtype: pl.DataType) -> pl.Series:
        if name in facts.columns:
            return facts[name].cast(dtype, strict=False)
        return pl.Series([None] * good.height, dtype=dtype)

    event = fact("event_date", pl.Date())
    if "start_date" in facts.columns:
        event = event.fill_null(facts["start_date"].cast(pl.Date, strict=False))
    facts_json = (
        facts.select(
            pl.struct([pl.col(c).cast(pl.String) for c in facts.columns]).struct.json_encode()
        ).to_series()
        if facts.columns
        else pl.Series([json.dumps({})] * good.height)
    )
    df = pl.DataFrame(
        {
            "source_id": [spec.id] * good.height,
            "record_key": good["_key"],
            "mention_id": mention_ids,
            "fact_type": [spec.fact_type] * good.height,
            "event_date": event,
            "amount": fact("amount", pl.Float64()),
            "list_type": [list_type] * good.height,
            "legal_basis": fact("legal_basis", pl.String()),
            "issuing_body": fact("issuing_body", pl.String()),
            "start_date": fact("start_date", pl.Date()),
            "expiry_date": fact("expiry_date", pl.Date()),
            "facts": facts_json,
            "op": good["_op"],
            "file": [file] * good.height,
            "line": good["_line"],
        },
        strict=False,
    ).with_columns(
        pl.lit(delivered).cast(pl.Date).alias("delivered"), pl.lit(ingested_at).alias("ingested_at")
    )
    return conform(df, RECORD_SCHEMA)
