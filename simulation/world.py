"""The synthetic world: persons, households, businesses, cases and list entries.

Everything is drawn with one ``numpy.random.Generator`` seeded from
``WorldConfig.seed`` and built column-wise (numpy + polars over word lists
taken from Faker's zh_CN providers and python-stdnum's region table), so the
same seed gives the same world byte for byte and a million persons take seconds.

No special-category data is generated: no ethnicity, religion, politics,
health or biometrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache

import numpy as np
import polars as pl
from faker.providers.address.zh_CN import Provider as FakerAddress
from faker.providers.company.zh_CN import Provider as FakerCompany
from faker.providers.lorem.zh_CN import Provider as FakerLorem
from faker.providers.person.zh_CN import Provider as FakerPerson
from stdnum.cn import ric, uscc

from connectors.parsing.names import hanzi_latin
from connectors.parsing.regions import regions


@dataclass(frozen=True)
class WorldConfig:
    """Size, seed and time span of a simulated world."""

    persons: int = 20_000
    seed: int = 42
    days: int = 7
    start: date = date(2026, 1, 1)
    faults: bool = True
    # The world's lifetime in days. Everything is generated for the horizon, and
    # ``days`` only says how many of them are delivered, so delivering more days
    # later (advancing the world) leaves the earlier ones byte for byte the same.
    horizon: int = 30

    def __post_init__(self) -> None:
        if not 1 <= self.days <= self.horizon:
            raise ValueError(
                f"days must be between 1 and the horizon ({self.horizon}), got {self.days}"
            )
        if self.persons < 10:
            raise ValueError("a world needs at least 10 persons")

    @property
    def businesses(self) -> int:
        return max(10, self.persons // 10)

    def day(self, i: int) -> date:
        return self.start + timedelta(days=i)


@dataclass(frozen=True)
class World:
    """The truth: who exists, where they live, what happened to them."""

    config: WorldConfig
    persons: pl.DataFrame
    businesses: pl.DataFrame
    cases: pl.DataFrame
    list_entries: pl.DataFrame


# Province abbreviations used on licence plates, by the first two digits of the region code.
PLATE_PREFIX: dict[str, str] = {
    "11": "京",
    "12": "津",
    "13": "冀",
    "14": "晋",
    "15": "蒙",
    "21": "辽",
    "22": "吉",
    "23": "黑",
    "31": "沪",
    "32": "苏",
    "33": "浙",
    "34": "皖",
    "35": "闽",
    "36": "赣",
    "37": "鲁",
    "41": "豫",
    "42": "鄂",
    "43": "湘",
    "44": "粤",
    "45": "桂",
    "46": "琼",
    "50": "渝",
    "51": "川",
    "52": "贵",
    "53": "云",
    "54": "藏",
    "61": "陕",
    "62": "甘",
    "63": "青",
    "64": "宁",
    "65": "新",
}
INDUSTRIES = (
    "农、林、牧、渔业",
    "制造业",
    "建筑业",
    "批发和零售业",
    "交通运输、仓储和邮政业",
    "住宿和餐饮业",
    "信息传输、软件和信息技术服务业",
    "金融业",
    "房地产业",
    "租赁和商务服务业",
    "科学研究和技术服务业",
    "居民服务、修理和其他服务业",
    "教育",
    "文化、体育和娱乐业",
)
TRADE_TERMS = (
    "科技",
    "贸易",
    "商贸",
    "实业",
    "电子",
    "信息技术",
    "建筑工程",
    "餐饮管理",
    "物流",
    "文化传媒",
    "机械设备",
    "服装",
    "食品",
    "家具",
    "广告",
    "网络科技",
    "环保科技",
    "房地产开发",
    "农业发展",
    "汽车销售",
)
LEGAL_FORMS = (
    "有限公司",
    "有限责任公司",
    "股份有限公司",
    "科技有限公司",
    "贸易有限公司",
    "商行",
    "工作室",
)
EMAIL_DOMAINS = (
    "qq.com",
    "163.com",
    "126.com",
    "sina.com",
    "139.com",
    "foxmail.com",
    "outlook.com",
)
MOBILE_PREFIXES = np.array(
    [
        130,
        131,
        132,
        133,
        135,
        136,
        137,
        138,
        139,
        150,
        151,
        152,
        155,
        156,
        157,
        158,
        159,
        166,
        175,
        176,
        177,
        178,
        180,
        181,
        182,
        183,
        185,
        186,
        187,
        188,
        189,
        191,
        198,
        199,
    ]
)
LIST_TYPES = {
    "defaulter": (
        "失信被执行人名单",
        "《最高人民法院关于公布失信被执行人名单信息的若干规定》第一条",
        3 * 365,
    ),
    "consumption_restriction": (
        "限制消费令",
        "《最高人民法院关于限制被执行人高消费及有关消费的若干规定》第一条",
        2 * 365,
    ),
    "flight_ban": (
        "限制乘坐民航",
        "《关于在一定期限内适当限制特定严重失信人乘坐民用航空器的意见》",
        365,
    ),
    "rail_ban": ("限制乘坐火车", "《关于在一定期限内适当限制特定严重失信人乘坐火车的意见》", 365),
}
CASE_CAUSES = (
    "民间借贷纠纷",
    "买卖合同纠纷",
    "金融借款合同纠纷",
    "劳动争议",
    "租赁合同纠纷",
    "服务合同纠纷",
    "建设工程施工合同纠纷",
    "信用卡纠纷",
    "物业服务合同纠纷",
    "离婚纠纷",
)


@cache
def word_lists() -> dict[str, tuple]:
    """Name, address and company word lists from Faker's zh_CN providers (cached)."""
    surnames = tuple(FakerPerson.last_names.keys())
    weights = np.array(list(FakerPerson.last_names.values()), dtype=float)
    male = tuple(FakerPerson.first_names_male)
    female = tuple(FakerPerson.first_names_female)
    name_chars = sorted({ch for n in male + female for ch in n})
    lorem_chars = sorted({ch for w in FakerLorem.word_list for ch in w} - set(name_chars))
    return {
        "surnames": surnames,
        "surname_w": tuple(weights / weights.sum()),
        "male": male,
        "female": female,
        "name_chars": tuple(name_chars),
        "extra_chars": tuple(lorem_chars),
        "streets": tuple(FakerAddress.street_suffixes) + ("大道", "巷", "大街"),
        "street_words": tuple(w for w in FakerLorem.word_list if len(w) == 2),
        "company_prefixes": tuple(FakerCompany.company_prefixes),
    }


def _where(mask: np.ndarray, values: pl.Series | np.ndarray) -> pl.Series:
    """``values`` where ``mask`` holds, else null (a String series)."""
    v = values if isinstance(values, pl.Series) else pl.Series(values.astype(str))
    return pl.select(pl.when(pl.Series(mask)).then(v.cast(pl.String))).to_series()


def _pick(rng: np.random.Generator, values: tuple | np.ndarray, n: int, p=None) -> np.ndarray:
    arr = np.asarray(values, dtype=object)
    return arr[rng.choice(len(arr), size=n, p=p)]


def _digits(rng: np.random.Generator, n: int, width: int) -> pl.Series:
    return pl.Series(rng.integers(0, 10**width, size=n)).cast(pl.String).str.zfill(width)


def _ric_check(body: pl.Expr) -> pl.Expr:
    """ISO 7064 MOD 11-2 check character of a 17-digit body (GB 11643), vectorised."""
    weights = [pow(2, 17 - i, 11) for i in range(17)]
    total = sum(body.str.slice(i, 1).cast(pl.Int64) * w for i, w in enumerate(weights))
    code = (12 - total % 11) % 11
    return pl.when(code == 10).then(pl.lit("X")).otherwise(code.cast(pl.String))


def _given_names(rng: np.random.Generator, sex: np.ndarray) -> np.ndarray:
    """Given names: a third from the common-name lists (so 张伟 is common), the
    rest composed of one or two characters weighted towards name characters."""
    w = word_lists()
    n = len(sex)
    common = np.where(sex == "M", _pick(rng, w["male"], n), _pick(rng, w["female"], n))
    chars = np.array(w["name_chars"] + w["extra_chars"], dtype=object)
    cw = np.r_[np.full(len(w["name_chars"]), 6.0), np.ones(len(w["extra_chars"]))]
    cw /= cw.sum()
    c1 = chars[rng.choice(len(chars), size=n, p=cw)]
    c2 = chars[rng.choice(len(chars), size=n, p=cw)]
    two = rng.random(n) < 0.7
    composed = np.where(two, c1 + c2, c1)
    return np.where(rng.random(n) < 0.33, common, composed)


def _street(rng: np.random.Generator, n: int) -> pl.Series:
    w = word_lists()
    return pl.Series(
        _pick(rng, w["street_words"], n)
        + _pick(rng, w["streets"], n)
        + pl.Series(rng.integers(1, 300, size=n)).cast(pl.String).to_numpy().astype(object)
        + "号"
    )


def _addresses(
    rng: np.random.Generator, n: int, region_idx: np.ndarray | None = None
) -> pl.DataFrame:
    reg = regions()
    idx = rng.integers(0, reg.height, size=n) if region_idx is None else region_idx
    picked = reg[idx]
    return pl.DataFrame(
        {
            "province": picked["province"],
            "city": picked["city"],
            "district": picked["district"],
            "street": _street(rng, n),
            "postcode": picked["code"].str.slice(0, 4) + _digits(rng, n, 2),
        }
    )


def _phones(rng: np.random.Generator, n: int) -> pl.Series:
    prefix = MOBILE_PREFIXES[rng.integers(0, len(MOBILE_PREFIXES), size=n)]
    return pl.Series(prefix).cast(pl.String) + _digits(rng, n, 8)


def generate_persons(cfg: WorldConfig, rng: np.random.Generator) -> pl.DataFrame:
    """One row per person with current and former address and phone."""
    n = cfg.persons
    w = word_lists()
    sex = np.where(rng.random(n) < 0.5, "M", "F")
    surname = _pick(rng, w["surnames"], n, p=np.array(w["surname_w"]))
    given = _given_names(rng, sex)
    # Ages 18-85 on the first simulated day.
    first = cfg.start.toordinal()
    dob_ord = first - rng.integers(18 * 365, 85 * 365, size=n)
    # Birth regions must have existed at birth, or the ID's place check fails:
    # draw from codes in use since before the oldest birth year.
    reg = regions().filter(pl.col("valid_from").is_null() | (pl.col("valid_from") <= 1940))
    birth = reg[rng.integers(0, reg.height, size=n)]
    seq = rng.integers(0, 5, size=n) * 2 + (sex == "M")  # odd 17th digit = male (GB 11643)
    df = pl.DataFrame(
        {
            "person_id": [f"P{i:07d}" for i in range(1, n + 1)],
            "surname_native": surname.astype(str),
            "given_native": given.astype(str),
            "sex": sex,
            "dob": pl.Series(dob_ord - date(1970, 1, 1).toordinal()).cast(pl.Date),
            "birth_code": birth["code"],
            "birth_province": birth["province"],
            "birth_place": birth.select(
                pl.col("province")
                + pl.when(pl.col("city") != pl.col("province"))
                .then(pl.col("city"))
                .otherwise(pl.lit(""))
                + pl.col("district")
            ).to_series(),
            "_seq": _digits(rng, n, 2),
            "_sexdigit": pl.Series(seq % 10).cast(pl.String),
        }
    )
    body = (
        pl.col("birth_code")
        + pl.col("dob").dt.strftime("%Y%m%d")
        + pl.col("_seq").str.slice(0, 2)
        + pl.col("_sexdigit")
    )
    df = (
        df.with_columns(body.alias("_body"))
        .with_columns((pl.col("_body") + _ric_check(pl.col("_body"))).alias("id_number"))
        .drop("_seq", "_sexdigit", "_body")
    )
    # A duplicate ID (same region/date/sequence) is possible but rare; reissue deterministically.
    df = _dedupe_ids(df, rng)

    df = df.with_columns(
        hanzi_latin(df["surname_native"], surname=True).alias("surname_latin"),
        hanzi_latin(df["given_native"]).alias("given_latin"),
    )
    # Households: consecutive runs of 1-5 persons share a home address.
    sizes = rng.choice([1, 2, 3, 4, 5], size=n, p=[0.25, 0.3, 0.25, 0.15, 0.05])
    hh = np.repeat(np.arange(n), sizes)[:n]
    hh_ids = np.unique(hh, return_inverse=True)[1]
    n_hh = int(hh_ids.max()) + 1
    home = _addresses(rng, n_hh)
    prev = _addresses(rng, n_hh)
    moved = rng.random(n_hh) < 0.3
    move_day = rng.integers(-720, cfg.horizon, size=n_hh)
    hdf = (
        pl.DataFrame({"household": np.arange(n_hh)})
        .hstack(home)
        .hstack(prev.rename({c: f"prev_{c}" for c in prev.columns}))
        .with_columns(
            pl.Series(moved).alias("moved"),
            pl.Series(move_day).alias("move_day"),
        )
    )
    hdf = hdf.with_columns(
        [
            pl.when(pl.col("moved")).then(pl.col(f"prev_{c}")).otherwise(None).alias(f"prev_{c}")
            for c in home.columns
        ]
    ).drop("moved")
    df = df.with_columns(pl.Series("household", hh_ids)).join(hdf, on="household", how="left")
    head = pl.col("person_id").first().over("household")
    df = df.with_columns(
        ("H" + pl.col("household").cast(pl.String).str.zfill(7)).alias("household_id"),
        head.alias("household_head"),
        (pl.col("person_id") == head).alias("is_head"),
    ).drop("household")

    phone = _phones(rng, n)
    phone_prev = _phones(rng, n)
    changed = rng.random(n) < 0.25
    second = rng.random(n) < 0.3
    df = df.with_columns(
        phone.alias("phone"),
        _where(changed, phone_prev).alias("phone_prev"),
        _where(second, _phones(rng, n)).alias("phone2"),
    )
    has_email = rng.random(n) < 0.45
    email = (
        df["surname_latin"].str.replace_all(" ", "")
        + df["given_latin"].str.replace_all(" ", "")
        + pl.Series(rng.integers(1, 9999, size=n)).cast(pl.String)
        + "@"
        + pl.Series(_pick(rng, EMAIL_DOMAINS, n).astype(str))
    )
    df = df.with_columns(_where(has_email, email).alias("email"))

    plate_prefix = pl.Series(
        df["birth_code"].str.slice(0, 2).replace_strict(PLATE_PREFIX, default="京")
    )
    letters = np.array(list("ABCDEFGHJKLMNPQRSTUVWXYZ"), dtype=object)
    plate = (
        plate_prefix
        + pl.Series(letters[rng.integers(0, len(letters), size=n)].astype(str))
        + _digits(rng, n, 5)
    )
    has_plate = rng.random(n) < 0.22
    has_passport = rng.random(n) < 0.15
    married = rng.random(n) < 0.55
    drivers = has_plate | (rng.random(n) < 0.25)
    df = df.with_columns(
        _where(has_plate, plate).alias("plate"),
        _where(has_passport, ("E" + _digits(rng, n, 8))).alias("passport"),
        pl.Series(married).alias("married"),
        pl.Series(drivers).alias("driver"),
        (pl.col("birth_province") != pl.col("province")).alias("migrant"),
    )
    return df


def _dedupe_ids(df: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
    """Give later holders of an already-issued ID a new sequence number."""
    for _ in range(20):
        dup = df["id_number"].is_duplicated() & ~df["id_number"].is_first_distinct()
        k = int(dup.sum())
        if k == 0:
            return df
        seq = _digits(rng, k, 2)
        rows = df.filter(dup)
        body = rows["id_number"].str.slice(0, 14) + seq + rows["id_number"].str.slice(16, 1)
        new = pl.DataFrame({"b": body}).select((pl.col("b") + _ric_check(pl.col("b"))).alias("id"))[
            "id"
        ]
        ids = df["id_number"].to_numpy().copy()
        ids[dup.to_numpy()] = new.to_numpy()
        df = df.with_columns(pl.Series("id_number", ids, dtype=pl.String))
    raise RuntimeError("could not issue unique resident IDs")


def _uscc(rng: np.random.Generator, region_codes: pl.Series) -> pl.Series:
    """Unified social credit codes (GB 32100): 91 + region + organisation code + check."""
    n = len(region_codes)
    org = _digits(rng, n, 8)
    ow = [3, 7, 9, 10, 5, 8, 4, 2]
    frame = pl.DataFrame({"org": org, "reg": region_codes})
    total = sum(pl.col("org").str.slice(i, 1).cast(pl.Int64) * w for i, w in enumerate(ow))
    oc = (11 - total % 11) % 11
    ocs = pl.when(oc == 10).then(pl.lit("X")).otherwise(oc.cast(pl.String))
    body = frame.select(("91" + pl.col("reg") + pl.col("org") + ocs).alias("b"))["b"]
    # The final check character is computed by python-stdnum once per code (n/10 businesses).
    return pl.Series([b + uscc.calc_check_digit(b) for b in body], dtype=pl.String)


def generate_businesses(
    cfg: WorldConfig, rng: np.random.Generator, persons: pl.DataFrame
) -> pl.DataFrame:
    """Businesses with USCC, name, legal representative, address and industry."""
    n = cfg.businesses
    w = word_lists()
    addr = _addresses(rng, n)
    reg = regions()
    code = addr.join(reg, on=["province", "city", "district"], how="left")["code"]
    city_short = addr["city"].str.replace(r"(市|地区|自治州|盟)$", "")
    # [city] + trade name (字号) + industry term + legal form, as real names are
    # built. Trade names are two name characters (about 225,000 combinations) or
    # one of Faker's company prefixes, so firms rarely share a name by chance.
    chars = np.array(w["name_chars"] + w["extra_chars"], dtype=object)
    two = chars[rng.integers(0, len(chars), size=n)] + chars[rng.integers(0, len(chars), size=n)]
    trade = np.where(rng.random(n) < 0.2, _pick(rng, w["company_prefixes"], n), two)
    core = (trade + _pick(rng, TRADE_TERMS, n)).astype(str)
    industry = _pick(rng, INDUSTRIES, n).astype(str)
    form = _pick(rng, LEGAL_FORMS, n).astype(str)
    with_city = rng.random(n) < 0.6
    name = np.where(with_city, city_short.to_numpy().astype(object) + core, core) + form
    adults = persons["person_id"].to_numpy()
    reps = adults[rng.integers(0, len(adults), size=n)]
    df = pl.DataFrame(
        {
            "business_id": [f"B{i:06d}" for i in range(1, n + 1)],
            "name": name.astype(str),
            "uscc": _uscc(rng, code),
            "legal_rep": reps.astype(str),
            "industry": industry,
            "founded": pl.Series(
                cfg.start.toordinal()
                - rng.integers(30, 30 * 365, size=n)
                - date(1970, 1, 1).toordinal()
            ).cast(pl.Date),
        }
    ).hstack(addr)
    dup = df["name"].is_duplicated() & ~df["name"].is_first_distinct()
    # Two firms cannot register the same name in the same place; suffix a branch marker.
    return df.with_columns(
        pl.when(pl.Series(dup))
        .then(
            pl.col("name").str.replace(
                r"(有限公司|有限责任公司|股份有限公司|商行|工作室)$", "分公司$1"
            )
        )
        .otherwise(pl.col("name"))
        .alias("name")
    )


def generate_cases(
    cfg: WorldConfig, rng: np.random.Generator, persons: pl.DataFrame, businesses: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Court cases (persons and businesses as parties) and the list entries they cause."""
    n_p, n_b = persons.height, businesses.height
    k_p, k_b = max(5, n_p // 25), max(2, n_b // 15)
    parties = pl.concat(
        [
            pl.DataFrame(
                {
                    "entity_id": persons["person_id"][rng.integers(0, n_p, size=k_p)],
                    "entity_type": ["person"] * k_p,
                    "province": persons["province"][rng.integers(0, n_p, size=k_p)],
                    "city": persons["city"][rng.integers(0, n_p, size=k_p)],
                }
            ),
            pl.DataFrame(
                {
                    "entity_id": businesses["business_id"][rng.integers(0, n_b, size=k_b)],
                    "entity_type": ["business"] * k_b,
                    "province": businesses["province"][rng.integers(0, n_b, size=k_b)],
                    "city": businesses["city"][rng.integers(0, n_b, size=k_b)],
                }
            ),
        ]
    )
    k = parties.height
    filed = cfg.start.toordinal() - rng.integers(-cfg.horizon, 3 * 365, size=k)
    cases = parties.with_columns(
        pl.Series("case_id", [f"C{i:07d}" for i in range(1, k + 1)]),
        pl.Series("filed", filed - date(1970, 1, 1).toordinal()).cast(pl.Date),
        pl.Series("cause", _pick(rng, CASE_CAUSES, k).astype(str)),
        pl.Series("amount", np.round(np.exp(rng.normal(10, 1.2, size=k)), 2)),
        (pl.col("city").str.replace(r"(市|地区|自治州|盟)$", "") + "市人民法院").alias("court"),
        pl.Series("enforced", rng.random(k) < 0.45),
    ).with_columns(
        (
            "（"
            + pl.col("filed").dt.year().cast(pl.String)
            + "）"
            + pl.lit("执")
            + pl.col("case_id").str.slice(3)
            + "号"
        ).alias("case_no"),
    )
    enforced = cases.filter(pl.col("enforced"))
    entries = []
    for list_type, (title, basis, days) in LIST_TYPES.items():
        share = {
            "defaulter": 0.6,
            "consumption_restriction": 0.5,
            "flight_ban": 0.25,
            "rail_ban": 0.25,
        }[list_type]
        pick = enforced.filter(pl.Series(rng.random(enforced.height) < share))
        if list_type in ("flight_ban", "rail_ban"):
            pick = pick.filter(pl.col("entity_type") == "person")
        start = pick["filed"].cast(pl.Int32) + pl.Series(
            rng.integers(30, 200, size=pick.height)
        ).cast(pl.Int32)
        length = pl.Series(rng.integers(days // 2, days + 1, size=pick.height)).cast(pl.Int32)
        entries.append(
            pick.select(
                "entity_id",
                "entity_type",
                "case_id",
                "case_no",
                "court",
                pl.lit(list_type).alias("list_type"),
                pl.lit(title).alias("list_title"),
                pl.lit(basis).alias("legal_basis"),
                pl.col("court").alias("issuing_body"),
            ).with_columns(
                start.cast(pl.Date).alias("start_date"),
                (start + length).cast(pl.Date).alias("expiry_date"),
            )
        )
    list_entries = (
        pl.concat(entries)
        .with_row_index("entry")
        .with_columns(("L" + pl.col("entry").cast(pl.String).str.zfill(7)).alias("entry_id"))
        .drop("entry")
    )
    return cases, list_entries


def generate_world(cfg: WorldConfig) -> World:
    """The whole world for a config; deterministic in ``cfg.seed``."""
    rng = np.random.default_rng(cfg.seed)
    persons = generate_persons(cfg, rng)
    businesses = generate_businesses(cfg, rng, persons)
    emp = rng.random(persons.height) < 0.6
    employer = businesses["business_id"].to_numpy()[
        rng.integers(0, businesses.height, size=persons.height)
    ]
    persons = persons.with_columns(_where(emp, employer).alias("employer"))
    cases, list_entries = generate_cases(cfg, rng, persons, businesses)
    return World(cfg, persons, businesses, cases, list_entries)


def is_valid_id(number: str) -> bool:
    """python-stdnum's resident ID check (used by tests to vouch for the generator)."""
    return ric.is_valid(number)
