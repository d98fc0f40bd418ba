"""Why mentions are one entity: every edge that holds an entity together, with its
match weight and each comparison's contribution.

Splink's prediction carries per-comparison match weights (``mw_<name>``, the log2
Bayes factor of the level the pair fell in; ``mw_tf_adj_<name>`` for a
term-frequency adjustment) when the settings retain intermediate columns, as the
models (:mod:`linkage.model`) do. :func:`linkage.run.predict` turns its one
prediction into evidence rows with :func:`contributions`, which reads each level
back from its weight (:func:`level_weights`); its pairs down to the review band
also feed the review queue.

For every pair, ``prior_log2 + Σ <comparison>_log2_bf = match_weight``, where
``prior_log2`` is log2 of the prior odds λ/(1-λ) and a comparison's contribution
includes its term-frequency adjustment.

Evidence is ``lake/linkage/<type>_evidence.parquet``: ``mention_id_l,
mention_id_r, entity_id, source, decision_id, match_weight, match_probability,
prior_log2`` and per comparison ``<name>_level`` (its label) and ``<name>_log2_bf``.
``source`` is ``model`` or ``decision`` (a must-link edge, which has no weight of
its own).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from tessera.config import Home


def level_weights(linker: Any) -> dict[str, dict[float, str]]:
    """Per comparison, each level's log2 Bayes factor → its label, as Splink scores
    it (the weights it writes into its SQL, defaults included), so a prediction
    needs only its ``mw_*`` columns to say which level a pair fell in. Levels that
    share a weight are labelled together (``a | b``); the null level weighs 0."""
    out: dict[str, dict[float, str]] = {}
    for r in linker._settings_obj._parameters_as_detailed_records:
        weight = 0.0 if r.is_null_level else float(r.log2_bayes_factor)
        label = "null" if r.is_null_level else r.label_for_charts
        levels = out.setdefault(r.comparison_name, {})
        levels[weight] = f"{levels[weight]} | {label}" if weight in levels else label
    return out


def contributions(rel: Any, linker: Any, ids: pl.DataFrame | None = None) -> pl.DataFrame:
    """A Splink prediction (a DuckDB relation with ``mw_*`` columns) of ``linker`` as
    evidence rows: ``mention_id_l, mention_id_r, match_weight, match_probability,
    prior_log2`` and per comparison ``<name>_level`` and ``<name>_log2_bf``. Only
    those columns leave DuckDB. A prediction keyed by an integer unique id (not
    ``mention_id``) is mapped back through ``ids`` (that id column, ``mention_id``)."""
    cols = set(rel.columns)
    weights = level_weights(linker)
    lam = float(linker._settings_obj._probability_two_random_records_match)
    uid = linker._settings_obj.column_info_settings.unique_id_column_name
    keyed = "mention_id_l" in cols
    key_l, key_r = ("mention_id_l", "mention_id_r") if keyed else (f"{uid}_l", f"{uid}_r")
    exprs: list[pl.Expr] = [
        pl.col(key_l),
        pl.col(key_r),
        pl.col("match_weight"),
        pl.col("match_probability"),
        pl.lit(math.log2(lam / (1 - lam))).alias("prior_log2"),
    ]
    for name, labels in weights.items():
        if f"mw_{name}" not in cols:  # the prior's own record
            continue
        mw = pl.col(f"mw_{name}")
        if f"mw_tf_adj_{name}" in cols:
            mw = mw + pl.col(f"mw_tf_adj_{name}").fill_null(0.0)
        exprs += [
            pl.col(f"mw_{name}")
            .replace_strict(labels, return_dtype=pl.String, default=None)
            .alias(f"{name}_level"),
            mw.alias(f"{name}_log2_bf"),
        ]
    needed = [key_l, key_r, "match_weight", "match_probability"] + [
        c for c in rel.columns if c.startswith("mw_")
    ]
    out = rel.select(", ".join(f'"{c}"' for c in needed)).pl().select(exprs)
    if keyed:
        return out
    if ids is None:
        raise ValueError(f"the prediction is keyed by {uid!r}: pass ids ({uid}, mention_id)")
    m = ids.select(pl.col(uid), pl.col("mention_id"))
    out = out.join(m.rename({uid: key_l, "mention_id": "mention_id_l"}), on=key_l).join(
        m.rename({uid: key_r, "mention_id": "mention_id_r"}), on=key_r
    )
    return out.select("mention_id_l", "mention_id_r", *out.columns[2:-2])


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _sql_double(x: float) -> str:
    # repr round-trips a double exactly; DuckDB parses the string to the same double.
    return f"CAST('{x!r}' AS DOUBLE)"


def contribution_sql(linker: Any, columns: list[str], alias: str = "p") -> list[str]:
    """SQL select items over a Splink prediction (relation ``alias`` with the
    ``columns`` of :func:`contributions`' input) giving the columns
    :func:`contributions` gives after ``match_probability``: ``prior_log2`` and per
    comparison ``<name>_level`` and ``<name>_log2_bf``, with the same values (the
    level read back from its weight by exact equality, the term-frequency
    adjustment added, null when absent). Lets DuckDB write evidence rows straight to
    Parquet without the prediction passing through Python."""
    cols = set(columns)
    lam = float(linker._settings_obj._probability_two_random_records_match)
    items = [f"{_sql_double(math.log2(lam / (1 - lam)))} AS prior_log2"]
    for name, labels in level_weights(linker).items():
        if f"mw_{name}" not in cols:  # the prior's own record
            continue
        mw = f'{alias}."mw_{name}"'
        whens = " ".join(f"WHEN {_sql_double(w)} THEN {_sql_str(lb)}" for w, lb in labels.items())
        items.append(f'CASE {mw} {whens} ELSE NULL END AS "{name}_level"')
        bf = mw
        if f"mw_tf_adj_{name}" in cols:
            bf = f'{mw} + COALESCE({alias}."mw_tf_adj_{name}", 0.0)'
        items.append(f'{bf} AS "{name}_log2_bf"')
    return items


def write_evidence(
    con: duckdb.DuckDBPyConnection,
    scored: Path,
    entities: pl.DataFrame,
    threshold: float,
    must_edges: pl.DataFrame | None,
    path: Path,
) -> int:
    """Write :func:`model_evidence` of :func:`kept_edges` to ``path`` in DuckDB: the
    scored pairs (``scored``, Parquet of :func:`contributions` rows) at or above
    ``threshold`` whose two mentions ended in one entity of ``entities`` (``mention_id,
    entity_id``), plus the must-link edges inside an entity (``source = 'decision'``,
    with the contributions of their pair when it was scored), sorted by entity and
    pair. The same rows and columns as the polars functions, without holding the
    scored pairs in Python (DuckDB sorts and spills). Returns the number of rows."""
    src = f"read_parquet({_sql_str(str(scored))})"
    contrib = [
        c
        for c in con.sql(f"SELECT * FROM {src} LIMIT 0").columns
        if c not in ("mention_id_l", "mention_id_r", "match_weight", "match_probability")
    ]
    contrib_s = ", ".join(f's."{c}"' for c in contrib)
    con.register(
        "__ev_entities",
        entities.select("mention_id", "entity_id").to_arrow(compat_level=pl.CompatLevel.newest()),
    )
    must = (
        must_edges.select("mention_id_l", "mention_id_r", pl.col("decision_id").cast(pl.Int64))
        if must_edges is not None
        else pl.DataFrame(
            schema={"mention_id_l": pl.String, "mention_id_r": pl.String, "decision_id": pl.Int64}
        )
    )
    con.register("__ev_must", must.to_arrow())
    tmp = path.with_name(path.name + ".tmp")
    body = f"""
        WITH model AS (
            SELECT s.mention_id_l, s.mention_id_r, s.match_weight, s.match_probability,
                   el.entity_id, 'model' AS source, CAST(NULL AS BIGINT) AS decision_id,
                   {contrib_s}
            FROM {src} s
            JOIN __ev_entities el ON s.mention_id_l = el.mention_id
            JOIN __ev_entities er ON s.mention_id_r = er.mention_id
            WHERE s.match_probability >= $threshold AND el.entity_id = er.entity_id
        ), dec AS (
            SELECT d.mention_id_l, d.mention_id_r, CAST(NULL AS DOUBLE) AS match_weight,
                   CAST(NULL AS DOUBLE) AS match_probability, el.entity_id,
                   'decision' AS source, d.decision_id, {contrib_s}
            FROM __ev_must d
            JOIN __ev_entities el ON d.mention_id_l = el.mention_id
            JOIN __ev_entities er ON d.mention_id_r = er.mention_id
            LEFT JOIN {src} s
                ON s.mention_id_l = d.mention_id_l AND s.mention_id_r = d.mention_id_r
            WHERE el.entity_id = er.entity_id
        )
        SELECT * FROM model UNION ALL SELECT * FROM dec
    """
    order = "ORDER BY entity_id, mention_id_l, mention_id_r"
    try:
        n = con.execute(
            f"COPY ({body} {order}) TO {_sql_str(str(tmp))} (FORMAT parquet, COMPRESSION zstd)",
            {"threshold": threshold},
        ).fetchall()[0][0]
    finally:
        con.unregister("__ev_entities")
        con.unregister("__ev_must")
    tmp.replace(path)
    return int(n)


def weak_entity_edges(
    con: duckdb.DuckDBPyConnection, evidence: Path, weak_weight: float
) -> pl.DataFrame:
    """The model edges of the evidence file (``mention_id_l, mention_id_r,
    match_weight, match_probability, entity_id``) of the entities holding an edge
    below ``weak_weight``: all :func:`linkage.decisions.review_candidates` needs of
    the kept edges to find the lone weak links (the other entities have none)."""
    src = f"read_parquet({_sql_str(str(evidence))})"
    return pl.from_arrow(  # type: ignore[return-value]
        con.sql(
            f"""
            SELECT mention_id_l, mention_id_r, match_weight, match_probability, entity_id
            FROM {src}
            WHERE source = 'model' AND entity_id IN (
                SELECT entity_id FROM {src} WHERE source = 'model' AND match_weight < ?
            )
            """,
            params=[weak_weight],
        ).to_arrow_table()
    )


def kept_edges(
    entities: pl.DataFrame, edges: pl.DataFrame, must_edges: pl.DataFrame | None
) -> pl.DataFrame:
    """The edges that hold the final entities together: model edges whose two
    mentions ended in one entity, plus must-link edges (``source = 'decision'``)."""
    ent = entities.select("mention_id", "entity_id")
    model = (
        edges.select("mention_id_l", "mention_id_r", "match_weight", "match_probability")
        .join(ent.rename({"mention_id": "mention_id_l"}), on="mention_id_l")
        .join(ent.rename({"mention_id": "mention_id_r", "entity_id": "e_r"}), on="mention_id_r")
        .filter(pl.col("entity_id") == pl.col("e_r"))
        .drop("e_r")
        .with_columns(pl.lit("model").alias("source"), pl.lit(None, pl.Int64).alias("decision_id"))
    )
    if must_edges is None or must_edges.height == 0:
        return model
    dec = (
        must_edges.join(ent.rename({"mention_id": "mention_id_l"}), on="mention_id_l")
        .join(ent.rename({"mention_id": "mention_id_r", "entity_id": "e_r"}), on="mention_id_r")
        .filter(pl.col("entity_id") == pl.col("e_r"))
        .select(
            "mention_id_l",
            "mention_id_r",
            pl.lit(None, pl.Float64).alias("match_weight"),
            pl.lit(None, pl.Float64).alias("match_probability"),
            "entity_id",
            pl.lit("decision").alias("source"),
            pl.col("decision_id").cast(pl.Int64),
        )
    )
    return pl.concat([model, dec.cast(model.schema)])


def model_evidence(kept: pl.DataFrame, scored: pl.DataFrame) -> pl.DataFrame:
    """Kept edges with the contributions of :func:`contributions`."""
    contrib = scored.drop("match_weight", "match_probability")
    return kept.join(contrib, on=["mention_id_l", "mention_id_r"], how="left").sort(
        "entity_id", "mention_id_l", "mention_id_r"
    )


def why(home: Home, entity_id: str) -> list[dict[str, Any]]:
    """The pairs that hold ``entity_id`` together, strongest first: each with its
    match weight, probability, prior and per-comparison ``contributions`` (level
    label and log2 Bayes factor), or the decision that joined it."""
    from linkage.report import ENTITY_TYPES, read_linkage

    out: list[dict[str, Any]] = []
    for etype in ENTITY_TYPES:
        try:
            # The last full link's evidence and what each incremental link appended.
            evidence = read_linkage(home, etype, "evidence")
        except FileNotFoundError:
            continue
        ev = (
            evidence.filter(pl.col("entity_id") == entity_id)
            .collect()
            .sort("match_weight", descending=True, nulls_last=False)
        )
        names = [c[: -len("_level")] for c in ev.columns if c.endswith("_level")]
        for r in ev.iter_rows(named=True):
            item = {
                k: r[k]
                for k in (
                    "mention_id_l",
                    "mention_id_r",
                    "source",
                    "decision_id",
                    "match_weight",
                    "match_probability",
                )
            }
            item["prior_log2"] = r.get("prior_log2")
            item["contributions"] = [
                {"comparison": n, "level": r[f"{n}_level"], "log2_bf": r.get(f"{n}_log2_bf")}
                for n in names
            ]
            out.append(item)
    return out
