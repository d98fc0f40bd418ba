"""Address rules.

- ``address:full``: ``广东省深圳市南山区科技路12号`` → province 广东省, city 深圳市,
  district 南山区, street 科技路12号. A municipality does not repeat its name
  (``北京市朝阳区建国路8号``: city = province = 北京市); a county-level city
  directly under its province, or a prefecture-level city with no counties,
  does not repeat its name as district (``湖北省仙桃市...``, ``广东省东莞市...``).
- ``address:city``: ``广东省深圳市`` → province, city.

Names are recognised with :func:`regions.regions` (longest known prefix per
level, each level within the one above); no names are hard-coded. An address
whose province is left out is recognised from a city name that is unique in
the country. Text after the recognised parts is the street; an address with no
recognised part keeps it all as street (``address:city`` calls that an error).
"""

from __future__ import annotations

import functools

import polars as pl

from ._base import ERROR, error_when
from .regions import regions


@functools.cache
def _tables() -> dict[str, pl.DataFrame]:
    r = regions().select("province", "city", "district")
    municipal = (
        r.group_by("province")
        .agg((pl.col("city") == pl.col("province")).all().alias("municipal"))
        .filter(pl.col("municipal"))
        .select("province")
    )
    cities = r.filter(pl.col("city") != pl.col("province")).select("province", "city").unique()
    unique_cities = cities.filter(pl.len().over("city") == 1)
    return {
        "provinces": r.select(pl.col("province").alias("_name")).unique(),
        "municipal": municipal,
        "cities": cities.rename({"city": "_name"}),
        "unique_cities": unique_cities.rename({"city": "_name", "province": "_prov"}),
        "districts": r.select("province", pl.col("city").alias("_ck"), pl.col("district").alias("_name")).unique(),
        "self_districts": r.filter(pl.col("district") == pl.col("city"))
        .select("province", "city").unique().with_columns(pl.lit(True).alias("_self")),
    }  # fmt: skip


def _longest_prefix(
    frame: pl.DataFrame, text: str, table: pl.DataFrame, keys: list[str], out: str
) -> pl.DataFrame:
    """Add ``out``: the longest ``table._name`` that starts ``frame[text]`` and
    agrees with ``frame`` on ``keys`` (other ``table`` columns come along).

    One Aho-Corasick pass over all names, longest first, finds the longest
    name regardless of ``keys``; a join checks it agrees with ``keys``. Only
    rows where it does not (a name of another province's city, say) are
    searched again length by length."""
    extra = [c for c in table.columns if c not in keys and c != "_name"]
    names = table.get_column("_name").unique().to_list()
    names.sort(key=len, reverse=True)
    head = pl.col(text).str.slice(0, len(names[0]))
    # Aho-Corasick, leftmost match, longest name first among equals
    first = head.str.extract_many(names, leftmost=True).list.first()
    hits = table.rename({"_name": "_cand"}).with_columns(pl.lit(True).alias("_hit"))
    found = (
        frame.with_row_index("_row")
        .with_columns(pl.when(head.str.starts_with(first)).then(first).alias("_cand"))
        .join(hits, on=[*keys, "_cand"], how="left", maintain_order="left")
    )
    retry = pl.col("_cand").is_not_null() & pl.col("_hit").is_null()
    again = found.filter(retry).drop(["_cand", "_hit", *extra])
    found = found.with_columns(
        pl.when(pl.col("_hit")).then(pl.col("_cand")).alias(out),
        *[pl.when(pl.col("_hit")).then(pl.col(c)).alias(c) for c in extra],
    ).drop(["_cand", "_hit"])
    if again.height:
        lengths = sorted({len(n) for n in names}, reverse=True)
        fixed = _match_rows(again, text, table, keys, out, lengths)
        found = found.update(fixed.select("_row", out, *extra), on="_row", how="left")
    return found.drop("_row")


def _match_rows(
    frame: pl.DataFrame,
    text: str,
    table: pl.DataFrame,
    keys: list[str],
    out: str,
    lengths: list[int],
) -> pl.DataFrame:
    """:func:`_longest_prefix` the slow way: one join per name length."""
    extra = [c for c in table.columns if c not in keys and c != "_name"]
    found = frame.with_columns(
        pl.lit(None, dtype=pl.String).alias(out),
        *[pl.lit(None, dtype=table.schema[c]).alias(c) for c in extra],
    )
    for length in lengths:
        names = table.filter(pl.col("_name").str.len_chars() == length).rename(
            {"_name": "_probe", **{c: f"{c}__hit" for c in extra}}
        )
        found = (
            found.with_columns(pl.col(text).str.slice(0, length).alias("_probe"))
            .join(
                names.with_columns(pl.lit(True).alias("_hit")),
                on=[*keys, "_probe"],
                how="left",
                maintain_order="left",
            )
            .with_columns((pl.col(out).is_null() & pl.col("_hit").fill_null(False)).alias("_take"))
            .with_columns(
                pl.when("_take").then(pl.col("_probe")).otherwise(pl.col(out)).alias(out),
                *[
                    pl.when("_take").then(pl.col(f"{c}__hit")).otherwise(pl.col(c)).alias(c)
                    for c in extra
                ],
            )
            .drop(["_probe", "_hit", "_take", *[f"{c}__hit" for c in extra]])
        )
    return found


def _rest(text: str, part: str) -> pl.Expr:
    """``text`` without the leading ``part`` (when ``part`` was recognised)."""
    t = pl.col(text)
    return (
        pl.when(pl.col(part).is_not_null())
        .then(t.str.slice(pl.col(part).str.len_chars()))
        .otherwise(t)
    )


def split_address(v: pl.Series) -> pl.DataFrame:
    """``province``, ``city``, ``district``, ``street`` for each address string."""
    t = _tables()
    df = pl.DataFrame({"_t0": v.str.replace_all(r"\s", "")})
    df = _longest_prefix(df, "_t0", t["provinces"], [], "_p")
    df = df.with_columns(_rest("_t0", "_p").alias("_t1"))
    # city within the province; or, with no province, a city unique in China
    df = _longest_prefix(df, "_t1", t["cities"].rename({"province": "_p"}), ["_p"], "_c")
    df = _longest_prefix(
        df.with_columns(pl.when(pl.col("_p").is_null()).then(pl.col("_t1")).alias("_t1n")),
        "_t1n", t["unique_cities"], [], "_cu",
    )  # fmt: skip
    df = df.with_columns(
        pl.coalesce("_p", "_prov").alias("_p"),
        pl.coalesce("_c", "_cu").alias("_cm"),
    ).with_columns(_rest("_t1", "_cm").alias("_t2"))
    # district within the city, or directly within the province (municipality)
    df = df.with_columns(pl.coalesce("_cm", "_p").alias("_ck"))
    df = _longest_prefix(df, "_t2", t["districts"].rename({"province": "_p"}), ["_p", "_ck"], "_d")
    df = df.join(t["municipal"].with_columns(pl.lit(True).alias("_muni")),
                 left_on="_p", right_on="province", how="left", maintain_order="left")  # fmt: skip
    df = df.join(t["self_districts"], left_on=["_p", "_cm"], right_on=["province", "city"],
                 how="left", maintain_order="left")  # fmt: skip
    city = (
        pl.when(pl.col("_cm").is_not_null())
        .then(pl.col("_cm"))
        .when(pl.col("_d").is_not_null() | pl.col("_muni").fill_null(False))
        .then(pl.col("_p"))
    )
    district = pl.coalesce(
        pl.col("_d"), pl.when(pl.col("_self").fill_null(False)).then(pl.col("_cm"))
    )
    street = _rest("_t2", "_d")
    return df.select(
        pl.col("_p").alias("province"),
        city.alias("city"),
        district.alias("district"),
        pl.when(street != "").then(street).alias("street"),
    )


def _names(field: str) -> dict[str, str]:
    prefix = "" if field == "address" else f"{field}_"
    return {p: f"{prefix}{p}" for p in ("province", "city", "district", "street")}


def parse_address(rule: str, field: str, v: pl.Series) -> pl.DataFrame:
    names = _names(field)
    parts = split_address(v)
    if rule == "address:full":
        return parts.rename(names).with_columns(pl.lit(None, dtype=pl.String).alias(ERROR))
    # address:city
    known = pl.col("province").is_not_null() | pl.col("city").is_not_null()
    out = pl.concat([pl.DataFrame({"v": v}), parts], how="horizontal").with_columns(
        error_when(~known, "address '{}' names no known province or city")
    )
    return out.select(
        pl.col("province").alias(names["province"]), pl.col("city").alias(names["city"]), ERROR
    )


def render_address(rule: str, prefix: str = "") -> pl.Expr:
    """Render ``province``/``city``/``district``/``street`` (``address:full``) or
    ``province``/``city`` (``address:city``) as one string, without repeating
    a municipality's name as city or a city's name as district."""
    p, c = pl.col(f"{prefix}province"), pl.col(f"{prefix}city")
    city = pl.when(c != p).then(c)
    if rule == "address:city":
        parts = [p, city]
    else:
        d, s = pl.col(f"{prefix}district"), pl.col(f"{prefix}street")
        parts = [p, city, pl.when(d != c).then(d), s]
    out = pl.concat_str(parts, ignore_nulls=True)
    return pl.when(out != "").then(out)


__all__ = ["parse_address", "render_address", "split_address"]
