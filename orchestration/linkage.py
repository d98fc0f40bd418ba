"""Linkage assets (group ``linkage``): mentions → model → predictions → clusters →
evaluation, over every ``staged/<source>`` asset.

The wiring is thin: each asset calls the library (:mod:`linkage.features`,
:mod:`linkage.model`, :func:`linkage.run.link`, :func:`linkage.evaluate.evaluate`,
:func:`linkage.baseline.baseline_clusters`) and writes its output under
``lake/linkage/`` (the paths ``tessera link`` / ``tessera eval`` use), so the assets
and the CLI share one lake. Metadata: row counts, candidate pairs, the match-weight
distribution and, on ``linkage/evaluation``, pairwise and B-cubed P/R/F1 of the
model and of the naive rule.

No ``from __future__ import annotations`` here: Dagster checks the type of the
``context`` parameter at definition time.
"""

import json
import math
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from connectors import lake
from connectors.spec import SourceSpec
from orchestration.resources import TesseraHome
from tessera.config import Home

GROUP = "linkage"
OWNER = "team:data-engineering"
KINDS = {"splink", "duckdb", "polars"}

PERSON_MENTIONS = dg.AssetKey(["linkage", "person_mentions"])
PERSON_MODEL = dg.AssetKey(["linkage", "person_model"])
PERSON_PREDICTIONS = dg.AssetKey(["linkage", "person_predictions"])
PERSON_CLUSTERS = dg.AssetKey(["linkage", "person_clusters"])
BUSINESS_CLUSTERS = dg.AssetKey(["linkage", "business_clusters"])
EVALUATION = dg.AssetKey(["linkage", "evaluation"])
LINKAGE_KEYS = (
    PERSON_MENTIONS,
    PERSON_MODEL,
    PERSON_PREDICTIONS,
    PERSON_CLUSTERS,
    BUSINESS_CLUSTERS,
    EVALUATION,
)


def linkage_dir(home: Home) -> Path:
    path = home.lake / "linkage"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _paths(home: Home) -> dict[str, Path]:
    d = linkage_dir(home)
    return {
        "features": d / "person_features.parquet",
        "model": d / "person_model.json",
        "predictions": d / "person_predictions.parquet",
        "person_clusters": d / "person_clusters.parquet",
        "person_edges": d / "person_edges.parquet",
        "business_clusters": d / "business_clusters.parquet",
        "business_edges": d / "business_edges.parquet",
    }


def weight_histogram(weights: pl.Series, width: float = 5.0, bar: int = 30) -> str:
    """A markdown histogram of match weights in bins of ``width`` (bits)."""
    w = weights.drop_nulls().filter(weights.drop_nulls().is_finite())
    if w.is_empty():
        return "no scored pairs"
    lo = math.floor(w.min() / width) * width
    counts = (
        pl.DataFrame({"w": w})
        .select(((pl.col("w") - lo) // width).cast(pl.Int64).alias("bin"))
        .group_by("bin")
        .len()
        .sort("bin")
    )
    top = counts["len"].max()
    lines = ["| match weight | pairs | |", "|---|---:|---|"]
    for b, n in counts.iter_rows():
        start = lo + b * width
        lines.append(
            f"| [{start:g}, {start + width:g}) | {n:,} | {'█' * max(1, round(bar * n / top))} |"
        )
    return "\n".join(lines)


def _sizes_table(clusters: pl.DataFrame) -> str:
    sizes = clusters.group_by("cluster_id").len().group_by("len").len("clusters").sort("len")
    lines = ["| cluster size | clusters |", "|---:|---:|"]
    lines += [f"| {s} | {n:,} |" for s, n in sizes.head(15).iter_rows()]
    return "\n".join(lines)


def _scores_table(scores: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| entity | method | pairwise P | pairwise R | pairwise F1 | B³ P | B³ R | B³ F1 |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for etype, by in scores.items():
        for method, s in by.items():
            pw, b3 = s["pairwise"], s["bcubed"]
            lines.append(
                f"| {etype} | {method} | {pw['precision']:.5f} | {pw['recall']:.5f} | "
                f"{pw['f1']:.5f} | {b3['precision']:.5f} | {b3['recall']:.5f} | {b3['f1']:.5f} |"
            )
    return "\n".join(lines)


def build_linkage_assets(specs: list[SourceSpec] | tuple[SourceSpec, ...]) -> list[Any]:
    """The linkage assets, depending on the ``staged/<source>`` asset of every spec."""
    staged = [dg.AssetKey(["staged", s.id]) for s in specs]
    common = {"group_name": GROUP, "owners": [OWNER]}

    @dg.asset(key=PERSON_MENTIONS, deps=staged, kinds={"polars", "parquet"}, **common)
    def person_mentions(
        context: dg.AssetExecutionContext, tessera: TesseraHome
    ) -> dg.MaterializeResult:
        """Every staged person mention with the derived comparison columns
        (``linkage.features.person_features``: dob from the ID, ID and phone keys that a
        masked value can agree with, pinyin without spaces), written to
        ``lake/linkage/person_features.parquet``."""
        from linkage.features import person_features

        home = tessera.home()
        features = person_features(lake.mentions(home))
        features.write_parquet(_paths(home)["features"])
        per_source = features.group_by("source_id").len().sort("len", descending=True)
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": features.height,
                "sources": per_source.height,
                "mentions_per_source": dg.MetadataValue.md(
                    "| source | mentions |\n|---|---:|\n"
                    + "\n".join(f"| {s} | {n:,} |" for s, n in per_source.iter_rows())
                ),
            }
        )

    @dg.asset(key=PERSON_MODEL, deps=[PERSON_MENTIONS], kinds={"splink", "json"}, **common)
    def person_model(
        context: dg.AssetExecutionContext, tessera: TesseraHome
    ) -> dg.MaterializeResult:
        """The Splink person model (``linkage.model``), trained unsupervised with fixed
        seeds (prior from near-certain rules, u by random sampling, m by EM) and saved
        to ``lake/linkage/person_model.json``, where ``linkage.run.link`` picks it up."""
        from linkage.model import PersonModelConfig, make_linker, person_settings, train

        home = tessera.home()
        paths = _paths(home)
        config = PersonModelConfig()
        features = pl.read_parquet(paths["features"])
        linker, _ = make_linker(features, person_settings(config))
        train(linker, config)
        linker.misc.save_model_to_json(str(paths["model"]), overwrite=True)
        settings = linker.misc.save_model_to_json()
        comparisons = settings.get("comparisons", [])
        rows = ["| comparison | level | m | u |", "|---|---|---:|---:|"]
        for c in comparisons:
            for lvl in c.get("comparison_levels", []):
                if lvl.get("is_null_level"):
                    continue
                m, u = lvl.get("m_probability"), lvl.get("u_probability")
                rows.append(
                    f"| {c.get('output_column_name')} | {lvl.get('label_for_charts')} | "
                    f"{'' if m is None else f'{m:.4g}'} | {'' if u is None else f'{u:.4g}'} |"
                )
        return dg.MaterializeResult(
            metadata={
                "path": str(paths["model"]),
                "probability_two_random_records_match": float(
                    settings.get("probability_two_random_records_match", 0.0)
                ),
                "comparisons": len(comparisons),
                "seed": config.seed,
                "parameters": dg.MetadataValue.md("\n".join(rows)),
            }
        )

    @dg.asset(
        key=PERSON_PREDICTIONS,
        deps=[PERSON_MODEL, PERSON_MENTIONS],
        kinds={"splink", "duckdb", "parquet"},
        **common,
    )
    def person_predictions(
        context: dg.AssetExecutionContext, tessera: TesseraHome
    ) -> dg.MaterializeResult:
        """Every candidate pair of person mentions (the model's blocking rules) scored by
        the saved model: ``mention_id_l, mention_id_r, match_weight, match_probability``
        in ``lake/linkage/person_predictions.parquet``, with the match-weight
        distribution."""
        from linkage.model import PersonModelConfig, make_linker

        home = tessera.home()
        paths = _paths(home)
        features = pl.read_parquet(paths["features"])
        linker, _ = make_linker(features, paths["model"])
        pred = (
            linker.inference.predict()
            .as_duckdbpyrelation()
            .select("mention_id_l, mention_id_r, match_weight, match_probability")
            .pl()
        )
        pred.write_parquet(paths["predictions"])
        threshold = PersonModelConfig().threshold_match_probability
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": pred.height,
                "candidate_pairs": pred.height,
                "pairs_per_mention": round(pred.height / max(features.height, 1), 2),
                "threshold_match_probability": threshold,
                "pairs_at_threshold": int((pred["match_probability"] >= threshold).sum()),
                "match_weight_histogram": dg.MetadataValue.md(
                    weight_histogram(pred["match_weight"])
                ),
            }
        )

    @dg.asset(
        key=PERSON_CLUSTERS,
        deps=[PERSON_PREDICTIONS, PERSON_MODEL],
        kinds={"splink", "duckdb", "parquet"},
        **common,
    )
    def person_clusters(
        context: dg.AssetExecutionContext, tessera: TesseraHome
    ) -> dg.MaterializeResult:
        """Person entities: ``linkage.run.link`` with the saved model (connected
        components at the model's threshold, the duplicate-free guard), then
        ``linkage.report.settle``: human decisions honoured, stable entity ids,
        evidence per kept pair, review queue. Written to ``lake/linkage/person_*.parquet``."""
        from linkage.report import settle
        from linkage.run import link

        home = tessera.home()
        paths = _paths(home)
        res = link(home, entity_type="person", model_path=paths["model"])
        # Decisions, stable entity ids, evidence and the review queue: the same
        # step as `tessera link`, which writes the clusters (cluster_id = entity id).
        settled = settle(home, res)
        clusters = pl.read_parquet(paths["person_clusters"])
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": clusters.height,
                "entities": clusters["cluster_id"].n_unique(),
                "settle": dg.MetadataValue.json(json.loads(json.dumps(settled, default=str))),
                "mentions": res.mentions,
                "candidate_pairs": res.candidate_pairs,
                "edges_at_threshold": res.edges.height,
                "guard_split_clusters": res.guard_split_clusters,
                "guard_refused_edges": res.guard_refused_edges,
                "seconds": dg.MetadataValue.json({k: round(v, 2) for k, v in res.timings.items()}),
                "cluster_sizes": dg.MetadataValue.md(_sizes_table(clusters)),
            }
        )

    @dg.asset(key=BUSINESS_CLUSTERS, deps=staged, kinds={"polars", "parquet"}, **common)
    def business_clusters(
        context: dg.AssetExecutionContext, tessera: TesseraHome
    ) -> dg.MaterializeResult:
        """Business entities: ``linkage.run.link(entity_type="business")`` (the
        Splink business model, then the duplicate-free guard), then
        ``linkage.report.settle`` as for persons. Written to ``lake/linkage/business_*.parquet``."""
        from linkage.report import settle
        from linkage.run import link

        home = tessera.home()
        paths = _paths(home)
        res = link(home, entity_type="business")
        # Decisions, stable entity ids, evidence and the review queue: the same
        # step as `tessera link`, which writes the clusters (cluster_id = entity id).
        settled = settle(home, res)
        clusters = pl.read_parquet(paths["business_clusters"])
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": clusters.height,
                "entities": clusters["cluster_id"].n_unique(),
                "settle": dg.MetadataValue.json(json.loads(json.dumps(settled, default=str))),
                "mentions": res.mentions,
                "candidate_pairs": res.candidate_pairs,
                "guard_split_clusters": res.guard_split_clusters,
                "guard_refused_edges": res.guard_refused_edges,
                "cluster_sizes": dg.MetadataValue.md(_sizes_table(clusters)),
            }
        )

    @dg.asset(
        key=EVALUATION,
        deps=[PERSON_CLUSTERS, BUSINESS_CLUSTERS],
        kinds={"polars"},
        **common,
    )
    def evaluation(context: dg.AssetExecutionContext, tessera: TesseraHome) -> dg.MaterializeResult:
        """Accuracy of the saved person and business clusters against the simulated truth
        (``linkage.evaluate.evaluate``), next to the naive rule
        (``linkage.baseline.baseline_clusters``): pairwise and B-cubed precision, recall
        and F1 per entity type. A home without ``truth/`` (real data) records that and
        scores nothing."""
        from linkage.baseline import baseline_clusters
        from linkage.evaluate import evaluate

        home = tessera.home()
        paths = _paths(home)
        if not any(home.truth.glob("*/*.parquet")):
            return dg.MaterializeResult(metadata={"truth": "none: nothing to score against"})
        scores: dict[str, dict[str, Any]] = {}
        metadata: dict[str, Any] = {}
        for etype in ("person", "business"):
            clusters = pl.read_parquet(paths[f"{etype}_clusters"])
            model = evaluate(home, clusters, detail=False).get(etype)
            naive = evaluate(home, baseline_clusters(home, etype), detail=False).get(etype)
            if model is None or naive is None:
                continue
            scores[etype] = {"model": model, "naive rule": naive}
            for method, s in (("model", model), ("naive", naive)):
                for kind in ("pairwise", "bcubed"):
                    for k in ("precision", "recall", "f1"):
                        metadata[f"{etype}_{method}_{kind}_{k}"] = float(s[kind][k])
            metadata[f"{etype}_mentions"] = int(model["mentions"])
            metadata[f"{etype}_entities"] = int(model["entities"])
            metadata[f"{etype}_true_pairs"] = int(model["pairwise"]["true_pairs"])
        metadata["scores"] = dg.MetadataValue.md(_scores_table(scores))
        return dg.MaterializeResult(metadata=metadata)

    return [
        person_mentions,
        person_model,
        person_predictions,
        person_clusters,
        business_clusters,
        evaluation,
    ]
