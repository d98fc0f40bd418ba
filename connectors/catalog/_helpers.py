"""Shorthand for writing specs compactly."""

from __future__ import annotations

from connectors.spec import Column, FormatOptions


def col(name: str, field: str, rule: str = "text", required: bool = True) -> Column:
    return Column(name=name, field=field, rule=rule, required=required)


def csv(encoding: str = "utf-8", delimiter: str = ",") -> FormatOptions:
    return FormatOptions(kind="csv", encoding=encoding, delimiter=delimiter)


def delimited(delimiter: str, encoding: str = "utf-8") -> FormatOptions:
    return FormatOptions(kind="delimited", encoding=encoding, delimiter=delimiter)


def jsonl() -> FormatOptions:
    return FormatOptions(kind="jsonl")


def json_doc(*path: str) -> FormatOptions:
    return FormatOptions(kind="json", record_path=tuple(path))


def parquet() -> FormatOptions:
    return FormatOptions(kind="parquet")


def sqlite(table: str) -> FormatOptions:
    return FormatOptions(kind="sqlite", table=table)


def xml(tag: str = "record") -> FormatOptions:
    return FormatOptions(kind="xml", record_tag=tag)


def fixed(widths: tuple[int, ...], encoding: str = "gb18030") -> FormatOptions:
    return FormatOptions(kind="fixed_width", widths=widths, encoding=encoding)
