"""Linkage: truth mapping, evaluation metrics, the naive baseline, the Splink person
model and the duplicate-free guard, on a small world simulated once per module."""

from __future__ import annotations

import polars as pl
import pytest

from tessera.config import Home

SMALL = {"persons": 1500, "seed": 7, "days": 3}

# Floors set a little below what this world measured (see docs/linkage.md):
# person model pairwise precision 1.0 / recall 0.99810, B-cubed P 1.0 / R 0.99826
# (persons=1500, seed=7, days=3; threshold 0.7).
MODEL_PRECISION_FLOOR = 0.999
MODEL_RECALL_FLOOR = 0.996
# Business model on the same world: pairwise P 1.0 R 0.931, B-cubed R 0.9485
# (naive rule: pairwise R 0.934, B-cubed R 0.9437).
BUSINESS_PRECISION_FLOOR = 0.995
BUSINESS_RECALL_FLOOR = 0.92


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Home:
    from connectors.catalog import load_specs
    from connectors.ingest import ingest
    from simulation.run import simulate
    from simulation.world import WorldConfig

    home = Home(tmp_path_factory.mktemp("linkage") / "home")
    mp = pytest.MonkeyPatch()
    mp.delenv("TESSERA_PG_URL", raising=False)
    mp.delenv("TESSERA_MYSQL_URL", raising=False)
    try:
        simulate(home, WorldConfig(**SMALL))
        ingest(home, load_specs(home.sources_dir))
    finally:
        mp.undo()
    return home


@pytest.fixture(scope="module")
def person_link(world: Home, tmp_path_factory: pytest.TempPathFactory):
    from linkage.run import link

    return link(world, model_path=tmp_path_factory.mktemp("model") / "person_model.json")


# -- metrics on hand-made clusters ---------------------------------------------------


def _labelled(clusters: list[str], entities: list[str]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "mention_id": [f"m{i}" for i in range(len(clusters))],
            "cluster_id": clusters,
            "entity_id": entities,
            "source_id": ["a", "b"] * (len(clusters) // 2) + ["a"] * (len(clusters) % 2),
        }
    )


def test_pairwise_counts_pairs_from_group_sizes() -> None:
    from linkage.evaluate import pairwise_scores

    # truth: X = {0,1,2}, Y = {3,4}; predicted: {0,1}, {2,3,4}
    s = pairwise_scores(_labelled(["c1", "c1", "c2", "c2", "c2"], ["X", "X", "X", "Y", "Y"]))
    # predicted pairs 1 + 3 = 4; true pairs 3 + 1 = 4; correct (0,1) and (3,4) = 2
    assert (s["predicted_pairs"], s["true_pairs"], s["true_positive_pairs"]) == (4, 4, 2)
    assert s["precision"] == pytest.approx(0.5) and s["recall"] == pytest.approx(0.5)
    assert s["f1"] == pytest.approx(0.5)


def test_bcubed_on_hand_made_clusters() -> None:
    from linkage.evaluate import bcubed_scores

    s = bcubed_scores(_labelled(["c1", "c1", "c2", "c2", "c2"], ["X", "X", "X", "Y", "Y"]))
    # precision per mention: 1, 1, 1/3, 2/3, 2/3; recall: 2/3, 2/3, 1/3, 1, 1
    assert s["precision"] == pytest.approx((1 + 1 + 1 / 3 + 2 / 3 + 2 / 3) / 5)
    assert s["recall"] == pytest.approx((2 / 3 + 2 / 3 + 1 / 3 + 1 + 1) / 5)


def test_perfect_and_singleton_clusterings() -> None:
    from linkage.evaluate import bcubed_scores, pairwise_scores

    truth = ["X", "X", "Y", "Y", "Y"]
    perfect = pairwise_scores(_labelled(truth, truth))
    assert perfect["precision"] == perfect["recall"] == 1.0
    singles = _labelled([f"s{i}" for i in range(5)], truth)
    assert pairwise_scores(singles)["recall"] == 0.0
    assert pairwise_scores(singles)["precision"] == 1.0  # no pair predicted, none wrong
    assert bcubed_scores(singles)["recall"] == pytest.approx((0.5 + 0.5 + 1 / 3 * 3) / 5)


def test_source_pair_recall_and_worst_errors() -> None:
    from linkage.evaluate import source_pair_recall, worst_false_merges, worst_missed_links

    lab = _labelled(["c1", "c1", "c2", "c2", "c2"], ["X", "X", "X", "Y", "Y"])
    # sources a, b, a, b, a. True X pairs: (0a,1b), (0a,2a), (1b,2a); Y: (3b,4a)
    rows = {(r["source_id"], r["source_id_r"]): r for r in source_pair_recall(lab)}
    assert rows[("a", "b")]["pairs"] == 3 and rows[("a", "b")]["found"] == 2
    assert rows[("a", "a")]["pairs"] == 1 and rows[("a", "a")]["found"] == 0
    fm = worst_false_merges(lab)
    assert [(f["cluster_id"], f["entities"]) for f in fm] == [("c2", 2)]
    ml = worst_missed_links(lab)
    assert [(m["entity_id"], m["clusters"]) for m in ml] == [("X", 2)]


# -- truth, baseline, model -----------------------------------------------------------


def test_every_mention_has_a_truth_entity(world: Home) -> None:
    from connectors import lake
    from linkage.truth import mention_truth

    m = lake.mentions(world).select("mention_id", "entity_type").collect()
    t = mention_truth(world)
    joined = m.join(t, on="mention_id", how="left")
    assert joined["entity_id"].null_count() == 0
    # persons map to P..., businesses to B...
    prefix = joined.select(pl.col("entity_id").str.slice(0, 1), "entity_type").unique()
    assert set(map(tuple, prefix.rows())) == {("P", "person"), ("B", "business")}


def test_baseline_is_exact_but_misses_links(world: Home) -> None:
    from linkage.baseline import baseline_clusters
    from linkage.evaluate import evaluate

    r = evaluate(world, baseline_clusters(world, "person"), detail=False)["person"]
    assert r["pairwise"]["precision"] > 0.999
    assert 0.5 < r["pairwise"]["recall"] < 0.9


def test_model_beats_baseline_and_meets_floors(world: Home, person_link) -> None:
    from linkage.baseline import baseline_clusters
    from linkage.evaluate import evaluate

    model = evaluate(world, person_link.clusters)["person"]
    base = evaluate(world, baseline_clusters(world, "person"), detail=False)["person"]
    assert model["pairwise"]["recall"] > base["pairwise"]["recall"] + 0.1
    assert model["pairwise"]["precision"] >= MODEL_PRECISION_FLOOR
    assert model["pairwise"]["recall"] >= MODEL_RECALL_FLOOR
    assert model["bcubed"]["precision"] >= MODEL_PRECISION_FLOOR
    assert model["bcubed"]["recall"] >= MODEL_RECALL_FLOOR
    assert len(model["false_merges"]) <= 5 and len(model["missed_links"]) <= 5


def test_every_person_mention_is_clustered_once(world: Home, person_link) -> None:
    from connectors import lake

    persons = (
        lake.mentions(world)
        .filter(pl.col("entity_type") == "person")
        .select("mention_id")
        .collect()
    )
    c = person_link.clusters
    assert c.height == persons.height and c["mention_id"].n_unique() == c.height
    assert person_link.candidate_pairs > 0 and person_link.model_path.exists()


def test_duplicate_free_guard_holds(world: Home, person_link) -> None:
    from connectors import lake
    from connectors.catalog import load_specs
    from linkage.clusters import guard_keys, offending_clusters

    dup_free = [s.id for s in load_specs(world.sources_dir) if s.duplicate_free]
    assert dup_free
    mentions = lake.mentions(world).collect()
    recs = lake.records(world).select("source_id", "record_key", "mention_id").unique().collect()
    keys = guard_keys(mentions, recs, dup_free)
    assert keys.height > 0
    assert offending_clusters(person_link.clusters, keys).height == 0


def test_guard_splits_a_cluster_on_its_weakest_edge() -> None:
    from linkage.clusters import split_offending

    # a - b - c chained; a and c are two records of one duplicate-free register.
    clusters = pl.DataFrame(
        {"mention_id": ["a", "b", "c", "d"], "cluster_id": ["a", "a", "a", "d"]}
    )
    edges = pl.DataFrame(
        {"mention_id_l": ["a", "b"], "mention_id_r": ["b", "c"], "match_weight": [20.0, 5.0]}
    )
    keys = pl.DataFrame(
        {"mention_id": ["a", "c"], "source_id": ["reg", "reg"], "guard_key": ["reg:1", "reg:2"]}
    )
    out, refused = split_offending(clusters, edges, keys)
    groups = {
        frozenset(g) for g in out.group_by("cluster_id").agg("mention_id")["mention_id"].to_list()
    }
    assert refused == 1
    assert groups == {frozenset({"a", "b"}), frozenset({"c"}), frozenset({"d"})}


def test_saved_model_reproduces_clusters(world: Home, person_link) -> None:
    from linkage.run import link

    again = link(world, model_path=person_link.model_path)
    a = person_link.clusters.sort("mention_id")
    b = again.clusters.sort("mention_id")
    # same partition (cluster ids may be named differently)
    pa = a.group_by("cluster_id").agg(pl.col("mention_id").sort())["mention_id"].to_list()
    pb = b.group_by("cluster_id").agg(pl.col("mention_id").sort())["mention_id"].to_list()
    assert sorted(map(tuple, pa)) == sorted(map(tuple, pb))
    assert "train" not in again.timings


@pytest.fixture(scope="module")
def business_link(world: Home, tmp_path_factory: pytest.TempPathFactory):
    from linkage.run import link

    return link(
        world,
        entity_type="business",
        model_path=tmp_path_factory.mktemp("model") / "business_model.json",
    )


def test_business_names_vary_so_the_naive_rule_misses(world: Home) -> None:
    from linkage.baseline import baseline_clusters
    from linkage.evaluate import evaluate

    r = evaluate(world, baseline_clusters(world, "business"), detail=False)["business"]
    assert r["pairwise"]["recall"] < 0.97


def test_person_features_count_people_per_name_and_flag_masked_keys() -> None:
    import datetime as dt

    from connectors.canonical import MENTION_SCHEMA
    from linkage.features import person_features

    rows = [
        # one 3-character name, one date of birth (and a name-only mention): one person
        {"name_native": "毕敏涛", "name_latin": "bi min tao", "dob": dt.date(1984, 2, 4)},
        {"name_native": "毕敏涛", "name_latin": "bi min tao", "dob": dt.date(1984, 2, 4)},
        {"name_native": None, "name_latin": "bi min tao"},
        # two dates of birth: two people
        {"name_native": "张供金", "name_latin": "zhang gong jin", "dob": dt.date(2007, 5, 8)},
        {"name_native": "张供金", "name_latin": "zhang gong jin", "dob": dt.date(1990, 1, 1)},
        # a 2-character name with one dob but two phone keys counts two
        {"name_native": "宫员", "name_latin": "gong yuan", "dob": dt.date(1947, 4, 16),
         "phone": "+8618380945121"},
        {"name_native": "宫员", "name_latin": "gong yuan", "phone_masked": "183****9999",
         "id_masked": "422921********0264"},
    ]  # fmt: skip
    m = pl.DataFrame(
        [
            {"mention_id": f"m{i}", "source_id": "s", "entity_type": "person", "role": "", **r}
            for i, r in enumerate(rows)
        ],
        schema={c: t for c, t in MENTION_SCHEMA.items()},
    )
    f = person_features(m).sort("mention_id")
    assert f["name_py_persons"].to_list() == [1, 1, 1, 2, 2, 2, 2]
    assert f["id_masked_only"].to_list()[-1] and f["id_key"].to_list()[-1] == "4229210264"
    assert f["phone_masked_only"].to_list() == [False] * 6 + [True]
    assert f["phone_key"].to_list()[-2:] == ["1835121", "1839999"]


def test_per_name_counts_are_capped_below_every_value_the_models_compare() -> None:
    """The per-name counts are stored capped (``linkage.features.STAT_CAPS``: a common
    name's count then stays put as mentions arrive). Every number the person and
    business models compare a count with, in their comparison levels and blocking
    rules, and the thin-name ceiling, is below the cap: a capped count decides as the
    true count would."""
    import datetime as dt
    import json
    import re

    from connectors.canonical import MENTION_SCHEMA
    from linkage.features import (
        PERSONS_CAP,
        STAT_CAPS,
        THIN_NAME_MAX_PERSONS,
        business_name_statistics,
        person_features,
    )
    from linkage.model import (
        BusinessModelConfig,
        PersonModelConfig,
        business_settings,
        person_settings,
    )

    text = json.dumps(
        [
            person_settings(PersonModelConfig()).create_settings_dict(sql_dialect_str="duckdb"),
            business_settings(BusinessModelConfig()).create_settings_dict(sql_dialect_str="duckdb"),
        ]
    )
    found = re.findall(
        r"\b(" + "|".join(STAT_CAPS) + r")(?:_[lr])?\s*(?:=|<>|!=|<=|>=|<|>)\s*(\d+)", text
    )
    assert {c for c, _ in found} == {"name_py_persons", "name_core_firms", "name_core_form_firms"}
    for column, value in found:
        assert int(value) < STAT_CAPS[column], (column, value)
    assert THIN_NAME_MAX_PERSONS < PERSONS_CAP

    # Six birth years on one name: six people, stored as the cap.
    m = pl.DataFrame(
        [
            {"mention_id": f"m{i}", "source_id": "s", "entity_type": "person", "role": "",
             "name_native": "王伟", "name_latin": "wang wei", "dob": dt.date(1950 + i, 1, 1)}
            for i in range(6)
        ],
        schema=dict(MENTION_SCHEMA),
    )  # fmt: skip
    assert person_features(m)["name_py_persons"].to_list() == [PERSONS_CAP] * 6
    # Three firms (USCC keys seen twice) on one core: "several", 2.
    firms = pl.DataFrame(
        {
            "name_core": ["四通"] * 6,
            "name_form": ["有限公司"] * 6,
            "uscc_key": ["K1", "K1", "K2", "K2", "K3", "K3"],
        }
    )
    counted = business_name_statistics(firms).collect()
    assert counted["name_core_firms"].to_list() == [STAT_CAPS["name_core_firms"]] * 6
    assert counted["name_core_form_firms"].to_list() == [STAT_CAPS["name_core_form_firms"]] * 6


def test_business_features_strip_form_city_and_brackets() -> None:
    from linkage.features import business_features

    names = [
        "北京时空盒数字服务有限公司",
        "时空盒数字服务（北京）股份有限公司",
        "时空盒数字服务(北京)公司",
    ]
    m = pl.DataFrame(
        {
            "mention_id": ["a", "b", "c"],
            "source_id": ["s"] * 3,
            "entity_type": ["business"] * 3,
            "role": [""] * 3,
            "name": names,
            "uscc": [None, None, None],
            "uscc_raw": ["91110111393267081X", None, None],
            "province": [None] * 3,
            "city": [None] * 3,
            "district": [None] * 3,
        },
        schema_overrides={c: pl.String for c in ("uscc", "province", "city", "district")},
    )
    f = business_features(m)
    assert f["name_core"].to_list() == ["时空盒数字服务"] * 3
    assert f["name_city"].to_list() == ["北京"] * 3
    assert f["uscc_any"].to_list()[0] == "91110111393267081X"


def test_business_model_beats_naive_rule(world: Home, business_link) -> None:
    from linkage.baseline import baseline_clusters
    from linkage.evaluate import evaluate

    model = evaluate(world, business_link.clusters, detail=False)["business"]
    base = evaluate(world, baseline_clusters(world, "business"), detail=False)["business"]
    assert model["bcubed"]["recall"] > base["bcubed"]["recall"]
    assert model["pairwise"]["precision"] >= BUSINESS_PRECISION_FLOOR
    assert model["pairwise"]["recall"] >= BUSINESS_RECALL_FLOOR
    assert business_link.candidate_pairs > 0 and business_link.model_path.exists()


def test_a_saved_prediction_is_clustered_without_predicting_again(
    world: Home, person_link, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Dagster prediction asset saves its scored pairs; the clusters asset takes
    them (no second Splink prediction) while they match the mentions and the model,
    and clustering them gives what link() gives."""
    import os

    import linkage.run as run

    features = run.entity_features(world, "person")
    prediction = run.predict(
        world, entity_type="person", model_path=person_link.model_path, features=features
    )
    assert prediction.candidate_pairs == person_link.candidate_pairs
    run.save_prediction(world, prediction)
    loaded = run.load_prediction(world, "person", features)
    assert loaded is not None
    assert loaded.scored.equals(prediction.scored)
    # Clustering the saved pairs never calls Splink's predict.
    monkeypatch.setattr(run, "make_linker", lambda *a, **k: pytest.fail("predicted again"))
    res = run.cluster(world, loaded)
    assert res.clusters.sort("mention_id").equals(person_link.clusters.sort("mention_id"))
    # Other mentions, or a retrained model, make the saved pairs stale.
    assert run.load_prediction(world, "person", features.head(features.height - 1)) is None
    st = person_link.model_path.stat()
    os.utime(person_link.model_path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert run.load_prediction(world, "person", features) is None


def test_name_only_ceiling_leaves_out_names_several_persons_carry() -> None:
    """A mention with only a name two persons carry is ambiguous; one with a name only
    one person carries, or with a phone, is not."""
    from linkage.evaluate import _DISTINGUISHING, name_only_ceiling

    rows = {
        "mention_id": ["a1", "a2", "a3", "b1", "b2", "c1", "c2"],
        "cluster_id": ["A", "A", "x", "B", "B", "C", "y"],
        "entity_id": ["pA", "pA", "pA", "pB", "pB", "pC", "pC"],
        "entity_type": ["person"] * 7,
        "name_latin": ["Zhang Wei", "Zhang Wei", "zhang wei", "ZHANG WEI", "Zhang Wei", "Li Na", "Li Na"],
        "phone": ["1", "1", None, "2", "2", "3", None],
    }  # fmt: skip
    frame = pl.DataFrame(rows).with_columns(
        pl.lit(None, pl.String).alias(c) for c in _DISTINGUISHING if c != "phone"
    )
    out = name_only_ceiling(frame)
    # a3: name only, zhangwei is carried by pA and pB; c2: lina only by pC.
    assert out["ambiguous_name_only_mentions"] == 1
    assert out["true_pairs_holding_one"] == 2
    rest = out["pairwise_without_them"]
    assert rest["true_pairs"] == 3 and rest["true_positive_pairs"] == 2
    assert name_only_ceiling(frame.drop("phone")) is None


def test_training_twice_writes_the_same_model(
    world: Home, person_link, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Same mentions, same seed: the same model file, bit for bit (one DuckDB thread for
    training, no random linker id), so a killed and rerun pipeline publishes the same
    warehouse."""
    from linkage.run import link

    again = tmp_path_factory.mktemp("model_again") / "person_model.json"
    link(world, model_path=again)
    assert again.read_bytes() == person_link.model_path.read_bytes()
    # Businesses too: their u is sampled on one mention per USCC, so it depends on
    # the feature rows' order (once that of a join).
    first, second = (
        tmp_path_factory.mktemp(f"business_{i}") / "business_model.json" for i in (1, 2)
    )
    link(world, entity_type="business", model_path=first)
    link(world, entity_type="business", model_path=second)
    assert first.read_bytes() == second.read_bytes()


def test_evidence_written_by_duckdb_equals_the_polars_evidence(person_link, tmp_path) -> None:
    """``settle`` has DuckDB join, sort and write the evidence from the scored pairs on
    disk (a large world's pairs never sit in Python); the rows are those of
    ``model_evidence(kept_edges(...))``, must-link edges (inside an entity) included."""
    from linkage.explain import kept_edges, model_evidence, write_evidence
    from linkage.run import linkage_duckdb

    ents = person_link.clusters.rename({"cluster_id": "entity_id"})
    groups = (
        ents.group_by("entity_id")
        .agg(pl.col("mention_id").sort())
        .filter(pl.col("mention_id").list.len() >= 3)
        .sort("entity_id")
    )
    inside, other = groups["mention_id"][0], groups["mention_id"][1]
    must = pl.DataFrame(
        {
            "mention_id_l": [inside[0], inside[1], inside[0]],
            "mention_id_r": [inside[2], inside[2], other[0]],  # the last one across entities
            "decision_id": [3, 5, 9],
        }
    )
    expected = model_evidence(kept_edges(ents, person_link.edges, must), person_link.scored)
    path = tmp_path / "person_evidence.parquet"
    with linkage_duckdb() as con:
        n = write_evidence(
            con, person_link.scored_pairs.path, ents, person_link.threshold, must, path
        )
    got = pl.read_parquet(path)
    keys = ["entity_id", "mention_id_l", "mention_id_r", "source"]
    assert n == got.height == expected.height
    assert got.columns == expected.columns
    assert got.filter(pl.col("source") == "decision").height == 2
    assert got.sort(keys).equals(expected.sort(keys))
