"""The naive deterministic rule, the floor any model must beat.

Persons: same valid resident ID, or same hanzi name and same stated date of birth.
Businesses: same valid USCC, or same name. Rules are applied as a union (two
mentions linked by any rule are one entity) and closed transitively. Each rule is
turned into edges from every mention of a key group to the group's first mention
(a star, linear in the group size), then connected components.

The rule depends on the staged mentions only, so its scores (what evaluation shows
next to the model's) can be kept between runs: :func:`naive_rule_scores` stores
them in ``lake/linkage/naive_rule_scores.json`` with a fingerprint of their inputs,
and a daily run may carry them over instead of recomputing them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

import polars as pl

from connectors import lake
from linkage.clusters import connected_components
from tessera.config import Home

RULES: dict[str, list[list[str]]] = {
    "person": [["id_number"], ["name_native", "dob"]],
    "business": [["uscc"], ["name"]],
}


def key_edges(mentions: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """Edges (``mention_id_l, mention_id_r``) joining mentions that agree on every
    column of ``keys`` (nulls never agree)."""
    m = mentions.drop_nulls(keys).filter(
        pl.all_horizontal(pl.col(k).cast(pl.String) != "" for k in keys)
    )
    return m.select(
        pl.col("mention_id").min().over(keys).alias("mention_id_l"),
        pl.col("mention_id").alias("mention_id_r"),
    ).filter(pl.col("mention_id_l") != pl.col("mention_id_r"))


def baseline_clusters(home: Home, entity_type: str = "person") -> pl.DataFrame:
    """Clusters (``mention_id, cluster_id``) of every ``entity_type`` mention by the naive rule."""
    keys = sorted({k for rule in RULES[entity_type] for k in rule})
    m = (
        lake.mentions(home)
        .filter(pl.col("entity_type") == entity_type)
        .select("mention_id", *keys)
        .collect()
    )
    edges = pl.concat([key_edges(m, keys) for keys in RULES[entity_type]])
    return connected_components(m["mention_id"], edges)


# -- the naive rule's scores, kept between runs ----------------------------------------

NAIVE_SCORES_FILE = "naive_rule_scores.json"
# Bump when the rule or the scores change meaning, so a stored score is not reused.
NAIVE_SCORES_VERSION = 1


def naive_inputs_fingerprint(home: Home) -> str:
    """A fingerprint of what the naive rule's scores are computed on: the staged
    mention, record and relationship files and the truth files as the truth store sees
    them (:func:`linkage.truth.input_states`: path, size, modification time), the rules
    and :data:`NAIVE_SCORES_VERSION`."""
    from linkage.truth import input_states

    payload = [NAIVE_SCORES_VERSION, RULES, input_states(home)]
    return hashlib.sha1(json.dumps(payload).encode()).hexdigest()[:16]


def latest_delivery(home: Home) -> str | None:
    """The latest delivery day with staged mentions (``staged/<source>/<YYYY-MM-DD>/``;
    a database's initial load, ``db-initial``, has no day)."""
    days = [p.parent.name for p in lake.staged_files(home, "mentions")]
    dated = [d for d in days if re.fullmatch(r"\d{4}-\d{2}-\d{2}", d)]
    return max(dated) if dated else None


def stored_naive_scores(home: Home) -> dict[str, Any]:
    """What :func:`store_naive_scores` last wrote, per entity type ({} when nothing
    was stored or the file is of another version)."""
    path = home.lake / "linkage" / NAIVE_SCORES_FILE
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    if data.get("version") != NAIVE_SCORES_VERSION:
        return {}
    return dict(data.get("entity_types", {}))


def store_naive_scores(home: Home, entity_type: str, entry: dict[str, Any]) -> None:
    """Keep ``entry`` (``fingerprint, computed_at, latest_delivery, mentions, scores``)
    as the naive rule's last scores for ``entity_type`` (written atomically)."""
    path = home.lake / "linkage" / NAIVE_SCORES_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    stored = stored_naive_scores(home)
    stored[entity_type] = entry
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"version": NAIVE_SCORES_VERSION, "entity_types": stored}, indent=1))
    os.replace(tmp, path)


def naive_rule_scores(
    home: Home,
    entity_type: str,
    mode: bool | Literal["cached"],
    score: Callable[[pl.DataFrame], dict[str, Any] | None],
    fingerprint: str | None = None,
) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """The naive rule's scores for ``entity_type`` and where they come from.

    ``mode``: True computes them (``score`` of :func:`baseline_clusters`) and stores
    them (:func:`store_naive_scores`); False skips them (None); ``"cached"`` takes the
    stored ones when there are any, computing them only when nothing is stored. The
    second value says which: ``status`` is ``computed``, ``skipped``, ``cached`` (stored,
    on the same inputs: the same scores) or ``carried_over`` (stored on earlier
    inputs), with ``computed_at``, ``latest_delivery`` and ``mentions`` of the
    computation. ``fingerprint``: :func:`naive_inputs_fingerprint`, when known."""
    if mode is False:
        return None, {"status": "skipped"}
    if mode not in (True, "cached"):
        raise ValueError(f"naive must be True, False or 'cached', not {mode!r}")
    fingerprint = fingerprint or naive_inputs_fingerprint(home)
    if mode == "cached":
        entry = stored_naive_scores(home).get(entity_type)
        if entry is not None:
            same = entry["fingerprint"] == fingerprint
            about = {k: v for k, v in entry.items() if k != "scores"}
            return entry["scores"], {"status": "cached" if same else "carried_over", **about}
    scores = score(baseline_clusters(home, entity_type))
    entry = {
        "fingerprint": fingerprint,
        "computed_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "latest_delivery": latest_delivery(home),
        "mentions": scores["mentions"] if scores else 0,
        "scores": scores,
    }
    store_naive_scores(home, entity_type, entry)
    return scores, {"status": "computed", **{k: v for k, v in entry.items() if k != "scores"}}
