"""The live source databases: each system's own schema, filled and changed day by day.

Eight systems (``connectors.catalog.databases``) keep their records in normalised
tables of their own design (a person table, an address table, a link table,
code tables such as 1=男 2=女), on PostgreSQL, MariaDB or, with no server
configured, a SQLite file. ``write_database_day`` creates the schema and loads
the first members on day 0; on each later day it inserts newcomers, UPDATEs
records (a move, a new phone number; the row's timestamp is set from the
simulated day, never the wall clock) and deletes some, softly (a flag) or hard,
as that system does. Values are corrupted at the agency's error rates and
rendered with the spec's own rules, exactly as for file drops.

Everything a day does is a pure function of (seed, world, spec, day): the
members, their keys and each day's events come from ``rng_for(seed, id, "db", ...)``.
Applied days are recorded in the system's ``_sim_days`` table in the same
transaction as the day's changes, so re-running a day changes nothing, and a
day whose predecessors are missing first applies those. The truth (record key
→ entity) is written apart, to ``truth/<source_id>/<day>.parquet``, for the
records inserted or updated that day.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import numpy as np
import polars as pl

from connectors.database import engine_of, masked, mysql_connect_args, sqlite_path, with_database
from connectors.parsing.regions import regions
from connectors.spec import RELATED_ROLES, SourceSpec
from simulation.deliver import corrupt, fact_values, population, render_rows, rng_for
from simulation.profiles import SimProfile
from simulation.world import INDUSTRIES, World

NEVER = 1 << 30
K, N, TS = pl.col("_key"), pl.col("_num"), pl.col("_ts")


def c(name: str) -> pl.Expr:
    return pl.col(name)


def code(name: str, mapping: dict[str, Any]) -> pl.Expr:
    """A rendered value stored as the system's code (男 → 1)."""
    return pl.col(name).replace_strict(mapping, default=None)


# ---------------------------------------------------------------- schema description


@dataclass(frozen=True)
class Col:
    """A table column: name, portable type (``str:<n>``, ``char:<n>``, ``int``,
    ``bigint``, ``small``, ``date``, ``ts``, ``dec``) and its value over the rendered record."""

    name: str
    type: str
    value: pl.Expr | None = None


@dataclass(frozen=True)
class Table:
    """``record`` tables hold one row per record (inserted, updated and deleted
    with it), ``shared`` ones rows referenced by many records (inserted once),
    ``code`` ones fixed code lists."""

    name: str
    cols: tuple[Col, ...]
    pk: tuple[str, ...]
    kind: Literal["record", "shared", "code"] = "record"
    rows: Callable[[], list[tuple]] | None = None
    index: tuple[str, ...] = ()
    stamp: str | None = None
    only_if: str | None = None


@dataclass(frozen=True)
class Layout:
    """How one system stores its records and how it changes them.

    ``refresh`` maps an update kind (``move``: the person moved; ``contact``:
    new contact details) to the spec columns re-entered. ``combined_cursor``:
    the query takes the latest of each table's own ``stamp``, so only the
    touched tables' stamps are set; otherwise the main table's stamp is bumped
    on every change.
    """

    tables: tuple[Table, ...]
    main: str
    key_kind: Literal["str", "int"]
    key_base: int
    delete: Literal["soft", "hard"]
    refresh: dict[str, tuple[str, ...]]
    flag: tuple[str, Any, Any] | None = None  # column, live value, deleted value
    combined_cursor: bool = False
    update_rate: float = 0.01
    delete_rate: float = 0.003
    meta: Callable[[pl.DataFrame, _History, World], dict[str, pl.Series]] | None = None
    joined_roles: tuple[str, ...] = ()  # related mentions the query joins from other records

    def table(self, name: str) -> Table:
        return next(t for t in self.tables if t.name == name)


_TYPES = {
    "postgres": {
        "int": "INTEGER",
        "bigint": "BIGINT",
        "small": "SMALLINT",
        "date": "DATE",
        "ts": "TIMESTAMP",
        "dec": "NUMERIC(16,2)",
        "str": "VARCHAR({n})",
        "char": "CHAR({n})",
    },
    "mysql": {
        "int": "INT",
        "bigint": "BIGINT",
        "small": "TINYINT",
        "date": "DATE",
        "ts": "DATETIME",
        "dec": "DECIMAL(16,2)",
        "str": "VARCHAR({n})",
        "char": "CHAR({n})",
    },
    "sqlite": {
        "int": "INTEGER",
        "bigint": "BIGINT",
        "small": "SMALLINT",
        "date": "DATE",
        "ts": "TIMESTAMP",
        "dec": "NUMERIC(16,2)",
        "str": "VARCHAR({n})",
        "char": "CHAR({n})",
    },
}
_POLARS = {"int": pl.Int64, "bigint": pl.Int64, "small": pl.Int64, "dec": pl.Float64}


def sql_type(engine: str, portable: str) -> str:
    kind, _, n = portable.partition(":")
    return _TYPES[engine][kind].format(n=n)


# ---------------------------------------------------------------- the eight systems

SEX_CODES = (("1", "男"), ("2", "女"), ("9", "未说明"))
_SEX = {"男": 1, "女": 2}
# GB/T 4754 section letters of the world's industries, in INDUSTRIES order.
GBT4754 = dict(zip(INDUSTRIES, "ACEFGHIJKLMOPR", strict=True))
CERT_TYPES = (("01", "居民身份证"), ("02", "护照"), ("03", "军官证"))
PLATE_TYPES = (("01", "大型汽车"), ("02", "小型汽车"))


@cache
def _cities() -> tuple[str, ...]:
    return tuple(regions()["city"].unique().sort().to_list())


def _city_rows() -> list[tuple]:
    return [(i + 1, name) for i, name in enumerate(_cities())]


def _city_ids() -> dict[str, int]:
    return {name: i + 1 for i, name in enumerate(_cities())}


def _sex_table() -> Table:
    return Table(
        "dm_xb",
        (Col("dm", "small"), Col("mc", "str:8")),
        ("dm",),
        "code",
        rows=lambda: [(int(k), v) for k, v in SEX_CODES],
    )


def _hukou_meta(rows: pl.DataFrame, hist: _History, world: World) -> dict[str, pl.Series]:
    heads = hist.members.filter(~pl.col("_dup")).select(
        pl.col("_id").alias("household_head"), pl.col("_key").alias("_head_key")
    )
    joined = rows.select("household_head").join(
        heads, on="household_head", how="left", maintain_order="left"
    )
    return {"_hh": rows["household_id"], "_head_key": joined["_head_key"]}


def _unit_meta(rows: pl.DataFrame, hist: _History, world: World) -> dict[str, pl.Series]:
    ids = world.businesses["business_id"]
    perm = pl.Series(rng_for(world.config.seed, hist.source_id, "units").permutation(ids.len()) + 1)
    units = pl.DataFrame({"employer": ids, "_unit": "DW" + perm.cast(pl.String).str.zfill(8)})
    return {
        "_unit": rows.select("employer").join(
            units, on="employer", how="left", maintain_order="left"
        )["_unit"]
    }


LAYOUTS: dict[str, Layout] = {
    "hukou_db": Layout(
        main="rk_jbxx",
        key_kind="str",
        key_base=0,
        delete="soft",
        flag=("zxbz", 0, 1),
        meta=_hukou_meta,
        joined_roles=("household_head",),
        refresh={"move": ("sheng", "shi", "qx", "jlxxz", "yzbm"), "contact": ()},
        tables=(
            _sex_table(),
            Table(
                "rk_jbxx",
                (
                    Col("rkbh", "str:16", K),
                    Col("xm", "str:40", c("xm")),
                    Col("xb", "small", code("xb", _SEX)),
                    Col("csrq", "date", c("csrq")),
                    Col("gmsfhm", "str:18", c("gmsfhm")),
                    Col("csd", "str:100", c("csd")),
                    Col("hh", "str:16", c("_hh")),
                    Col("zxbz", "small", pl.lit(0)),
                    Col("gxsj", "ts", TS),
                ),
                ("rkbh",),
                index=("gxsj", "hh"),
                stamp="gxsj",
            ),
            Table(
                "dz_jbxx",
                (
                    Col("dzbh", "str:16", "DZ" + N),
                    Col("sheng", "str:40", c("sheng")),
                    Col("shi", "str:40", c("shi")),
                    Col("qx", "str:40", c("qx")),
                    Col("jlxxz", "str:100", c("jlxxz")),
                    Col("yzbm", "char:6", c("yzbm")),
                ),
                ("dzbh",),
            ),
            Table(
                "rk_dz",
                (
                    Col("rkbh", "str:16", K),
                    Col("dzbh", "str:16", "DZ" + N),
                    Col("dzlx", "small", pl.lit(1)),
                ),
                ("rkbh",),
                index=("dzbh",),
            ),
            Table(
                "hu_jbxx",
                (Col("hh", "str:16", c("_hh")), Col("hzrkbh", "str:16", c("_head_key"))),
                ("hh",),
                "shared",
            ),
        ),
    ),
    "biz_registry_db": Layout(
        main="qy_jbxx",
        key_kind="int",
        key_base=91_000_001,
        delete="soft",
        flag=("zxbz", 0, 1),
        refresh={"move": ("zs", "yzbm"), "contact": ("fddbr_lxdh",)},
        update_rate=0.02,
        tables=(
            Table(
                "dm_hy",
                (Col("hydm", "char:1"), Col("hymc", "str:40")),
                ("hydm",),
                "code",
                rows=lambda: [(v, k) for k, v in GBT4754.items()],
            ),
            Table(
                "qy_jbxx",
                (
                    Col("qyid", "bigint", K),
                    Col("qymc", "str:100", c("qymc")),
                    Col("tyshxydm", "char:18", c("tyshxydm")),
                    Col("hydm", "char:1", code("hymc", GBT4754)),
                    Col("zs", "str:200", c("zs")),
                    Col("yzbm", "char:6", c("yzbm")),
                    Col("clrq", "date", c("clrq")),
                    Col("zxbz", "small", pl.lit(0)),
                    Col("gxsj", "ts", TS),
                ),
                ("qyid",),
                index=("gxsj",),
                stamp="gxsj",
            ),
            Table(
                "qy_fddbr",
                (
                    Col("qyid", "bigint", K),
                    Col("xm", "str:40", c("fddbr")),
                    Col("zjhm", "str:18", c("fddbr_zjhm")),
                    Col("lxdh", "str:20", c("fddbr_lxdh")),
                ),
                ("qyid",),
            ),
        ),
    ),
    "social_insurance_db": Layout(
        main="ac01",
        key_kind="str",
        key_base=0,
        delete="hard",
        meta=_unit_meta,
        refresh={"move": ("aae006",), "contact": ("aae005",)},
        tables=(
            Table(
                "ab01",
                (
                    Col("aab001", "str:20", c("_unit")),
                    Col("aab004", "str:100", c("aab004")),
                    Col("aab998", "char:18", c("aab998")),
                ),
                ("aab001",),
                "shared",
            ),
            Table(
                "ac01",
                (
                    Col("aac001", "str:20", K),
                    Col("aac003", "str:40", c("aac003")),
                    Col("aac004", "char:1", c("aac004")),
                    Col("aac006", "date", c("aac006")),
                    Col("aac002", "str:18", c("aac002")),
                    Col("aae005", "str:20", c("aae005")),
                    Col("aae006", "str:200", c("aae006")),
                    Col("aae036", "ts", TS),
                ),
                ("aac001",),
                index=("aae036",),
                stamp="aae036",
            ),
            Table(
                "ac02",
                (
                    Col("aac001", "str:20", K),
                    Col("aab001", "str:20", c("_unit")),
                    Col("aac030", "date", c("aac030")),
                    Col("aac040", "dec", c("aac040")),
                ),
                ("aac001",),
                index=("aab001",),
            ),
        ),
    ),
    "court_enforcement_db": Layout(
        main="zx_aj",
        key_kind="str",
        key_base=0,
        delete="hard",
        refresh={"move": ("dz",), "contact": ()},
        tables=(
            _sex_table(),
            Table(
                "zx_aj",
                (
                    Col("ajbh", "str:20", K),
                    Col("ah", "str:60", c("ah")),
                    Col("zxfy", "str:60", c("zxfy")),
                    Col("lasj", "date", c("lasj")),
                    Col("sqzxbdje", "dec", c("sqzxbdje")),
                    Col("gxsj", "ts", TS),
                ),
                ("ajbh",),
                index=("gxsj",),
                stamp="gxsj",
            ),
            Table(
                "zx_bzxr",
                (
                    Col("ajbh", "str:20", K),
                    Col("xm", "str:40", c("xm")),
                    Col("xb", "small", code("xb", _SEX)),
                    Col("csrq", "date", c("csrq")),
                    Col("sfzh", "str:18", c("sfzh")),
                    Col("dz", "str:200", c("dz")),
                ),
                ("ajbh",),
            ),
        ),
    ),
    "ecommerce_accounts_db": Layout(
        main="user_account",
        key_kind="int",
        key_base=10_000_001,
        delete="soft",
        flag=("is_deleted", 0, 1),
        refresh={
            "move": (
                "receiver_province",
                "receiver_city",
                "receiver_district",
                "receiver_detail",
                "receiver_zip",
            ),
            "contact": ("mobile",),
        },
        update_rate=0.02,
        delete_rate=0.005,
        tables=(
            Table(
                "user_account",
                (
                    Col("id", "bigint", K),
                    Col("real_name", "str:40", c("real_name")),
                    Col("mobile", "str:20", c("mobile")),
                    Col("email", "str:100", c("email")),
                    Col("gender", "small", c("gender").cast(pl.Int64, strict=False).fill_null(0)),
                    Col("birthday", "date", c("birthday")),
                    Col("id_card_masked", "str:18", c("id_card_masked")),
                    Col("is_deleted", "small", pl.lit(0)),
                    Col("gmt_create", "ts", TS),
                    Col("gmt_modified", "ts", TS),
                ),
                ("id",),
                index=("gmt_modified",),
                stamp="gmt_modified",
            ),
            Table(
                "user_address",
                (
                    Col("id", "bigint", K),
                    Col("user_id", "bigint", K),
                    Col("receiver_province", "str:40", c("receiver_province")),
                    Col("receiver_city", "str:40", c("receiver_city")),
                    Col("receiver_district", "str:40", c("receiver_district")),
                    Col("receiver_detail", "str:100", c("receiver_detail")),
                    Col("receiver_zip", "char:6", c("receiver_zip")),
                    Col("is_default", "small", pl.lit(1)),
                ),
                ("id",),
                index=("user_id",),
            ),
        ),
    ),
    "telecom_db": Layout(
        main="subscriber",
        key_kind="str",
        key_base=0,
        delete="soft",
        flag=("del_flag", "0", "2"),
        combined_cursor=True,
        refresh={"move": ("contact_addr",), "contact": ("msisdn",)},
        tables=(
            Table(
                "dm_zjlx",
                (Col("cert_type", "char:2"), Col("cert_name", "str:20")),
                ("cert_type",),
                "code",
                rows=lambda: list(CERT_TYPES),
            ),
            Table(
                "subscriber",
                (
                    Col("subs_id", "str:20", K),
                    Col("cust_id", "str:20", "C" + N),
                    Col("msisdn", "str:20", c("msisdn")),
                    Col("open_date", "date", c("open_date")),
                    Col("del_flag", "char:1", pl.lit("0")),
                    Col("update_time", "ts", TS),
                ),
                ("subs_id",),
                index=("update_time", "cust_id"),
                stamp="update_time",
            ),
            Table(
                "cust_info",
                (
                    Col("cust_id", "str:20", "C" + N),
                    Col("cust_name", "str:40", c("cust_name")),
                    Col("cert_type", "char:2", code("cert_type", {v: k for k, v in CERT_TYPES})),
                    Col("cert_no", "str:20", c("cert_no")),
                    Col("contact_addr", "str:200", c("contact_addr")),
                    Col("update_time", "ts", TS),
                ),
                ("cust_id",),
                index=("update_time",),
                stamp="update_time",
            ),
        ),
    ),
    "ride_hailing_db": Layout(
        main="t_driver",
        key_kind="int",
        key_base=200_001,
        delete="hard",
        refresh={"move": ("city_name",), "contact": ("mobile",)},
        update_rate=0.02,
        delete_rate=0.005,
        tables=(
            Table(
                "t_city",
                (Col("city_id", "int"), Col("city_name", "str:40")),
                ("city_id",),
                "code",
                rows=_city_rows,
            ),
            Table(
                "t_driver",
                (
                    Col("driver_id", "int", K),
                    Col("driver_name", "str:40", c("driver_name")),
                    Col("id_card_no", "str:18", c("id_card_no")),
                    Col("mobile", "str:20", c("mobile")),
                    Col("gender", "char:1", c("gender")),
                    Col("city_id", "int", c("city_name").replace_strict(_city_ids(), default=None)),
                    Col("created_at", "ts", TS),
                    Col("updated_at", "ts", TS),
                ),
                ("driver_id",),
                index=("updated_at",),
                stamp="updated_at",
            ),
            Table(
                "t_driver_vehicle",
                (Col("driver_id", "int", K), Col("plate_no", "str:16", c("plate_no"))),
                ("driver_id",),
                only_if="plate_no",
            ),
        ),
    ),
    "vehicle_registry_db": Layout(
        main="jdc_jbxx",
        key_kind="str",
        key_base=0,
        delete="hard",
        refresh={"move": ("zsxxdz",), "contact": ("lxdh",)},
        tables=(
            Table(
                "dm_hpzl",
                (Col("dm", "char:2"), Col("mc", "str:20")),
                ("dm",),
                "code",
                rows=lambda: list(PLATE_TYPES),
            ),
            Table(
                "jdc_jbxx",
                (
                    Col("xh", "str:16", K),
                    Col("hphm", "str:16", c("hphm")),
                    Col("hpzl", "char:2", code("hpzl", {v: k for k, v in PLATE_TYPES})),
                    Col("clpp", "str:40", c("clpp")),
                    Col("ccdjrq", "date", c("ccdjrq")),
                    Col("gxsj", "ts", TS),
                ),
                ("xh",),
                index=("gxsj",),
                stamp="gxsj",
            ),
            Table(
                "jdc_syr",
                (
                    Col("xh", "str:16", K),
                    Col("syr", "str:40", c("syr")),
                    Col("sfzmhm", "str:18", c("sfzmhm")),
                    Col("zsxxdz", "str:200", c("zsxxdz")),
                    Col("lxdh", "str:20", c("lxdh")),
                ),
                ("xh",),
            ),
        ),
    ),
}


# ---------------------------------------------------------------- the plan: members and events


@dataclass
class _History:
    """Who the system knows and what happens to them, for every simulated day."""

    source_id: str
    entity_type: str
    member_col: str
    members: pl.DataFrame  # _uidx, _member, _id, _dup, _key, _num
    inserted: list[np.ndarray]
    updated: list[dict[str, np.ndarray]]  # kind -> indices (a record can have both kinds)
    deleted: list[np.ndarray]
    swap_phone: list[np.ndarray] = field(default_factory=list)  # per day, per universe index


_CACHE: dict[tuple[int, str], tuple[World, _History]] = {}
_POPULATIONS: dict[tuple[int, str, date], tuple[World, pl.DataFrame, str]] = {}


def _population(world: World, name: str, day: date) -> tuple[pl.DataFrame, str]:
    """``simulation.deliver.population``, remembered for the few calls one day makes."""
    hit = _POPULATIONS.get((id(world), name, day))
    if hit is not None and hit[0] is world:
        return hit[1], hit[2]
    pop, etype = population(world, name, day)
    if len(_POPULATIONS) > 8:
        _POPULATIONS.clear()
    _POPULATIONS[(id(world), name, day)] = (world, pop, etype)
    return pop, etype


def _history(world: World, spec: SourceSpec, profile: SimProfile, layout: Layout) -> _History:
    hit = _CACHE.get((id(world), spec.id))
    if hit is not None and hit[0] is world:
        return hit[1]
    cfg = world.config
    pop, etype = _population(world, profile.population, cfg.day(cfg.horizon - 1))
    member_col = "case_id" if "case_id" in pop.columns else "_id"
    if member_col == "case_id":
        entry = (pl.col("filed") - pl.lit(cfg.start)).dt.total_days().clip(0)
    else:
        entry = pl.lit(0)
    has_move = "move_day" in pop.columns
    base = pop.select(
        pl.col(member_col).alias("_member"),
        "_id",
        entry.cast(pl.Int64).alias("_entry"),
        (pl.col("move_day") if has_move else pl.lit(-1)).cast(pl.Int64).alias("_move"),
    )
    rng = rng_for(cfg.seed, spec.id, "db", "members")
    dup = rng.random(base.height) < profile.errors.duplicate
    uni = pl.concat(
        [
            base.with_columns(pl.lit(False).alias("_dup")),
            base.filter(pl.Series(dup)).with_columns(pl.lit(True).alias("_dup")),
        ]
    )
    n = uni.height
    covered = rng.random(n) < profile.coverage
    late = (
        rng.geometric(profile.daily_rate, size=n) if profile.daily_rate > 0 else np.full(n, NEVER)
    )
    entry_day = uni["_entry"].to_numpy()
    join = np.where(covered, entry_day, entry_day + late)
    perm = pl.Series("_perm", rng.permutation(n) + 1, dtype=pl.Int64)
    num = perm.cast(pl.String).str.zfill(10).alias("_num")
    key = (
        (perm + layout.key_base).cast(pl.String)
        if layout.key_kind == "int"
        else profile.key_prefix + num
    )
    members = uni.with_columns(key.alias("_key"), num).with_row_index("_uidx")
    move = uni["_move"].to_numpy()
    gone = np.zeros(n, dtype=bool)
    inserted, updated, deleted, swaps = (
        [np.flatnonzero(join == 0)],
        [{}],
        [np.array([], dtype=np.int64)],
        [np.zeros(n, dtype=bool)],
    )
    for d in range(1, cfg.horizon):
        r = rng_for(cfg.seed, spec.id, "db", d)
        learn, touch, drop, swap = r.random(n), r.random(n), r.random(n), r.random(n) < 0.5
        live = (join < d) & ~gone
        movers = live & (move == d) & (learn < 0.8)
        contact = live & (touch < layout.update_rate)
        dele = live & ~movers & ~contact & (drop < layout.delete_rate)
        gone |= dele
        inserted.append(np.flatnonzero(join == d))
        kinds = {"move": np.flatnonzero(movers), "contact": np.flatnonzero(contact)}
        if not layout.refresh.get("contact"):  # nothing to re-enter but the address
            kinds = {
                "move": np.flatnonzero(movers | contact),
                "contact": np.array([], dtype=np.int64),
            }
        updated.append(kinds)
        deleted.append(np.flatnonzero(dele))
        swaps.append(swap)
    hist = _History(spec.id, etype, member_col, members, inserted, updated, deleted, swaps)
    if len(_CACHE) > 16:
        _CACHE.clear()
    _CACHE[(id(world), spec.id)] = (world, hist)
    return hist


def _stamps(day, start: int, count: int) -> pl.Series:
    """Event timestamps from the simulated day: 08:00 plus one second per two events
    (so equal timestamps occur, as they do in real systems), never past 20:00."""
    base = datetime.combine(day, time(8))
    secs = np.minimum((np.arange(count, dtype=np.int64) + start) // 2, 12 * 3600 - 1)
    micros = pl.Series("_ts", secs * 1_000_000, dtype=pl.Int64) + _micros(base)
    return micros.cast(pl.Datetime("us")).dt.to_string("%Y-%m-%d %H:%M:%S")


def _micros(moment: datetime) -> int:
    """Microseconds since 1970-01-01 of a naive datetime (no time zone involved)."""
    return (moment - datetime(1970, 1, 1)) // timedelta(microseconds=1)


def _truth_rows(
    world: World,
    spec: SourceSpec,
    profile: SimProfile,
    hist: _History,
    idx: np.ndarray,
    day_index: int,
) -> pl.DataFrame:
    cfg = world.config
    day = cfg.day(day_index)
    pop, _ = _population(world, profile.population, day)
    # A related entity's id: ``<role>._id``, or the join key itself (``employer``,
    # ``legal_rep``, ``household_head``) where the population joined on it.
    role_ids = {
        r: f"{r}._id" if f"{r}._id" in pop.columns else r
        for r in RELATED_ROLES
        if any(x.startswith(f"{r}.") for x in pop.columns)
        and (f"{r}._id" in pop.columns or r in pop.columns)
    }
    sel = hist.members[np.sort(idx)].select("_member", "_key", "_id")
    rel = pop.select(
        pl.col(hist.member_col).alias("_member"),
        *[pl.col(src).alias(f"{r}_id") for r, src in role_ids.items()],
    ).unique("_member", keep="first", maintain_order=True)
    rows = sel.join(rel, on="_member", how="left", maintain_order="left")
    return rows.select(
        pl.col("_key").alias("record_key"),
        pl.col("_id").alias("entity_id"),
        pl.lit(spec.id).alias("source_id"),
        pl.lit(hist.entity_type).alias("entity_type"),
        pl.lit(day).alias("day"),
        *[f"{r}_id" for r in role_ids],
    )


def _render(
    world: World,
    spec: SourceSpec,
    profile: SimProfile,
    layout: Layout,
    hist: _History,
    idx: np.ndarray,
    day_index: int,
    stamps: pl.Series,
    rng: np.random.Generator,
    swap: np.ndarray | None = None,
) -> pl.DataFrame:
    """The records ``idx`` as the system writes them on ``day_index``: corrupted,
    rendered in the spec's rules, with the meta columns the tables need."""
    cfg = world.config
    pop, _ = _population(world, profile.population, cfg.day(day_index))
    pop = pop.with_columns(pl.col(hist.member_col).alias("_member"))
    sel = hist.members[idx].select("_member", "_key", "_num")
    rows = sel.join(pop, on="_member", how="left", maintain_order="left").with_columns(
        pl.lit(cfg.day(day_index)).alias("_day")
    )
    for col in spec.columns:
        kind, _, name = col.field.partition(":")
        if kind in ("fact", "attr"):
            rows = rows.with_columns(fact_values(profile.facts[name], rows, rng).alias(col.field))
    if swap is not None and "phone2" in rows.columns:
        use2 = pl.Series(swap) & rows["phone2"].is_not_null()
        rows = rows.with_columns(
            pl.when(use2).then(pl.col("phone2")).otherwise(pl.col("phone")).alias("phone")
        )
    rows = corrupt(rows, profile, rng)
    for role in RELATED_ROLES:
        if role not in layout.joined_roles and any(x.startswith(f"{role}.") for x in rows.columns):
            rows = corrupt(rows, profile, rng, prefix=f"{role}.")
    wide = render_rows(spec, rows, rows["_key"])
    meta = {"_key": rows["_key"], "_num": rows["_num"], "_ts": stamps}
    if layout.meta is not None:
        meta.update(layout.meta(rows, hist, world))
    return wide.with_columns(**meta)


def _frame(table: Table, wide: pl.DataFrame, names: list[str] | None = None) -> pl.DataFrame:
    cols = [x for x in table.cols if names is None or x.name in names]
    out = wide.select(x.value.alias(x.name) for x in cols)
    return out.with_columns(
        pl.col(x.name).cast(_POLARS.get(x.type.partition(":")[0], pl.String)) for x in cols
    )


# ---------------------------------------------------------------- database access


class _Db:
    """The few statements the simulator needs, for sqlite3, psycopg2 and pymysql."""

    def __init__(self, url: str):
        self.engine = engine_of(url)
        self.ph = "?" if self.engine == "sqlite" else "%s"
        self.local_infile = False
        if self.engine == "sqlite":
            import sqlite3

            path = sqlite_path(url)
            path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(path)
        elif self.engine == "postgres":
            import psycopg2

            name = unquote(urlsplit(url).path.lstrip("/"))
            admin = psycopg2.connect(with_database(url, "postgres"), connect_timeout=5)
            admin.autocommit = True
            with admin.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{_ident(name)}"')
            admin.close()
            self.conn = psycopg2.connect(url, connect_timeout=5)
        else:
            import pymysql

            args = mysql_connect_args(url)
            name = args.pop("database")
            self.conn = pymysql.connect(**args, autocommit=False, local_infile=True)
            self.local_infile = self.run("SELECT @@local_infile")[0][0] in (1, "1", "ON")
            with self.conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE IF NOT EXISTS `{_ident(name)}` CHARACTER SET utf8mb4")
            self.conn.select_db(name)

    def run(self, sql: str, params: tuple = ()) -> list[tuple]:
        cur = self.conn.cursor()
        try:
            cur.execute(sql, params)
            return list(cur.fetchall()) if cur.description else []
        finally:
            cur.close()

    def create(self, table: Table) -> None:
        cols = [f"{x.name} {sql_type(self.engine, x.type)}" for x in table.cols]
        cols.append(f"PRIMARY KEY ({', '.join(table.pk)})")
        if self.engine == "mysql":
            cols += [f"INDEX ix_{table.name}_{i} ({i})" for i in table.index]
        self.run(f"CREATE TABLE IF NOT EXISTS {table.name} ({', '.join(cols)})")
        if self.engine != "mysql":
            for i in table.index:
                self.run(f"CREATE INDEX IF NOT EXISTS ix_{table.name}_{i} ON {table.name} ({i})")

    def insert(self, table: str, frame: pl.DataFrame) -> None:
        if frame.height == 0:
            return
        names = ", ".join(frame.columns)
        cur = self.conn.cursor()
        try:
            if self.engine == "postgres":
                buf = io.StringIO(frame.write_csv(include_header=False, null_value="\\N"))
                cur.copy_expert(
                    f"COPY {table} ({names}) FROM STDIN WITH (FORMAT csv, NULL '\\N')", buf
                )
            elif self.engine == "mysql" and self.local_infile and frame.height > 1000:
                self._load_data(cur, table, frame)
            else:
                marks = ", ".join([self.ph] * frame.width)
                cur.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", frame.rows())
        finally:
            cur.close()

    def _load_data(self, cur, table: str, frame: pl.DataFrame) -> None:
        """MariaDB/MySQL bulk load: ``LOAD DATA LOCAL INFILE`` from a temporary CSV
        (pymysql's executemany escapes every value in Python: ~10x slower)."""
        fd, name = tempfile.mkstemp(suffix=".csv", prefix=f"tessera_{table}_")
        try:
            with os.fdopen(fd, "wb") as fh:
                # Every non-null text quoted, null as the bare word NULL (no escape character).
                frame.write_csv(
                    fh, include_header=False, null_value="NULL", quote_style="non_numeric"
                )
            cur.execute(
                f"LOAD DATA LOCAL INFILE %s INTO TABLE {table} CHARACTER SET utf8mb4 "
                "FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' ESCAPED BY '' "
                f"LINES TERMINATED BY '\\n' ({', '.join(frame.columns)})",
                (name,),
            )
        finally:
            os.unlink(name)

    def update(self, table: str, pk: tuple[str, ...], frame: pl.DataFrame) -> None:
        """Set the non-key columns of ``frame`` on the rows with its keys."""
        if frame.height == 0:
            return
        sets = [x for x in frame.columns if x not in pk]
        if self.engine == "sqlite":
            assign = ", ".join(f"{x} = ?" for x in sets)
            where = " AND ".join(f"{k} = ?" for k in pk)
            self.conn.executemany(
                f"UPDATE {table} SET {assign} WHERE {where}", frame.select(*sets, *pk).rows()
            )
            return
        tmp = f"_upd_{table}"
        cols = ", ".join(frame.columns)
        on = " AND ".join(f"t.{k} = u.{k}" for k in pk)
        if self.engine == "postgres":
            self.run(f"CREATE TEMP TABLE {tmp} AS SELECT {cols} FROM {table} WITH NO DATA")
            self.insert(tmp, frame)
            self.run(
                f"UPDATE {table} t SET {', '.join(f'{x} = u.{x}' for x in sets)} FROM {tmp} u WHERE {on}"
            )
            self.run(f"DROP TABLE {tmp}")
        else:
            self.run(f"CREATE TEMPORARY TABLE {tmp} AS SELECT {cols} FROM {table} LIMIT 0")
            self.insert(tmp, frame)
            self.run(
                f"UPDATE {table} t JOIN {tmp} u ON {on} SET {', '.join(f't.{x} = u.{x}' for x in sets)}"
            )
            self.run(f"DROP TEMPORARY TABLE {tmp}")

    def delete(self, table: str, column: str, values: list) -> None:
        for i in range(0, len(values), 500):
            chunk = values[i : i + 500]
            self.run(
                f"DELETE FROM {table} WHERE {column} IN ({', '.join([self.ph] * len(chunk))})",
                tuple(chunk),
            )

    def commit(self) -> None:
        self.conn.commit()

    def close(self) -> None:
        try:
            self.conn.rollback()
        finally:
            self.conn.close()


def _ident(name: str) -> str:
    if not name.replace("_", "").isalnum() or not name.isascii():
        raise ValueError(f"database name {name!r} is not a plain identifier")
    return name


# ---------------------------------------------------------------- one day


@dataclass(frozen=True)
class DatabaseDayLog:
    """What one simulated day did to a system's database (``applied``: False if it had it already)."""

    source_id: str
    day: str
    inserted: int
    updated: int
    deleted: int
    applied: bool


def _world_tag(world: World) -> str:
    cfg = world.config
    return (
        f"seed={cfg.seed} persons={cfg.persons} horizon={cfg.horizon} start={cfg.start.isoformat()}"
    )


def _updates(
    layout: Layout, kinds: dict[str, np.ndarray]
) -> list[tuple[np.ndarray, tuple[str, ...]]]:
    """Records grouped by the set of spec columns they re-enter."""
    move, contact = set(kinds.get("move", ()).tolist()), set(kinds.get("contact", ()).tolist())
    groups = [
        (sorted(move - contact), layout.refresh["move"]),
        (sorted(contact - move), layout.refresh["contact"] or layout.refresh["move"]),
        (
            sorted(move & contact),
            tuple(dict.fromkeys(layout.refresh["move"] + layout.refresh["contact"])),
        ),
    ]
    return [(np.array(i, dtype=np.int64), cols) for i, cols in groups if i]


def _apply_day(
    db: _Db,
    world: World,
    spec: SourceSpec,
    profile: SimProfile,
    layout: Layout,
    hist: _History,
    d: int,
) -> tuple[int, int, int]:
    cfg = world.config
    day = cfg.day(d)
    rng = rng_for(cfg.seed, spec.id, "db", d, "render")
    main = layout.table(layout.main)
    records = [t for t in layout.tables if t.kind == "record"]
    ins = hist.inserted[d]
    wide = _render(world, spec, profile, layout, hist, ins, d, _stamps(day, 0, len(ins)), rng)
    for t in layout.tables:
        if t.kind == "record":
            frame = _frame(
                t, wide if t.only_if is None else wide.filter(pl.col(t.only_if).is_not_null())
            )
            db.insert(t.name, frame)
        elif t.kind == "shared":
            frame = _frame(t, wide).unique(t.pk, keep="first", maintain_order=True).drop_nulls(t.pk)
            have = pl.DataFrame(
                db.run(f"SELECT {', '.join(t.pk)} FROM {t.name}"), schema=list(t.pk), orient="row"
            )
            if have.height:
                frame = frame.join(have.cast(frame.select(t.pk).schema), on=list(t.pk), how="anti")
            db.insert(t.name, frame)
    offset = len(ins)
    n_upd = 0
    for idx, refresh in _updates(layout, hist.updated[d]) if d else []:
        stamps = _stamps(day, offset, len(idx))
        offset += len(idx)
        n_upd += len(idx)
        wide = _render(
            world, spec, profile, layout, hist, idx, d, stamps, rng, swap=hist.swap_phone[d][idx]
        )
        touched = []
        for t in records:
            names = [
                x.name
                for x in t.cols
                if x.name not in t.pk
                and x.value is not None
                and set(x.value.meta.root_names()) & set(refresh)
            ]
            if names:
                touched.append(t.name)
                db.update(
                    t.name,
                    t.pk,
                    _frame(t, wide, list(t.pk) + names + ([t.stamp] if t.stamp else [])),
                )
        if layout.main not in touched and not layout.combined_cursor:
            db.update(main.name, main.pk, _frame(main, wide, list(main.pk) + [main.stamp]))
    dels = hist.deleted[d]
    if len(dels):
        keys = (
            hist.members[dels].select("_key", "_num").with_columns(_stamps(day, offset, len(dels)))
        )
        if layout.delete == "soft":
            column, _, gone = layout.flag
            frame = _frame(main, keys, list(main.pk) + [main.stamp]).with_columns(
                pl.lit(gone).alias(column)
            )
            db.update(main.name, main.pk, frame)
        else:
            for t in records:
                pk = t.pk[0]
                db.delete(t.name, pk, _frame(t, keys, [pk])[pk].to_list())
    return len(ins), n_upd, len(dels)


def _write_truth(truth: pl.DataFrame, truth_dir: Path, source_id: str, day) -> None:
    path = truth_dir / source_id / f"{day.isoformat()}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    truth.write_parquet(tmp)
    os.replace(tmp, path)


def write_database_day(
    world: World, spec: SourceSpec, profile: SimProfile, day_index: int, url: str, truth_dir: Path
) -> DatabaseDayLog:
    """Bring one system's database up to ``day_index`` and write that day's truth.

    Day 0 creates the schema (and the database on a server) and loads the
    first members; later days insert, update and delete. Days already applied
    (``_sim_days``) are not applied again; missing earlier days are applied
    first. Returns the counts of the requested day.
    """
    layout = LAYOUTS.get(spec.id)
    if layout is None:
        raise ValueError(f"{spec.id}: no simulated database schema for this source")
    if not 0 <= day_index < world.config.horizon:
        raise ValueError(
            f"{spec.id}: day {day_index} outside the world's {world.config.horizon}-day horizon"
        )
    hist = _history(world, spec, profile, layout)
    tag = _world_tag(world)
    db = _Db(url)
    applied_now = False
    try:
        for t in layout.tables:
            db.create(t)
        db.run(
            "CREATE TABLE IF NOT EXISTS _sim_days (day_index INTEGER PRIMARY KEY, sim_day DATE, "
            "world VARCHAR(120), inserted INTEGER, updated INTEGER, deleted INTEGER)"
        )
        db.commit()
        done = {
            r[0]: r[1:]
            for r in db.run("SELECT day_index, world, inserted, updated, deleted FROM _sim_days")
        }
        other = {w for w, *_ in done.values() if w != tag}
        if other:
            raise ValueError(
                f"{spec.id}: {masked(url)} was filled by another world ({other.pop()}); "
                "drop that database or use a new TESSERA_HOME"
            )
        for d in range(day_index + 1):
            if d in done:
                continue
            if d == 0:
                for t in layout.tables:
                    if t.kind == "code":
                        frame = pl.DataFrame(
                            t.rows(), schema=[x.name for x in t.cols], orient="row"
                        )
                        db.insert(t.name, frame)
            counts = _apply_day(db, world, spec, profile, layout, hist, d)
            db.run(
                f"INSERT INTO _sim_days VALUES ({', '.join([db.ph] * 6)})",
                (d, world.config.day(d).isoformat(), tag, *counts),
            )
            db.commit()
            done[d] = (tag, *counts)
            applied_now = d == day_index
            if d < day_index:
                _write_truth(
                    _day_truth(world, spec, profile, hist, d),
                    truth_dir,
                    spec.id,
                    world.config.day(d),
                )
    finally:
        db.close()
    _write_truth(
        _day_truth(world, spec, profile, hist, day_index),
        truth_dir,
        spec.id,
        world.config.day(day_index),
    )
    _, ins, upd, dele = done[day_index]
    return DatabaseDayLog(
        spec.id, world.config.day(day_index).isoformat(), ins, upd, dele, applied_now
    )


def _day_truth(
    world: World, spec: SourceSpec, profile: SimProfile, hist: _History, d: int
) -> pl.DataFrame:
    kinds = hist.updated[d]
    upd = (
        np.union1d(
            kinds.get("move", np.array([], dtype=np.int64)),
            kinds.get("contact", np.array([], dtype=np.int64)),
        )
        if d
        else np.array([], dtype=np.int64)
    )
    return _truth_rows(
        world, spec, profile, hist, np.union1d(hist.inserted[d], upd).astype(np.int64), d
    )
