"""Person-name rules.

Canonical latin form (DESIGN.md): lower-case pinyin without tones, ``ü`` as
``v`` (pypinyin's NORMAL style), syllables separated by single spaces, surname
first: 欧阳娜娜 → ``ou yang na na`` (surname ``ou yang``, given ``na na``).

- ``name:hanzi``: 张伟 / 欧阳娜娜. The surname is a known compound surname
  (:data:`COMPOUND_SURNAMES`) when the name has at least three characters,
  else the first character. Romanised with ``pypinyin.lazy_pinyin``; surname
  and given name are romanised separately (no phrase spanning the boundary).
  pypinyin 0.55 has no surname mode, so the surname reading of the common
  heteronymous surnames (曾 zeng, 单 shan, 解 xie, ...) comes from
  :data:`SURNAME_READINGS`; every other character gets pypinyin's reading.
  Names with a middle dot (阿依古丽·买买提) are not split.
- ``name:pinyin_ticket`` ``OUYANG/NANA``, ``name:pinyin_western`` ``Nana Ouyang``,
  ``name:pinyin_upper`` ``OUYANG NANA``, ``name:pinyin_lower`` ``ou yang na na``.
  Concatenated syllables are split by :func:`syllabify` (dynamic programming
  over pypinyin's syllable inventory). Rendering follows the pinyin
  orthography rule (GB/T 16159): an apostrophe precedes an a/o/e-initial
  syllable inside a word (``XI'AN``), which keeps the split exact. A source
  that drops apostrophes gets the standard reading (``XIAN`` → ``xian``).
- ``name:latin``: a non-pinyin name in Latin script, as given (``mitchell``,
  ``O'Brien``, ``Jean-Luc``): lower-cased, trimmed, inner whitespace collapsed,
  never segmented into syllables. For field ``name`` the whole name is kept in
  ``name_latin`` and its parts are left null (the order is unknown).
"""

from __future__ import annotations

import functools
import re
import unicodedata

import polars as pl
from pypinyin import Style, lazy_pinyin, pinyin_dict
from pypinyin.style import convert

from ._base import ERROR, V, error_when, map_unique

# 百家姓's compound surnames plus 独孤 / 呼延 (Hanzi; surname first).
COMPOUND_SURNAMES: tuple[str, ...] = tuple(
    "万俟 司马 上官 欧阳 夏侯 诸葛 闻人 东方 赫连 皇甫 尉迟 公羊 澹台 公冶 宗政 濮阳 淳于 单于 "
    "太叔 申屠 公孙 仲孙 轩辕 令狐 钟离 宇文 长孙 慕容 鲜于 闾丘 司徒 司空 亓官 司寇 仉督 子车 "
    "颛孙 端木 巫马 公西 漆雕 乐正 壤驷 公良 拓跋 夹谷 宰父 谷梁 段干 百里 东郭 南门 呼延 羊舌 "
    "微生 梁丘 左丘 东门 西门 南宫 第五 独孤".split()
)
# Surname readings where pypinyin's default reading of the character (or
# phrase) is not the one used as a surname.
SURNAME_READINGS: dict[str, str] = {
    "单": "shan", "曾": "zeng", "解": "xie", "仇": "qiu", "朴": "piao", "区": "ou",
    "查": "zha", "盖": "ge", "缪": "miao", "翟": "zhai", "乐": "yue", "覃": "qin",
    "秘": "bi", "种": "chong", "繁": "po", "员": "yun", "句": "gou", "黑": "he",
    "召": "shao", "折": "she", "薄": "bo", "重": "chong", "隗": "wei", "祭": "zhai",
    "阚": "kan", "洗": "xian", "蕃": "pi", "卜": "bu", "乜": "nie", "长": "chang",
    "藏": "zang", "能": "nai", "都": "du", "乐正": "yue zheng",
}  # fmt: skip

LATIN_STYLES = (
    "name:pinyin_ticket",
    "name:pinyin_western",
    "name:pinyin_upper",
    "name:pinyin_lower",
)
PLAIN_LATIN = "name:latin"
_HINT = {
    "name:hanzi": "Chinese characters",
    "name:pinyin_ticket": "SURNAME/GIVEN",
    "name:pinyin_western": "Given Surname",
    "name:pinyin_upper": "SURNAME GIVEN",
    "name:pinyin_lower": "surname given, pinyin",
    "name:latin": "Latin letters",
}
# name:latin: letters of any Latin-script language, marks, apostrophes, hyphens,
# periods and spaces (polars / Rust regex).
_LATIN_NAME = r"^[\p{Latin}\p{M}'’\-. ]+$"
_DOTS = r"[·•・‧∙．.]"
_HANZI = r"^[\p{Han}·]+$"  # polars (Rust) regex


# --- pinyin inventory and segmentation ------------------------------------


@functools.cache
def syllables() -> frozenset[str]:
    """Every pinyin syllable in pypinyin's dictionary, NORMAL style (no tones,
    ü as v), including the vowelless interjections (m, n, ng, hm, hng)."""
    # ~55,000 characters share ~1,500 toned readings: convert each reading once.
    readings = {r for rs in pinyin_dict.pinyin_dict.values() for r in rs.split(",")}
    out: set[str] = set()
    for r in readings:
        s = convert(r, Style.NORMAL, strict=True)
        if s.isascii() and s.isalpha():
            out.add(s)
    return frozenset(out)


def _word_initial_only(syllable: str) -> bool:
    """Syllables written after an apostrophe inside a word: a/o/e-initial
    (GB/T 16159) and, to keep the split exact, the vowelless interjections."""
    return syllable[0] in "aoe" or not re.search("[aeiouv]", syllable)


@functools.lru_cache(maxsize=1 << 16)
def _segment(token: str) -> tuple[str, ...] | None:
    """Split a run of pinyin without separators into syllables: fewest
    syllables, a/o/e-initial (and vowelless) syllables only first (pinyin
    writes an apostrophe before them otherwise), ties broken by the longest
    first syllable."""
    syl = syllables()
    n = len(token)
    best: list[tuple[int, int] | None] = [None] * (n + 1)  # suffix i → (count, first length)
    best[n] = (0, 0)
    for i in range(n - 1, -1, -1):
        for length in range(min(6, n - i), 0, -1):
            piece = token[i : i + length]
            if piece not in syl or best[i + length] is None:
                continue
            if i > 0 and _word_initial_only(piece):
                continue
            count = best[i + length][0] + 1  # type: ignore[index]
            if best[i] is None or count < best[i][0]:  # type: ignore[index]
                best[i] = (count, length)
    if best[0] is None:
        return None
    out, i = [], 0
    while i < n:
        length = best[i][1]  # type: ignore[index]
        out.append(token[i : i + length])
        i += length
    return tuple(out)


_TONED = str.maketrans({c: "v" for c in "üǖǘǚǜÜǕǗǙǛ"})
_LATIN_OK = re.compile(r"^[a-z'’\-\s.·]*$")


@functools.lru_cache(maxsize=1 << 16)
def syllabify(text: str) -> str | None:
    """Normalise one latin name part to spaced lower-case syllables:
    ``OUYANG`` → ``ou yang``, ``Xi'an`` → ``xi an``, ``Zhāng``/``zhang1`` → ``zhang``.
    Tokens that are not pinyin (a foreign name) are kept whole, lower-cased.
    None if the text holds anything but Latin letters and separators."""
    t = text.translate(_TONED).replace("u:", "v").replace("U:", "v")
    t = "".join(c for c in unicodedata.normalize("NFD", t) if not unicodedata.combining(c))
    t = re.sub(r"(?<=[a-z])[1-5]", "", t.lower())  # tone numbers: zhang1 wei3
    if not _LATIN_OK.match(t):
        return None
    out: list[str] = []
    for tok in re.split(r"[\s'’\-.·]+", t):
        if tok:
            seg = _segment(tok)
            out.extend(seg if seg else (tok,))
    return " ".join(out) or None


@functools.cache
def _compound_latin() -> frozenset[str]:
    return frozenset(surname_latin(c) for c in COMPOUND_SURNAMES)


def split_latin(name: str) -> tuple[str | None, str | None]:
    """Split a spaced, surname-first latin name into (surname, given) using the
    compound surnames' readings (``ou yang na na`` → ``ou yang``, ``na na``)."""
    parts = name.split(" ")
    if len(parts) >= 3 and " ".join(parts[:2]) in _compound_latin():
        return " ".join(parts[:2]), " ".join(parts[2:])
    return parts[0], (" ".join(parts[1:]) or None)


# --- hanzi → latin ---------------------------------------------------------


def _join(tokens: list[str]) -> str | None:
    words = [w.lower() for w in tokens if w.isascii() and w.isalpha()]
    return " ".join(words) or None


@functools.lru_cache(maxsize=1 << 14)
def surname_latin(surname: str) -> str | None:
    """The pinyin of a Hanzi surname, with surname readings (曾 → ``zeng``)."""
    if surname in SURNAME_READINGS:
        return SURNAME_READINGS[surname]
    if len(surname) > 1 and surname not in COMPOUND_SURNAMES:  # not a surname alone
        first = SURNAME_READINGS.get(surname[0]) or lazy_pinyin(surname[0])[0]
        return _join([first, *lazy_pinyin(surname[1:])])
    return _join(lazy_pinyin(surname, style=Style.NORMAL))


@functools.lru_cache(maxsize=1 << 20)
def given_latin(given: str) -> str | None:
    """The pinyin of a Hanzi given name (or any Hanzi text), spaced syllables."""
    return _join(lazy_pinyin(given, style=Style.NORMAL))


def hanzi_latin(values: pl.Series, *, surname: bool = False) -> pl.Series:
    """Romanise a Series of Hanzi name parts once per distinct value
    (``surname=True`` uses surname readings). Used by the simulator to build
    ``surname_latin`` / ``given_latin`` truth columns."""
    fn = surname_latin if surname else given_latin
    frame = map_unique(pl.DataFrame({"v": values.cast(pl.String)}), "v",
                       lambda x: (fn(x),), {"out": pl.String})  # fmt: skip
    return frame.get_column("out").alias(values.name)


# --- parse -------------------------------------------------------------------


def _spaced(surname: str, given: str) -> pl.Expr:
    """``surname given`` (just the surname when there is no given name)."""
    s = pl.col(surname)
    return pl.when(s.is_not_null()).then(
        pl.concat_str([s, pl.col(given)], separator=" ", ignore_nulls=True)
    )


def _names(field: str) -> tuple[str, str, str]:
    if field == "name":
        return "name", "surname", "given"
    return field, f"{field}_surname", f"{field}_given"


def parse_name(rule: str, field: str, v: pl.Series) -> pl.DataFrame:
    if rule == "name:hanzi":
        return _parse_hanzi(field, v)
    if rule == "name:latin":
        return _parse_plain_latin(field, v)
    return _parse_latin(rule, field, v)


def _parse_plain_latin(field: str, v: pl.Series) -> pl.DataFrame:
    """``name:latin``: lower-case, NFC, trimmed, single spaces; no segmentation."""
    norm = V.str.normalize("NFC").str.to_lowercase().str.replace_all(r"\s+", " ")
    df = pl.DataFrame({"v": v}).with_columns(norm.alias("_n"))
    df = df.with_columns(
        error_when(
            ~pl.col("_n").str.contains(_LATIN_NAME),
            f"name '{{}}' is not name:latin ({_HINT['name:latin']})",
        )
    )
    value = pl.when(pl.col(ERROR).is_null()).then(pl.col("_n"))
    if field in ("surname", "given"):
        return df.select(value.alias(f"{field}_latin"), ERROR)
    full, sur, giv = _names(field)
    return df.select(
        value.alias(f"{full}_latin"),
        pl.lit(None, dtype=pl.String).alias(f"{sur}_latin"),
        pl.lit(None, dtype=pl.String).alias(f"{giv}_latin"),
        ERROR,
    )


def _parse_hanzi(field: str, v: pl.Series) -> pl.DataFrame:
    native = V.str.replace_all(r"\s", "").str.replace_all(_DOTS, "·")
    df = pl.DataFrame({"v": v}).with_columns(native.alias("_n"))
    n = pl.col("_n")
    df = df.with_columns(
        error_when(~n.str.contains(_HANZI), "name '{}' is not name:hanzi (Chinese characters)")
    )
    ok = pl.col(ERROR).is_null() & n.is_not_null()
    if field in ("surname", "given"):
        df = df.with_columns(pl.when(ok).then(n).alias("_part"))
        fn = surname_latin if field == "surname" else given_latin
        df = map_unique(df, "_part", lambda x: (fn(x),), {"_lat": pl.String})
        return df.select(
            pl.col("_part").alias(f"{field}_native"), pl.col("_lat").alias(f"{field}_latin"), ERROR
        )
    full, sur, giv = _names(field)
    dotted = n.str.contains("·")
    compound = n.str.slice(0, 2).is_in(list(COMPOUND_SURNAMES)) & (n.str.len_chars() >= 3)
    slen = pl.when(compound).then(2).otherwise(1)
    df = df.with_columns(
        pl.when(ok).then(n).alias("_full"),
        pl.when(ok & ~dotted).then(n.str.slice(0, slen)).alias("_s"),
        pl.when(ok & ~dotted).then(n.str.slice(slen)).alias("_g"),
    ).with_columns(pl.when(pl.col("_g") != "").then(pl.col("_g")).alias("_g"))
    df = map_unique(df, "_s", lambda x: (surname_latin(x),), {"_sl": pl.String})
    df = map_unique(df, "_g", lambda x: (given_latin(x),), {"_gl": pl.String})
    df = map_unique(
        df.with_columns(pl.when(dotted).then(pl.col("_full")).alias("_d")),
        "_d", lambda x: (given_latin(x),), {"_dl": pl.String},
    )  # fmt: skip
    return df.select(
        pl.col("_full").alias(f"{full}_native"),
        pl.col("_s").alias(f"{sur}_native"),
        pl.col("_g").alias(f"{giv}_native"),
        pl.coalesce(pl.col("_dl"), _spaced("_sl", "_gl")).alias(f"{full}_latin"),
        pl.col("_sl").alias(f"{sur}_latin"),
        pl.col("_gl").alias(f"{giv}_latin"),
        ERROR,
    )


def _parse_latin(rule: str, field: str, v: pl.Series) -> pl.DataFrame:
    df = pl.DataFrame({"v": v})
    template = f"name '{{}}' is not {rule} ({_HINT[rule]})"
    if field in ("surname", "given"):
        df = map_unique(df.with_columns(V.str.replace_all("/", " ").alias("_p")), "_p",
                        lambda x: (syllabify(x),), {"_l": pl.String})  # fmt: skip
        return df.select(
            pl.col("_l").alias(f"{field}_latin"), error_when(pl.col("_l").is_null(), template)
        )
    full, sur, giv = _names(field)
    if rule == "name:pinyin_lower":

        def whole(x: str) -> tuple[str | None, str | None, str | None]:
            norm = syllabify(x)
            return (norm, *split_latin(norm)) if norm else (None, None, None)

        df = map_unique(df, "v", whole, {"_nl": pl.String, "_sl": pl.String, "_gl": pl.String})
        bad = pl.col("_nl").is_null()
    else:
        if rule == "name:pinyin_ticket":
            parts = V.str.extract_groups(r"^\s*([^/]*?)\s*/\s*([^/]*?)\s*$")
            s_raw, g_raw = parts.struct.field("1"), parts.struct.field("2")
            shape_bad = s_raw.is_null() | (s_raw == "")
        elif rule == "name:pinyin_western":
            parts = V.str.extract_groups(r"^(?:(.*\S)\s+)?(\S+)$")
            g_raw, s_raw = parts.struct.field("1"), parts.struct.field("2")
            shape_bad = s_raw.is_null()
        else:  # name:pinyin_upper
            parts = V.str.extract_groups(r"^(\S+)(?:\s+(.*\S))?$")
            s_raw, g_raw = parts.struct.field("1"), parts.struct.field("2")
            shape_bad = s_raw.is_null()
        df = df.with_columns(
            s_raw.alias("_sr"),
            pl.when(g_raw != "").then(g_raw).alias("_gr"),
            shape_bad.alias("_bad"),
        )
        df = map_unique(df, "_sr", lambda x: (syllabify(x),), {"_sl": pl.String})
        df = map_unique(df, "_gr", lambda x: (syllabify(x),), {"_gl": pl.String})
        bad = (
            pl.col("_bad").fill_null(True)
            | pl.col("_sl").is_null()
            | (pl.col("_gr").is_not_null() & pl.col("_gl").is_null())
        )
        df = df.with_columns(_spaced("_sl", "_gl").alias("_nl"))
    df = df.with_columns(error_when(bad, template))
    ok = pl.col(ERROR).is_null()
    return df.select(
        pl.when(ok).then(pl.col("_nl")).alias(f"{full}_latin"),
        pl.when(ok).then(pl.col("_sl")).alias(f"{sur}_latin"),
        pl.when(ok).then(pl.col("_gl")).alias(f"{giv}_latin"),
        ERROR,
    )


# --- render ------------------------------------------------------------------


def _compact(x: pl.Expr) -> pl.Expr:
    """``xi an`` → ``xi'an``; ``na na`` → ``nana`` (pinyin word orthography;
    the vowelless interjections m/n/ng/hm/hng get an apostrophe too)."""
    return x.str.replace_all(r" ([aoe]|(?:hng|hm|ng|n|m)\b)", "'${1}").str.replace_all(" ", "")


def _capital(x: pl.Expr) -> pl.Expr:
    return pl.concat_str([x.str.slice(0, 1).str.to_uppercase(), x.str.slice(1)])


def render_name(rule: str, field: str) -> pl.Expr:
    """Render a name (or, for field surname/given, one part) in ``rule``'s style
    from ``surname_native``/``given_native``/``surname_latin``/``given_latin``."""
    if field in ("surname", "given"):
        if rule == "name:hanzi":
            return pl.col(f"{field}_native")
        lat = pl.col(f"{field}_latin")
        return {
            "name:latin": lat,
            "name:pinyin_ticket": _compact(lat).str.to_uppercase(),
            "name:pinyin_upper": _compact(lat).str.to_uppercase(),
            "name:pinyin_western": _capital(_compact(lat)),
            "name:pinyin_lower": lat,
        }[rule]
    sn, gn = pl.col("surname_native"), pl.col("given_native")
    sl, gl = pl.col("surname_latin"), pl.col("given_latin")
    if rule == "name:hanzi":
        return pl.when(sn.is_not_null()).then(pl.concat_str([sn, gn], ignore_nulls=True))
    has = sl.is_not_null()
    if rule == "name:pinyin_ticket":
        out = pl.concat_str(
            [_compact(sl), pl.lit("/"), _compact(gl).fill_null("")]
        ).str.to_uppercase()
    elif rule == "name:pinyin_upper":
        out = pl.concat_str(
            [_compact(sl), _compact(gl)], separator=" ", ignore_nulls=True
        ).str.to_uppercase()
    elif rule == "name:pinyin_western":
        out = pl.concat_str(
            [_capital(_compact(gl)), _capital(_compact(sl))], separator=" ", ignore_nulls=True
        )
    elif rule in ("name:pinyin_lower", "name:latin"):
        out = pl.concat_str([sl, gl], separator=" ", ignore_nulls=True)
    else:
        raise KeyError(rule)
    return pl.when(has).then(out)


__all__ = [
    "COMPOUND_SURNAMES",
    "LATIN_STYLES",
    "SURNAME_READINGS",
    "given_latin",
    "hanzi_latin",
    "parse_name",
    "render_name",
    "split_latin",
    "surname_latin",
    "syllabify",
    "syllables",
]
