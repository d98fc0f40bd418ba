"""Delivery writers: how the simulated agencies put a frame on disk.

:func:`write_delivery` writes one frame of nullable ``pl.String`` columns as one
file in the physical format a :class:`~connectors.spec.FormatOptions` names.
Column order is write order. Output is byte-for-byte deterministic: the same
frame and options always give the same bytes (no timestamps, no unordered
iteration). ``connectors.readers.read_delivery`` is the inverse.

The contract shared with the readers:

- Text formats are line-oriented: ``\\n`` line ends, one record per line, the
  file ends with ``\\n``. A value with a line break cannot be written as csv,
  delimited or fixed_width (``ValueError``, never a silently split record);
  jsonl and xml escape line breaks, so their records stay on one line.
- csv / delimited: a header line (unless ``header=False``), values quoted
  csv-style only when they hold the separator or a quote; null is written as an
  empty field and reads back as ``""``.
- jsonl / json: dotted column names become nested objects (``person.name`` ->
  ``{"person": {"name": ...}}``); null is written as JSON ``null``.
- xml: ``<records>`` root, one ``<{record_tag}>`` element per line, one child
  element per non-null value (dotted names nest); a null value has no element,
  ``""`` has an empty one. Column names must be valid XML names.
- fixed_width: ``widths`` in characters; values are cut to their width and
  padded with spaces on the right (trailing spaces do not survive the round
  trip); null is written as spaces and reads back as ``""``; no header.
- parquet: all-string columns (zstd, statistics on). sqlite: one table of TEXT
  columns, rows inserted in frame order.
"""

from __future__ import annotations

import codecs
import json
import sqlite3
import xml.etree.ElementTree as ET
from pathlib import Path

import polars as pl

from connectors.spec import FormatOptions

# XML 1.0 cannot carry these characters at all, not even as character references.
_XML_ILLEGAL = r"[\x00-\x08\x0B\x0C\x0E-\x1F\x{FFFE}\x{FFFF}]"
_XML_ESCAPES = (["&", "<", ">", "\r", "\n"], ["&amp;", "&lt;", "&gt;", "&#13;", "&#10;"])


def write_delivery(fmt: FormatOptions, frame: pl.DataFrame, path: Path) -> None:
    """Write ``frame`` to ``path`` in the format ``fmt`` describes.

    ``frame`` holds nullable string columns in write order; parent directories
    are created. Raises ``ValueError`` for what the format cannot represent (a
    line break in a line-oriented text format, an invalid XML name, a missing or
    wrong ``widths``) and ``TypeError`` for non-string columns.
    """
    frame = _as_strings(frame)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writers = {
        "csv": _write_csv,
        "delimited": _write_csv,
        "jsonl": _write_jsonl,
        "json": _write_json,
        "parquet": _write_parquet,
        "sqlite": _write_sqlite,
        "xml": _write_xml,
        "fixed_width": _write_fixed_width,
    }
    if fmt.kind not in writers:
        raise ValueError(f"cannot write a delivery file of kind {fmt.kind!r}")
    writers[fmt.kind](fmt, frame, path)


def _as_strings(frame: pl.DataFrame) -> pl.DataFrame:
    bad = [n for n, t in frame.schema.items() if t not in (pl.String, pl.Null)]
    if bad:
        raise TypeError(f"delivery frames hold string columns only; not strings: {bad}")
    return frame.with_columns(pl.all().cast(pl.String))


def _encode(text: str, encoding: str) -> bytes:
    return text.encode(codecs.lookup(encoding).name)


def _reject_line_breaks(frame: pl.DataFrame, kind: str) -> None:
    for name in frame.columns:
        if frame.get_column(name).str.contains("[\r\n]").any():
            raise ValueError(
                f"{kind}: column {name!r} holds a line break; records are lines in this format"
            )


def _write_csv(fmt: FormatOptions, frame: pl.DataFrame, path: Path) -> None:
    sep = fmt.delimiter
    if len(sep) != 1 or not sep.isascii() or sep in '"\r\n':
        raise ValueError(f"delimiter must be one ASCII character other than a quote: {sep!r}")
    _reject_line_breaks(frame, fmt.kind)
    if frame.width == 1:
        # A lone null would be an empty line, which readers skip as blank.
        frame = frame.fill_null("")
    text = frame.write_csv(
        separator=sep,
        quote_char='"',
        quote_style="necessary",
        null_value="",
        line_terminator="\n",
        include_header=fmt.header,
    )
    path.write_bytes(_encode(text, fmt.encoding))


def _nest(names: list[str]) -> dict[str, object]:
    """Dotted column names as an ordered tree: leaves map to the column name."""
    tree: dict[str, object] = {}
    for name in names:
        node = tree
        parts = name.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ValueError(f"column {name!r} nests under column {part!r}, which is a value")
            node = child
        if parts[-1] in node:
            raise ValueError(f"column {name!r} clashes with a nested group of the same name")
        node[parts[-1]] = name
    return tree


def _struct_exprs(tree: dict[str, object]) -> list[pl.Expr]:
    out = []
    for key, node in tree.items():
        if isinstance(node, dict):
            out.append(pl.struct(_struct_exprs(node)).alias(key))
        else:
            out.append(pl.col(str(node)).alias(key))
    return out


def _nested(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.select(_struct_exprs(_nest(frame.columns)))


def _write_jsonl(fmt: FormatOptions, frame: pl.DataFrame, path: Path) -> None:
    path.write_bytes(_encode(_nested(frame).write_ndjson(), fmt.encoding))


def _write_json(fmt: FormatOptions, frame: pl.DataFrame, path: Path) -> None:
    doc = _nested(frame).write_json()
    if fmt.record_path:
        for key in reversed(fmt.record_path[1:]):
            doc = "{" + json.dumps(key, ensure_ascii=False) + ":" + doc + "}"
        head = json.dumps(fmt.record_path[0], ensure_ascii=False)
        meta = "" if fmt.record_path[0] == "meta" else f',"meta":{{"count":{frame.height}}}'
        doc = "{" + head + ":" + doc + meta + "}"
    path.write_bytes(_encode(doc + "\n", fmt.encoding))


def _write_parquet(fmt: FormatOptions, frame: pl.DataFrame, path: Path) -> None:
    frame.write_parquet(path, compression="zstd", statistics=True)


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _write_sqlite(fmt: FormatOptions, frame: pl.DataFrame, path: Path) -> None:
    table = _quote_ident(fmt.table or "records")
    path.unlink(missing_ok=True)
    con = sqlite3.connect(path)
    try:
        cols = ", ".join(f"{_quote_ident(c)} TEXT" for c in frame.columns)
        con.execute(f"CREATE TABLE {table} ({cols})")
        marks = ", ".join("?" for _ in frame.columns)
        con.executemany(f"INSERT INTO {table} VALUES ({marks})", frame.iter_rows())
        con.commit()
    finally:
        con.close()


def _check_xml_name(name: str) -> None:
    try:
        ET.fromstring(f"<{name}/>")
    except ET.ParseError:
        raise ValueError(f"{name!r} is not a valid XML element name") from None


def _xml_exprs(tree: dict[str, object]) -> tuple[list[pl.Expr], list[pl.Expr]]:
    """Element expressions for a (sub)tree, and the columns it holds."""
    parts: list[pl.Expr] = []
    leaves: list[pl.Expr] = []
    for tag, node in tree.items():
        _check_xml_name(tag)
        if isinstance(node, dict):
            inner, inner_leaves = _xml_exprs(node)
            present = pl.any_horizontal([c.is_not_null() for c in inner_leaves])
            body = pl.concat_str([pl.lit(f"<{tag}>"), *inner, pl.lit(f"</{tag}>")])
            parts.append(pl.when(present).then(body).otherwise(pl.lit("")))
            leaves.extend(inner_leaves)
        else:
            col = pl.col(str(node))
            text = col.str.replace_many(*_XML_ESCAPES)
            body = pl.concat_str([pl.lit(f"<{tag}>"), text, pl.lit(f"</{tag}>")])
            parts.append(pl.when(col.is_null()).then(pl.lit("")).otherwise(body))
            leaves.append(col)
    return parts, leaves


def _write_xml(fmt: FormatOptions, frame: pl.DataFrame, path: Path) -> None:
    _check_xml_name(fmt.record_tag)
    for name in frame.columns:
        if frame.get_column(name).str.contains(_XML_ILLEGAL).any():
            raise ValueError(f"xml: column {name!r} holds characters XML 1.0 cannot carry")
    tag = fmt.record_tag
    body = ""
    if frame.width and frame.height:
        parts, _ = _xml_exprs(_nest(frame.columns))
        record = pl.concat_str([pl.lit(f"<{tag}>"), *parts, pl.lit(f"</{tag}>")])
        body = frame.select(record.str.join("\n")).item() + "\n"
    elif frame.height:
        body = f"<{tag}></{tag}>\n" * frame.height
    doc = f'<?xml version="1.0" encoding="UTF-8"?>\n<records>\n{body}</records>\n'
    path.write_bytes(doc.encode("utf-8"))


def _write_fixed_width(fmt: FormatOptions, frame: pl.DataFrame, path: Path) -> None:
    if len(fmt.widths) != frame.width:
        raise ValueError(f"fixed_width: {len(fmt.widths)} widths for {frame.width} columns")
    if any(w < 1 for w in fmt.widths):
        raise ValueError(f"fixed_width: widths must be positive: {fmt.widths}")
    _reject_line_breaks(frame, fmt.kind)
    cells = [
        pl.col(name).fill_null("").str.slice(0, width).str.pad_end(width)
        for name, width in zip(frame.columns, fmt.widths, strict=True)
    ]
    text = ""
    if frame.height:
        text = frame.select(pl.concat_str(cells).str.join("\n")).item() + "\n"
    path.write_bytes(_encode(text, fmt.encoding))
