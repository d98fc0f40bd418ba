"""Turn the world into one source system's delivery for one day.

For (spec, profile, day): pick who appears, set their state as of that day
(address before or after a move), corrupt the identity fields at the agency's
error rates, render each column in the source's own style (the spec's parse
rules, inverted by :mod:`simulation.render`), write the file in the source's
format and write the truth (record key -> entity) apart from the landing zone.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path

import numpy as np
import polars as pl
from pypinyin import Style, lazy_pinyin

from connectors.parsing.names import hanzi_latin
from connectors.parsing.regions import regions
from connectors.spec import RELATED_ROLES, SourceSpec
from simulation.formats import write_delivery
from simulation.profiles import ErrorRates, FactGen, SimProfile
from simulation.render import render_column
from simulation.world import World, word_lists

EXTENSIONS = {
    "csv": "csv",
    "delimited": "txt",
    "jsonl": "jsonl",
    "json": "json",
    "parquet": "parquet",
    "sqlite": "sqlite",
    "xml": "xml",
    "fixed_width": "dat",
}
PERSON_COLS = (
    "surname_native",
    "given_native",
    "surname_latin",
    "given_latin",
    "sex",
    "dob",
    "birth_place",
    "id_number",
    "phone",
    "email",
    "province",
    "city",
    "district",
    "street",
    "postcode",
    "plate",
    "passport",
)
BUSINESS_COLS = ("name", "uscc", "industry", "province", "city", "district", "street", "postcode")
ADDRESS_COLS = ("province", "city", "district", "street", "postcode")


def rng_for(seed: int, *parts: object) -> np.random.Generator:
    """A generator derived from the world seed and a path of names, stable across runs."""
    return np.random.default_rng([seed] + [zlib.crc32(str(p).encode()) for p in parts])


def _epoch(d: date) -> int:
    return (d - date(1970, 1, 1)).days


# ---------------------------------------------------------------- populations


def _persons_at(world: World, day: date) -> pl.DataFrame:
    """Persons with the address they had on ``day`` (before a move: the old one)."""
    p = world.persons
    before_move = pl.col("prev_street").is_not_null() & (
        pl.col("move_day") > (_epoch(day) - _epoch(world.config.start))
    )
    return p.with_columns(
        [
            pl.when(before_move).then(pl.col(f"prev_{c}")).otherwise(pl.col(c)).alias(c)
            for c in ADDRESS_COLS
        ]
        + [
            pl.when(before_move).then(pl.col(c)).otherwise(pl.col(f"prev_{c}")).alias(f"prev_{c}")
            for c in ADDRESS_COLS
        ]
    )


def _prefixed(frame: pl.DataFrame, role: str, cols: tuple[str, ...], id_col: str) -> pl.DataFrame:
    return frame.select(
        pl.col(id_col).alias(f"{role}._id"), *[pl.col(c).alias(f"{role}.{c}") for c in cols]
    )


def population(world: World, name: str, day: date) -> tuple[pl.DataFrame, str]:
    """Members of a named population as of ``day``: a frame with ``_id`` (the
    truth entity) and the columns its rows can draw on, and the entity type."""
    persons = _persons_at(world, day).rename({"person_id": "_id"})
    biz = world.businesses.rename({"business_id": "_id"})
    kind, _, arg = name.partition(":")
    if kind == "persons":
        return persons, "person"
    if kind in ("drivers", "married", "migrants"):
        col = {"drivers": "driver", "married": "married", "migrants": "migrant"}[kind]
        return persons.filter(pl.col(col)), "person"
    if kind == "vehicle_owners":
        return persons.filter(pl.col("plate").is_not_null()), "person"
    if kind == "passport_holders":
        return persons.filter(pl.col("passport").is_not_null()), "person"
    if kind == "household_heads":
        return persons.filter(pl.col("is_head")), "person"
    if kind == "household_members":
        heads = _prefixed(persons, "household_head", PERSON_COLS, "_id")
        return persons.join(
            heads,
            left_on="household_head",
            right_on="household_head._id",
            how="left",
            maintain_order="left",
        ), "person"
    if kind == "employed":
        emp = _prefixed(biz, "employer", BUSINESS_COLS, "_id")
        return persons.filter(pl.col("employer").is_not_null()).join(
            emp, left_on="employer", right_on="employer._id", how="left", maintain_order="left"
        ), "person"
    if kind in ("businesses", "business_litigants", "business_enforced", "business_listed"):
        reps = _prefixed(persons, "legal_rep", PERSON_COLS, "_id")
        b = biz.join(
            reps, left_on="legal_rep", right_on="legal_rep._id", how="left", maintain_order="left"
        )
        if kind == "businesses":
            return b, "business"
        return _with_cases(
            world, b, "business", kind.removeprefix("business_"), arg, day
        ), "business"
    if kind in ("litigants", "enforced", "listed"):
        return _with_cases(world, persons, "person", kind, arg, day), "person"
    raise ValueError(f"unknown population {name!r}")


def _with_cases(
    world: World, members: pl.DataFrame, etype: str, kind: str, arg: str, day: date
) -> pl.DataFrame:
    if kind == "listed":
        ctx = world.list_entries.filter(
            (pl.col("entity_type") == etype)
            & (pl.col("start_date") <= day)
            & ((pl.col("list_type") == arg) if arg else pl.lit(True))
        )
    else:
        ctx = world.cases.filter((pl.col("entity_type") == etype) & (pl.col("filed") <= day))
        if kind == "enforced":
            ctx = ctx.filter(pl.col("enforced"))
    ctx = ctx.drop("entity_type", *[c for c in ("province", "city") if c in ctx.columns])
    return ctx.join(
        members, left_on="entity_id", right_on="_id", how="inner", maintain_order="left"
    ).rename({"entity_id": "_id"})


# ---------------------------------------------------------------- selection


def select_rows(
    world: World, spec: SourceSpec, profile: SimProfile, day_index: int
) -> tuple[pl.DataFrame, str] | None:
    """The population rows a delivery is about, or None if the source does not deliver that day."""
    cfg = world.config
    day = cfg.day(day_index)
    if spec.cadence == "snapshot" and day_index % profile.snapshot_every != 0:
        return None
    pop, etype = population(world, profile.population, day)
    if pop.height == 0:
        return pop.with_columns(pl.lit(None, pl.Date).alias("_day")), etype
    if spec.cadence == "snapshot":
        # Membership is fixed per source (the same people in every snapshot).
        keep = rng_for(cfg.seed, spec.id, "members").random(pop.height) < profile.coverage
        rows = pop.filter(pl.Series(keep))
    else:
        rng = rng_for(cfg.seed, spec.id, "day", day_index)
        activity = rng_for(cfg.seed, spec.id, "activity").lognormal(0, 1.0, size=pop.height)
        n = int(rng.poisson(pop.height * profile.daily_rate))
        idx = rng.choice(pop.height, size=n, p=activity / activity.sum())
        rows = pop[np.sort(idx)]
    return rows.with_columns(pl.lit(day).alias("_day")), etype


# ---------------------------------------------------------------- corruption


@cache
def _homophones() -> pl.DataFrame:
    """Characters of the name pool grouped by toneless pinyin (张/章, 伟/卫)."""
    w = word_lists()
    chars = sorted(
        {c for s in w["surnames"] for c in s} | set(w["name_chars"]) | set(w["extra_chars"])
    )
    py = [lazy_pinyin(c, style=Style.NORMAL)[0] for c in chars]
    df = pl.DataFrame({"char": chars, "py": py})
    groups = df.group_by("py").agg(pl.col("char").alias("alts"))
    return (
        df.join(groups, on="py")
        .with_columns(pl.col("alts").list.set_difference(pl.concat_list("char")).alias("alts"))
        .filter(pl.col("alts").list.len() > 0)
        .select("char", "alts")
    )


def _pick_mask(rng: np.random.Generator, n: int, rate: float) -> pl.Series:
    return pl.Series(rng.random(n) < rate)


# Legal forms a business name may end in, and the ones a source may write instead.
_FORM_RE = r"(股份有限公司|有限责任公司|有限公司|公司|商行|工作室)$"
_COMPANY_FORMS = ("有限公司", "有限责任公司", "股份有限公司", "公司")
_CITY_SUFFIX_RE = r"(市|地区|自治州|盟)$"


def corrupt_business(
    rows: pl.DataFrame, e: ErrorRates, rng: np.random.Generator, prefix: str = ""
) -> pl.DataFrame:
    """A business's name, USCC and address as a careless source writes them.

    Name variants (at ``biz_name_variant``, one of three kinds): the legal form
    changed or dropped (有限公司 → 有限责任公司 / 公司 / nothing); the city prefix dropped
    or added (阿克苏X商行 ↔ X商行); the city moved into brackets before the legal form,
    full- or half-width (X（阿克苏）商行, X(阿克苏)商行). At ``biz_name_typo`` one
    character of the name is replaced (by a homophone where the name pool has one).
    The USCC has two adjacent characters transposed at ``uscc_error`` (it then fails
    its check and stays as ``uscc_raw``) and is missing at ``uscc_missing``. A stale
    address (``stale_address``) is a former one: another business's address.
    """
    c = lambda name: f"{prefix}{name}"  # noqa: E731
    n = rows.height
    cols = set(rows.columns)
    chars = np.array(word_lists()["name_chars"], dtype=object)
    forms = np.array(_COMPANY_FORMS, dtype=object)
    draws = pl.DataFrame(
        {
            "_variant": rng.random(n) < e.biz_name_variant,
            "_kind": rng.integers(0, 3, size=n),
            "_form_new": forms[rng.integers(0, len(forms), size=n)].astype(str),
            "_drop_form": rng.random(n) < 0.25,
            "_half": rng.random(n) < 0.5,
            "_typo": rng.random(n) < e.biz_name_typo,
            "_tpos": rng.random(n),
            "_r": rng.integers(0, 1 << 30, size=n),
            "_typo_char": chars[rng.integers(0, len(chars), size=n)].astype(str),
            "_uscc_err": rng.random(n) < e.uscc_error,
            "_upos": rng.integers(2, 16, size=n),
            "_uscc_miss": rng.random(n) < e.uscc_missing,
            "_stale": rng.random(n) < e.stale_address,
            "_other": rng.permutation(n) if n else np.zeros(0, dtype=np.int64),
        }
    )
    tmp = pl.concat(
        [rows.select(pl.col(c("name")).alias("_name"), pl.col(c("city")).alias("_city")), draws],
        how="horizontal",
    )
    name = pl.col("_name")
    city = pl.col("_city").str.replace(_CITY_SUFFIX_RE, "")
    form = name.str.extract(_FORM_RE, 1).fill_null("")
    stem = name.str.slice(0, name.str.len_chars() - form.str.len_chars())
    has_city = (city.str.len_chars() > 0) & stem.str.starts_with(city)
    core = pl.when(has_city).then(stem.str.slice(city.str.len_chars())).otherwise(stem)
    is_company = form.is_in(_COMPANY_FORMS)
    new_form = (
        pl.when(pl.col("_drop_form") | ~is_company)
        .then(pl.lit(""))
        .when(pl.col("_form_new") == form)
        .then(pl.lit("公司"))
        .otherwise(pl.col("_form_new"))
    )
    bracket = (
        pl.when(pl.col("_half"))
        .then(pl.lit("(") + city + pl.lit(")"))
        .otherwise(pl.lit("（") + city + pl.lit("）"))
    )
    variant = (
        pl.when(pl.col("_kind") == 0)
        .then(stem + new_form)
        .when(pl.col("_kind") == 1)
        .then(pl.when(has_city).then(core + form).otherwise(city + name))
        .otherwise(core + bracket + form)
    )
    tmp = tmp.with_columns(
        pl.when(pl.col("_variant") & city.is_not_null() & name.is_not_null())
        .then(variant)
        .otherwise(name)
        .alias("_name")
    )
    # One character of the name (not of the legal form) replaced.
    length = (name.str.len_chars() - form.str.len_chars()).clip(1)
    pos = (pl.col("_tpos") * length).floor().cast(pl.Int64)
    tmp = tmp.with_columns(name.str.slice(pos, 1).alias("char"), pos.alias("_pos"))
    tmp = tmp.join(_homophones(), on="char", how="left", maintain_order="left").with_columns(
        pl.coalesce(
            pl.col("alts").list.get(
                pl.col("_r") % pl.col("alts").list.len().clip(1), null_on_oob=True
            ),
            pl.col("_typo_char"),
        ).alias("_alt")
    )
    p = pl.col("_pos")
    typo_name = name.str.slice(0, p) + pl.col("_alt") + name.str.slice(p + 1)
    new_name = tmp.select(
        pl.when(pl.col("_typo") & name.is_not_null()).then(typo_name).otherwise(name)
    ).to_series()
    out = rows.with_columns(new_name.alias(c("name")))
    if c("uscc") in cols:
        v = pl.col(c("uscc"))
        up = pl.Series(draws["_upos"])
        swapped = (
            v.str.slice(0, up) + v.str.slice(up + 1, 1) + v.str.slice(up, 1) + v.str.slice(up + 2)
        )
        out = out.with_columns(
            pl.when(draws["_uscc_miss"])
            .then(None)
            .when(draws["_uscc_err"])
            .then(swapped)
            .otherwise(v)
            .alias(c("uscc"))
        )
    addr = [c(a) for a in ADDRESS_COLS if c(a) in cols]
    if addr and n:
        other = out.select(addr)[draws["_other"]]
        stale = draws["_stale"]
        out = out.with_columns(
            pl.when(stale).then(other[a]).otherwise(pl.col(a)).alias(a) for a in addr
        )
    return out


def corrupt(
    rows: pl.DataFrame, profile: SimProfile, rng: np.random.Generator, prefix: str = ""
) -> pl.DataFrame:
    """Apply the agency's errors to one mention's identity columns (``prefix`` for a related one)."""
    e = profile.errors
    n = rows.height
    c = lambda name: f"{prefix}{name}"  # noqa: E731
    cols = set(rows.columns)
    out = rows
    if c("uscc") in cols and c("name") in cols and n:
        out = corrupt_business(rows, e, rng, prefix)
    if c("given_native") in cols and n:
        hp = _homophones()
        chars = np.array(word_lists()["name_chars"], dtype=object)
        tmp = pl.DataFrame(
            {
                "g": out[c("given_native")],
                "first": rng.random(n) < 0.5,
                "r": rng.integers(0, 1 << 30, size=n),
                "typo_char": chars[rng.integers(0, len(chars), size=n)].astype(str),
            }
        )
        g = pl.col("g")
        head, tail = g.str.slice(0, 1), g.str.slice(1)
        init, last = g.str.slice(0, g.str.len_chars() - 1), g.str.slice(-1, 1)
        tmp = tmp.with_columns(pl.when(pl.col("first")).then(head).otherwise(last).alias("char"))
        tmp = tmp.join(hp, on="char", how="left", maintain_order="left").with_columns(
            pl.col("alts")
            .list.get(pl.col("r") % pl.col("alts").list.len().clip(1), null_on_oob=True)
            .alias("alt")
        )
        homo = _pick_mask(rng, n, e.homophone) & tmp["alt"].is_not_null()
        typo = _pick_mask(rng, n, e.typo) & ~homo & tmp["g"].is_not_null()

        def swap_char(ch: pl.Expr) -> pl.Expr:
            return pl.when(pl.col("first")).then(ch + tail).otherwise(init + ch)

        new_given = tmp.select(
            pl.when(homo)
            .then(swap_char(pl.col("alt")))
            .when(typo)
            .then(swap_char(pl.col("typo_char")))
            .otherwise(g)
        ).to_series()
        out = out.with_columns(new_given.alias(c("given_native")))
        if typo.any() and c("given_latin") in cols:
            # Romanise only the changed names (the typo rows).
            idx = pl.Series(np.flatnonzero(typo.to_numpy()))
            lat = out[c("given_latin")].scatter(idx, hanzi_latin(new_given.gather(idx)))
            out = out.with_columns(lat.alias(c("given_latin")))
        swap = _pick_mask(rng, n, e.swapped_name)
        if swap.any():
            out = out.with_columns(
                pl.when(swap)
                .then(pl.col(c(f"given_{s}")))
                .otherwise(pl.col(c(f"surname_{s}")))
                .alias(c(f"surname_{s}"))
                for s in ("native", "latin")
            ).with_columns(
                pl.when(swap)
                .then(rows[c(f"surname_{s}")])
                .otherwise(pl.col(c(f"given_{s}")))
                .alias(c(f"given_{s}"))
                for s in ("native", "latin")
            )
    for col, lo, hi in (("id_number", 6, 16), ("phone", 3, 10)):
        if c(col) in cols and n:
            mask = _pick_mask(rng, n, e.transposed_digits)
            pos = pl.Series(rng.integers(lo, hi, size=n))
            v = pl.col(c(col))
            swapped = (
                v.str.slice(0, pos)
                + v.str.slice(pos + 1, 1)
                + v.str.slice(pos, 1)
                + v.str.slice(pos + 2)
            )
            out = out.with_columns(pl.when(mask).then(swapped).otherwise(v).alias(c(col)))
    if c("prev_street") in cols and n:
        stale = _pick_mask(rng, n, e.stale_address) & out[c("prev_street")].is_not_null()
        out = out.with_columns(
            pl.when(stale).then(pl.col(c(f"prev_{a}"))).otherwise(pl.col(c(a))).alias(c(a))
            for a in ADDRESS_COLS
        )
    if c("phone_prev") in cols and n:
        stale = _pick_mask(rng, n, e.stale_phone) & out[c("phone_prev")].is_not_null()
        out = out.with_columns(
            pl.when(stale)
            .then(pl.col(c("phone_prev")))
            .otherwise(pl.col(c("phone")))
            .alias(c("phone"))
        )
    for col in ("dob", "phone", "email", "sex", "street", "postcode", "birth_place", "id_number"):
        if c(col) in cols and n:
            # Registries keyed by ID rarely lose it; others lose any field at the same rate.
            rate = e.missing * (0.2 if col == "id_number" else 1.0)
            out = out.with_columns(
                pl.when(_pick_mask(rng, n, rate)).then(None).otherwise(pl.col(c(col))).alias(c(col))
            )
    return out


# ---------------------------------------------------------------- facts


def _cities() -> np.ndarray:
    return regions()["city"].unique().sort().str.replace(r"(市|地区|自治州|盟)$", "").to_numpy()


def fact_values(gen: FactGen, rows: pl.DataFrame, rng: np.random.Generator) -> pl.Series:
    """Values of one fact column for the rows, from its generator (see simulation.profiles)."""
    n = rows.height
    kind = gen[0]
    day = rows["_day"]
    if kind == "day":
        return day
    if kind == "back":
        return (
            day.cast(pl.Int32) - pl.Series(rng.integers(0, gen[1] + 1, size=n)).cast(pl.Int32)
        ).cast(pl.Date)
    if kind == "ahead":
        return (
            day.cast(pl.Int32) + pl.Series(rng.integers(gen[1], gen[2] + 1, size=n)).cast(pl.Int32)
        ).cast(pl.Date)
    if kind == "ctx":
        return rows[gen[1]]
    if kind == "money":
        return pl.Series(np.round(gen[1] * np.exp(rng.normal(0, gen[2], size=n)), 2)).cast(
            pl.String
        )
    if kind == "int":
        return pl.Series(rng.integers(gen[1], gen[2] + 1, size=n)).cast(pl.String)
    if kind == "choice":
        vals = np.array(gen[1], dtype=object)
        return pl.Series(vals[rng.integers(0, len(vals), size=n)].astype(str))
    if kind == "code":
        return gen[1] + pl.Series(rng.integers(0, 10 ** gen[2], size=n)).cast(pl.String).str.zfill(
            gen[2]
        )
    if kind == "city":
        cities = _cities()
        return pl.Series(cities[rng.integers(0, len(cities), size=n)].astype(str)) + gen[1]
    raise ValueError(f"unknown fact generator {gen!r}")


# ---------------------------------------------------------------- rendering


def _person_truth(rows: pl.DataFrame, prefix: str) -> pl.DataFrame:
    cols = [c for c in rows.columns if c.startswith(prefix) and not c.startswith(prefix + "_")]
    return rows.select(pl.col(c).alias(c.removeprefix(prefix)) for c in cols)


def render_rows(spec: SourceSpec, rows: pl.DataFrame, keys: pl.Series) -> pl.DataFrame:
    """Render every spec column for the rows (canonical truth + facts) as strings."""
    main = _person_truth(rows, "")
    out: dict[str, pl.Series] = {}
    for col in spec.columns:
        if col.field == "key":
            out[col.name] = keys
            continue
        if col.role:
            truth = _person_truth(rows, f"{col.role}.")
            out[col.name] = render_column(col.rule, col.canonical, truth)
        else:
            out[col.name] = render_column(col.rule, col.field, main)
    return pl.DataFrame(out).with_columns(pl.all().cast(pl.String))


@dataclass(frozen=True)
class Written:
    """What one delivery wrote: the file, its row count, and the truth rows."""

    source_id: str
    day: date
    path: Path
    rows: int
    truth: pl.DataFrame


def make_delivery(
    world: World, spec: SourceSpec, profile: SimProfile, day_index: int
) -> tuple[pl.DataFrame, pl.DataFrame] | None:
    """The rendered rows of one delivery and its truth, or None if nothing is due."""
    picked = select_rows(world, spec, profile, day_index)
    if picked is None:
        return None
    rows, etype = picked
    cfg = world.config
    rng = rng_for(cfg.seed, spec.id, "render", day_index)
    day = cfg.day(day_index)
    if spec.cadence == "snapshot":
        keys = (
            profile.key_prefix
            + rows["_id"].str.slice(1)
            + (
                pl.Series(rows.height * [zlib.crc32(spec.id.encode()) % 97])
                .cast(pl.String)
                .str.zfill(2)
            )
        )
        if "case_id" in rows.columns or "entry_id" in rows.columns:
            keys = profile.key_prefix + rows[
                "entry_id" if "entry_id" in rows.columns else "case_id"
            ].str.slice(1)
    else:
        keys = pl.Series(
            [f"{profile.key_prefix}{day:%Y%m%d}{i:06d}" for i in range(rows.height)],
            dtype=pl.String,
        )
    # Duplicates: the agency enters the same record twice (same content; deltas get a new key).
    dup = rng.random(rows.height) < profile.errors.duplicate
    if dup.any():
        extra = rows.filter(pl.Series(dup))
        extra_keys = keys.filter(pl.Series(dup))
        if spec.cadence == "delta":
            extra_keys = extra_keys + "D"
        rows = pl.concat([rows, extra], how="vertical_relaxed")
        keys = pl.concat([keys, extra_keys])
    facts = {
        c.field: fact_values(profile.facts[c.field.removeprefix("fact:")], rows, rng)
        for c in spec.columns
        if c.field.startswith("fact:")
    }
    rows = rows.with_columns(**{k: v for k, v in facts.items()})
    rows = corrupt(rows, profile, rng)
    for role in RELATED_ROLES:
        if any(c.startswith(f"{role}.") for c in rows.columns):
            rows = corrupt(rows, profile, rng, prefix=f"{role}.")
    rendered = render_rows(spec, rows, keys)
    truth = pl.DataFrame({"record_key": keys, "entity_id": rows["_id"]}).with_columns(
        pl.lit(spec.id).alias("source_id"),
        pl.lit(etype).alias("entity_type"),
        pl.lit(day).alias("day"),
        # The related entity's id: the population joins keep it in the role column
        # (employer / legal_rep / household_head), not in "<role>._id".
        *[
            rows[r].alias(f"{r}_id")
            for r in sorted({c.role for c in spec.columns if c.role})
            if r in rows.columns
        ],
    )
    return rendered, truth


def delivery_path(landing: Path, spec: SourceSpec, day: date) -> Path:
    return (
        landing
        / spec.id
        / day.isoformat()
        / f"{spec.id}_{day:%Y%m%d}.{EXTENSIONS[spec.format.kind]}"
    )


def write(
    world: World,
    spec: SourceSpec,
    profile: SimProfile,
    day_index: int,
    landing: Path,
    truth_dir: Path,
    alter: Callable[[pl.DataFrame], pl.DataFrame] | None = None,
) -> Written | None:
    """Write one file delivery and its truth; None if the source has nothing that day.

    ``alter`` may change the rendered frame before it is written (a schema change)."""
    made = make_delivery(world, spec, profile, day_index)
    if made is None:
        return None
    rendered, truth = made
    if alter is not None:
        rendered = alter(rendered)
    day = world.config.day(day_index)
    path = delivery_path(landing, spec, day)
    write_delivery(spec.format, rendered, path)
    tpath = truth_dir / spec.id / f"{day.isoformat()}.parquet"
    tpath.parent.mkdir(parents=True, exist_ok=True)
    truth.write_parquet(tpath)
    return Written(spec.id, day, path, rendered.height, truth)
