"""Evaluation by DuckDB over Parquet: the same figures as the polars scoring (on the
shared linked world and on a hand-made home with known answers), the truth mapping
against a polars reference, and the naive rule's stored scores."""

from __future__ import annotations

import datetime as dt
import math
import os
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from linked_world import copy_of_linked_world, linked_world

from tessera.config import Home

TYPES = ("person", "business")


def assert_same_scores(got: Any, want: Any, path: str = "") -> None:
    """Same keys in the same order, same integers, floats equal to 1e-12."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and list(got) == list(want), path
        for k in want:
            assert_same_scores(got[k], want[k], f"{path}.{k}")
    elif isinstance(want, float) or isinstance(got, float):
        assert math.isclose(got, want, rel_tol=0, abs_tol=1e-12), (path, got, want)
    else:
        assert got == want, (path, got, want)


def reference_mention_truth(home: Home) -> pl.DataFrame:
    """The polars truth mapping evaluation used before DuckDB did it: first truth row
    per (source, record), votes per (mention, entity), majority with ties to the
    smallest entity ID."""
    from connectors import lake
    from linkage.truth import ROLES

    files = sorted(home.truth.glob("*/*.parquet"))
    t = pl.concat([pl.scan_parquet(f) for f in files], how="diagonal_relaxed")
    cols = t.collect_schema().names()
    t = t.select(
        "source_id",
        "record_key",
        "entity_id",
        *[
            (pl.col(f"{r}_id") if f"{r}_id" in cols else pl.lit(None, pl.String)).alias(f"{r}_id")
            for r in ROLES
        ],
    ).unique(subset=["source_id", "record_key"], keep="first")
    subj = (
        lake.records(home)
        .select("source_id", "record_key", "mention_id")
        .unique()
        .join(t.select("source_id", "record_key", "entity_id"), on=["source_id", "record_key"])
    )
    rel = (
        lake.relationships(home)
        .select("source_id", "record_key", "role", pl.col("related_mention_id").alias("mention_id"))
        .unique()
        .join(t, on=["source_id", "record_key"])
        .with_columns(
            pl.coalesce(pl.when(pl.col("role") == r).then(pl.col(f"{r}_id")) for r in ROLES).alias(
                "entity_id"
            )
        )
        .filter(pl.col("entity_id").is_not_null())
    )
    votes = (
        pl.concat([subj.select("mention_id", "entity_id"), rel.select("mention_id", "entity_id")])
        .group_by("mention_id", "entity_id")
        .agg(pl.len().alias("n"))
        .collect()
    )
    return (
        votes.sort(["mention_id", "n", "entity_id"], descending=[False, True, False])
        .group_by("mention_id", maintain_order=True)
        .agg(pl.col("entity_id").first(), pl.len().alias("n_entities"))
    )


def polars_scores(home: Home, clusters: pl.DataFrame, etype: str, truth: pl.DataFrame) -> dict:
    """The polars scoring (``label`` + ``evaluate_labelled``, no detail)."""
    from linkage.evaluate import evaluate_labelled, label

    return evaluate_labelled(label(home, clusters, etype, truth=truth, detail=False), detail=False)


# -- the shared linked world ---------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Home:
    return linked_world(tmp_path_factory)


@pytest.fixture(scope="module")
def reference_truth(world: Home) -> pl.DataFrame:
    return reference_mention_truth(world)


def test_duckdb_truth_equals_the_polars_reference(world: Home, reference_truth) -> None:
    from linkage.truth import mention_truth

    got = mention_truth(world)
    assert got.height > 0 and got.schema == reference_truth.schema
    assert got.equals(reference_truth.sort("mention_id"))


@pytest.mark.parametrize("etype", TYPES)
def test_duckdb_scores_equal_the_polars_scores(world: Home, reference_truth, etype) -> None:
    """Model clusters, the naive rule, and the model with a tenth of its mentions
    unlisted (singletons): every figure as the polars scoring gives it."""
    from linkage.baseline import baseline_clusters
    from linkage.evaluate import evaluate, score_clusters, scoring_duckdb

    path = world.lake / "linkage" / f"{etype}_clusters.parquet"
    model = pl.read_parquet(path)
    cases = {
        "model": model,
        "naive": baseline_clusters(world, etype),
        "unlisted": model.filter(pl.col("mention_id").hash(7) % 10 != 0),
    }
    with scoring_duckdb(world) as con:
        from_file = score_clusters(con, world, path, etype)
        got = {name: score_clusters(con, world, c, etype) for name, c in cases.items()}
    for name, c in cases.items():
        assert_same_scores(got[name], polars_scores(world, c, etype, reference_truth), name)
    assert_same_scores(from_file, got["model"])
    assert got["model"]["pairwise"]["true_pairs"] > 0
    # evaluate() without the detail goes through DuckDB; with it, through polars.
    assert_same_scores(evaluate(world, model, detail=False)[etype], got["model"])
    detailed = evaluate(world, model, detail=True)[etype]
    assert_same_scores({k: detailed[k] for k in got["model"]}, got["model"])


# -- a hand-made home with known answers ---------------------------------------------


def _write_home(root: Path) -> Home:
    """Nine person mentions from one source; truth X = {m1, m2, m3}, Y = {m4, m5, m6},
    Z = {m7, m8}; m6 stands for records of X once and Y twice (ambiguous, majority Y);
    m9 has no truth (its own entity). m7 carries only a name that m8 (Z) and m5 (Y)
    carry too: an ambiguous name-only mention."""
    from connectors.canonical import MENTION_SCHEMA, RECORD_SCHEMA, conform

    home = Home(root)
    day = root / "lake" / "staged" / "s" / "2026-01-01"
    day.mkdir(parents=True)
    names = ["Wang Fang"] * 3 + ["Zhao Lei", "LI\u3000NA", "Zhao Lei", "li-na", "Li Na", "Xu Jing"]
    ids = [f"m{i}" for i in range(1, 10)]
    mentions = pl.DataFrame(
        {
            "mention_id": ids,
            "source_id": ["s"] * 9,
            "entity_type": ["person"] * 9,
            "name_latin": names,
            "dob": [None if m == "m7" else dt.date(1990, 1, 1) for m in ids],
        }
    )
    conform(mentions, MENTION_SCHEMA).write_parquet(day / "s_20260101.mentions.parquet")
    rec = {  # record -> (mention, true entity)
        "r1": ("m1", "X"), "r2": ("m2", "X"), "r3": ("m3", "X"), "r4": ("m4", "Y"),
        "r5": ("m5", "Y"), "r6": ("m6", "X"), "r7": ("m6", "Y"), "r8": ("m6", "Y"),
        "r9": ("m7", "Z"), "r10": ("m8", "Z"),
    }  # fmt: skip
    records = pl.DataFrame(
        {"source_id": "s", "record_key": list(rec), "mention_id": [m for m, _ in rec.values()]}
    )
    conform(records, RECORD_SCHEMA).write_parquet(day / "s_20260101.records.parquet")
    (root / "truth" / "s").mkdir(parents=True)
    pl.DataFrame(
        {"source_id": "s", "record_key": list(rec), "entity_id": [e for _, e in rec.values()]}
    ).write_parquet(root / "truth" / "s" / "2026-01-01.parquet")
    return home


def test_hand_made_scores(tmp_path: Path) -> None:
    from linkage.evaluate import evaluate

    home = _write_home(tmp_path / "home")
    # m7 and m9 are not listed: singletons.
    clusters = pl.DataFrame(
        {
            "mention_id": ["m1", "m2", "m4", "m3", "m5", "m6", "m8"],
            "cluster_id": ["c1", "c1", "c1", "c2", "c2", "c2", "c3"],
        }
    )
    got = evaluate(home, clusters, detail=False)["person"]
    # Labelled: c1 = X X Y, c2 = X Y Y, c3 = Z, m7 = Z, m9 = unknown.
    # Predicted pairs 3 + 3; true pairs X 3, Y 3, Z 1; correct (m1, m2) and (m5, m6).
    want = {
        "mentions": 9,
        "entities": 4,
        "clusters": 5,
        "pairwise": {"precision": 2 / 6, "recall": 2 / 7, "f1": 2 * (1 / 3) * (2 / 7) / (1 / 3 + 2 / 7),
                     "predicted_pairs": 6, "true_pairs": 7, "true_positive_pairs": 2},
        # Per mention |cluster ∩ entity| / |cluster|: 2/3 2/3 1/3 | 1/3 2/3 2/3 | 1 | 1 | 1
        # and / |entity|: 2/3 2/3 1/3 | 1/3 2/3 2/3 | 1/2 | 1/2 | 1
        "bcubed": {"precision": 19 / 27, "recall": 16 / 27,
                   "f1": 2 * (19 / 27) * (16 / 27) / (35 / 27)},
        "ambiguous_mentions": 1,
        "name_only_ceiling": {
            "ambiguous_name_only_mentions": 1,  # m7: "lina" is carried by Y (m5) and Z (m8)
            "true_pairs_holding_one": 1,  # (m7, m8)
            "pairwise_without_them": {"precision": 2 / 6, "recall": 2 / 6, "f1": 2 / 6,
                                      "predicted_pairs": 6, "true_pairs": 6,
                                      "true_positive_pairs": 2},
        },
    }  # fmt: skip
    assert_same_scores(got, want)
    assert_same_scores(polars_scores(home, clusters, "person", reference_mention_truth(home)), want)


# -- the naive rule's stored scores ---------------------------------------------------


@pytest.fixture(scope="module")
def cache_home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    return copy_of_linked_world(tmp_path_factory, "naive_cache")


def test_naive_scores_are_stored_reused_and_recomputed(
    cache_home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    import linkage.baseline as baseline
    from linkage.report import evaluate_all

    calls: list[str] = []
    real = baseline.baseline_clusters

    def counted(home: Home, entity_type: str = "person") -> pl.DataFrame:
        calls.append(entity_type)
        return real(home, entity_type)

    monkeypatch.setattr(baseline, "baseline_clusters", counted)

    first = evaluate_all(cache_home, detail=False)  # the default computes and stores
    assert calls == list(TYPES)
    assert (cache_home.lake / "linkage" / baseline.NAIVE_SCORES_FILE).exists()
    for etype in TYPES:
        src = first[etype]["naive_rule_source"]
        assert src["status"] == "computed"
        assert src["mentions"] == first[etype]["model"]["mentions"] > 0
        assert src["latest_delivery"] is not None

    # Same inputs: the stored scores, not recomputed.
    again = evaluate_all(cache_home, detail=False, naive="cached")
    assert calls == list(TYPES)
    for etype in TYPES:
        assert again[etype]["naive_rule"] == first[etype]["naive_rule"]
        assert again[etype]["naive_rule_source"]["status"] == "cached"
        assert again[etype]["model"] == first[etype]["model"]

    # Inputs changed (a staged file rewritten): "cached" carries the old scores over,
    # saying from when; True recomputes and stores; then "cached" is current again.
    staged = sorted((cache_home.lake / "staged").glob("*/*/*.mentions.parquet"))[0]
    st = staged.stat()
    os.utime(staged, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    carried = evaluate_all(cache_home, detail=False, naive="cached")
    assert calls == list(TYPES)
    src = carried["person"]["naive_rule_source"]
    assert src["status"] == "carried_over"
    assert src["computed_at"] == first["person"]["naive_rule_source"]["computed_at"]
    assert carried["person"]["naive_rule"] == first["person"]["naive_rule"]

    fresh = evaluate_all(cache_home, detail=False, naive=True)
    assert calls == list(TYPES) * 2
    assert fresh["person"]["naive_rule_source"]["status"] == "computed"
    assert fresh["person"]["naive_rule_source"]["fingerprint"] != src["fingerprint"]
    assert (
        evaluate_all(cache_home, detail=False, naive="cached")["person"]["naive_rule_source"][
            "status"
        ]
        == "cached"
    )

    skipped = evaluate_all(cache_home, detail=False, naive=False)
    assert calls == list(TYPES) * 2
    assert skipped["person"]["naive_rule"] is None
    assert skipped["person"]["naive_rule_source"] == {"status": "skipped"}
    assert_same_scores(skipped["person"]["model"], first["person"]["model"])


def test_cached_without_a_stored_score_computes(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    from linkage.report import evaluate_all

    home = copy_of_linked_world(tmp_path_factory, "naive_none")
    out = evaluate_all(home, detail=False, naive="cached")
    assert {out[t]["naive_rule_source"]["status"] for t in TYPES} == {"computed"}
    assert all(out[t]["naive_rule"]["mentions"] > 0 for t in TYPES)
