"""Search by example: a partial record scored against the warehouse with the trained
Splink models, so that search and linkage weigh evidence the same way.

At publish (:func:`register_match_inputs`), every mention's linkage features (as
linkage stored them for the model, else derived by
:func:`linkage.features.person_features` / ``business_features``: the very columns
the models compare) go into ``person_match_features`` / ``business_match_features``
with the mention's entity, the counts behind the term frequencies Splink would use
into ``<type>_tf_<column>`` and ``match_tf_totals``, and each saved
model (``lake/linkage/<type>_model.json``) goes into ``match_models`` together with
its per-level log2 Bayes factors, read once through Splink's public
``match_weights_chart().raw_records`` (so Splink's own defaults for untrained
levels apply).

At query time (:func:`search_example`) no Splink object is built: Splink's
per-call overhead (a linker, table registration, SQL generation) is far above the
300 ms budget. The example is parsed with the connectors' parse rules and turned
into one feature row by the same feature function; candidates come from blocking
keys equal to the example's (the model's blocking columns, plus surname + dob);
each candidate mention gets, per comparison, the first level whose
``sql_condition`` (taken verbatim from the saved model: candidate ``_l``, example
``_r``) holds, and its weight; the term-frequency adjustment is Splink's
(``log2 u_exact - log2 tf``). ``match_weight = prior + Σ weights`` equals Splink's
for the same two feature rows (``tests/test_access.py`` checks it against the
kept link evidence). An entity scores as its best mention; the reason lists the
comparison levels that agreed and their weights.

All example values are bound parameters; the only SQL text interpolated comes from
the saved model file and the column names below.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from connectors import lake
from connectors.canonical import MENTION_SCHEMA
from connectors.parsing import parse_column
from linkage.features import (
    BUSINESS_FEATURES,
    PERSON_FEATURES,
    business_features,
    legal_rep_names,
    person_features,
)
from linkage.parts import linkage_parts as linkage_files
from linkage.parts import linkage_sql
from tessera.config import Home

ENTITY_TYPES = ("person", "business")
FEATURES = {"person": PERSON_FEATURES, "business": BUSINESS_FEATURES}
TABLES = {"person": "person_match_features", "business": "business_match_features"}
# Splink's term-frequency columns (the model's tf_adjustment_column values).
TF_COLUMNS = {"person": ("name_native", "name_py"), "business": ()}
# Physical order of the feature tables: clustered values compress (dictionary) and
# filter far faster than scattered ones (100,000 persons: an equality scan of one
# column 5-10 ms sorted, 30-70 ms unsorted), and the name lookup prunes row groups.
SORT = {"person": "name_py, entity_id", "business": "name_core, entity_id"}
# Candidate retrieval: the example agrees with the mention on one of these.
BLOCKING = {
    "person": (
        ("id_any",),
        ("id_key",),
        ("phone_any",),
        ("phone_key",),
        ("name_py",),
        ("name_native",),
        ("surname_py", "dob_any"),
        ("email",),
        ("plate",),
        ("passport",),
    ),
    "business": (
        ("uscc_any",),
        ("uscc_key",),
        ("name_core",),
        ("name_head",),
        ("name_tail",),
        ("name_skip",),
        ("legal_rep_name", "city"),
    ),
}
EXAMPLE_FIELDS = {
    "person": (
        "name",
        "dob",
        "sex",
        "id_number",
        "phone",
        "email",
        "plate",
        "passport",
        "province",
        "city",
        "district",
    ),
    "business": ("name", "uscc", "legal_rep", "province", "city", "district"),
}
WEIGHT_CAP = 60.0  # bits; an infinite Bayes factor (m or u of 0) is capped here


class ExampleError(ValueError):
    """An example the models cannot read (unknown field, unparsable value, no model)."""


# ------------------------------------------------------------------ at publish


def model_levels(settings: dict[str, Any], entity_type: str) -> dict[str, Any]:
    """Per comparison its levels (``gamma``, ``sql``, ``label``, ``log2_bf``, ``tf_column``,
    ``u_exact``) and the prior's log2 odds, with Splink's own values."""
    from linkage.model import make_linker

    empty = pl.DataFrame(schema=MENTION_SCHEMA).with_columns(
        pl.lit(entity_type).alias("entity_type")
    )
    feats = person_features(empty) if entity_type == "person" else business_features(empty, None)
    linker, _ = make_linker(feats, settings, name=f"{entity_type}_levels")
    chart = {
        (r.comparison_name, r.comparison_vector_value): r
        for r in linker.visualisations.match_weights_chart().raw_records
    }
    prior = chart[("probability_two_random_records_match", 0)].log2_bayes_factor
    comparisons = []
    for c in settings["comparisons"]:
        name = c["output_column_name"]
        real = [lv for lv in c["comparison_levels"] if not lv.get("is_null_level")]
        null = [lv for lv in c["comparison_levels"] if lv.get("is_null_level")]
        levels = []
        for i, lv in enumerate(real):
            gamma = len(real) - 1 - i
            rec = chart[(name, gamma)]
            bf = rec.log2_bayes_factor
            levels.append(
                {
                    "gamma": gamma,
                    "sql": lv["sql_condition"],
                    "label": lv.get("label_for_charts", ""),
                    "log2_bf": max(-WEIGHT_CAP, min(WEIGHT_CAP, bf)) if bf is not None else 0.0,
                    "tf_column": lv.get("tf_adjustment_column"),
                    "tf_weight": float(lv.get("tf_adjustment_weight", 1.0)),
                    "u_exact": rec.u_probability,
                }
            )
        comparisons.append(
            {"name": name, "null_sql": null[0]["sql_condition"] if null else None, "levels": levels}
        )
    return {"prior_log2": prior, "comparisons": comparisons}


def _published_levels(home: Home) -> dict[str, tuple[Any, str]]:
    """``entity_type → (settings, levels)`` of the models in the current warehouse: a
    model that has not changed since keeps its levels (reading them through Splink
    builds a linker, about a second per model)."""
    if not home.warehouse.exists():
        return {}
    try:
        con = duckdb.connect(str(home.warehouse), read_only=True)
    except duckdb.Error:
        return {}
    try:
        rows = con.execute("SELECT entity_type, settings, levels FROM match_models").fetchall()
    except duckdb.Error:  # a warehouse from before search by example
        rows = []
    finally:
        con.close()
    return {etype: (json.loads(settings), levels) for etype, settings, levels in rows}


def _register_features(
    con: duckdb.DuckDBPyConnection, home: Home, entity_type: str, derive: Any
) -> None:
    """``_<type>_features``: the features linkage stored for the model (the very rows it
    scored, not derived again): a view over ``<type>_features.parquet`` read by DuckDB
    directly, or, after incremental links, the base and its parts as
    :func:`linkage.report.read_linkage` merges them. Without stored features (or with
    an older set of columns) ``derive()`` computes them from the mentions."""
    name, cols = f"_{entity_type}_features", FEATURES[entity_type]
    parts = linkage_files(home, entity_type, "features")
    if len(parts) == 1:
        path = "'" + str(parts[0]).replace("'", "''") + "'"  # the home's, not a user value
        scan = f"read_parquet({path})"
        have = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {scan}").fetchall()}
        if set(cols) <= have:
            con.execute(f"CREATE TEMP VIEW {name} AS SELECT {', '.join(cols)} FROM {scan}")
            return
    elif parts:
        scan = f"({linkage_sql(home, entity_type, 'features')})"
        have = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {scan}").fetchall()}
        if set(cols) <= have:
            con.execute(f"CREATE TEMP VIEW {name} AS SELECT {', '.join(cols)} FROM {scan}")
            return
    con.register(name, derive())


def register_match_inputs(
    con: duckdb.DuckDBPyConnection, home: Home, mentions: pl.DataFrame | None = None
) -> None:
    """The publish inputs for search by example: ``_person_features``,
    ``_business_features`` (linkage features per mention, see
    :func:`_register_features`) and ``_models`` (``entity_type, settings, levels`` as
    JSON text, one row per saved model), each read once by the table built from it.
    ``mentions`` (else read from the lake) is needed only where linkage stored no
    features."""
    read: list[pl.DataFrame] = []

    def staged() -> pl.DataFrame:
        if mentions is not None:
            return mentions
        if not read:
            read.append(lake.mentions(home).collect())
        return read[0]

    _register_features(con, home, "person", lambda: person_features(staged()))
    _register_features(
        con,
        home,
        "business",
        lambda: business_features(
            staged(), legal_rep_names(lake.relationships(home), staged().lazy())
        ),
    )
    rows = []
    previous = _published_levels(home)
    for etype in ENTITY_TYPES:
        path = home.lake / "linkage" / f"{etype}_model.json"
        if path.exists():
            settings = json.loads(path.read_text(encoding="utf-8"))
            same = previous.get(etype)
            levels = (
                same[1]
                if same and same[0] == settings
                else json.dumps(model_levels(settings, etype), ensure_ascii=False)
            )
            rows.append(
                {
                    "entity_type": etype,
                    "settings": json.dumps(settings, ensure_ascii=False),
                    "levels": levels,
                }
            )
    models = pl.DataFrame(
        rows, schema={"entity_type": pl.String, "settings": pl.String, "levels": pl.String}
    )
    con.register("_models", models)


def features_sql(entity_type: str) -> str:
    """``CREATE TABLE <type>_match_features``: the features and the mention's entity.
    Splink's term frequencies are not stored per row (a share of all mentions moves
    with every new mention, so a daily publish would rewrite every row): they are
    the counts of :func:`tf_sql` over :data:`TF_TOTALS`."""
    cols = [c for c in FEATURES[entity_type] if c != "role"]
    select = ", ".join(["m.entity_id", *(f"f.{c}" for c in cols)])
    return f"""
    CREATE TABLE {TABLES[entity_type]} AS
    SELECT {select}
    FROM _{entity_type}_features f JOIN _map m USING (mention_id)
    ORDER BY {SORT[entity_type]}
    """


def tf_table(entity_type: str, column: str) -> str:
    """The table of a term-frequency column's counts: ``<column>, n``."""
    return f"{entity_type}_tf_{column}"


TF_TOTALS = "match_tf_totals"


def tf_sql(entity_type: str, column: str, source: str | None = None) -> str:
    """``CREATE TABLE <type>_tf_<column>``: the mentions per non-null value of
    ``column`` over every mention of the type (``source``, default the registered
    ``_<type>_features``), as Splink counts them for its term frequencies."""
    src = source or f"_{entity_type}_features"
    return f"""
    CREATE TABLE {tf_table(entity_type, column)} AS
    SELECT {column}, count(*) AS n FROM {src} WHERE {column} IS NOT NULL
    GROUP BY {column} ORDER BY {column}
    """


def tf_totals_select() -> str:
    """Per term-frequency column the non-null mentions (the denominator of Splink's
    term frequency), summed over the count tables: ``entity_type, column_name,
    total``."""
    return " UNION ALL ".join(
        f"SELECT '{etype}' AS entity_type, '{c}' AS column_name, "
        f"CAST(coalesce(sum(n), 0) AS BIGINT) AS total FROM {tf_table(etype, c)}"
        for etype in ENTITY_TYPES
        for c in TF_COLUMNS[etype]
    )


def tf_totals_sql() -> str:
    """``CREATE TABLE match_tf_totals`` (:func:`tf_totals_select`)."""
    return f"CREATE TABLE {TF_TOTALS} AS {tf_totals_select()}"


def _tf_share(entity_type: str, column: str, alias: str) -> str:
    """Splink's term frequency of ``alias.n`` (the count table joined as ``alias``)."""
    return (
        f"CAST({alias}.n AS DOUBLE) / (SELECT total FROM {TF_TOTALS} "
        f"WHERE entity_type = '{entity_type}' AND column_name = '{column}')"
    )


# ------------------------------------------------------------------ at query time


def _parse(rule: str, field: str, value: str) -> dict[str, Any]:
    out = parse_column(rule, field, pl.Series([value], dtype=pl.String)).row(0, named=True)
    err = out.pop("_error", None)
    if err:
        raise ExampleError(err)
    return out


def example_mention(entity_type: str, example: dict[str, Any]) -> pl.DataFrame:
    """One staged-mention row (``MENTION_SCHEMA``) from a partial record, parsed with the
    connectors' rules; raises :class:`ExampleError` for an unknown field or a bad value."""
    unknown = set(example) - set(EXAMPLE_FIELDS[entity_type])
    if unknown:
        raise ExampleError(
            f"unknown field(s) {sorted(unknown)}; a {entity_type} example takes "
            f"{', '.join(EXAMPLE_FIELDS[entity_type])}"
        )
    row: dict[str, Any] = {c: None for c in MENTION_SCHEMA}
    row.update(mention_id="example", source_id="example", entity_type=entity_type, role="")
    for key, raw in example.items():
        if raw is None or str(raw).strip() == "":
            continue
        v = str(raw).strip()
        if entity_type == "business" and key == "name":
            row["name"] = v
        elif key == "name":
            import re

            rule = "name:hanzi" if re.search(r"[\u3400-\u9fff]", v) else "name:pinyin_lower"
            row.update(_parse(rule, "name", v if rule == "name:hanzi" else v.lower()))
        elif key == "dob":
            row.update(_parse("date:iso", "dob", v))
        elif key == "sex":
            row.update(_parse("sex:mf", "sex", v.upper()))
        elif key == "id_number":
            p = _parse("id:masked" if "*" in v else "id:full", "id", v.upper())
            p["id_number"] = p.pop("id")
            row.update(p)
        elif key == "phone":
            row.update(_parse("phone:masked" if "*" in v else "phone:plain", "phone", v))
        elif key in ("email", "plate", "passport"):
            row.update(_parse(key, key, v))
        elif key == "uscc":
            row.update(_parse("uscc", "uscc", v.upper()))
        elif key == "legal_rep":
            row["legal_rep"] = v
        else:  # province, city, district: as the connectors store them
            row[key] = v
    rep = row.pop("legal_rep", None)
    frame = pl.DataFrame([row], schema=MENTION_SCHEMA)
    if entity_type == "person":
        return person_features(frame)
    reps = pl.DataFrame({"mention_id": ["example"], "legal_rep_name": [rep]}) if rep else None
    return business_features(frame, reps)


def _level_sql(comp: dict[str, Any]) -> tuple[str, str, str]:
    """(gamma, weight, label) CASE expressions of one comparison."""
    name = comp["name"]
    gamma = ["CASE"]
    if comp["null_sql"]:
        gamma.append(f"WHEN {comp['null_sql']} THEN -1")
    for lv in comp["levels"]:
        if lv["sql"].strip().upper() == "ELSE":
            gamma.append(f"ELSE {lv['gamma']}")
        else:
            gamma.append(f"WHEN {lv['sql']} THEN {lv['gamma']}")
    gamma.append("END")
    g = f"gamma_{name}"
    weight, label = ["CASE"], ["CASE"]
    for lv in comp["levels"]:
        w = f"CAST({float(lv['log2_bf'])!r} AS DOUBLE)"
        if lv["tf_column"] and lv["u_exact"] and lv["tf_weight"]:
            tf = f"tf_{lv['tf_column']}_l"
            w = (
                f"{w} + CASE WHEN {tf} IS NOT NULL THEN {float(lv['tf_weight'])!r} * "
                f"({math.log2(lv['u_exact'])!r} - log2({tf})) ELSE 0 END"
            )
        weight.append(f"WHEN {g} = {int(lv['gamma'])} THEN {w}")
        text = "'" + str(lv["label"]).replace("'", "''") + "'"
        label.append(f"WHEN {g} = {int(lv['gamma'])} THEN {text}")
    weight.append("ELSE 0 END")
    label.append("END")
    return " ".join(gamma), " ".join(weight), " ".join(label)


def _duck_type(dtype: pl.DataType) -> str:
    if dtype == pl.Date:
        return "DATE"
    if dtype == pl.Boolean:
        return "BOOLEAN"
    if dtype.is_integer():
        return "BIGINT"
    return "VARCHAR"


def scoring_sql(
    entity_type: str, levels: dict[str, Any], query: pl.DataFrame, *, pairwise: bool = False
) -> str:
    """The SQL scoring every blocked candidate mention against the one-row ``query``
    features; parameters: :func:`scoring_params`. ``pairwise``: no blocking; the
    candidates are the mentions in a bound list, scored one row each."""
    cols = [c for c in FEATURES[entity_type] if c != "role"]
    q_select = ", ".join(
        f"CAST(? AS {_duck_type(query.schema[c])}) AS {c}_r" for c in query.columns
    )
    l_select = ", ".join(
        [
            "f.entity_id",
            *(f"f.{c} AS {c}_l" for c in cols),
            *(
                f"{_tf_share(entity_type, c, f't_{c}')} AS tf_{c}_l"
                for c in TF_COLUMNS[entity_type]
            ),
        ]
    )
    tf_joins = "".join(
        f" LEFT JOIN {tf_table(entity_type, c)} t_{c} ON t_{c}.{c} = f.{c}"
        for c in TF_COLUMNS[entity_type]
    )
    # Only the blocks the example fills, each its own scan with equality filters on
    # bound constants: DuckDB pushes those into the scan (one column read, the other
    # columns fetched for the few rows that pass), where an OR across columns would
    # decompress every column of every row first.
    row = query.row(0, named=True)
    filled = [b for b in BLOCKING[entity_type] if all(row.get(c) is not None for c in b)]
    table = TABLES[entity_type]
    candidates = (
        " UNION ".join(
            f"SELECT * FROM {table} WHERE " + " AND ".join(f"{c} = ?" for c in block)
            for block in filled
        )
        or f"SELECT * FROM {table} WHERE false"
    )
    if pairwise:
        candidates = f"SELECT * FROM {table} WHERE list_contains(?, mention_id)"
    group = "entity_id, mention_id, source_id" if pairwise else "entity_id"
    parts = [_level_sql(c) for c in levels["comparisons"]]
    names = [c["name"] for c in levels["comparisons"]]
    gammas = ", ".join(f"{g} AS gamma_{n}" for (g, _, _), n in zip(parts, names, strict=True))
    weights = ", ".join(f"{w} AS w_{n}" for (_, w, _), n in zip(parts, names, strict=True))
    labels = ", ".join(f"{lab} AS l_{n}" for (_, _, lab), n in zip(parts, names, strict=True))
    total = " + ".join([repr(float(levels["prior_log2"])), *(f"w_{n}" for n in names)])
    evidence = ", ".join(
        f"{{'comparison': '{n}', 'level': l_{n}, 'log2_bf': w_{n}}}" for n in names
    )
    return f"""
    WITH q AS (SELECT {q_select}),
    c AS (SELECT {l_select}, q.* FROM ({candidates}) f{tf_joins} CROSS JOIN q),
    g AS (SELECT *, {gammas} FROM c),
    w AS (SELECT entity_id, mention_id_l AS mention_id, source_id_l AS source_id,
                 {weights}, {labels} FROM g),
    s AS (SELECT entity_id, mention_id, source_id, {total} AS match_weight,
                 [{evidence}] AS evidence FROM w)
    SELECT entity_id, arg_max(mention_id, match_weight) AS mention_id,
           arg_max(source_id, match_weight) AS source_id, max(match_weight) AS match_weight,
           arg_max(evidence, match_weight) AS evidence, count(*) AS candidates
    FROM s GROUP BY {group}
    ORDER BY match_weight DESC, entity_id
    LIMIT ?
    """


def load_levels(con: duckdb.DuckDBPyConnection, entity_type: str) -> dict[str, Any]:
    row = con.execute(
        "SELECT levels FROM match_models WHERE entity_type = ?", [entity_type]
    ).fetchone()
    if row is None:
        raise ExampleError(f"the warehouse has no {entity_type} model: run link, then publish")
    return json.loads(row[0])


def scoring_params(
    entity_type: str, query: pl.DataFrame, *, limit: int, mention_ids: list[str] | None = None
) -> list[Any]:
    """Parameters of :func:`scoring_sql`: the query's values (``query.columns`` order),
    then the values of the blocks it fills (or the ``mention_ids`` list), then limit."""
    row = query.row(0, named=True)
    if mention_ids is not None:
        candidates: list[Any] = [list(mention_ids)]
    else:
        candidates = [
            row[c]
            for b in BLOCKING[entity_type]
            if all(row.get(c) is not None for c in b)
            for c in b
        ]
    return [*query.row(0), *candidates, int(limit)]


def score_features(
    con: duckdb.DuckDBPyConnection,
    entity_type: str,
    query: pl.DataFrame,
    *,
    limit: int = 10,
    levels: dict[str, Any] | None = None,
    mention_ids: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Entities whose mentions the one-row feature frame ``query`` blocks with, scored
    (``entity_id, mention_id, source_id, match_weight, match_probability, evidence``).
    With ``mention_ids``: exactly those mentions, one result each, no blocking."""
    levels = levels or load_levels(con, entity_type)
    pairwise = mention_ids is not None
    sql = scoring_sql(entity_type, levels, query, pairwise=pairwise)
    params = scoring_params(entity_type, query, limit=limit, mention_ids=mention_ids)
    cur = con.execute(sql, params)
    cols = [d[0] for d in cur.description]
    out = []
    for row in cur.fetchall():
        d = dict(zip(cols, row, strict=True))
        w = float(d["match_weight"])
        d["match_probability"] = 1.0 / (1.0 + 2.0 ** (-w)) if w > -1000 else 0.0
        d["evidence"] = [e for e in d["evidence"] if e["level"] != "null" and e["level"]]
        out.append(d)
    return out


def reason(evidence: list[dict[str, Any]]) -> str:
    """The comparison levels that agreed (positive weight), strongest first, then those
    that disagreed."""
    ev = sorted(evidence, key=lambda e: -e["log2_bf"])
    pos = [f"{e['level']} {e['log2_bf']:+.1f}" for e in ev if e["log2_bf"] > 0]
    neg = [f"{e['level']} {e['log2_bf']:+.1f}" for e in ev if e["log2_bf"] <= 0]
    return (
        "agrees: "
        + (", ".join(pos) or "nothing")
        + ("; disagrees: " + ", ".join(neg) if neg else "")
    )


def search_example(
    con: duckdb.DuckDBPyConnection,
    example: dict[str, Any],
    *,
    entity_type: str = "person",
    limit: int = 10,
    masked: bool = True,
) -> list[dict[str, Any]]:
    """Entities resembling the partial record ``example`` (see :data:`EXAMPLE_FIELDS`),
    best first: ``entity_id, entity_type, score`` (Splink match probability),
    ``match_weight``, ``reason``, the best-matching mention and the golden record
    (masked unless ``masked=False``)."""
    if entity_type not in ENTITY_TYPES:
        raise ExampleError(f"entity_type must be one of {ENTITY_TYPES}")
    if not any(v is not None and str(v).strip() for v in example.values()):
        return []
    query = example_mention(entity_type, example)
    hits = score_features(con, entity_type, query, limit=limit)
    if not hits:
        return []
    view = "analyst_entities" if masked else "entities"
    golden = {
        r[0]: r
        for r in con.execute(
            "SELECT entity_id, name_native, name_latin, name, dob, sex, id_number, phone, uscc, "
            f"n_sources FROM {view} WHERE list_contains(?, entity_id)",
            [[h["entity_id"] for h in hits]],
        ).fetchall()
    }
    out = []
    for h in hits:
        g = golden.get(h["entity_id"])
        out.append(
            {
                "entity_id": h["entity_id"],
                "entity_type": entity_type,
                "score": round(h["match_probability"], 6),
                "match_weight": round(h["match_weight"], 4),
                "reason": reason(h["evidence"]),
                "best_mention": h["mention_id"],
                "best_source": h["source_id"],
                **(
                    dict(
                        zip(
                            (
                                "name_native",
                                "name_latin",
                                "name",
                                "dob",
                                "sex",
                                "id_number",
                                "phone",
                                "uscc",
                                "n_sources",
                            ),
                            g[1:],
                            strict=True,
                        )
                    )
                    if g
                    else {}
                ),
            }
        )
    return out


def models_path(home: Home, entity_type: str) -> Path:
    return home.lake / "linkage" / f"{entity_type}_model.json"
