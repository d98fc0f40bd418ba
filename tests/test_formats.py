"""Delivery formats both ways: writers, readers, quarantine accounting and file faults."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.readers import QUARANTINE_SCHEMA, Delivery, read_delivery
from connectors.spec import FormatKind, FormatOptions
from simulation.faults import inject_malformed_rows, reencode, truncate_file
from simulation.formats import write_delivery

ENCODING_REASON = "line is not valid utf-8 (file may be in another encoding)"

FRAME = pl.DataFrame(
    {
        "姓名": ["张三", "李四", None, 'O"Brien, Jr', "", "王 五"],
        "身份证号": ["110101199001011234", None, "a|b;c", "x\ty", " lead", "<&>"],
        "person.name": ["赵六", "Ann", "b", None, "q", "张"],
        "person.city": ["北京", None, None, None, "上海", "c,d"],
        "备注": ["一", "two", None, "", "x", "y"],
    },
    schema={c: pl.String for c in ["姓名", "身份证号", "person.name", "person.city", "备注"]},
)
COLUMNS = FRAME.columns
WIDTHS = (12, 18, 4, 4, 3)

FORMATS = {
    "csv": FormatOptions("csv"),
    "csv_gb18030": FormatOptions("csv", encoding="gb18030"),
    "pipe": FormatOptions("delimited", delimiter="|"),
    "tab_no_header": FormatOptions("delimited", delimiter="\t", header=False),
    "semicolon_gb18030": FormatOptions("delimited", delimiter=";", encoding="gb18030"),
    "jsonl": FormatOptions("jsonl"),
    "json": FormatOptions("json", record_path=("data", "records")),
    "json_bare": FormatOptions("json"),
    "parquet": FormatOptions("parquet"),
    "sqlite": FormatOptions("sqlite", table="people"),
    "xml": FormatOptions("xml", record_tag="row"),
    "fixed_width": FormatOptions("fixed_width", widths=WIDTHS),
    "fixed_width_gb18030": FormatOptions("fixed_width", widths=WIDTHS, encoding="gb18030"),
}
# Text formats without a null: null is written as an empty field and reads back "".
NULL_AS_EMPTY = {"csv", "delimited", "fixed_width"}


def accounted(d: Delivery) -> Delivery:
    """Every test goes through this: each record is in rows or quarantine, once."""
    assert d.rows_read == d.rows.height + d.quarantine.height
    assert dict(d.quarantine.schema) == QUARANTINE_SCHEMA
    assert d.rows.schema["_line"] == pl.Int64
    assert all(t == pl.String for c, t in d.rows.schema.items() if c != "_line")
    return d


def roundtrip(fmt: FormatOptions, frame: pl.DataFrame, path: Path, columns=None) -> Delivery:
    write_delivery(fmt, frame, path)
    return accounted(read_delivery(fmt, path, columns or frame.columns))


def first_line(fmt: FormatOptions) -> int:
    return 2 if fmt.kind in ("csv", "delimited") and fmt.header else 1


@pytest.mark.parametrize("name", FORMATS)
def test_roundtrip_every_format(name: str, tmp_path: Path) -> None:
    fmt = FORMATS[name]
    d = roundtrip(fmt, FRAME, tmp_path / "out" / f"delivery.{name}")
    expected = FRAME.fill_null("") if fmt.kind in NULL_AS_EMPTY else FRAME
    assert d.quarantine.is_empty()
    assert d.rows_read == FRAME.height
    assert d.columns == COLUMNS
    assert d.rows.columns == [*COLUMNS, "_line"]
    assert d.rows.drop("_line").to_dicts() == expected.to_dicts()
    start = first_line(fmt)
    assert d.rows["_line"].to_list() == list(range(start, start + FRAME.height))


@pytest.mark.parametrize("name", ["csv_gb18030", "semicolon_gb18030", "fixed_width_gb18030"])
def test_gb18030_files_are_gb18030_on_disk(name: str, tmp_path: Path) -> None:
    path = tmp_path / "f"
    write_delivery(FORMATS[name], FRAME, path)
    data = path.read_bytes()
    assert "张三".encode("gb18030") in data
    assert "张三".encode() not in data


def test_fixed_width_counts_characters_pads_and_truncates(tmp_path: Path) -> None:
    fmt = FormatOptions("fixed_width", widths=(2, 3), encoding="gb18030")
    frame = pl.DataFrame({"a": ["张三丰", None], "b": ["x", "abcdef"]})
    path = tmp_path / "f.dat"
    d = roundtrip(fmt, frame, path)
    assert path.read_bytes().decode("gb18030") == "张三x  \n  abc\n"
    assert d.rows.drop("_line").to_dicts() == [{"a": "张三", "b": "x"}, {"a": "", "b": "abc"}]


@pytest.mark.parametrize("name", FORMATS)
def test_writes_are_byte_for_byte_deterministic(name: str, tmp_path: Path) -> None:
    write_delivery(FORMATS[name], FRAME, tmp_path / "a")
    write_delivery(FORMATS[name], FRAME, tmp_path / "b")
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()


@pytest.mark.parametrize("name", ["csv", "pipe", "jsonl", "json", "parquet", "sqlite", "xml"])
def test_extra_columns_are_kept_and_missing_ones_not_invented(name: str, tmp_path: Path) -> None:
    spec_columns = ["身份证号", "姓名", "电话"]  # 电话 is not delivered; 备注 etc. are extras
    d = roundtrip(FORMATS[name], FRAME, tmp_path / "f", columns=spec_columns)
    assert d.rows.columns == ["身份证号", "姓名", "person.name", "person.city", "备注", "_line"]
    assert d.columns == COLUMNS
    assert d.rows["备注"].fill_null("").to_list() == FRAME["备注"].fill_null("").to_list()


def test_empty_frame_roundtrips(tmp_path: Path) -> None:
    empty = FRAME.head(0)
    for name, fmt in FORMATS.items():
        d = roundtrip(fmt, empty, tmp_path / name)
        assert d.rows.height == 0 and d.quarantine.height == 0 and d.rows_read == 0, name


# ------------------------------------------------------------------ encodings


MIXED = pl.DataFrame(
    {
        "id": ["1", "2", "3", "4"],
        "name": ["张三", "Li Si", "王五", "Zhao"],
        "city": ["北京", "NY", "x", "LA"],
    }
)


@pytest.mark.parametrize("kind", ["csv", "fixed_width", "jsonl"])
def test_utf8_declared_file_in_gb18030_quarantines_only_the_chinese_lines(
    kind: FormatKind, tmp_path: Path
) -> None:
    fmt = FormatOptions(kind, widths=(2, 6, 4) if kind == "fixed_width" else ())
    path = tmp_path / "f"
    write_delivery(fmt, MIXED, path)
    reencode(path, "utf-8", "gb18030")
    d = accounted(read_delivery(fmt, path, MIXED.columns))
    start = first_line(fmt)
    assert d.rows["id"].to_list() == ["2", "4"]
    assert d.rows["name"].to_list() == ["Li Si", "Zhao"]
    assert d.rows["_line"].to_list() == [start + 1, start + 3]
    assert d.quarantine["line"].to_list() == [start, start + 2]
    assert d.quarantine["reason"].to_list() == [ENCODING_REASON] * 2
    assert all("\ufffd" in raw for raw in d.quarantine["raw"])
    assert d.rows_read == 4


def test_csv_with_undecodable_header_quarantines_every_line(tmp_path: Path) -> None:
    frame = MIXED.rename({"name": "姓名"})
    path = tmp_path / "f.csv"
    write_delivery(FormatOptions("csv"), frame, path)
    reencode(path, "utf-8", "gb18030")
    d = accounted(read_delivery(FormatOptions("csv"), path, frame.columns))
    assert d.rows.height == 0
    assert d.quarantine["line"].to_list() == [1, 2, 3, 4, 5]
    reasons = d.quarantine["reason"].to_list()
    # Lines that do not decode keep their own reason; the others cannot be mapped to names.
    assert reasons[0] == reasons[1] == reasons[3] == ENCODING_REASON
    assert reasons[2] == reasons[4] == "header line is not readable, so fields cannot be named"


def test_gb18030_declared_file_in_utf8_is_caught(tmp_path: Path) -> None:
    fmt = FormatOptions("csv", encoding="gb18030")
    path = tmp_path / "f.csv"
    write_delivery(fmt, MIXED, path)
    reencode(path, "gb18030", "utf-8")
    d = accounted(read_delivery(fmt, path, MIXED.columns))
    assert d.rows["id"].to_list() == ["2", "4"]
    assert d.quarantine["raw"].to_list() == ["1,张三,北京", "3,王五,x"]
    assert set(d.quarantine["reason"]) == {
        "line looks like utf-8, not gb18030 (file may be in another encoding)"
    }


def test_one_bad_line_in_the_middle_keeps_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(b"a,b\n1,x\n2,\xff\xfe\n3,z\r\n\n4,\xe4\xb8\xad\n")
    d = accounted(read_delivery(FormatOptions("csv"), path, ["a", "b"]))
    assert d.rows.to_dicts() == [
        {"a": "1", "b": "x", "_line": 2},
        {"a": "3", "b": "z", "_line": 4},
        {"a": "4", "b": "中", "_line": 6},
    ]
    assert d.quarantine.to_dicts() == [
        {"line": 3, "raw": "2,\ufffd\ufffd", "reason": ENCODING_REASON}
    ]


# ------------------------------------------------------------------ csv details


def test_csv_field_counts_quoting_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text(
        "\ufeffa,b,c\n"
        '1,"x, y","say ""hi"""\n'  # well-formed quoting
        "2,only two\n"  # too few fields
        "3,a,b,c\n"  # too many
        '4,5" tall,ok\n'  # sloppy but readable quote: the stdlib csv module decides
        '5,"open,quote\n'  # unterminated quote must not swallow the next line
        "\n"
        "6,,\n",
        encoding="utf-8",
    )
    d = accounted(read_delivery(FormatOptions("csv"), path, ["a", "b", "c"]))
    assert d.rows.to_dicts() == [
        {"a": "1", "b": "x, y", "c": 'say "hi"', "_line": 2},
        {"a": "4", "b": '5" tall', "c": "ok", "_line": 5},
        {"a": "6", "b": "", "c": "", "_line": 8},
    ]
    assert d.quarantine.select("line", "reason").rows() == [
        (3, "line has 2 fields, expected 3"),
        (4, "line has 4 fields, expected 3"),
        (6, "line has malformed quoting (unexpected end of data)"),
    ]
    assert d.rows_read == 6  # the blank line is not a record


def test_csv_duplicate_and_empty_header_names_are_made_unique(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text("a,a,,_line\n1,2,3,4\n", encoding="utf-8")
    d = accounted(read_delivery(FormatOptions("csv"), path, ["a"]))
    assert d.columns == ["a", "a#2", "column_3", "_line#2"]
    assert d.rows.row(0) == ("1", "2", "3", "4", 2)


# ------------------------------------------------------------------ json / xml details


def test_jsonl_types_nesting_and_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    path.write_text(
        '{"id": 12, "p": {"name": "张三", "age": 3.5}, "ok": true}\n'
        '{"id": "13", "tags": ["a", 1], "p": null}\n'
        "[1, 2]\n"
        '{"id": 14,, }\n'
        '{"id": 15}\n',
        encoding="utf-8",
    )
    d = accounted(read_delivery(FormatOptions("jsonl"), path, ["id"]))
    assert d.rows.to_dicts() == [
        {
            "id": "12",
            "p.name": "张三",
            "p.age": "3.5",
            "ok": "True",
            "tags": None,
            "p": None,
            "_line": 1,
        },
        {
            "id": "13",
            "p.name": None,
            "p.age": None,
            "ok": None,
            "tags": '["a", 1]',
            "p": None,
            "_line": 2,
        },
        {
            "id": "15",
            "p.name": None,
            "p.age": None,
            "ok": None,
            "tags": None,
            "p": None,
            "_line": 5,
        },
    ]
    assert d.quarantine.select("line", "reason").rows() == [
        (3, "JSON line is a list, not an object"),
        (4, "invalid JSON: Expecting property name enclosed in double quotes at col 11"),
    ]


def test_jsonl_fast_path_renders_ints_like_the_slow_path(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    path.write_text('{"a": 1, "b": {"c": -20}}\n{"a": "x", "b": {"c": null}}\n', encoding="utf-8")
    d = accounted(read_delivery(FormatOptions("jsonl"), path, ["a"]))
    assert d.rows.drop("_line").rows() == [("1", "-20"), ("x", None)]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (
            b'{"data": {"records": [{"a": "1"}',
            "invalid JSON document: Expecting ',' delimiter at line 1 col 33",
        ),
        (b'{"data": {"rows": []}}', "JSON document has no record list at data.records"),
    ],
)
def test_json_document_that_cannot_be_read_is_one_quarantine_row(
    content: bytes, reason: str, tmp_path: Path
) -> None:
    path = tmp_path / "f.json"
    path.write_bytes(content)
    d = accounted(read_delivery(FORMATS["json"], path, ["a"]))
    assert d.rows.height == 0 and d.rows_read == 1
    assert d.quarantine.rows() == [(None, content.decode(), reason)]


def test_xml_attributes_repeats_and_midfile_error(tmp_path: Path) -> None:
    path = tmp_path / "f.xml"
    path.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n<records>\n<meta>ignored</meta>\n'
        '<record id="7"><a>1</a><phone>1</phone><phone>2</phone><b/></record>\n'
        "<record><a>2</a></record>\n"
        "<record><a>3</b></record>\n"
        "<record><a>4</a></record>\n</records>\n",
        encoding="utf-8",
    )
    d = accounted(read_delivery(FormatOptions("xml"), path, ["a"]))
    assert d.rows.to_dicts() == [
        {"a": "1", "@id": "7", "phone": "1", "phone#2": "2", "b": "", "_line": 1},
        {"a": "2", "@id": None, "phone": None, "phone#2": None, "b": None, "_line": 2},
    ]
    ((line, raw, reason),) = d.quarantine.rows()
    assert line == 3
    assert raw.startswith("<record><a>3</b></record>\n<record><a>4</a>")
    offset = path.read_bytes().index(b"<record><a>3")
    assert (
        reason
        == f"malformed XML: unparseable from byte {offset} (mismatched tag: line 6, column 14)"
    )


# ------------------------------------------------------------------ faults


@pytest.mark.parametrize(
    ("name", "reason_start"),
    [
        ("csv", "line has 2 fields, expected 5"),
        ("semicolon_gb18030", "line has 2 fields, expected 5"),
        ("tab_no_header", "line has 2 fields, expected 5"),
        ("jsonl", "invalid JSON: "),
        ("fixed_width", "fixed-width line is "),
    ],
)
def test_malformed_rows_are_quarantined_one_each(
    name: str, reason_start: str, tmp_path: Path
) -> None:
    fmt = FORMATS[name]
    path = tmp_path / "f"
    write_delivery(fmt, FRAME, path)
    lost = inject_malformed_rows(fmt, path, np.random.default_rng(3), 2)
    d = accounted(read_delivery(fmt, path, COLUMNS))
    assert lost == 2
    assert d.quarantine.height == 2 and d.rows.height == FRAME.height - 2
    assert d.rows_read == FRAME.height
    assert all(r.startswith(reason_start) for r in d.quarantine["reason"])
    if fmt.kind == "fixed_width":
        assert all(
            r.endswith(f"characters, expected {sum(WIDTHS)}") for r in d.quarantine["reason"]
        )
    assert sorted(d.rows["_line"].to_list() + d.quarantine["line"].to_list()) == list(
        range(first_line(fmt), first_line(fmt) + FRAME.height)
    )


def test_malformed_xml_record_loses_the_rest_of_the_file_as_one_row(tmp_path: Path) -> None:
    fmt = FORMATS["xml"]
    path = tmp_path / "f.xml"
    write_delivery(fmt, FRAME, path)
    lost = inject_malformed_rows(fmt, path, np.random.default_rng(0), 2)
    d = accounted(read_delivery(fmt, path, COLUMNS))
    assert lost == 2
    assert d.rows["_line"].to_list() == [1, 2, 3, 4]
    assert d.rows.drop("_line").to_dicts() == FRAME.head(4).to_dicts()
    ((line, raw, reason),) = d.quarantine.rows()
    assert line == 5
    assert raw.startswith("<row><corrupt>#CORRUPT#</corrupt\n<row>")
    assert reason.startswith("malformed XML: unparseable from byte ")
    assert "not well-formed (invalid token)" in reason


@pytest.mark.parametrize(
    ("name", "reason_start"),
    [
        ("csv", "last line has no line end (file truncated mid-record?)"),
        ("pipe", "last line has no line end (file truncated mid-record?)"),
        ("fixed_width_gb18030", "fixed-width line is "),
        ("jsonl", "invalid JSON: "),
        ("xml", "truncated XML: unparseable from byte "),
    ],
)
def test_truncated_text_file_quarantines_the_cut_record(
    name: str, reason_start: str, tmp_path: Path
) -> None:
    fmt = FORMATS[name]
    path = tmp_path / "f"
    big = pl.concat([FRAME] * 10)
    write_delivery(fmt, big, path)
    size = path.stat().st_size
    truncate_file(path, np.random.default_rng(5))
    cut = path.stat().st_size
    assert size * 3 // 4 - 30 <= cut < size and not path.read_bytes().endswith(b"\n")
    d = accounted(read_delivery(fmt, path, COLUMNS))
    assert d.quarantine.height == 1
    ((line, raw, reason),) = d.quarantine.rows()
    assert reason.startswith(reason_start)
    assert line == d.rows.height + first_line(fmt)
    assert d.rows.height < big.height
    expected = big.fill_null("") if fmt.kind in NULL_AS_EMPTY else big
    assert d.rows.drop("_line").to_dicts() == expected.head(d.rows.height).to_dicts()


@pytest.mark.parametrize(
    ("name", "reason_start"),
    [
        ("parquet", "file unreadable as parquet: "),
        ("sqlite", "file unreadable as sqlite: truncated to "),
        ("json", "invalid JSON document: "),
    ],
)
def test_truncated_binary_or_document_file_is_one_unreadable_record(
    name: str, reason_start: str, tmp_path: Path
) -> None:
    path = tmp_path / "f"
    write_delivery(FORMATS[name], FRAME, path)
    truncate_file(path, np.random.default_rng(1))
    d = accounted(read_delivery(FORMATS[name], path, COLUMNS))
    assert d.rows.height == 0 and d.rows_read == 1
    assert d.quarantine["line"].to_list() == [None]
    assert d.quarantine["reason"][0].startswith(reason_start)


@pytest.mark.parametrize("name", ["parquet", "sqlite"])
def test_corrupt_binary_file_is_one_unreadable_record(name: str, tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"this is not a database, nor parquet " * 40)
    d = accounted(read_delivery(FORMATS[name], path, COLUMNS))
    assert d.rows.height == 0 and d.rows_read == 1
    assert d.quarantine["line"].to_list() == [None]
    assert d.quarantine["reason"][0].startswith(f"file unreadable as {name}: ")


def test_sqlite_reads_non_text_values_as_text_in_rowid_order(tmp_path: Path) -> None:
    path = tmp_path / "f.sqlite"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE t (a INTEGER, b REAL, c TEXT)")
    con.executemany("INSERT INTO t VALUES (?, ?, ?)", [(2, 1.5, "x"), (1, None, "张")])
    con.commit()
    con.close()
    d = accounted(read_delivery(FormatOptions("sqlite", table="t"), path, ["a", "b", "c"]))
    assert d.rows.rows() == [("2", "1.5", "x", 1), ("1", None, "张", 2)]


# ------------------------------------------------------------------ properties

TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\r\n"), max_size=12)
ANY_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)


def frames(values: st.SearchStrategy[str]) -> st.SearchStrategy[pl.DataFrame]:
    row = st.tuples(st.none() | values, st.none() | values, st.none() | values)
    return st.lists(row, min_size=1, max_size=8).map(
        lambda rows: pl.DataFrame(
            rows, schema={"a": pl.String, "p.b": pl.String, "c": pl.String}, orient="row"
        )
    )


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(frame=frames(TEXT), delimiter=st.sampled_from([",", "|", "\t"]))
def test_csv_roundtrips_any_text_without_line_breaks(
    frame: pl.DataFrame, delimiter: str, tmp_path: Path
) -> None:
    fmt = FormatOptions("csv", delimiter=delimiter, encoding="gb18030")
    d = roundtrip(fmt, frame, tmp_path / "p.csv")
    assert d.quarantine.is_empty()
    assert d.rows.drop("_line").rows() == frame.fill_null("").rows()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(frame=frames(ANY_TEXT))
def test_jsonl_roundtrips_any_text(frame: pl.DataFrame, tmp_path: Path) -> None:
    d = roundtrip(FormatOptions("jsonl"), frame, tmp_path / "p.jsonl")
    assert d.quarantine.is_empty()
    assert d.rows.drop("_line").rows() == frame.rows()


def test_line_breaks_are_refused_where_lines_are_records(tmp_path: Path) -> None:
    frame = pl.DataFrame({"a": ["x\ny"]})
    for fmt in (FORMATS["csv"], FormatOptions("fixed_width", widths=(5,))):
        with pytest.raises(ValueError, match="line break"):
            write_delivery(fmt, frame, tmp_path / "f")
    d = roundtrip(FORMATS["xml"], pl.DataFrame({"a": ["x\r\ny\n"]}), tmp_path / "f.xml")
    assert d.rows["a"].to_list() == ["x\r\ny\n"]


def test_large_file_with_scattered_faults_keeps_exact_line_numbers(tmp_path: Path) -> None:
    """Bad lines in many decode windows and many wrong field counts, on a file big
    enough (> 64 KB windows, 20k lines) to exercise the vectorised paths."""
    n = 20_000
    lines = [b"id,name,city"]
    expected_bad = {}
    for i in range(1, n + 1):
        if i % 997 == 0:
            lines.append(f"{i},\u5f20\u4e09,\u5317\u4eac".encode("gb18030"))  # wrong encoding
            expected_bad[i + 1] = ENCODING_REASON
        elif i % 41 == 0:
            lines.append(f"{i},only".encode())
            expected_bad[i + 1] = "line has 2 fields, expected 3"
        else:
            lines.append(f'{i},"n, {i}",城市{i}'.encode())
    path = tmp_path / "big.csv"
    path.write_bytes(b"\n".join(lines) + b"\n")
    d = accounted(read_delivery(FormatOptions("csv"), path, ["id", "name", "city"]))
    assert d.rows_read == n
    assert dict(zip(d.quarantine["line"], d.quarantine["reason"], strict=True)) == expected_bad
    assert (d.rows["_line"] == d.rows["id"].cast(pl.Int64) + 1).all()
    assert (d.rows["name"] == "n, " + d.rows["id"]).all()


def test_jsonl_with_a_bad_line_still_reads_the_rest_in_bulk(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    path.write_text(
        '{"a": 1, "p": {"b": "张"}}\n{"a": \n{"a": 2, "p": {"b": null}}\n', encoding="utf-8"
    )
    d = accounted(read_delivery(FormatOptions("jsonl"), path, ["a"]))
    assert d.rows.rows() == [("1", "张", 1), ("2", None, 3)]
    assert d.quarantine.rows() == [(2, '{"a": ', "invalid JSON: Expecting value at col 7")]
