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

import math
from pathlib import Path
from typing import Any, Literal

import dagster as dg
import polars as pl

from connectors import lake
from connectors.spec import SourceSpec
from linkage import sizes as entity_sizes
from orchestration import isolate
from orchestration.metadata import column_schema, jsonable, md_table, preview
from orchestration.resources import QualityThresholds, TesseraHome
from tessera import quality as qc
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


PREVIEW_FEATURES = ("mention_id", "source_id", "name_native", "name_latin", "dob", "sex",
                    "id_number", "phone", "city")  # fmt: skip


class LinkConfig(dg.Config):
    """How the cluster assets link: ``auto`` links a day's new mentions against the
    existing entities when a previous link exists, else relinks everything; ``full`` always relinks everything (the
    weekly relink, or on demand); ``incremental`` asks for the incremental path
    (still a full link when there is no previous one)."""

    mode: Literal["auto", "full", "incremental"] = "auto"


def previous_link_exists(home: Home, entity_type: str) -> bool:
    return (home.lake / "linkage" / f"{entity_type}_entities.parquet").exists()


def choose_mode(home: Home, entity_type: str, mode: str) -> str:
    """``full`` or ``incremental`` for one entity type (see :class:`LinkConfig`)."""
    if mode == "full" or not previous_link_exists(home, entity_type):
        return "full"
    return "incremental"


def run_link(
    context: dg.AssetExecutionContext, home: Home, entity_type: str, mode: str,
    model_path: Path | None = None, features_path: Path | None = None,
) -> tuple[str, dict[str, Any]]:  # fmt: skip
    """Link one entity type the chosen way; returns (mode used, what the library
    reported). Full: ``linkage.run.link`` then ``linkage.report.settle``;
    incremental: ``linkage.incremental.link_incremental``. ``features_path``: the
    features an upstream asset wrote, used when newer than every staged mention
    file (derived here otherwise)."""
    chosen = choose_mode(home, entity_type, mode)
    if mode == "incremental" and chosen == "full":
        context.log.warning(
            f"{entity_type}: incremental linking asked for, but there is no previous link: "
            "linking everything"
        )
    # In a child process on a large world (orchestration.isolate): its memory goes
    # back when it ends.
    return chosen, isolate.call(
        home, link_entities, home, entity_type, chosen, model_path, features_path
    )


def link_entities(
    home: Home,
    entity_type: str,
    chosen: str,
    model_path: Path | None = None,
    features_path: Path | None = None,
) -> dict[str, Any]:
    """The library calls of :func:`run_link` for the mode already chosen."""
    if chosen == "incremental":
        from linkage.incremental import link_incremental

        return dict(link_incremental(home, entity_type))
    from linkage.features import write_features
    from linkage.report import settle
    from linkage.run import cluster, entity_features, load_prediction, predict

    # The prediction asset's scored pairs when they come from these mentions and
    # this model (one prediction per run); else predict here.
    staged = lake.staged_files(home, "mentions")
    newest = max((p.stat().st_mtime_ns for p in staged), default=0)
    if (
        features_path is not None
        and features_path.exists()
        and features_path.stat().st_mtime_ns >= newest
    ):
        # Written after the last staging: the same features, not derived again.
        features = pl.read_parquet(features_path)
    else:
        features = entity_features(home, entity_type)
        write_features(features, home.lake / "linkage" / f"{entity_type}_features.parquet")
    prediction = load_prediction(home, entity_type, features) or predict(
        home, entity_type=entity_type, model_path=model_path, features=features
    )
    res = cluster(home, prediction)
    # Decisions, stable entity ids, evidence and the review queue: the same
    # step as `tessera link`, which writes the clusters (cluster_id = entity id).
    settled = settle(home, res)
    settled["guard_refused_edges"] = res.guard_refused_edges
    settled["edges_at_threshold"] = res.edges.height
    return settled


def evaluate_entities(home: Home, naive: bool | Literal["cached"]) -> dict[str, Any]:
    """The library call of the ``linkage/evaluation`` asset
    (``linkage.report.evaluate_all``, without the detail), imported where it runs: in a
    child process (:mod:`orchestration.isolate`) the step's own process does not import
    the scoring modules for it (0.26 s of the step)."""
    from linkage.report import evaluate_all

    return evaluate_all(home, detail=False, naive=naive)


def cluster_checks(
    home: Home,
    entity_type: str,
    limits: qc.LinkageThresholds,
    mode: str = "full",
    clusters: pl.DataFrame | None = None,
    sizes: pl.DataFrame | None = None,
    changed_duplicate_free: dict[str, Any] | None = None,
) -> list[dg.AssetCheckResult]:
    """The over-merge guards of one entity type (blocking): entity size (every
    entity) and duplicate-free sources (after an incremental link, the entities it
    changed: the others passed when they were last changed). ``clusters``: the map the
    asset already read (read here otherwise). ``changed_duplicate_free``: the
    duplicate-free count the incremental link took on the map it wrote, over the
    entities it changed (:func:`linkage.incremental.link_incremental`), used instead
    of reading the map and the staged mentions again."""
    size = qc.oversized_entities(home, entity_type, limits.max_entity_mentions, clusters, sizes)
    if mode == "incremental" and changed_duplicate_free is not None:
        dup = changed_duplicate_free
    else:
        touched = None
        if mode == "incremental":
            from linkage.incremental import touched_path

            touched = pl.read_parquet(touched_path(home, entity_type))["entity_id"]
        dup = qc.duplicate_free_violations(home, entity_type, touched, clusters)
    return [
        dg.AssetCheckResult(
            check_name="entity_size",
            passed=size["over_limit"] == 0,
            metadata={
                "largest_entity_mentions": size["largest"],
                "entities_over_limit": size["over_limit"],
                "limit": limits.max_entity_mentions,
                "examples": md_table(size["examples"], ("entity", "mentions")),
            },
        ),
        dg.AssetCheckResult(
            check_name="duplicate_free_sources",
            passed=dup["entities"] == 0,
            metadata={
                "entities_with_two_records_of_one_register": dup["entities"],
                "entities_checked": dup["entities_checked"],
                "examples": ", ".join(dup["examples"]) or "none",
            },
        ),
    ]


def _cluster_check_specs(key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(
            "entity_size",
            asset=key,
            blocking=True,
            description="No entity holds more mentions than a person or business can "
            "(QualityThresholds.max_entity_mentions): an over-merge must not reach the warehouse.",
        ),
        dg.AssetCheckSpec(
            "duplicate_free_sources",
            asset=key,
            blocking=True,
            description="No entity holds two different records of a duplicate-free register "
            "(such a register never knows one entity twice).",
        ),
    ]


def _edges_histogram(
    home: Home, entity_type: str, mode: str = "full", stats: dict[str, Any] | None = None
) -> dg.MetadataValue:
    """The match weights of the edges this run made: a full link's, or the part the
    incremental link appended (``stats``: what it reported)."""
    from linkage.parts import linkage_parts

    parts = linkage_parts(home, entity_type, "edges")
    if not parts or (mode == "incremental" and not (stats or {}).get("edges")):
        return dg.MetadataValue.md("no edges")
    path = parts[-1] if mode == "incremental" else parts[0]
    weights = pl.read_parquet(path, columns=["match_weight"])["match_weight"]
    return dg.MetadataValue.md(weight_histogram(weights))


def _largest(sizes: pl.DataFrame) -> dg.MetadataValue:
    """The five largest entities (``sizes``: :func:`linkage.sizes.count`), the smaller ID
    first among equal sizes. Only the entities at least as large as the fifth largest
    are sorted: sorting the 1M entities of a 1,000,000-person world by size and ID took
    0.3 s of each day's run."""
    if sizes.is_empty():
        return md_table([], ("entity", "mentions"))
    fifth = sizes["len"].top_k(min(5, sizes.height)).min()
    top = sizes.filter(pl.col("len") >= fifth).sort(["len", "cluster_id"], descending=[True, False])
    return md_table(top.head(5).iter_rows(), ("entity", "mentions"))


def linkage_dir(home: Home) -> Path:
    path = home.lake / "linkage"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _paths(home: Home) -> dict[str, Path]:
    d = linkage_dir(home)
    return {
        "features": d / "person_features.parquet",
        "model": d / "person_model.json",
        "predictions": d / "person_scored.parquet",
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


def _sizes_table(sizes: pl.DataFrame) -> str:
    """Entities per size (``sizes``: :func:`linkage.sizes.count`)."""
    sizes = sizes.group_by("len").len("clusters").sort("len")
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
            if s is None:
                continue
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
        context: dg.AssetExecutionContext, config: LinkConfig, tessera: TesseraHome
    ) -> dg.MaterializeResult:
        """Every staged person mention with the derived comparison columns
        (``linkage.features.person_features``: dob from the ID, ID and phone keys that a
        masked value can agree with, pinyin without spaces), written to
        ``lake/linkage/person_features.parquet``. When the clusters will link
        incrementally (``mode`` auto or incremental, a previous link and its features
        exist), nothing is derived here: the incremental link derives the new
        mentions' features and appends them (at 7.2M mentions a full derivation took
        105 s of a day's run). On such a day it also starts copying the live warehouse
        in the background (``warehouse.prefetch``): the incremental publish starts from
        that copy, which does not depend on the linkage that runs meanwhile."""
        from linkage.features import person_features, write_features

        home = tessera.home()
        stored = _paths(home)["features"]
        if choose_mode(home, "person", config.mode) == "incremental" and stored.exists():
            from linkage.parts import unlinked_files
            from warehouse import prefetch

            warehouse_copy = prefetch.start(home.warehouse)

            # Counted from the Parquet footers (distinct staged mentions took 1.9 s at
            # 7.2M): the mentions linked so far, and the files the increment will read.
            linked = pl.scan_parquet(linkage_dir(home) / "person_entities.parquet")
            new_files = unlinked_files(home, "person")
            return dg.MaterializeResult(
                metadata={
                    "dagster/row_count": linked.select(pl.len()).collect().item(),
                    "mode": "incremental",
                    "derived": "the new mentions' features, by linkage/person_clusters "
                    "(appended to lake/linkage/person_features_delta)",
                    "staged_files_to_read": ("all" if new_files is None else str(len(new_files))),
                    "warehouse_copy": warehouse_copy,
                }
            )
        features = person_features(lake.mentions(home))
        write_features(features, _paths(home)["features"])
        per_source = features.group_by("source_id").len().sort("len", descending=True)
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": features.height,
                "dagster/column_schema": column_schema(dict(features.schema)),
                "preview": preview(
                    features.select(c for c in PREVIEW_FEATURES if c in features.columns)
                ),
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
        from linkage.model import (
            PersonModelConfig,
            make_linker,
            person_settings,
            save_model,
            train,
        )

        home = tessera.home()
        paths = _paths(home)
        config = PersonModelConfig()
        features = pl.read_parquet(paths["features"])
        linker, _ = make_linker(features, person_settings(config), threads=1)
        settings = train(linker, config, features)
        save_model(settings, paths["model"])
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
                "dagster/row_count": len(rows) - 2,  # m/u parameters, one per comparison level
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
        """Every candidate pair of person mentions (the model's blocking rules) scored
        once by the saved model (``linkage.run.predict``); the pairs at or above the
        review floor are kept with each comparison's level and weight in
        ``lake/linkage/person_scored.parquet``, which ``linkage/person_clusters``
        clusters (no second prediction). Metadata: candidate pairs, pairs per
        mention, the match-weight distribution of the kept pairs."""
        from linkage.model import PersonModelConfig
        from linkage.run import predict, save_prediction

        home = tessera.home()
        paths = _paths(home)
        features = pl.read_parquet(paths["features"])
        prediction = predict(
            home, entity_type="person", model_path=paths["model"], features=features
        )
        save_prediction(home, prediction)
        # Only the four columns leave the Parquet file the prediction wrote.
        pred = (
            prediction.scan_scored()
            .select("mention_id_l", "mention_id_r", "match_weight", "match_probability")
            .collect()
        )
        threshold = PersonModelConfig().threshold_match_probability
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": pred.height,
                "dagster/column_schema": column_schema(dict(pred.schema)),
                "preview": preview(
                    pred.sort((pl.col("match_probability") - threshold).abs()).head(5)
                ),
                "candidate_pairs": prediction.candidate_pairs,
                "pairs_per_mention": round(prediction.candidate_pairs / max(features.height, 1), 2),
                "seconds": jsonable(prediction.timings),
                "threshold_match_probability": threshold,
                "pairs_at_threshold": int((pred["match_probability"] >= threshold).sum()),
                "match_weight_histogram": dg.MetadataValue.md(
                    weight_histogram(pred["match_weight"])
                ),
            }
        )

    @dg.asset(
        key=PERSON_CLUSTERS,
        # The mentions too: the daily job leaves out the model and the full prediction,
        # and without this edge it ran the clusters before that day's staging.
        deps=[PERSON_MENTIONS, PERSON_PREDICTIONS, PERSON_MODEL],
        kinds={"splink", "duckdb", "parquet"},
        check_specs=_cluster_check_specs(PERSON_CLUSTERS),
        **common,
    )
    def person_clusters(
        context: dg.AssetExecutionContext,
        config: LinkConfig,
        tessera: TesseraHome,
        quality: QualityThresholds,
    ) -> dg.MaterializeResult:
        """Person entities. Full link: ``linkage.run.link`` with the saved model
        (connected components at the model's threshold, the duplicate-free guard),
        then ``linkage.report.settle``: human decisions honoured, stable entity ids,
        evidence per kept pair, review queue. Incremental link (a previous link
        exists, ``mode`` auto or incremental): the new mentions only, scored against
        the existing entities (``linkage.incremental``). Written to
        ``lake/linkage/person_*.parquet``. Checks (blocking): entity size and
        duplicate-free registers."""
        home = tessera.home()
        paths = _paths(home)
        mode, stats = run_link(
            context, home, "person", config.mode, paths["model"], paths["features"]
        )
        # An incremental link recorded the sizes and checked what it changed: the
        # 7.2M-row map of a 1M world is not read again (2-4 s).
        clusters = None if mode == "incremental" else pl.read_parquet(paths["person_clusters"])
        sizes = entity_sizes.current(home, "person", clusters)
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": int(sizes["len"].sum()),
                "mode": mode,
                "entities": sizes.height,
                "settle": jsonable(stats),
                "mentions": stats.get("mentions", int(sizes["len"].sum())),
                "candidate_pairs": stats.get("candidate_pairs", 0),
                "edges_at_threshold": stats.get("edges_at_threshold", 0),
                "guard_split_clusters": stats.get("guard_split_clusters", 0),
                "guard_refused_edges": stats.get("guard_refused_edges", 0),
                "seconds": jsonable(stats.get("seconds", {})),
                "cluster_sizes": dg.MetadataValue.md(_sizes_table(sizes)),
                "largest_entities": _largest(sizes),
                "match_weight_histogram": _edges_histogram(home, "person", mode, stats),
            },
            check_results=cluster_checks(
                home,
                "person",
                quality.linkage(),
                mode,
                clusters,
                sizes,
                stats.get("duplicate_free"),
            ),
        )

    @dg.asset(
        key=BUSINESS_CLUSTERS,
        deps=staged,
        kinds={"splink", "polars", "parquet"},
        check_specs=_cluster_check_specs(BUSINESS_CLUSTERS),
        **common,
    )
    def business_clusters(
        context: dg.AssetExecutionContext,
        config: LinkConfig,
        tessera: TesseraHome,
        quality: QualityThresholds,
    ) -> dg.MaterializeResult:
        """Business entities: ``linkage.run.link(entity_type="business")`` (the
        Splink business model, then the duplicate-free guard), then
        ``linkage.report.settle`` as for persons; incremental as for persons when a
        previous link exists. Written to ``lake/linkage/business_*.parquet``.
        Checks (blocking): entity size and duplicate-free registers."""
        home = tessera.home()
        paths = _paths(home)
        mode, stats = run_link(context, home, "business", config.mode)
        # As for persons: the incremental link recorded the sizes and checked what it
        # changed, so the map is not read again.
        clusters = None if mode == "incremental" else pl.read_parquet(paths["business_clusters"])
        sizes = entity_sizes.current(home, "business", clusters)
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": int(sizes["len"].sum()),
                "mode": mode,
                "entities": sizes.height,
                "settle": jsonable(stats),
                "mentions": stats.get("mentions", int(sizes["len"].sum())),
                "candidate_pairs": stats.get("candidate_pairs", 0),
                "guard_split_clusters": stats.get("guard_split_clusters", 0),
                "guard_refused_edges": stats.get("guard_refused_edges", 0),
                "cluster_sizes": dg.MetadataValue.md(_sizes_table(sizes)),
                "largest_entities": _largest(sizes),
                "match_weight_histogram": _edges_histogram(home, "business", mode, stats),
            },
            check_results=cluster_checks(
                home,
                "business",
                quality.linkage(),
                mode,
                clusters,
                sizes,
                stats.get("duplicate_free"),
            ),
        )

    @dg.asset(
        key=EVALUATION,
        deps=[PERSON_CLUSTERS, BUSINESS_CLUSTERS],
        kinds={"polars"},
        check_specs=[
            dg.AssetCheckSpec(
                "accuracy_against_truth",
                asset=EVALUATION,
                blocking=True,
                description="Where the simulated truth exists: person and business pairwise "
                "precision and recall at or above the floors (QualityThresholds). A broken "
                "model must not be published. Passes with a note when there is no truth.",
            )
        ],
        **common,
    )
    def evaluation(
        context: dg.AssetExecutionContext,
        config: LinkConfig,
        tessera: TesseraHome,
        quality: QualityThresholds,
    ) -> dg.MaterializeResult:
        """Accuracy of the saved person and business clusters against the simulated truth
        (``linkage.report.evaluate_all``, scored by DuckDB), next to the naive rule
        (``linkage.baseline``): pairwise and B-cubed precision, recall and F1 per entity
        type. The naive rule depends on the staged mentions only: a full relink
        (``mode: full``) computes it, a daily run shows the scores stored then
        (``naive_rule_source`` says when they were computed). A home without ``truth/``
        (real data) records that and scores nothing."""
        home = tessera.home()
        if not any(home.truth.glob("*/*.parquet")):
            return dg.MaterializeResult(
                metadata={"truth": "none: nothing to score against", "dagster/row_count": 0},
                check_results=[
                    dg.AssetCheckResult(
                        check_name="accuracy_against_truth",
                        passed=True,
                        metadata={"truth": "none: nothing to score against"},
                    )
                ],
            )
        naive = True if config.mode == "full" else "cached"
        result = isolate.call(home, evaluate_entities, home, naive)
        scores = {
            etype: {"model": by["model"], "naive rule": by["naive_rule"]}
            for etype, by in result.items()
            if by["model"] is not None
        }
        metadata: dict[str, Any] = {}
        for etype, by in scores.items():
            model, naive_scores = by["model"], by["naive rule"]
            source = result[etype].get("naive_rule_source") or {}
            metadata[f"{etype}_naive_rule_source"] = jsonable(source)
            # Scored from the stored per-cluster sums (the clusters the day touched) or
            # in full, and why (linkage.score_store).
            metadata[f"{etype}_scored"] = str(result[etype].get("scored", "full"))
            metadata[f"{etype}_scored_reason"] = str(
                (result[etype].get("scoring") or {}).get("reason") or ""
            )
            for method, s in (("model", model), ("naive", naive_scores)):
                if s is None:
                    continue
                for kind in ("pairwise", "bcubed"):
                    for k in ("precision", "recall", "f1"):
                        metadata[f"{etype}_{method}_{kind}_{k}"] = float(s[kind][k])
            metadata[f"{etype}_mentions"] = int(model["mentions"])
            metadata[f"{etype}_entities"] = int(model["entities"])
            metadata[f"{etype}_true_pairs"] = int(model["pairwise"]["true_pairs"])
        metadata["scores"] = dg.MetadataValue.md(_scores_table(scores))
        metadata["dagster/row_count"] = sum(len(by) for by in scores.values())
        limits = quality.linkage()
        below = [
            f"{etype} pairwise {k} {s['model']['pairwise'][k]:.5f} < {floor}"
            for etype, s in scores.items()
            for k, floor in (
                ("precision", limits.min_pairwise_precision),
                ("recall", limits.min_pairwise_recall),
            )
            if s["model"]["pairwise"][k] < floor
        ]
        return dg.MaterializeResult(
            metadata=metadata,
            check_results=[
                dg.AssetCheckResult(
                    check_name="accuracy_against_truth",
                    passed=not below,
                    metadata={
                        "below_floor": "; ".join(below) or "none",
                        "min_pairwise_precision": limits.min_pairwise_precision,
                        "min_pairwise_recall": limits.min_pairwise_recall,
                        **{
                            k: v
                            for k, v in metadata.items()
                            if k.endswith("pairwise_precision") or k.endswith("pairwise_recall")
                        },  # fmt: skip
                    },
                )
            ],
        )

    return [
        person_mentions,
        person_model,
        person_predictions,
        person_clusters,
        business_clusters,
        evaluation,
    ]
