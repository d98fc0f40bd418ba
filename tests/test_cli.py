"""The console script end to end on a tiny world: ingest, link, eval, with --json."""

from __future__ import annotations

import json

import pytest

from tessera.cli import main
from tessera.config import Home


def test_ingest_link_eval_json(fresh_copy: Home, capsys: pytest.CaptureFixture[str]) -> None:
    home = str(fresh_copy.root)
    assert main(["ingest", "--home", home, "--json"]) == 0
    ingested = json.loads(capsys.readouterr().out)
    t = ingested["totals"]
    assert t["read"] == t["staged"] + t["quarantined"] > 0 and ingested["failures"] == {}

    assert main(["link", "--home", home, "--json"]) == 0
    linked = json.loads(capsys.readouterr().out)
    person = linked["link"]["person"]
    assert person["candidate_pairs"] > 0 and 0 < person["clusters"] < person["mentions"]
    assert (fresh_copy.lake / "linkage" / "person_clusters.parquet").exists()

    assert main(["eval", "--home", home, "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    model, naive = scores["person"]["model"]["pairwise"], scores["person"]["naive_rule"]["pairwise"]
    assert model["recall"] > naive["recall"]
    assert model["precision"] >= 0.99


def test_eval_before_link_says_what_to_do(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="tessera link"):
        main(["eval", "--home", str(tmp_path)])
