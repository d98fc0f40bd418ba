"""Value-level parse rules (connectors.parsing) and their inverse
(simulation.render): examples per rule, and parse(render(x)) == x properties."""

from __future__ import annotations

import datetime as dt

import phonenumbers
import polars as pl
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from stdnum.cn import ric

from connectors.parsing import RULES, ParseRuleError, hanzi_latin, parse_column
from connectors.parsing.names import COMPOUND_SURNAMES, split_latin, surname_latin, syllabify
from connectors.parsing.regions import region_year_spans, regions
from simulation.render import render_column

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def one(rule: str, field: str, value: str | None) -> dict:
    return parse_column(rule, field, pl.Series([value], dtype=pl.String)).row(0, named=True)


def ric_is_valid(number: str) -> bool:
    """stdnum.cn.ric.is_valid, which raises KeyError for unknown county codes."""
    try:
        return ric.is_valid(number)
    except KeyError:
        return False


def with_check(body17: str) -> str:
    return body17 + ric.calc_check_digit(body17 + "0")


# --- examples ----------------------------------------------------------------

D = dt.date
EXAMPLES: list[tuple[str, str, str, dict]] = [
    ("text", "industry", "  软件 ", {"industry": "软件"}),
    ("int", "fact:count", "42", {"fact:count": 42}),
    ("int", "fact:count", "-7", {"fact:count": -7}),
    ("decimal", "fact:amount", "12.50", {"fact:amount": 12.5}),
    ("date:ymd", "dob", "20240131", {"dob": D(2024, 1, 31)}),
    ("date:iso", "dob", "2024-01-31", {"dob": D(2024, 1, 31)}),
    ("date:dmy", "dob", "31/01/2024", {"dob": D(2024, 1, 31)}),
    ("date:dmy", "dob", "1/2/2024", {"dob": D(2024, 2, 1)}),
    ("date:cn", "dob", "2024年1月31日", {"dob": D(2024, 1, 31)}),
    ("date:cn", "dob", "2024年01月31日", {"dob": D(2024, 1, 31)}),
    ("date:epoch", "dob", "1706659200", {"dob": D(2024, 1, 31)}),
    ("date:epoch", "dob", "-86400", {"dob": D(1969, 12, 31)}),
    ("date:epoch_ms", "dob", "1706659200000", {"dob": D(2024, 1, 31)}),
    ("sex:zh", "sex", "男", {"sex": "M"}),
    ("sex:zh", "sex", "女", {"sex": "F"}),
    ("sex:mf", "sex", "f", {"sex": "F"}),
    ("sex:12", "sex", "1", {"sex": "M"}),
    ("sex:12", "sex", "9", {"sex": None}),  # GB/T 2261.1 "not stated": missing, not wrong
    (
        "name:hanzi", "name", "张伟",
        {"name_native": "张伟", "surname_native": "张", "given_native": "伟",
         "name_latin": "zhang wei", "surname_latin": "zhang", "given_latin": "wei"},
    ),
    (
        "name:hanzi", "name", "欧阳娜娜",
        {"name_native": "欧阳娜娜", "surname_native": "欧阳", "given_native": "娜娜",
         "name_latin": "ou yang na na", "surname_latin": "ou yang", "given_latin": "na na"},
    ),
    ("name:hanzi", "name", "曾小明", {"surname_latin": "zeng", "name_latin": "zeng xiao ming"}),
    ("name:hanzi", "name", "单 田芳", {"name_native": "单田芳", "surname_latin": "shan"}),
    ("name:hanzi", "name", "司马", {"surname_native": "司", "given_native": "马"}),
    ("name:hanzi", "name", "阿依古丽·买买提",
     {"name_native": "阿依古丽·买买提", "surname_native": None, "name_latin": "a yi gu li mai mai ti"}),
    ("name:hanzi", "surname", "曾", {"surname_native": "曾", "surname_latin": "zeng"}),
    ("name:hanzi", "surname", "单小", {"surname_latin": "shan xiao"}),
    ("name:hanzi", "given", "娜娜", {"given_native": "娜娜", "given_latin": "na na"}),
    ("name:pinyin_ticket", "name", "ZHANG/SAN",
     {"name_latin": "zhang san", "surname_latin": "zhang", "given_latin": "san"}),
    ("name:pinyin_ticket", "name", "OUYANG/NANA",
     {"name_latin": "ou yang na na", "surname_latin": "ou yang", "given_latin": "na na"}),
    ("name:pinyin_ticket", "name", "LV/XI'AN", {"given_latin": "xi an"}),
    ("name:pinyin_ticket", "name", "LV/XIAN", {"given_latin": "xian"}),
    ("name:pinyin_western", "name", "San Zhang",
     {"name_latin": "zhang san", "surname_latin": "zhang", "given_latin": "san"}),
    ("name:pinyin_western", "name", "Nana Ouyang",
     {"name_latin": "ou yang na na", "surname_latin": "ou yang", "given_latin": "na na"}),
    ("name:pinyin_western", "name", "Wěi Zhāng", {"name_latin": "zhang wei"}),
    ("name:pinyin_upper", "name", "OUYANG NANA",
     {"name_latin": "ou yang na na", "surname_latin": "ou yang", "given_latin": "na na"}),
    ("name:pinyin_lower", "name", "ou yang na na",
     {"name_latin": "ou yang na na", "surname_latin": "ou yang", "given_latin": "na na"}),
    ("name:pinyin_lower", "name", "zhang  san",
     {"name_latin": "zhang san", "surname_latin": "zhang", "given_latin": "san"}),
    ("name:pinyin_upper", "surname", "OUYANG", {"surname_latin": "ou yang"}),
    ("name:pinyin_western", "given", "Xiaoming", {"given_latin": "xiao ming"}),
    (
        "id:full", "id_number", "360426199101010071",
        {"id_number": "360426199101010071", "id_raw": "360426199101010071",
         "id_dob": D(1991, 1, 1), "id_masked": None},
    ),
    ("id:full", "id_number", "3604 2619 9101 0100 71", {"id_number": "360426199101010071"}),
    (  # checksum failure: data, not an error
        "id:full", "id_number", "360426199101010072",
        {"id_number": None, "id_raw": "360426199101010072", "id_dob": D(1991, 1, 1)},
    ),
    (  # impossible date: no dob, not valid, still kept
        "id:full", "id_number", with_check("11010519901301123"),
        {"id_number": None, "id_raw": with_check("11010519901301123"), "id_dob": None},
    ),
    (
        "id:full", "legal_rep_id", "360426199101010071",
        {"legal_rep_id": "360426199101010071", "legal_rep_id_raw": "360426199101010071"},
    ),
    (
        "id:masked", "id_number", "110101********123x",
        {"id_masked": "110101********123X", "id_raw": None, "id_number": None, "id_dob": None},
    ),
    (
        "id:masked", "id_number", "360426199101010071",
        {"id_number": "360426199101010071", "id_raw": "360426199101010071", "id_masked": None},
    ),
    ("phone:plain", "phone", "13812345678",
     {"phone": "+8613812345678", "phone_raw": "13812345678", "phone_masked": None}),
    ("phone:e164_spaced", "phone", "+86 138 1234 5678", {"phone": "+8613812345678"}),
    ("phone:dashed", "phone", "138-1234-5678", {"phone": "+8613812345678"}),
    ("phone:plain", "phone", "１３８１２３４５６７８", {"phone": "+8613812345678"}),
    ("phone:plain", "phone", "010-12345678", {"phone": "+861012345678"}),
    ("phone:plain", "phone", "12345678901", {"phone": None, "phone_raw": "12345678901"}),
    ("phone:masked", "phone", "138****5678",
     {"phone_masked": "138****5678", "phone": None, "phone_raw": None}),
    ("phone:masked", "phone", "+86 138****5678", {"phone_masked": "138****5678"}),
    ("uscc", "uscc", "91110000600037341L",
     {"uscc": "91110000600037341L", "uscc_raw": "91110000600037341L"}),
    ("uscc", "uscc", "91110000600037341X", {"uscc": None, "uscc_raw": "91110000600037341X"}),
    ("email", "email", " Zhang.Wei@Example.COM ", {"email": "zhang.wei@example.com"}),
    ("plate", "plate", "京A·12345", {"plate": "京A12345"}),
    ("plate", "plate", "粤b-d1234 5", {"plate": "粤BD12345"}),
    ("passport", "passport", " e12345678 ", {"passport": "E12345678"}),
    (
        "address:full", "address", "广东省深圳市南山区科技路12号",
        {"province": "广东省", "city": "深圳市", "district": "南山区", "street": "科技路12号"},
    ),
    (
        "address:full", "address", "北京市朝阳区建国路8号",
        {"province": "北京市", "city": "北京市", "district": "朝阳区", "street": "建国路8号"},
    ),
    (
        "address:full", "address", "深圳市南山区科技路",
        {"province": "广东省", "city": "深圳市", "district": "南山区", "street": "科技路"},
    ),
    (
        "address:full", "address", "某某村3组",
        {"province": None, "city": None, "district": None, "street": "某某村3组"},
    ),
    (
        "address:full", "legal_rep_address", "上海市浦东新区世纪大道1号",
        {"legal_rep_address_province": "上海市", "legal_rep_address_city": "上海市",
         "legal_rep_address_district": "浦东新区", "legal_rep_address_street": "世纪大道1号"},
    ),
    ("address:city", "address", "广东省深圳市", {"province": "广东省", "city": "深圳市"}),
    ("address:city", "address", "北京市", {"province": "北京市", "city": "北京市"}),
]  # fmt: skip


@pytest.mark.parametrize(("rule", "field", "value", "expected"), EXAMPLES)
def test_examples(rule: str, field: str, value: str, expected: dict) -> None:
    row = one(rule, field, value)
    assert row["_error"] is None, row
    for key, want in expected.items():
        assert row[key] == want, (key, row)


ERRORS: list[tuple[str, str, str]] = [
    ("int", "12a", "int '12a' is not an integer"),
    ("decimal", "abc", "is not a number"),
    ("decimal", "nan", "is not a number"),
    ("date:iso", "2024-13-45", "date '2024-13-45' is not date:iso (YYYY-MM-DD)"),
    ("date:iso", "2024/01/31", "is not date:iso"),
    ("date:ymd", "20240230", "date '20240230' is not date:ymd (YYYYMMDD)"),
    ("date:ymd", "2024013", "is not date:ymd"),
    ("date:dmy", "2024-01-31", "is not date:dmy (DD/MM/YYYY)"),
    ("date:cn", "2024年2月30日", "is not date:cn"),
    ("date:epoch", "17e8", "is not date:epoch (unix seconds)"),
    ("date:epoch_ms", "99999999999999999999", "is not date:epoch_ms"),
    ("sex:zh", "M", "sex 'M' is not sex:zh (男/女)"),
    ("sex:mf", "X", "sex 'X' is not sex:mf (M/F)"),
    ("sex:12", "3", "sex '3' is not sex:12 (1/2)"),
    ("name:hanzi", "John Smith", "name 'John Smith' is not name:hanzi (Chinese characters)"),
    ("name:pinyin_ticket", "ZHANGSAN", "is not name:pinyin_ticket (SURNAME/GIVEN)"),
    ("name:pinyin_ticket", "/SAN", "is not name:pinyin_ticket"),
    ("name:pinyin_upper", "张 三", "is not name:pinyin_upper"),
    ("name:pinyin_lower", "zhang 3", "is not name:pinyin_lower"),
    (
        "id:full",
        "11010519900101123",
        "id '11010519900101123' is not id:full (17 digits + check digit)",
    ),
    ("id:full", "110101********123X", "is not id:full"),
    ("id:masked", "110101*******123X", "is not id:masked (6 digits, 8 '*', 4 digits)"),
    ("phone:plain", "call me", "phone 'call me' is not a phone number"),
    ("phone:plain", "١٣٨١٢٣٤٥٦٧٨", "is not a phone number"),  # ASCII digits only
    ("phone:masked", "138**5678", "is not a masked number"),
    ("uscc", "9111000060003734", "uscc '9111000060003734' is not uscc"),
    ("email", "zhang.example.com", "email 'zhang.example.com' is not an address"),
    ("passport", "E-12", "is not 5-20 letters or digits"),
    ("address:city", "火星", "address '火星' names no known province or city"),
]


@pytest.mark.parametrize(("rule", "value", "fragment"), ERRORS)
def test_errors(rule: str, value: str, fragment: str) -> None:
    field = (
        "id_number" if rule.startswith("id:") else "address" if rule.startswith("address") else "x"
    )
    if rule.startswith("name:"):
        field = "name"
    row = one(rule, field, value)
    assert row["_error"] is not None and fragment in row["_error"], row
    assert all(v is None for k, v in row.items() if k != "_error"), row


def test_error_message_shortens_long_values() -> None:
    row = one("date:iso", "dob", "x" * 500)
    assert len(row["_error"]) < 120


@pytest.mark.parametrize("rule", RULES)
def test_null_and_blank_are_missing_not_errors(rule: str) -> None:
    out = parse_column(rule, "name", pl.Series([None, "", "   ", "\t"], dtype=pl.String))
    assert out.height == 4
    assert "_error" in out.columns and out.schema["_error"] == pl.String
    assert out.null_count().row(0) == (4,) * out.width


def test_unknown_rule() -> None:
    with pytest.raises(ParseRuleError, match="date:usa"):
        parse_column("date:usa", "dob", pl.Series(["01/31/2024"]))


def test_output_columns() -> None:
    s = pl.Series(["x"], dtype=pl.String)
    cols = {r: parse_column(r, "name", s).columns for r in ("name:hanzi", "name:pinyin_upper")}
    assert cols["name:hanzi"] == [
        "name_native", "surname_native", "given_native",
        "name_latin", "surname_latin", "given_latin", "_error",
    ]  # fmt: skip
    assert cols["name:pinyin_upper"] == ["name_latin", "surname_latin", "given_latin", "_error"]
    assert parse_column("id:full", "id_number", s).columns == [
        "id_number",
        "id_raw",
        "id_dob",
        "id_masked",
        "_error",
    ]
    assert parse_column("phone:plain", "phone", s).columns == [
        "phone",
        "phone_raw",
        "phone_masked",
        "_error",
    ]
    assert parse_column("address:full", "address", s).columns == [
        "province",
        "city",
        "district",
        "street",
        "_error",
    ]
    assert parse_column("date:ymd", "dob", s).schema["dob"] == pl.Date
    assert parse_column("int", "n", s).schema["n"] == pl.Int64
    assert parse_column("decimal", "n", s).schema["n"] == pl.Float64


def test_order_and_height_preserved_with_duplicates() -> None:
    values = pl.Series(["13812345678", None, "12345678901", "13812345678", "x", "139 0000 0000"])
    out = parse_column("phone:plain", "phone", values)
    assert out["phone_raw"].to_list() == [
        "13812345678",
        None,
        "12345678901",
        "13812345678",
        None,
        "13900000000",
    ]
    assert out["_error"].is_not_null().to_list() == [False, False, False, False, True, False]


def test_non_string_input_is_read_as_text() -> None:
    out = parse_column("date:ymd", "dob", pl.Series([20240131, None]))
    assert out["dob"].to_list() == [D(2024, 1, 31), None]
    out = parse_column("date:iso", "dob", pl.Series([D(2024, 1, 31)]))
    assert out["dob"].to_list() == [D(2024, 1, 31)]


# --- dates ---------------------------------------------------------------------

DATE_RULES = [r for r in RULES if r.startswith("date:")]


@SETTINGS
@given(st.lists(st.dates(min_value=D(1, 1, 1), max_value=D(9999, 12, 31)), min_size=1, max_size=30))
def test_dates_round_trip(days: list[dt.date]) -> None:
    truth = pl.DataFrame({"dob": pl.Series(days, dtype=pl.Date)})
    for rule in DATE_RULES:
        out = parse_column(rule, "dob", render_column(rule, "dob", truth))
        assert out["_error"].null_count() == len(days), (rule, out)
        assert out["dob"].to_list() == days, rule


# --- names ---------------------------------------------------------------------

SINGLE = list("张王李赵刘陈杨黄周吴曾单吕解朴董区")
COMPOUND = ["欧阳", "司马", "诸葛", "上官", "尉迟", "长孙", "万俟", "东方"]
GIVEN_CHARS = list("伟娜安恩欧芳明西华英国强爱儿阳马方敏静秀丽雪女略绿尔鹅傲昂翱二")
NAME_STYLES = [
    "name:pinyin_ticket",
    "name:pinyin_western",
    "name:pinyin_upper",
    "name:pinyin_lower",
]

names_strategy = st.lists(
    st.tuples(
        st.sampled_from(SINGLE + COMPOUND),
        st.lists(st.sampled_from(GIVEN_CHARS), min_size=0, max_size=3).map("".join),
    ),
    min_size=1,
    max_size=12,
)


def _ambiguous(surname: str, given: str) -> bool:
    """Names no parser can split as generated: a single surname followed by a
    given name that starts like a compound surname (董方明 reads as 东方), or
    a compound surname alone (a two-character name is surname + given)."""
    if len(surname) == 2:
        return not given
    if not given:
        return False
    if surname + given[0] in COMPOUND_SURNAMES and len(given) >= 2:
        return True
    first = hanzi_latin(pl.Series([given[0]]))[0]
    return split_latin(f"{surname_latin(surname)} {first} x")[0] != surname_latin(surname)


@SETTINGS
@given(names_strategy)
def test_names_agree_across_styles(pairs: list[tuple[str, str]]) -> None:
    pairs = [(s, g) for s, g in pairs if not _ambiguous(s, g)]
    assume(pairs)
    sn = pl.Series([s for s, _ in pairs])
    gn = pl.Series([g or None for _, g in pairs], dtype=pl.String)
    truth = pl.DataFrame(
        {
            "surname_native": sn,
            "given_native": gn,
            "surname_latin": hanzi_latin(sn, surname=True),
            "given_latin": hanzi_latin(gn),
        }
    )
    hanzi = parse_column("name:hanzi", "name", render_column("name:hanzi", "name", truth))
    assert hanzi["_error"].null_count() == len(pairs)
    assert hanzi["surname_native"].to_list() == sn.to_list()
    assert hanzi["given_native"].to_list() == gn.to_list()
    assert hanzi["name_native"].to_list() == [s + g for s, g in pairs]
    assert hanzi["surname_latin"].to_list() == truth["surname_latin"].to_list()
    assert hanzi["given_latin"].to_list() == truth["given_latin"].to_list()
    latin = hanzi.select("name_latin", "surname_latin", "given_latin")
    for rule in NAME_STYLES:
        rendered = render_column(rule, "name", truth)
        out = parse_column(rule, "name", rendered)
        assert out["_error"].null_count() == len(pairs), (rule, out)
        assert out.select(latin.columns).equals(latin), (rule, rendered.to_list(), out)
        for part in ("surname", "given"):
            one_part = parse_column(rule, part, render_column(rule, part, truth))
            assert one_part[f"{part}_latin"].to_list() == truth[f"{part}_latin"].to_list()
    for part in ("surname", "given"):
        out = parse_column("name:hanzi", part, render_column("name:hanzi", part, truth))
        assert out[f"{part}_native"].to_list() == truth[f"{part}_native"].to_list()
        assert out[f"{part}_latin"].to_list() == truth[f"{part}_latin"].to_list()


def test_syllabify() -> None:
    assert syllabify("OUYANG") == "ou yang"
    assert syllabify("xi'an") == "xi an"
    assert syllabify("XIAN") == "xian"
    assert syllabify("Zhuangzhuang") == "zhuang zhuang"
    assert syllabify("Lü") == "lv"
    assert syllabify("Smith") == "smith"  # not pinyin: kept whole
    assert syllabify("张") is None


# --- resident IDs ----------------------------------------------------------------

_REGIONS = regions()
_CODES = list(zip(_REGIONS["code"], _REGIONS["valid_from"], strict=True))


@st.composite
def resident_ids(draw: st.DrawFn) -> tuple[str, dt.date]:
    code, since = draw(st.sampled_from(_CODES))
    born = draw(st.dates(min_value=D(max(since or 1900, 1900), 1, 1), max_value=D(2035, 12, 31)))
    seq = draw(st.integers(0, 999))
    return with_check(f"{code}{born:%Y%m%d}{seq:03d}"), born


@SETTINGS
@given(st.lists(resident_ids(), min_size=1, max_size=20))
def test_ids_round_trip(items: list[tuple[str, dt.date]]) -> None:
    ids = [i for i, _ in items]
    assert all(ric_is_valid(i) for i in ids)
    truth = pl.DataFrame({"id_number": ids})
    full = parse_column("id:full", "id_number", render_column("id:full", "id_number", truth))
    assert full["id_number"].to_list() == ids
    assert full["id_raw"].to_list() == ids
    assert full["id_dob"].to_list() == [d for _, d in items]
    masked = parse_column("id:masked", "id_number", render_column("id:masked", "id_number", truth))
    assert masked["id_masked"].to_list() == [i[:6] + "********" + i[14:] for i in ids]
    assert masked["id_raw"].null_count() == len(ids)
    assert masked["id_number"].null_count() == len(ids)
    assert masked["_error"].null_count() == len(ids)


@SETTINGS
@given(resident_ids(), st.integers(0, 16))
def test_id_transposition(item: tuple[str, dt.date], pos: int) -> None:
    number, _ = item
    a, b = number[pos], number[pos + 1]
    assume(a != b and a.isdigit() and b.isdigit())
    typo = number[:pos] + b + a + number[pos + 2 :]
    row = one("id:full", "id_number", typo)
    assert row["_error"] is None
    assert row["id_raw"] == typo
    assert (row["id_number"] is None) == (not ric_is_valid(typo))
    if pos < 16:  # MOD 11-2 catches every transposition within the 17 digits
        assert row["id_number"] is None


_SPAN_CODES = sorted(set(region_year_spans()["code"]))


@SETTINGS
@given(
    st.one_of(st.sampled_from(_SPAN_CODES), st.from_regex(r"[0-9]{6}", fullmatch=True)),
    st.from_regex(r"(1[89]|20)[0-9]{2}(0[0-9]|1[0-3])[0-3][0-9]", fullmatch=True),
    st.from_regex(r"[0-9]{3}", fullmatch=True),
    st.booleans(),
)
def test_id_validity_matches_stdnum(code: str, date: str, seq: str, good_check: bool) -> None:
    body = code + date + seq
    number = with_check(body) if good_check else body + "0"
    row = one("id:full", "id_number", number)
    assert (row["id_number"] is not None) == ric_is_valid(number), number


# --- phones ------------------------------------------------------------------------

PHONE_RULES = [r for r in RULES if r.startswith("phone:")]
mobile = st.builds(
    lambda p, rest: f"{p}{rest:08d}",
    st.sampled_from(
        [str(p) for p in (*range(130, 140), *range(150, 160), *range(180, 190), 166, 177, 199)]
    ),
    st.integers(0, 99_999_999),
)


@SETTINGS
@given(st.lists(mobile, min_size=1, max_size=20))
def test_phones_round_trip(numbers: list[str]) -> None:
    numbers = [n for n in numbers if phonenumbers.is_valid_number(phonenumbers.parse(n, "CN"))]
    assume(numbers)
    truth = pl.DataFrame({"phone": numbers})
    for rule in PHONE_RULES:
        out = parse_column(rule, "phone", render_column(rule, "phone", truth))
        assert out["_error"].null_count() == len(numbers), rule
        if rule == "phone:masked":
            assert out["phone_masked"].to_list() == [n[:3] + "****" + n[7:] for n in numbers]
            assert out["phone"].null_count() == len(numbers)
        else:
            assert out["phone"].to_list() == ["+86" + n for n in numbers], rule
            assert out["phone_masked"].null_count() == len(numbers)


@SETTINGS
@given(
    st.lists(
        st.from_regex(r"(\+86)?1[0-9]{10}|0[0-9]{9,11}|[0-9]{5,12}", fullmatch=True),
        min_size=1,
        max_size=20,
    )
)
def test_phone_validity_matches_phonenumbers(raws: list[str]) -> None:
    out = parse_column("phone:plain", "phone", pl.Series(raws))
    assert out["_error"].null_count() == len(raws)
    for raw, got in zip(raws, out["phone"].to_list(), strict=True):
        try:
            num = phonenumbers.parse(raw, "CN")
        except phonenumbers.NumberParseException:
            want = None
        else:
            valid = phonenumbers.is_valid_number(num)
            want = (
                phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)
                if valid
                else None
            )
        assert got == want, raw


# --- regions and addresses -------------------------------------------------------


def test_regions() -> None:
    r = regions()
    rows = {
        c: (p, ci, d)
        for c, p, ci, d in r.select("code", "province", "city", "district").iter_rows()
    }
    assert rows["110105"] == ("北京市", "北京市", "朝阳区")
    assert rows["440305"] == ("广东省", "深圳市", "南山区")
    assert rows["500229"][:2] == ("重庆市", "重庆市")
    for col in ("province", "city", "district"):
        assert not r[col].str.contains(r"[\[\],]").any(), col
        assert r[col].null_count() == 0
    assert not r["district"].is_in(["市辖区", "县"]).any()
    assert r["code"].str.contains(r"^\d{6}$").all() and r["code"].is_unique().all()
    # the only XXYY00 codes are prefecture-level cities without counties (东莞, 中山)
    prefectures = r.filter(pl.col("code").str.ends_with("00"))
    assert {"441900", "442000"} <= set(prefectures["code"])
    assert (prefectures["city"] == prefectures["district"]).all()
    assert regions() is regions()  # cached


def test_addresses_round_trip_for_every_region() -> None:
    truth = regions().with_columns(pl.lit("幸福路18号").alias("street"))
    out = parse_column("address:full", "address", render_column("address:full", "address", truth))
    assert out["_error"].null_count() == truth.height
    got = out.select("province", "city", "district", "street")
    bad = (
        truth.select(got.columns)
        .with_row_index()
        .join(got.with_row_index(), on="index", suffix="_got")
        .filter(pl.any_horizontal(pl.col(c) != pl.col(f"{c}_got") for c in got.columns))
    )
    assert bad.height == 0, bad
    city = parse_column("address:city", "address", render_column("address:city", "address", truth))
    assert city.select("province", "city").equals(truth.select("province", "city"))


@settings(SETTINGS, max_examples=60)
@given(
    st.lists(
        st.tuples(
            st.integers(-(2**62), 2**62),
            st.floats(allow_nan=False, allow_infinity=False),
            st.sampled_from(["M", "F"]),
            st.from_regex(r"[a-z0-9._]{1,12}@[a-z0-9]{1,10}\.(com|cn)", fullmatch=True),
            st.from_regex(r"[京沪粤川][A-HJ-NP-Z][A-HJ-NP-Z0-9]{5}", fullmatch=True),
            st.from_regex(r"[EG][0-9]{8}", fullmatch=True),
        ),
        min_size=1,
        max_size=10,
    )
)
def test_scalar_rules_round_trip(rows: list[tuple]) -> None:
    names = ["n", "x", "sex", "email", "plate", "passport"]
    truth = pl.DataFrame(rows, schema=names, orient="row")
    cases = [("int", "n"), ("decimal", "x"), ("email", "email"), ("plate", "plate"),
             ("passport", "passport"), ("text", "email")]  # fmt: skip
    cases += [(r, "sex") for r in RULES if r.startswith("sex:")]
    for rule, field in cases:
        out = parse_column(rule, field, render_column(rule, field, truth))
        assert out["_error"].null_count() == truth.height, rule
        assert out[field].to_list() == truth[field].to_list(), rule


def test_uscc_round_trip() -> None:
    from stdnum.cn import uscc

    body = ["91110000600037341", "91440300MA5F0XY2R", "12100000400000624"]
    codes = [b + uscc.calc_check_digit(b + "0") for b in body]
    assert all(uscc.is_valid(c) for c in codes)
    truth = pl.DataFrame({"uscc": codes})
    out = parse_column("uscc", "uscc", render_column("uscc", "uscc", truth))
    assert out["uscc"].to_list() == codes and out["uscc_raw"].to_list() == codes


def test_render_nulls_give_nulls() -> None:
    truth = pl.DataFrame(
        {
            "dob": pl.Series([None], dtype=pl.Date),
            "sex": pl.Series([None], dtype=pl.String),
            "id_number": pl.Series([None], dtype=pl.String),
            "phone": pl.Series([None], dtype=pl.String),
            "surname_native": pl.Series([None], dtype=pl.String),
            "given_native": pl.Series([None], dtype=pl.String),
            "surname_latin": pl.Series([None], dtype=pl.String),
            "given_latin": pl.Series([None], dtype=pl.String),
            "province": pl.Series([None], dtype=pl.String),
            "city": pl.Series([None], dtype=pl.String),
            "district": pl.Series([None], dtype=pl.String),
            "street": pl.Series([None], dtype=pl.String),
            "plate": pl.Series([None], dtype=pl.String),
        }
    )
    fields = {"date": "dob", "sex": "sex", "id": "id_number", "phone": "phone", "name": "name",
              "address": "address", "plate": "plate"}  # fmt: skip
    for rule in RULES:
        field = fields.get(rule.split(":")[0])
        if field is None:
            continue
        out = render_column(rule, field, truth)
        assert out.dtype == pl.String and out.to_list() == [None], rule
