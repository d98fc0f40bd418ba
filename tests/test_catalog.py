"""The source catalog: breadth of domains and formats, valid specs, profiles for each."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from connectors.catalog import builtin_specs
from connectors.spec import Column, FormatOptions, SourceSpec, SpecError
from tessera.cli import main


def test_sources_json_lists_the_catalog(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    assert main(["sources", "--json", "--home", str(tmp_path)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) >= 40
    per_domain = Counter(r["domain"] for r in rows)
    assert all(per_domain[d] >= 10 for d in ("municipal", "court", "commercial", "transport")), (
        per_domain
    )
    formats = {r["format"] for r in rows} - {"database"}
    assert len(formats) >= 6, formats
    assert {r["encoding"] for r in rows if r["format"] == "csv"} >= {"utf-8", "gb18030"}
    engines = Counter(r["engine"] for r in rows)
    assert engines["postgres"] >= 3 and engines["mysql"] >= 3
    assert all(r["errors"] is not None for r in rows), "every built-in source has an error profile"


def test_catalog_covers_the_styles_real_sources_differ_in() -> None:
    rules = {c.rule for s in builtin_specs() for c in s.columns}
    assert {"date:ymd", "date:iso", "date:dmy", "date:cn", "date:epoch"} <= rules
    assert {"sex:zh", "sex:mf", "sex:12"} <= rules
    assert {"name:hanzi", "name:pinyin_ticket", "name:pinyin_western"} <= rules
    assert {"id:full", "id:masked", "phone:plain", "phone:masked", "phone:e164_spaced"} <= rules
    assert any(
        any("\u4e00" <= ch <= "\u9fff" for ch in c.name) for s in builtin_specs() for c in s.columns
    )


def test_ids_are_unique() -> None:
    ids = [s.id for s in builtin_specs()]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"id": "Bad-Id"}, "source id"),
        ({"columns": (Column("姓名", "religion"),)}, "not a person field"),
        ({"columns": (Column("x; DROP TABLE y", "name"),)}, "plain identifier"),
        ({"format": FormatOptions(kind="fixed_width", widths=(3,))}, "one width per column"),
    ],
)
def test_invalid_specs_are_refused(bad: dict, match: str) -> None:
    base = dict(
        id="ok_source",
        title="t",
        domain="external",
        entity="person",
        format=FormatOptions(kind="csv"),
        cadence="delta",
        columns=(Column("k", "key"), Column("n", "name", "name:hanzi")),
    )
    with pytest.raises(SpecError, match=match):
        SourceSpec(**{**base, **bad})
