"""Docs that describe the code are generated from it and kept in step."""

from __future__ import annotations

from pathlib import Path

from tessera.catalog_doc import render_markdown
from tessera.cli import catalog_rows
from tessera.config import Home

ROOT = Path(__file__).resolve().parents[1]


def test_sources_doc_matches_the_catalog(tmp_path) -> None:
    expected = render_markdown(catalog_rows(Home(tmp_path)))
    actual = (ROOT / "docs" / "sources.md").read_text(encoding="utf-8")
    assert actual == expected, "regenerate with: tessera sources --markdown > docs/sources.md"
