"""China's county-level administrative regions, from python-stdnum's own database.

python-stdnum ships the region codes it validates resident ID numbers against
(``stdnum/cn/loc.dat``, read here through :mod:`stdnum.numdb`). Each name may
carry validity markers: ``[1983-]`` (in use since 1983), ``[-2010]`` (retired
in 2010), ``[1983-1989]``; a code that was renamed lists its names separated by
commas. :func:`regions` keeps the current names of current county-level codes;
:func:`region_year_spans` keeps every span, so an ID's region can be checked
against its birth year exactly as ``stdnum.cn.ric`` does.

The table is shared by the simulator (addresses, birth places, ID region codes)
and the address parser.
"""

from __future__ import annotations

import functools
import re

import polars as pl

_MARK = re.compile(r"^\[(\d*)-(\d*)\](.*)$")
_CITY_IS_PROVINCE = ("市辖区", "县")  # aggregate rows of the four municipalities
_MUNICIPALITIES = ("11", "12", "31", "50")


def _spans(raw: str) -> list[tuple[int | None, int | None, str]]:
    """``'[-1991]东郊区,[1992-]东丽区'`` → ``[(None, 1991, '东郊区'), (1992, None, '东丽区')]``."""
    out: list[tuple[int | None, int | None, str]] = []
    for part in raw.split(","):
        m = _MARK.match(part)
        if m is None:
            out.append((None, None, part))
        else:
            start, end, name = m.groups()
            out.append((int(start) if start else None, int(end) if end else None, name))
    return out


def _current(raw: str) -> tuple[str, int | None] | None:
    """The current name (no end year) and the year it took effect, if any."""
    current = [(name, start) for start, end, name in _spans(raw) if end is None]
    return current[-1] if current else None


@functools.cache
def _codes() -> dict[str, str]:
    """Every 6-digit code in stdnum's ``cn/loc`` database → its raw county string."""
    from stdnum import numdb

    db = numdb.get("cn/loc")
    out: dict[str, str] = {}
    for plen, plow, phigh, _pprops, children in db.prefixes:
        for prov in _range(plow, phigh, plen):
            for clen, clow, chigh, cprops, _grand in children:
                if "county" not in cprops:
                    continue
                for rest in _range(clow, chigh, clen):
                    out[prov + rest] = cprops["county"]
    return out


@functools.cache
def _provinces() -> dict[str, str]:
    from stdnum import numdb

    out: dict[str, str] = {}
    for plen, plow, phigh, pprops, _children in numdb.get("cn/loc").prefixes:
        for prov in _range(plow, phigh, plen):
            if "province" in pprops:
                out[prov] = pprops["province"]
    return out


def _range(low: str, high: str, width: int) -> list[str]:
    return [str(i).zfill(width) for i in range(int(low), int(high) + 1)]


@functools.cache
def regions() -> pl.DataFrame:
    """Current county-level regions: ``code`` (6-digit str), ``province``,
    ``city``, ``district``, ``valid_from`` (Int32: the year the current name
    took effect, null if always; an ID whose birth year is earlier fails
    ``stdnum.cn.ric`` validation unless an older name of the code covers it).

    - Retired codes (every name has an end year) are left out; a ``[YYYY-]``
      start marker is stripped.
    - ``city`` is the prefecture-level name (code ``XXYY00``). For the four
      municipalities (their ``市辖区``/``县`` aggregate rows) it is the province
      name. For county-level cities directly under a province
      (``省直辖县级行政区划``, e.g. 仙桃市) and prefecture-level cities with no
      counties (东莞市, 中山市) ``city`` and ``district`` are both that name.
    - The ``XXYY00`` / ``XX0000`` aggregate rows and ``市辖区`` rows are not
      regions themselves (except the county-less prefectures above).
    """
    codes = _codes()
    provinces = _provinces()
    rows: list[tuple[str, str, str, str, int | None]] = []
    with_children: set[str] = set()
    for code, raw in codes.items():
        if code.endswith("00"):
            continue
        cur = _current(raw)
        if cur is None or cur[0] == "市辖区":
            continue
        district, start = cur
        pcode = code[:2]
        province = provinces.get(pcode)
        if province is None:
            continue
        pref = _current(codes.get(code[:4] + "00", ""))
        if pcode in _MUNICIPALITIES or (pref is not None and pref[0] in _CITY_IS_PROVINCE):
            city = province
        elif pref is None:
            continue  # a county under a retired prefecture code: not current
        elif "直辖" in pref[0]:
            city = district
        else:
            city = pref[0]
        with_children.add(code[:4])
        rows.append((code, province, city, district, start))
    for code, raw in codes.items():
        if not code.endswith("00") or code.endswith("0000") or code[:4] in with_children:
            continue
        cur = _current(raw)
        province = provinces.get(code[:2])
        if cur is None or province is None or cur[0] in _CITY_IS_PROVINCE or "直辖" in cur[0]:
            continue
        if code[:2] in _MUNICIPALITIES:
            continue
        rows.append((code, province, cur[0], cur[0], cur[1]))
    rows.sort()
    return pl.DataFrame(
        rows,
        schema={
            "code": pl.String,
            "province": pl.String,
            "city": pl.String,
            "district": pl.String,
            "valid_from": pl.Int32,
        },
        orient="row",
    )


@functools.cache
def region_year_spans() -> pl.DataFrame:
    """Every code in stdnum's database with the year spans its names were in
    use: ``code``, ``start``, ``end`` (Int32, null = open). A resident ID with
    region ``code`` and birth year ``y`` passes ``stdnum.cn.ric``'s place check
    iff some span has ``start <= y <= end``."""
    rows = [
        (code, start, end) for code, raw in _codes().items() for start, end, _name in _spans(raw)
    ]
    return pl.DataFrame(
        rows,
        schema={"code": pl.String, "start": pl.Int32, "end": pl.Int32},
        orient="row",
    )
