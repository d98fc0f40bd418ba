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
- ``id_masked_only`` / ``phone_masked_only``: the mention has only a masked ID /
  phone (its key is the visible part, ``id_any`` / ``phone_any`` is null).
- ``name_py``: pinyin without spaces (homophones agree), ``name_py_rev``: given
  name then surname (agrees with a swapped-order mention), ``surname_py``,
  ``given_py``.
- ``name_py_thin``: ``name_py`` of a thin mention (no full ID, and no full phone or
  no date of birth) whose name at most ``THIN_NAME_MAX_PERSONS`` people carry, so a
  blocking rule can pair thin mentions by name alone with an equi-join.
- ``name_native_rot_thin``: a thin mention's hanzi name with its last character
  moved to the front (站瑜徐 → 徐站瑜: written surname last, which ``name_py_rev``
  cannot undo because the connector took the first character for the surname).
- ``name_registered``: some mention with an ID carries this pinyin name. A thin
  mention whose name is not registered is most likely a typo (everyone has an
  ID-bearing register record); ``name_typo_a_thin`` / ``name_typo_b_thin`` are its
  3–4-character hanzi name without the last character / the first and last
  characters, keys that meet the names one character away.
- ``uid``: Splink's unique id (see :func:`_uid`).
- ``name_py_persons``: how many people carry this pinyin name, estimated as the
  number of distinct birth years (or ID region codes, whichever is more) among the
  mentions with the name, and for names of under 3 characters also distinct phone
  keys (years and regions rather than full dobs and IDs: a one-digit typo in a day
  or an ID sequence number does not make a second person); at least 1, at most
  ``PERSONS_CAP`` (4 reads "four or more": the model asks no more). A name held by
  one person is strong evidence on its own
  (20,000-person world: 10,942 3-character names with one dob / ID key, 3 in fact
  shared; 2-character names with one dob / ID / phone key: ~2,900, ~46 cross-person
  pairs); a typo in a dob or an ID only makes a name look more common: the safe side.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

PERSON_FEATURES = (
    "uid",
    "mention_id",
    "source_id",
    "role",
    "name_native",
    "name_py",
    "name_py_rev",
    "name_py_thin",
    "name_native_rot_thin",
    "name_typo_a_thin",
    "name_typo_b_thin",
    "name_registered",
    "surname_py",
    "given_py",
    "dob_any",
    "sex",
    "id_any",
    "id_key",
    "phone_any",
    "phone_key",
    "id_masked_only",
    "phone_masked_only",
    "name_py_persons",
    "email",
    "plate",
    "passport",
    "province",
    "city",
    "district",
)


THIN_NAME_MAX_PERSONS = 3
# The per-name counts are stored capped at the resolution the models read them:
# ``name_py_persons`` only as ``= 1`` and ``<= THIN_NAME_MAX_PERSONS``, the firm counts
# only as ``= 1`` (tests/test_linkage.py reads every literal the models compare them
# with). A common name's count then no longer moves with each day's mentions, and with
# it every stored row of the name (1M world, one day: 187,133 stored rows restated, 173
# with the cap).
PERSONS_CAP = THIN_NAME_MAX_PERSONS + 1
FIRMS_CAP = 2
STAT_CAPS = {"name_py_persons": PERSONS_CAP, "name_core_firms": FIRMS_CAP,
             "name_core_form_firms": FIRMS_CAP}  # fmt: skip
# The stored features (``lake/linkage/<type>_features.parquet`` and its delta parts) are
# scanned several times by each increment (the names' rows, the candidates' rows, the
# guard's keys): lz4 decodes faster than zstd (7.2M person mentions: the candidates'
# rows 0.69 -> 0.40 s, the names' rows 0.80 -> 0.49 s) for 628 MB instead of 413.
FEATURES_COMPRESSION = "lz4"

# The per-name statistics (:func:`name_statistics`, :func:`business_name_statistics`):
# the incremental path recomputes them for the names a day's mentions carry.
PERSON_NAME_STATS = (
    "name_py_persons",
    "name_py_thin",
    "name_native_rot_thin",
    "name_typo_a_thin",
    "name_typo_b_thin",
    "name_registered",
)
BUSINESS_NAME_STATS = ("name_core_firms", "name_core_form_firms")
# The columns :func:`name_statistics` and :func:`business_name_statistics` read.
PERSON_STAT_INPUTS = (
    "name_py",
    "name_native",
    "dob_any",
    "id_key",
    "id_any",
    "phone_key",
    "phone_any",
)
BUSINESS_STAT_INPUTS = ("name_core", "name_form", "uscc_key")


def write_features(frame: pl.DataFrame, path: Path) -> None:
    """Write stored features (a base file or a delta part) as the scans expect them."""
    frame.write_parquet(path, compression=FEATURES_COMPRESSION)


def _uid() -> pl.Expr:
    """Splink's unique id: the mention id's rank, an integer (joins on it are about
    twice as fast as on the 21-character mention id) in the same order, so every
    pair keeps ``mention_id_l < mention_id_r``."""
    return pl.col("mention_id").rank("ordinal").cast(pl.Int64).alias("uid")


def _nospace(col: str) -> pl.Expr:
    return pl.col(col).str.replace_all(r"[\s·\-]", "").str.to_lowercase()


def _distinct_per_name(col: str | pl.Expr) -> pl.Expr:
    """Distinct non-null values of ``col`` among the mentions with the same ``name_py``."""
    e = pl.col(col) if isinstance(col, str) else col
    return e.n_unique().over("name_py") - e.is_null().any().over("name_py").cast(pl.UInt32)


def name_statistics(features: pl.LazyFrame | pl.DataFrame) -> pl.LazyFrame:
    """``features`` with ``name_py_persons`` and ``name_py_thin`` (re)computed over
    its own rows, grouped by ``name_py``. Needs ``name_py, name_native, dob_any,
    id_key, id_any, phone_key, phone_any``. :func:`person_features` computes them over
    every mention; the incremental path over every mention of the names a day's
    new mentions carry (the statistic of a name depends on that name's rows only),
    which gives the same values for those names."""
    out = features.lazy().with_columns(
        pl.max_horizontal(
            _distinct_per_name(pl.col("dob_any").dt.year()),
            _distinct_per_name(pl.col("id_key").str.slice(0, 6)),
        )
        .clip(lower_bound=1)
        .cast(pl.Int32)
        .alias("name_py_persons"),
        pl.col("name_native").str.len_chars().max().over("name_py").alias("_name_len"),
    )
    # Two-character names are common enough that people with no dated mention share
    # them: for those, distinct phone keys count as well (a stale phone only makes the
    # name look more common).
    out = out.with_columns(
        pl.when(pl.col("_name_len").fill_null(0) >= 3)
        .then(pl.col("name_py_persons"))
        .otherwise(
            pl.max_horizontal(pl.col("name_py_persons"), _distinct_per_name("phone_key"))
            .clip(lower_bound=1)
            .cast(pl.Int32)
        )
        .alias("name_py_persons")
    ).drop("_name_len")
    out = out.with_columns(pl.col("name_py_persons").clip(upper_bound=PERSONS_CAP))
    # Thin mentions are paired by name alone only where few people carry the name: a
    # name held by more cannot link on its own (20,000-person world: pairing thin
    # mentions of every name cost 123,000 more pairs, gained 0.0005 recall and lost
    # 0.0014 precision before the guard).
    thin = pl.col("id_any").is_null() & (
        pl.col("phone_any").is_null() | pl.col("dob_any").is_null()
    )
    few = pl.col("name_py_persons") <= THIN_NAME_MAX_PERSONS
    out = out.with_columns(pl.when(thin & few).then(pl.col("name_py")).alias("name_py_thin"))
    # A thin mention whose hanzi name was written surname last (站瑜徐 for 徐站瑜): the
    # connector took its first character for the surname, so ``name_py_rev`` does not
    # restore it; moving the last character to the front does.
    native = pl.col("name_native")
    n = native.str.len_chars()
    # A thin mention whose name no mention with an ID carries is most likely a typo of
    # someone's name (everyone has an ID-bearing register record): keys to meet the
    # names one character away (the last, or the middle of a 3-character name).
    out = out.with_columns(
        pl.col("id_any").is_not_null().any().over("name_py").alias("name_registered")
    )
    typo = pl.col("name_py_thin").is_not_null() & ~pl.col("name_registered") & n.is_between(3, 4)
    return out.with_columns(
        pl.when(pl.col("name_py_thin").is_not_null() & n.is_between(2, 4))
        .then(native.str.slice(-1) + native.str.slice(0, n - 1))
        .alias("name_native_rot_thin"),
        pl.when(typo).then(native.str.slice(0, n - 1)).alias("name_typo_a_thin"),
        pl.when(typo).then(native.str.slice(0, 1) + native.str.slice(-1)).alias("name_typo_b_thin"),
    )


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
    out = out.with_columns(
        (pl.col("id_any").is_null() & pl.col("id_key").is_not_null()).alias("id_masked_only"),
        (pl.col("phone_any").is_null() & pl.col("phone_key").is_not_null()).alias(
            "phone_masked_only"
        ),
    )
    out = name_statistics(out).with_columns(_uid())
    # Rows in mention-id order: training samples rows (u by random sampling with a
    # seed, one mention per USCC), so the order must not depend on the scan or joins.
    return out.select(PERSON_FEATURES).sort("mention_id").collect()


# ---------------------------------------------------------------- businesses

BUSINESS_FEATURES = (
    "uid",
    "mention_id",
    "source_id",
    "role",
    "name",
    "name_core",
    "name_stem",
    "name_form",
    "name_head",
    "name_tail",
    "name_skip",
    "name_drop2",
    "name_drop3",
    "name_drop4",
    "name_core_firms",
    "name_core_form_firms",
    "name_city",
    "uscc_any",
    "uscc_key",
    "legal_rep_name",
    "province",
    "city",
    "district",
)

# Legal forms, longest first so 股份有限公司 is not read as 有限公司.
LEGAL_FORM_RE = r"(股份有限公司|有限责任公司|有限公司|公司|商行|工作室)$"
_BRACKET_RE = r"[（(]([^（）()]*)[）)]"
_CITY_SUFFIX_RE = r"(市|地区|自治州|盟)$"


def _city_prefix_re() -> str:
    from connectors.parsing.regions import regions

    cities = regions()["city"].unique().str.replace(_CITY_SUFFIX_RE, "").drop_nulls().to_list()
    cities = sorted({c for c in cities if len(c) >= 2}, key=lambda s: (-len(s), s))
    return "^(" + "|".join(cities) + ")"


def business_features(
    mentions: pl.LazyFrame | pl.DataFrame, legal_reps: pl.DataFrame | None = None
) -> pl.DataFrame:
    """Business mentions with the derived comparison columns (``BUSINESS_FEATURES``).

    - ``name_core``: the name without brackets (（北京） or (北京)), without its legal
      form (有限公司, 有限责任公司, 股份有限公司, 公司, 商行, 工作室) and without a leading
      city name: the part sources agree on when they write the name differently;
      blocking keys that each survive a one-character typo somewhere else:
      ``name_head`` its first two characters (the trade name, 字号), ``name_tail`` all
      but its first character, ``name_skip`` all but its second. The end of a name is
      its industry term (科技, 贸易...), shared by thousands of firms, so it is never
      a key on its own;
    - ``name_core_firms``: how many firms carry the core (distinct USCC keys seen on
      at least two of its mentions; at least 1, at most ``FIRMS_CAP``: 2 reads
      "several"): a core only one firm carries is strong evidence, one several carry
      is weak; ``name_core_form_firms``: the same
      count among the mentions with the same core and legal form (四通信息技术工作室
      beside 四通信息技术股份有限公司: one firm per form);
    - ``name_drop2/3/4``: the core without its first 2, 3 or 4 characters, for a
      name of 6+ characters whose prefix is no known city: a typo in the city
      (旭沙七喜机械设备科技) leaves the city in the core, and these keys meet the
      other mentions' core (七喜机械设备科技);
    - ``name_city``: the city the name states (a prefix or a bracket);
    - ``uscc_any``: the valid USCC, else the code as delivered (a transposition stays
      one or two edits away); ``uscc_key``: its first 8 and last 4 characters;
    - ``legal_rep_name``: the hanzi name of the legal representative named on the same
      row (``legal_reps``: ``mention_id, legal_rep_name``), where the source has one.
    """
    m = mentions.lazy().filter(pl.col("entity_type") == "business")
    name = pl.col("name").str.replace_all(r"\s", "")
    bracket_city = name.str.extract(_BRACKET_RE, 1)
    no_bracket = name.str.replace_all(_BRACKET_RE, "")
    stem = no_bracket.str.replace(LEGAL_FORM_RE, "")
    city_re = _city_prefix_re()
    prefix_city = stem.str.extract(city_re, 1)
    # Twice: a city added in front of a name that starts with a city-like word
    # (成都 + 黄石金承) reduces to the same core as the name without it.
    core = stem.str.replace(city_re, "").str.replace(city_re, "")
    # A name that is nothing but a city (or a form) keeps its stem.
    core = pl.when(core.str.len_chars() > 0).then(core).otherwise(stem)
    uscc_any = pl.coalesce("uscc", "uscc_raw")
    out = m.with_columns(
        name.alias("name"),
        core.alias("name_core"),
        stem.alias("name_stem"),
        no_bracket.str.extract(LEGAL_FORM_RE, 1).alias("name_form"),
        pl.coalesce(prefix_city, bracket_city.str.replace(_CITY_SUFFIX_RE, "")).alias("name_city"),
        uscc_any.alias("uscc_any"),
        (uscc_any.str.slice(0, 8) + uscc_any.str.slice(-4)).alias("uscc_key"),
    ).with_columns(
        pl.col("name_core").str.slice(0, 2).alias("name_head"),
        pl.col("name_core").str.slice(1).alias("name_tail"),
        (pl.col("name_core").str.slice(0, 1) + pl.col("name_core").str.slice(2)).alias("name_skip"),
    )
    if legal_reps is not None and legal_reps.height:
        reps = legal_reps.lazy().group_by("mention_id").agg(pl.col("legal_rep_name").min())
        out = out.join(reps, on="mention_id", how="left")
    else:
        out = out.with_columns(pl.lit(None, pl.String).alias("legal_rep_name"))
    out = out.with_columns(
        pl.when(pl.col(c).str.len_chars() > 0).then(pl.col(c)).alias(c)
        for c in (
            "name",
            "name_core",
            "name_stem",
            "name_head",
            "name_tail",
            "name_skip",
            "uscc_any",
            "uscc_key",
        )
    )
    # The drop keys are only for names whose prefix is not a known city (a typo in
    # the city, 旭沙 for 长沙, leaves it in the core).
    no_city = pl.col("name_city").is_null() & (pl.col("name_core").str.len_chars() >= 6)
    out = out.with_columns(
        pl.when(no_city).then(pl.col("name_core").str.slice(k)).alias(f"name_drop{k}")
        for k in (2, 3, 4)
    )
    out = business_name_statistics(out)
    # Mention-id order (see person_features): the legal-rep join's order varies.
    return out.with_columns(_uid()).select(BUSINESS_FEATURES).sort("mention_id").collect()


def business_name_statistics(features: pl.LazyFrame | pl.DataFrame) -> pl.LazyFrame:
    """``features`` with ``name_core_firms`` (re)computed over its own rows, grouped by
    ``name_core`` (needs ``name_core, uscc_key``). :func:`business_features` computes
    it over every mention; the incremental path over every mention of the cores a
    day's new mentions carry, which gives the same values for those cores."""
    # Firms per name core: distinct USCC keys among its mentions (at least 1).
    # A key seen once is most often a mistyped code (20,000 persons: 215 of 239 cores
    # with two keys were one firm), so only keys seen twice count.
    seen_twice = pl.col("uscc_key").is_not_null() & (pl.len().over("name_core", "uscc_key") >= 2)
    firms = pl.col("uscc_key").filter(seen_twice).n_unique().over("name_core")
    # Firms per core and legal form: a firm's key counts under every form its mentions
    # give it (a changed legal form then makes the pair look shared, not unique).
    form_firms = pl.col("uscc_key").filter(seen_twice).n_unique().over("name_core", "name_form")
    return features.lazy().with_columns(
        pl.when(pl.col("name_core").is_not_null())
        .then(pl.max_horizontal(firms, pl.lit(1)).clip(upper_bound=FIRMS_CAP))
        .cast(pl.Int32)
        .alias("name_core_firms"),
        pl.when(pl.col("name_core").is_not_null() & pl.col("name_form").is_not_null())
        .then(pl.max_horizontal(form_firms, pl.lit(1)).clip(upper_bound=FIRMS_CAP))
        .cast(pl.Int32)
        .alias("name_core_form_firms"),
    )


def legal_rep_names(relationships: pl.LazyFrame, mentions: pl.LazyFrame) -> pl.DataFrame:
    """``mention_id, legal_rep_name``: the legal representative's hanzi name per business
    mention, from the relationship rows (``role = 'legal_rep'``)."""
    rel = relationships.filter(pl.col("role") == "legal_rep").select(
        "mention_id", "related_mention_id"
    )
    names = mentions.select(
        pl.col("mention_id").alias("related_mention_id"),
        pl.coalesce("name_native", "name_latin").alias("legal_rep_name"),
    )
    return (
        rel.join(names, on="related_mention_id")
        .select("mention_id", "legal_rep_name")
        .drop_nulls()
        .unique()
        .collect()
    )
