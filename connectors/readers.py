"""Delivery readers: one physical file in, string rows and a quarantine out.

:func:`read_delivery` reads a delivery file in the format a
:class:`~connectors.spec.FormatOptions` names and returns a :class:`Delivery`.
Every record ends up either in ``rows`` (all source columns as nullable
``pl.String`` plus ``_line``) or in ``quarantine`` (line, raw text, reason),
never both and never neither, so ``rows_read == rows.height + quarantine.height``.
Quarantine rows are sorted by line (file-level ones first), rows by ``_line``.

What counts as a record:

- Line-oriented text (csv, delimited, fixed_width, jsonl): each non-empty line
  after the header. Empty lines are not records; ``\r\n`` line ends and a
  leading BOM are accepted. ``_line`` is the 1-based line number in the file. A
  value cannot span lines (a quoted csv field with a line break is quarantined
  line by line). A csv/delimited file whose last line has no line end was cut
  mid-record (a cut inside the last field would look valid), so that line is
  quarantined; fixed_width and jsonl catch a cut line by its length or syntax.
- json / xml / parquet / sqlite: each record, ``_line`` its 1-based index. An
  XML parse error keeps the records completed before it and quarantines the
  rest of the file as one row (``line`` = the next record's index).
- A file that cannot be opened as its format at all (corrupt or truncated
  parquet/sqlite, an unparseable json document) is one quarantined record with
  ``line`` null.

Decoding is strict in the declared encoding, line by line: a line that does not
decode is quarantined ("line is not valid utf-8 (file may be in another
encoding)"), never read as mojibake. A file declared in a non-UTF-8 encoding
(gb18030) that is in fact valid UTF-8 with CJK text would mostly decode as
mojibake without an error, so it is caught as such: its ASCII lines are read,
its other lines quarantined ("line looks like utf-8, not gb18030 ..."). The
encoding must be ASCII-compatible (utf-8, gb18030, gbk, latin-1, ...). XML
files carry their own encoding declaration.

Values are returned as delivered: ``""`` stays ``""`` in text formats (csv nulls
therefore read as ``""``; fixed_width fields lose trailing spaces); JSON null, a
missing key or a missing XML element is null, an empty element ``""``. Nested
JSON objects and XML elements are flattened to dotted names (``person.name``);
XML attributes become ``<path>@<name>``; a repeated sibling tag or header name
gets ``#2``, ``#3``, an empty header name ``column_<i>``. JSON numbers and
booleans become ``str(value)``, lists their JSON text; typed parquet columns
polars' text cast. The frame holds the spec's columns that the file has, in
spec order, then the file's extra columns (never dropped), then ``_line``;
``Delivery.columns`` lists the file's columns in file order (for JSON, in the
order polars' inference or first sight gives). Drift detection is the caller's.

Performance: csv, delimited, fixed_width and parquet are read without Python
loops over well-formed rows (polars splits lines, checks field counts and
lengths with vectorised expressions, and parses); Python sees only lines that
fail a vectorised check. jsonl goes through polars' ndjson reader and falls
back to ``json.loads`` per line only when a line is broken; json documents,
xml and sqlite are read record by record.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import json
import re
import sqlite3
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from connectors.spec import FormatOptions

QUARANTINE_SCHEMA: dict[str, pl.DataType] = {
    "line": pl.Int64(),
    "raw": pl.String(),
    "reason": pl.String(),
}
RAW_LIMIT = 2000  # characters of raw text kept for a whole-file or rest-of-file quarantine
_BOMS = {"utf-8": b"\xef\xbb\xbf", "utf-8-sig": b"\xef\xbb\xbf", "gb18030": b"\x84\x31\x95\x33"}
_CJK = re.compile("[\u3400-\u9fff]")


@dataclass
class Delivery:
    """One delivery file as read: good rows, quarantined records and the accounting."""

    rows: pl.DataFrame
    quarantine: pl.DataFrame
    rows_read: int
    columns: list[str]


def read_delivery(fmt: FormatOptions, path: Path, columns: Sequence[str]) -> Delivery:
    """Read one delivery file; ``columns`` are the spec's column names in spec order.

    ``columns`` names the fields of header-less files (fixed_width, csv with
    ``header=False``) and orders the frame; otherwise the file's own header,
    keys or tags name the columns. Raises ``ValueError`` for a kind that is not
    a file format and ``OSError`` if the file cannot be opened; any content
    problem is reported in the quarantine instead.
    """
    path = Path(path)
    if fmt.kind == "sqlite":
        return _read_sqlite(fmt, path, list(columns))
    if fmt.kind not in _BYTE_READERS:
        raise ValueError(f"{fmt.kind!r} is not a file format")
    return _BYTE_READERS[fmt.kind](fmt, path.read_bytes(), list(columns))


# ------------------------------------------------------------------ assembly


def _quarantine(
    lines: Sequence[int | None], raws: Sequence[str], reasons: Sequence[str]
) -> pl.DataFrame:
    return pl.DataFrame({"line": lines, "raw": raws, "reason": reasons}, schema=QUARANTINE_SCHEMA)


class _Bad:
    """Quarantine rows gathered one at a time (only on slow paths)."""

    def __init__(self) -> None:
        self.lines: list[int | None] = []
        self.raws: list[str] = []
        self.reasons: list[str] = []

    def add(self, line: int | None, raw: str, reason: str) -> None:
        self.lines.append(line)
        self.raws.append(raw)
        self.reasons.append(reason)

    def frame(self) -> pl.DataFrame:
        return _quarantine(self.lines, self.raws, self.reasons)


def _file_quarantine(raw: str, reason: str, file_columns: Sequence[str] = ()) -> Delivery:
    rows = pl.DataFrame(schema={"_line": pl.Int64})
    return Delivery(rows, _quarantine([None], [raw[:RAW_LIMIT]], [reason]), 1, list(file_columns))


def _delivery(
    rows: pl.DataFrame,
    file_columns: list[str],
    spec_columns: Sequence[str],
    parts: list[pl.DataFrame],
) -> Delivery:
    """Order the frame (spec columns, extras, ``_line``) and merge the quarantine parts."""
    present = set(file_columns)
    spec_set = set(spec_columns)
    order = [c for c in spec_columns if c in present] + [
        c for c in file_columns if c not in spec_set
    ]
    rows = rows.select(
        *[
            pl.col(c).cast(pl.String) if c in rows.columns else pl.lit(None, pl.String).alias(c)
            for c in order
        ],
        pl.col("_line").cast(pl.Int64),
    ).sort("_line")
    quarantine = pl.concat([_quarantine([], [], []), *parts]).sort("line", nulls_last=False)
    return Delivery(rows, quarantine, rows.height + quarantine.height, file_columns)


def _unique_names(names: Sequence[str]) -> list[str]:
    """Column names as delivered, made unique (``x#2``) and non-empty (``column_3``)."""
    seen = {"_line"}
    out = []
    for i, name in enumerate(names, start=1):
        base = name or f"column_{i}"
        name, k = base, 2
        while name in seen:
            name, k = f"{base}#{k}", k + 1
        seen.add(name)
        out.append(name)
    return out


# ------------------------------------------------------------------ decoding


@dataclass
class _Lines:
    frame: pl.DataFrame  # _line: Int64, text: String (decoded, non-empty lines)
    bad: pl.DataFrame  # quarantine rows for lines that did not decode
    terminated: bool  # the file ends with a line end (or is empty)
    last_line: int  # number of the last non-empty line (0 if none)


def _codec(encoding: str) -> str:
    return codecs.lookup(encoding).name


def _split(utf8: bytes) -> pl.DataFrame | None:
    """Non-empty lines of UTF-8 bytes with their 1-based numbers; None if not UTF-8.

    polars' csv reader does the splitting (multi-threaded): no quoting and a
    separator byte the data does not contain make every line one field. A line
    count check guards that reading; ``str.split`` is the fallback.
    """
    schema = {"_line": pl.Int64, "text": pl.String}
    if not utf8:
        return pl.DataFrame(schema=schema)
    expected = utf8.count(b"\n") + (not utf8.endswith(b"\n"))
    sep = next((chr(b) for b in range(1, 32) if b not in (10, 13) and bytes([b]) not in utf8), None)
    lines = None
    if sep is not None:
        try:
            lines = pl.read_csv(
                utf8,
                has_header=False,
                separator=sep,
                quote_char=None,
                new_columns=["text"],
                infer_schema=False,
                empty_string_is_null=False,
            ).get_column("text")
        except pl.exceptions.PolarsError:
            lines = None
    if lines is None or lines.len() != expected:
        try:
            whole = pl.Series("text", [utf8], dtype=pl.Binary).cast(pl.String)
        except pl.exceptions.PolarsError:
            return None
        lines = whole.str.split("\n").explode().head(expected)
    frame = lines.to_frame("text").select(
        pl.int_range(1, expected + 1, dtype=pl.Int64).alias("_line"), "text"
    )
    if b"\r" in utf8:
        frame = frame.with_columns(pl.col("text").str.strip_suffix("\r"))
    return frame.filter(pl.col("text") != "")


def _decode_lines(data: bytes, encoding: str) -> _Lines:
    """Decode strictly, line by line only where the whole file does not decode."""
    enc = _codec(encoding)
    if "\n".encode(enc) != b"\n":
        raise ValueError(f"line-oriented files need an ASCII-compatible encoding, not {enc}")
    bom = _BOMS.get(enc)
    if bom and data.startswith(bom):
        data = data[len(bom) :]
    if enc == "utf-8-sig":
        enc = "utf-8"
    terminated = not data or data.endswith(b"\n")
    frame, bad = None, _quarantine([], [], [])
    if enc == "utf-8":
        frame = _split(data)
    elif not data.isascii() and (disguised := _utf8_in_disguise(data, enc)) is not None:
        frame, bad = disguised
    else:
        try:
            frame = _split(data.decode(enc).encode("utf-8"))
        except UnicodeDecodeError:
            pass
    if frame is None:
        frame, bad = _decode_per_line(data, enc)
    last = pl.concat([frame.get_column("_line"), bad.get_column("line")]).max()
    return _Lines(frame, bad, terminated, last if isinstance(last, int) else 0)


def _decode_per_line(data: bytes, enc: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Decode window by window (whole lines, about 64 KB); a window that fails is
    decoded up to its bad line, which becomes a quarantine row, and resumes after it.

    Windows keep each attempt cheap: decoders size their output for the whole input.
    """
    view = memoryview(data)
    numbers: list[int] = []
    texts: list[str] = []
    bad_lines: list[int] = []
    bad_raws: list[str] = []

    def keep(chunk: str, first: int) -> int:
        parts = (chunk[:-1] if chunk.endswith("\n") else chunk).split("\n")
        numbers.extend(range(first, first + len(parts)))
        texts.extend(parts)
        return first + len(parts)

    pos, line = 0, 1
    while pos < len(data):
        stop = data.find(b"\n", pos + 65536) + 1 or len(data)
        try:
            line = keep(str(view[pos:stop], enc), line)
            pos = stop
        except UnicodeDecodeError as exc:
            err = pos + exc.start
            start = data.rfind(b"\n", pos, err) + 1 or pos
            end = data.find(b"\n", err)
            end = len(data) if end < 0 else end
            if start > pos:
                line = keep(str(view[pos:start], enc), line)
            bad_lines.append(line)
            bad_raws.append(data[start:end].decode(enc, errors="replace").removesuffix("\r"))
            line += 1
            pos = end + 1
    frame = pl.DataFrame(
        {"_line": numbers, "text": texts}, schema={"_line": pl.Int64, "text": pl.String}
    )
    frame = frame.with_columns(pl.col("text").str.strip_suffix("\r")).filter(pl.col("text") != "")
    reason = f"line is not valid {enc} (file may be in another encoding)"
    return frame, _quarantine(bad_lines, bad_raws, [reason] * len(bad_lines))


def _utf8_in_disguise(data: bytes, enc: str) -> tuple[pl.DataFrame, pl.DataFrame] | None:
    """A file declared in a non-UTF-8 encoding (gb18030) that is valid UTF-8 with CJK
    text is UTF-8: decoding it as declared would give mojibake, mostly without an
    error. Its ASCII lines are kept, its other lines quarantined; None if it is not."""
    try:
        text = data.decode("utf-8")  # fails at the first CJK character of a real GB file
    except UnicodeDecodeError:
        return None
    utf8 = _split(data)
    if utf8 is None or not _CJK.search(text):
        return None
    foreign = pl.col("text").str.contains(r"[^\x00-\x7F]")
    bad = utf8.filter(foreign).select(
        pl.col("_line").alias("line"),
        pl.col("text").alias("raw"),
        pl.lit(f"line looks like utf-8, not {enc} (file may be in another encoding)").alias(
            "reason"
        ),
    )
    return utf8.filter(~foreign), bad


def _unterminated(lines: _Lines, frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split off a last line that lost its line end: the file was cut mid-record."""
    if lines.terminated or frame.is_empty():
        return frame, _quarantine([], [], [])
    cut = pl.col("_line") == lines.last_line
    bad = frame.filter(cut).select(
        pl.col("_line").alias("line"),
        pl.col("text").alias("raw"),
        pl.lit("last line has no line end (file truncated mid-record?)").alias("reason"),
    )
    return frame.filter(~cut), bad


# ------------------------------------------------------------------ csv / delimited


def _csv_line_regex(sep: str) -> str:
    s = f"\\x{{{ord(sep):X}}}"
    field = f'(?:[^"{s}\\n]*|"(?:[^"]|"")*")'
    return f"^{field}(?:{s}{field})*$"


def _read_csv(fmt: FormatOptions, data: bytes, columns: list[str]) -> Delivery:
    sep = fmt.delimiter
    if len(sep) != 1 or not sep.isascii() or sep in '"\r\n':
        raise ValueError(f"delimiter must be one ASCII character other than a quote: {sep!r}")
    lines = _decode_lines(data, fmt.encoding)
    frame, parts = lines.frame, [lines.bad]
    if fmt.header:
        if frame.is_empty():
            return _delivery(pl.DataFrame(schema={"_line": pl.Int64}), [], columns, parts)
        first = frame.row(0, named=True)
        if not lines.bad.is_empty() and lines.bad.get_column("line").min() < first["_line"]:
            parts.append(_reasoned(frame, "header line is not readable, so fields cannot be named"))
            return _delivery(pl.DataFrame(schema={"_line": pl.Int64}), [], columns, parts)
        try:
            header = next(csv.reader([first["text"]], delimiter=sep, strict=True))
        except csv.Error as exc:
            parts.append(_reasoned(frame, f"header line has malformed quoting ({exc})"))
            return _delivery(pl.DataFrame(schema={"_line": pl.Int64}), [], columns, parts)
        names = _unique_names(header)
        frame = frame.slice(1)
    else:
        names = list(columns)
    frame, cut = _unterminated(lines, frame)
    parts.append(cut)
    n = len(names)
    checked = frame.with_columns(
        pl.col("text").str.contains(_csv_line_regex(sep)).alias("_ok"),
        pl.col("text")
        .str.replace_all(r'"(?:[^"]|"")*"', "")
        .str.count_matches(sep, literal=True)
        .add(1)
        .alias("_n"),
    )
    good = checked.filter(pl.col("_ok") & (pl.col("_n") == n))
    wrong = checked.filter(pl.col("_ok") & (pl.col("_n") != n))
    parts.append(
        wrong.select(
            pl.col("_line").alias("line"),
            pl.col("text").alias("raw"),
            pl.concat_str(
                [
                    pl.lit("line has "),
                    pl.col("_n").cast(pl.String),
                    pl.lit(f" fields, expected {n}"),
                ]
            ).alias("reason"),
        )
    )
    parsed, unparsed = _parse_csv_lines(good, sep, names)
    rows = [parsed]
    parts.append(unparsed)
    # Sloppy quoting (a quote inside an unquoted field, text after a closing quote):
    # the stdlib reader is the authority for these few lines.
    sloppy = checked.filter(~pl.col("_ok"))
    if not sloppy.is_empty():
        fixed, bad = _parse_csv_slow(sloppy, sep, names)
        rows.append(fixed)
        parts.append(bad)
    return _delivery(pl.concat(rows), names, columns, parts)


def _reasoned(frame: pl.DataFrame, reason: str) -> pl.DataFrame:
    return frame.select(
        pl.col("_line").alias("line"), pl.col("text").alias("raw"), pl.lit(reason).alias("reason")
    )


def _empty_rows(names: Sequence[str]) -> pl.DataFrame:
    return pl.DataFrame(schema={**{c: pl.String for c in names}, "_line": pl.Int64})


def _parse_csv_lines(
    good: pl.DataFrame, sep: str, names: list[str]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Well-formed lines with the right field count, parsed by polars in one go."""
    if good.is_empty():
        return _empty_rows(names), _quarantine([], [], [])
    payload = good.select(pl.col("text").str.join("\n").cast(pl.Binary)).item()
    raw_names = [f"column_{i}" for i in range(1, len(names) + 1)]
    try:
        parsed = pl.read_csv(
            payload,
            has_header=False,
            separator=sep,
            quote_char='"',
            schema={c: pl.String for c in raw_names},
            empty_string_is_null=False,
            infer_schema=False,
        )
    except pl.exceptions.PolarsError:
        parsed = None
    if parsed is None or parsed.height != good.height:
        # Not expected for lines the regex accepted; should polars ever read them
        # differently, the stdlib decides line by line: slower, but no record lost.
        return _parse_csv_slow(good, sep, names)
    parsed.columns = names
    return parsed.with_columns(good.get_column("_line")), _quarantine([], [], [])


def _parse_csv_slow(
    frame: pl.DataFrame, sep: str, names: list[str]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Parse lines one by one with the stdlib csv module; wrong ones are quarantined."""
    n = len(names)
    values: list[list[str]] = []
    good_lines: list[int] = []
    bad = _Bad()
    for line, text in frame.select("_line", "text").iter_rows():
        try:
            fields = next(csv.reader([text], delimiter=sep, strict=True))
        except csv.Error as exc:
            bad.add(line, text, f"line has malformed quoting ({exc})")
            continue
        if len(fields) != n:
            bad.add(line, text, f"line has {len(fields)} fields, expected {n}")
            continue
        values.append(fields)
        good_lines.append(line)
    cols = list(zip(*values, strict=True)) if values else [()] * n
    rows = pl.DataFrame(
        {**{name: list(col) for name, col in zip(names, cols, strict=True)}, "_line": good_lines},
        schema={**{c: pl.String for c in names}, "_line": pl.Int64},
    )
    return rows, bad.frame()


# ------------------------------------------------------------------ fixed width


def _read_fixed_width(fmt: FormatOptions, data: bytes, columns: list[str]) -> Delivery:
    widths = fmt.widths
    if len(widths) != len(columns):
        raise ValueError(f"fixed_width: {len(widths)} widths for {len(columns)} columns")
    total = sum(widths)
    lines = _decode_lines(data, fmt.encoding)
    checked = lines.frame.with_columns(pl.col("text").str.len_chars().alias("_n"))
    wrong = checked.filter(pl.col("_n") != total).select(
        pl.col("_line").alias("line"),
        pl.col("text").alias("raw"),
        pl.concat_str(
            [
                pl.lit("fixed-width line is "),
                pl.col("_n").cast(pl.String),
                pl.lit(f" characters, expected {total}"),
            ]
        ).alias("reason"),
    )
    offsets = itertools.accumulate(widths, initial=0)
    rows = checked.filter(pl.col("_n") == total).select(
        *[
            pl.col("text").str.slice(start, width).str.strip_chars_end(" ").alias(name)
            for name, start, width in zip(columns, offsets, widths, strict=False)
        ],
        "_line",
    )
    return _delivery(rows, list(columns), columns, [lines.bad, wrong])


# ------------------------------------------------------------------ json


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _flatten(obj: dict[str, Any], prefix: str, out: dict[str, str | None]) -> None:
    for key, value in obj.items():
        name = prefix + key
        if isinstance(value, dict) and value:
            _flatten(value, name + ".", out)
        else:
            out[name] = None if isinstance(value, dict) else _text(value)


def _records_frame(
    records: list[dict[str, str | None]], numbers: list[int]
) -> tuple[pl.DataFrame, list[str]]:
    """Flat records (first-seen key order) as a frame; a key named ``_line`` is renamed."""
    keys = list(dict.fromkeys(itertools.chain.from_iterable(records)))
    names = _unique_names(keys)
    schema = {n: pl.String for n in names}
    if names == keys and records:
        frame = pl.from_dicts(records, schema=schema)
    else:
        columns = {n: [r.get(k) for r in records] for k, n in zip(keys, names, strict=True)}
        frame = pl.DataFrame(columns, schema=schema)
    return frame.with_columns(pl.Series("_line", numbers, dtype=pl.Int64)), names


def _json_reason(exc: json.JSONDecodeError) -> str:
    return f"invalid JSON: {exc.msg.removesuffix(' at')} at col {exc.colno}"


def _read_jsonl(fmt: FormatOptions, data: bytes, columns: list[str]) -> Delivery:
    lines = _decode_lines(data, fmt.encoding)
    fast = _jsonl_fast(lines.frame)
    if fast is not None:
        return _delivery(fast[0], fast[1], columns, [lines.bad])
    # Find the unreadable lines in Python, then give polars the rest once more.
    objects: list[dict[str, Any]] = []
    numbers: list[int] = []
    bad = _Bad()
    for line, text in lines.frame.iter_rows():
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            bad.add(line, text, _json_reason(exc))
            continue
        if not isinstance(obj, dict):
            bad.add(line, text, f"JSON line is a {type(obj).__name__}, not an object")
            continue
        objects.append(obj)
        numbers.append(line)
    parts = [lines.bad, bad.frame()]
    if bad.lines:
        fast = _jsonl_fast(lines.frame.filter(pl.col("_line").is_in(numbers)))
        if fast is not None:
            return _delivery(fast[0], fast[1], columns, parts)
    records = []
    for obj in objects:
        flat: dict[str, str | None] = {}
        _flatten(obj, "", flat)
        records.append(flat)
    rows, names = _records_frame(records, numbers)
    return _delivery(rows, names, columns, parts)


_PLAIN = (
    pl.String,
    pl.Null,
    pl.Int8,
    pl.Int16,
    pl.Int32,
    pl.Int64,
    pl.UInt8,
    pl.UInt16,
    pl.UInt32,
    pl.UInt64,
)


def _unnest(frame: pl.DataFrame) -> pl.DataFrame | None:
    """Structs to dotted columns; None for an empty struct."""
    while True:
        structs = [n for n, t in frame.schema.items() if isinstance(t, pl.Struct)]
        if not structs:
            break
        exprs = []
        for name, dtype in frame.schema.items():
            if not isinstance(dtype, pl.Struct):
                exprs.append(pl.col(name))
            elif not dtype.fields:
                return None
            else:
                exprs += [
                    pl.col(name).struct.field(f.name).alias(f"{name}.{f.name}")
                    for f in dtype.fields
                ]
        frame = frame.select(exprs)
    return frame


def _jsonl_fast(frame: pl.DataFrame) -> tuple[pl.DataFrame, list[str]] | None:
    """All lines through polars at once; None sends the file to the per-line path."""
    if frame.is_empty():
        return _empty_rows([]), []
    payload = frame.select(pl.col("text").str.join("\n").cast(pl.Binary)).item()
    try:
        parsed = pl.read_ndjson(io.BytesIO(payload), infer_schema_length=None)
    except pl.exceptions.PolarsError:
        return None
    if parsed.height != frame.height:
        return None
    flat = _unnest(parsed)
    # Floats and booleans need Python's str() to match the per-line path exactly.
    if flat is None or "_line" in flat.columns or any(t not in _PLAIN for t in flat.dtypes):
        return None
    flat = flat.with_columns(pl.all().cast(pl.String))
    return flat.with_columns(frame.get_column("_line")), flat.columns


def _read_json(fmt: FormatOptions, data: bytes, columns: list[str]) -> Delivery:
    enc = _codec(fmt.encoding)
    try:
        doc = json.loads(data.decode("utf-8-sig" if enc == "utf-8" else enc))
    except UnicodeDecodeError as exc:
        return _file_quarantine(
            data.decode(enc, errors="replace"), f"file is not valid {enc}: {exc.reason}"
        )
    except json.JSONDecodeError as exc:
        reason = f"invalid JSON document: {exc.msg} at line {exc.lineno} col {exc.colno}"
        return _file_quarantine(data.decode(enc, errors="replace"), reason)
    node = doc
    for key in fmt.record_path:
        node = node.get(key) if isinstance(node, dict) else None
    if not isinstance(node, list):
        where = ".".join(fmt.record_path) or "the top level"
        return _file_quarantine(
            data.decode(enc, errors="replace"), f"JSON document has no record list at {where}"
        )
    records: list[dict[str, str | None]] = []
    numbers: list[int] = []
    bad = _Bad()
    for i, obj in enumerate(node, start=1):
        if not isinstance(obj, dict):
            raw = json.dumps(obj, ensure_ascii=False)[:RAW_LIMIT]
            bad.add(i, raw, f"JSON record is a {type(obj).__name__}, not an object")
            continue
        flat: dict[str, str | None] = {}
        _flatten(obj, "", flat)
        records.append(flat)
        numbers.append(i)
    rows, names = _records_frame(records, numbers)
    return _delivery(rows, names, columns, [bad.frame()])


# ------------------------------------------------------------------ xml


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1] if "}" in tag else tag


def _flatten_xml(elem: ET.Element, prefix: str, out: dict[str, str | None]) -> None:
    """Leaf elements to ``out`` by dotted path; a repeated sibling tag gets ``#2``, ``#3``."""
    if elem.attrib:
        for key, value in elem.attrib.items():
            out[f"{prefix[:-1]}@{_local(key)}"] = value
    siblings: set[str] = set()
    for child in elem:
        name = prefix + _local(child.tag)
        if name in siblings:
            base, k = name, 2
            while name in siblings:
                name, k = f"{base}#{k}", k + 1
        siblings.add(name)
        if len(child):
            _flatten_xml(child, name + ".", out)
        else:
            out[name] = child.text or ""


def _read_xml(fmt: FormatOptions, data: bytes, columns: list[str]) -> Delivery:
    records: list[dict[str, str | None]] = []
    parts: list[pl.DataFrame] = []
    try:
        _xml_records_fast(data, fmt.record_tag, records)
    except ET.ParseError:
        # Only start+end events tell exactly which records completed before the error.
        records = []
        try:
            _xml_records_exact(data, fmt.record_tag, records)
        except ET.ParseError as exc:
            parts.append(_xml_rest(data, fmt.record_tag, len(records), exc))
    rows, names = _records_frame(records, list(range(1, len(records) + 1)))
    return _delivery(rows, names, columns, parts)


def _xml_record(elem: ET.Element, tag: str, records: list[dict[str, str | None]]) -> None:
    if _local(elem.tag) == tag:
        flat: dict[str, str | None] = {}
        _flatten_xml(elem, "", flat)
        records.append(flat)


def _xml_records_fast(data: bytes, tag: str, records: list[dict[str, str | None]]) -> None:
    """Start events only (half the events): a child of the root is complete once a
    later sibling has started, and all are complete at the end of the document."""
    root = None
    for _, elem in ET.iterparse(io.BytesIO(data), events=("start",)):
        if root is None:
            root = elem
        elif len(root) > 1:
            for child in root[:-1]:
                _xml_record(child, tag, records)
            del root[:-1]
    if root is not None:
        for child in root:
            _xml_record(child, tag, records)


def _xml_records_exact(data: bytes, tag: str, records: list[dict[str, str | None]]) -> None:
    depth, root = 0, None
    for event, elem in ET.iterparse(io.BytesIO(data), events=("start", "end")):
        if event == "start":
            depth += 1
            root = elem if root is None else root
            continue
        depth -= 1
        if depth == 1 and root is not None:
            _xml_record(elem, tag, records)
            root.clear()


def _xml_rest(data: bytes, tag: str, done: int, exc: ET.ParseError) -> pl.DataFrame:
    """The unparseable rest of an XML file as one quarantine row.

    It starts at the first record that did not complete (found by its start tag),
    or at the line of the error if no record start follows.
    """
    starts = re.compile(b"<" + re.escape(tag.encode()) + rb"[\s>/]").finditer(data)
    match = next(itertools.islice(starts, done, None), None)
    if match is not None:
        offset = match.start()
    else:
        line = exc.position[0]
        offset = 0
        for _ in range(line - 1):
            offset = data.find(b"\n", offset) + 1
    # expat: 3 no element found, 5 unclosed token, 6 partial character.
    kind = "truncated XML" if exc.code in (3, 5, 6) else "malformed XML"
    raw = data[offset : offset + 4 * RAW_LIMIT].decode("utf-8", errors="replace")[:RAW_LIMIT]
    return _quarantine([done + 1], [raw], [f"{kind}: unparseable from byte {offset} ({exc})"])


# ------------------------------------------------------------------ parquet / sqlite


def _read_parquet(fmt: FormatOptions, data: bytes, columns: list[str]) -> Delivery:
    try:
        table = pl.read_parquet(io.BytesIO(data))
    except Exception as exc:  # polars, arrow and OS errors alike mean "not parquet"
        return _file_quarantine(f"<{len(data)} bytes>", f"file unreadable as parquet: {exc}")
    flat = _unnest(table)
    if flat is None:
        flat = table
    flat = flat.select(_as_text(flat.get_column(n)) for n in flat.columns)
    names = _unique_names(flat.columns)
    flat.columns = names
    rows = flat.with_columns(pl.int_range(1, flat.height + 1, dtype=pl.Int64).alias("_line"))
    return _delivery(rows, names, columns, [])


def _as_text(s: pl.Series) -> pl.Series:
    """A typed parquet column as text: polars' own rendering where it has one."""
    if s.dtype == pl.String:
        return s
    try:
        return s.cast(pl.String)
    except pl.exceptions.PolarsError:

        def render(v: Any) -> str | None:
            if isinstance(v, bytes):
                return v.decode("utf-8", errors="replace")
            return _text(
                v if not isinstance(v, dict) else json.dumps(v, ensure_ascii=False, default=str)
            )

        return s.map_elements(render, return_dtype=pl.String, skip_nulls=True)


def _sqlite_truncated(path: Path, size: int) -> str | None:
    """SQLite zero-fills pages cut off a truncated file and reads them without an
    error, so compare the size with the page count in the header first."""
    with path.open("rb") as fh:
        head = fh.read(100)
    if len(head) < 100 or not head.startswith(b"SQLite format 3\x00"):
        return None  # sqlite itself reports what is wrong with it
    page_size = int.from_bytes(head[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(head[28:32], "big")
    header_current = head[92:96] == head[24:28]  # else the page count is stale
    if header_current and size < page_size * pages:
        return f"file unreadable as sqlite: truncated to {size} of {page_size * pages} bytes"
    return None


def _read_sqlite(fmt: FormatOptions, path: Path, columns: list[str]) -> Delivery:
    size = path.stat().st_size
    if (truncated := _sqlite_truncated(path, size)) is not None:
        return _file_quarantine(f"<{size} bytes>", truncated)
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        return _file_quarantine(f"<{size} bytes>", f"file unreadable as sqlite: {exc}")
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        table = fmt.table or (tables[0] if len(tables) == 1 else None)
        if table not in tables:
            return _file_quarantine(
                f"<{size} bytes>", f"sqlite file has no table {fmt.table!r}: {tables}"
            )
        ident = '"' + str(table).replace('"', '""') + '"'
        names = [r[1] for r in con.execute(f"PRAGMA table_info({ident})")]
        select = ", ".join('CAST("' + n.replace('"', '""') + '" AS TEXT)' for n in names)
        rows = con.execute(f"SELECT {select} FROM {ident} ORDER BY rowid").fetchall()
    except sqlite3.Error as exc:
        return _file_quarantine(f"<{size} bytes>", f"file unreadable as sqlite: {exc}")
    finally:
        con.close()
    unique = _unique_names(names)
    cols = list(zip(*rows, strict=True)) if rows else [()] * len(unique)
    frame = pl.DataFrame(
        {
            **{n: list(c) for n, c in zip(unique, cols, strict=True)},
            "_line": range(1, len(rows) + 1),
        },
        schema={**{n: pl.String for n in unique}, "_line": pl.Int64},
    )
    return _delivery(frame, unique, columns, [])


_BYTE_READERS: dict[str, Callable[[FormatOptions, bytes, list[str]], Delivery]] = {
    "csv": _read_csv,
    "delimited": _read_csv,
    "fixed_width": _read_fixed_width,
    "jsonl": _read_jsonl,
    "json": _read_json,
    "xml": _read_xml,
    "parquet": _read_parquet,
}
