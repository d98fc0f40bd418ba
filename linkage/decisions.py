"""Human decisions: must-link / cannot-link between mentions or entities, kept in
``$TESSERA_HOME/decisions.duckdb`` (never rebuilt) and honoured by every run.

The store is append-only: this module only ever inserts. A decision names two
sides (a mention ID ``M…`` or a stable entity ID ``E…``); an entity side is
resolved when the decision is taken to the mentions the entity had then
(``decision_mentions``), so the decision keeps meaning what the reviewer saw. A
later decision on the same pair supersedes an earlier one (the highest
``decision_id`` wins); the earlier rows stay as history.

Applying them (:func:`apply_decisions`, after the model's clusters):

- must-link: the clusters of both sides are joined (components over clusters and
  must-link edges);
- cannot-link: a cluster holding both sides is rebuilt from its own edges, must-link
  edges first (newest first), then model edges strongest first, refusing an edge
  that would join the two sides of a cannot-link (or two records of a
  duplicate-free source) — so the weakest links on the paths between the sides
  are the ones dropped, even through a transitive chain;
- conflict: a must-link edge is never refused by the model or the guard; when it
  would break a cannot-link, the later decision wins and the conflict is reported.

The review queue (:func:`review_queue`) lists what a human should look at:
uncertain pairs (match probability in a band below the threshold), weak links
that alone hold two strongly linked parts of an entity together, and unusually
large entities, with both mentions' key fields.

All SQL here binds values as parameters.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import duckdb
import polars as pl

from connectors import lake
from tessera.config import Home

KINDS = ("must_link", "cannot_link")
ENTITY_TYPES = ("person", "business")

_DDL = [
    "CREATE SEQUENCE IF NOT EXISTS decision_id_seq START 1",
    """CREATE TABLE IF NOT EXISTS decisions (
        decision_id BIGINT PRIMARY KEY DEFAULT nextval('decision_id_seq'),
        entity_type VARCHAR NOT NULL,
        a VARCHAR NOT NULL,
        b VARCHAR NOT NULL,
        kind VARCHAR NOT NULL CHECK (kind IN ('must_link', 'cannot_link')),
        who VARCHAR NOT NULL,
        reason VARCHAR NOT NULL CHECK (length(reason) > 0),
        decided_at TIMESTAMP NOT NULL,
        CHECK (a < b)
    )""",
    """CREATE TABLE IF NOT EXISTS decision_mentions (
        decision_id BIGINT NOT NULL,
        side VARCHAR NOT NULL CHECK (side IN ('a', 'b')),
        mention_id VARCHAR NOT NULL
    )""",
    "CREATE SEQUENCE IF NOT EXISTS id_event_seq START 1",
    """CREATE TABLE IF NOT EXISTS id_events (
        event_id BIGINT PRIMARY KEY DEFAULT nextval('id_event_seq'),
        entity_type VARCHAR NOT NULL,
        run_at TIMESTAMP NOT NULL,
        kind VARCHAR NOT NULL CHECK (kind IN ('new', 'merge', 'split', 'retired')),
        old_ids VARCHAR[] NOT NULL,
        new_ids VARCHAR[] NOT NULL,
        mentions BIGINT NOT NULL,
        reason VARCHAR NOT NULL
    )""",
]


@contextmanager
def connect(home: Home, *, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to ``decisions.duckdb``, created with its tables on first use."""
    path = home.decisions
    if read_only and not path.exists():
        read_only = False
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path), read_only=read_only)
    try:
        if not read_only:
            for ddl in _DDL:
                con.execute(ddl)
        yield con
    finally:
        con.close()


def _frame(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> pl.DataFrame:
    """A parameterised query's result as a polars frame."""
    return pl.from_arrow(con.sql(sql, params=params).to_arrow_table())  # type: ignore[return-value]


@dataclass(frozen=True)
class Decision:
    """One recorded decision."""

    decision_id: int
    entity_type: str
    a: str
    b: str
    kind: str
    who: str
    reason: str
    decided_at: datetime
    mentions_a: tuple[str, ...] = ()
    mentions_b: tuple[str, ...] = ()


class DecisionError(ValueError):
    """A decision that cannot be recorded (unknown ID, mixed types, no reason…)."""


# ------------------------------------------------------------------ resolving sides


def _entities_map(home: Home, entity_type: str) -> pl.LazyFrame | None:
    p = home.lake / "linkage" / f"{entity_type}_entities.parquet"
    return pl.scan_parquet(p) if p.exists() else None


def resolve(home: Home, ref: str) -> tuple[str, list[str]]:
    """``(entity_type, mention_ids)`` for a mention ID or a current entity ID;
    raises :class:`DecisionError` when it names nothing."""
    if ref.startswith("E"):
        for etype in ENTITY_TYPES:
            ent = _entities_map(home, etype)
            if ent is None:
                continue
            ms = ent.filter(pl.col("entity_id") == ref).select("mention_id").collect()
            if ms.height:
                return etype, sorted(ms["mention_id"].to_list())
        raise DecisionError(f"no entity {ref!r} in the last run (run `tessera link` first?)")
    for etype in ENTITY_TYPES:
        ent = _entities_map(home, etype)
        if (
            ent is not None
            and ent.filter(pl.col("mention_id") == ref).select(pl.len()).collect().item()
        ):
            return etype, [ref]
    found = lake.mentions(home).filter(pl.col("mention_id") == ref).select("entity_type").collect()
    if found.height == 0:
        raise DecisionError(f"no mention {ref!r} in the lake")
    return str(found["entity_type"][0]), [ref]


# ------------------------------------------------------------------ recording


def record_decision(
    home: Home,
    a: str,
    b: str,
    *,
    same: bool,
    reason: str,
    who: str | None = None,
    at: datetime | None = None,
) -> Decision:
    """Append a must-link (``same=True``) or cannot-link decision between ``a`` and
    ``b`` (mention or entity IDs, which must exist and be of one entity type).
    ``who`` defaults to ``$USER``. The only write this store offers: there is no
    update or delete; decide again to supersede."""
    reason = (reason or "").strip()
    if not reason:
        raise DecisionError("a decision needs a reason")
    if a == b:
        raise DecisionError("a decision needs two different sides")
    who = who or os.environ.get("USER") or getpass.getuser()
    a, b = sorted((a, b))
    type_a, ms_a = resolve(home, a)
    type_b, ms_b = resolve(home, b)
    if type_a != type_b:
        raise DecisionError(f"{a} is a {type_a}, {b} is a {type_b}")
    if set(ms_a) & set(ms_b) and not same:
        raise DecisionError(f"{a} and {b} share mentions: they cannot be kept apart")
    kind = "must_link" if same else "cannot_link"
    at = at or datetime.now(UTC).replace(tzinfo=None)
    with connect(home) as con:
        con.execute("BEGIN TRANSACTION")
        did = con.execute(
            "INSERT INTO decisions (entity_type, a, b, kind, who, reason, decided_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING decision_id",
            [type_a, a, b, kind, who, reason, at],
        ).fetchall()[0][0]
        con.executemany(
            "INSERT INTO decision_mentions VALUES (?, ?, ?)",
            [(did, "a", m) for m in ms_a] + [(did, "b", m) for m in ms_b],
        )
        con.execute("COMMIT")
    return Decision(did, type_a, a, b, kind, who, reason, at, tuple(ms_a), tuple(ms_b))


def history(home: Home) -> list[Decision]:
    """Every decision ever recorded, oldest first (superseded ones included)."""
    if not home.decisions.exists():
        return []
    with connect(home, read_only=True) as con:
        rows = con.execute(
            "SELECT decision_id, entity_type, a, b, kind, who, reason, decided_at "
            "FROM decisions ORDER BY decision_id"
        ).fetchall()
    return [Decision(*r) for r in rows]


def active_decisions(home: Home, entity_type: str) -> pl.DataFrame:
    """The decisions in force for ``entity_type``: the latest per pair of sides,
    with their mentions (``decision_id, kind, side, mention_id``)."""
    schema = {
        "decision_id": pl.Int64(),
        "kind": pl.String(),
        "side": pl.String(),
        "mention_id": pl.String(),
    }
    if not home.decisions.exists():
        return pl.DataFrame(schema=schema)
    with connect(home, read_only=True) as con:
        rel = _frame(
            con,
            """
            WITH latest AS (
                SELECT * FROM decisions WHERE entity_type = ?
                QUALIFY row_number() OVER (PARTITION BY a, b ORDER BY decision_id DESC) = 1
            )
            SELECT l.decision_id, l.kind, m.side, m.mention_id
            FROM latest l JOIN decision_mentions m USING (decision_id)
            ORDER BY l.decision_id, m.side, m.mention_id
            """,
            [entity_type],
        )
    return rel.cast(pl.Schema(schema))


# ------------------------------------------------------------------ applying


@dataclass
class DecisionReport:
    """What applying the decisions did in one run."""

    must_link: int = 0
    cannot_link: int = 0
    must_merged_clusters: int = 0
    cannot_split_clusters: int = 0
    refused_edges: int = 0
    dangling_mentions: int = 0
    conflicts: list[str] = field(default_factory=list)
    must_edges: pl.DataFrame | None = None  # mention_id_l, mention_id_r, decision_id

    def as_dict(self) -> dict[str, Any]:
        return {
            "must_link": self.must_link,
            "cannot_link": self.cannot_link,
            "must_merged_clusters": self.must_merged_clusters,
            "cannot_split_clusters": self.cannot_split_clusters,
            "refused_edges": self.refused_edges,
            "dangling_mentions": self.dangling_mentions,
            "conflicts": self.conflicts,
        }


def must_link_edges(active: pl.DataFrame) -> pl.DataFrame:
    """A star per must-link decision: its smallest mention to each of the others."""
    m = active.filter(pl.col("kind") == "must_link")
    return (
        m.select(
            pl.col("mention_id").min().over("decision_id").alias("mention_id_l"),
            pl.col("mention_id").alias("mention_id_r"),
            "decision_id",
        )
        .filter(pl.col("mention_id_l") != pl.col("mention_id_r"))
        .unique(maintain_order=True)
    )


def apply_decisions(
    clusters: pl.DataFrame,
    edges: pl.DataFrame,
    active: pl.DataFrame,
    guard: pl.DataFrame | None = None,
) -> tuple[pl.DataFrame, DecisionReport]:
    """Honour ``active`` decisions (:func:`active_decisions`) on the model's
    ``clusters`` (``mention_id, cluster_id``) built from ``edges`` (``mention_id_l,
    mention_id_r, match_weight``). ``guard`` (``mention_id, source_id, guard_key``)
    keeps the duplicate-free rule when a cluster is rebuilt. Returns the new
    clusters and a report."""
    from linkage.clusters import connected_components

    rep = DecisionReport()
    present = clusters.select("mention_id")
    act = active.join(present, on="mention_id")
    rep.dangling_mentions = active.height - act.height
    rep.must_link = act.filter(pl.col("kind") == "must_link")["decision_id"].n_unique()
    rep.cannot_link = act.filter(pl.col("kind") == "cannot_link")["decision_id"].n_unique()
    must = must_link_edges(act)
    rep.must_edges = must

    # 1. must-link: components over clusters joined by must-link edges.
    if must.height:
        cid = clusters.select("mention_id", "cluster_id")
        cl_edges = (
            must.join(
                cid.rename({"mention_id": "mention_id_l", "cluster_id": "c_l"}), on="mention_id_l"
            )
            .join(
                cid.rename({"mention_id": "mention_id_r", "cluster_id": "c_r"}), on="mention_id_r"
            )
            .filter(pl.col("c_l") != pl.col("c_r"))
            .select(pl.col("c_l").alias("mention_id_l"), pl.col("c_r").alias("mention_id_r"))
        )
        if cl_edges.height:
            comp = connected_components(clusters["cluster_id"].unique(), cl_edges).rename(
                {"mention_id": "cluster_id", "cluster_id": "super_id"}
            )
            rep.must_merged_clusters = int(
                comp.group_by("super_id").len().filter(pl.col("len") > 1).height
            )
            clusters = clusters.join(comp, on="cluster_id").select(
                "mention_id", pl.col("super_id").alias("cluster_id")
            )

    # 2. cannot-link: clusters holding both sides of one.
    cannot = act.filter(pl.col("kind") == "cannot_link")
    bad = (
        cannot.join(clusters, on="mention_id")
        .group_by("decision_id", "cluster_id")
        .agg(pl.col("side").n_unique().alias("sides"))
        .filter(pl.col("sides") == 2)
        .select("cluster_id")
        .unique()
    )
    if bad.height == 0:
        return clusters, rep
    rep.cannot_split_clusters = bad.height
    members = clusters.join(bad, on="cluster_id")
    new, refused, conflicts = _rebuild(members, edges, must, cannot, guard)
    rep.refused_edges = refused
    rep.conflicts = conflicts
    kept = clusters.join(bad, on="cluster_id", how="anti")
    return pl.concat([kept, new]), rep


def _rebuild(
    members: pl.DataFrame,
    edges: pl.DataFrame,
    must: pl.DataFrame,
    cannot: pl.DataFrame,
    guard: pl.DataFrame | None,
) -> tuple[pl.DataFrame, int, list[str]]:
    """Greedy re-clustering of the offending clusters only (a handful): must-link
    edges newest first, then model edges strongest first, each refused when it
    would join two sides of one cannot-link (or two records of a duplicate-free
    source); a must-link edge overrides an older cannot-link only."""
    cid = members.select("mention_id", "cluster_id")

    def inside(e: pl.DataFrame) -> pl.DataFrame:
        return (
            e.join(cid.rename({"mention_id": "mention_id_l"}), on="mention_id_l")
            .join(
                cid.rename({"mention_id": "mention_id_r", "cluster_id": "c_r"}), on="mention_id_r"
            )
            .filter(pl.col("cluster_id") == pl.col("c_r"))
        )

    must_in = inside(must).sort("decision_id", descending=True)
    model_in = inside(edges.select("mention_id_l", "mention_id_r", "match_weight")).sort(
        ["match_weight", "mention_id_l", "mention_id_r"], descending=[True, False, False]
    )
    tags: dict[str, dict[tuple[str, Any], set[str]]] = {
        m: {} for m in members["mention_id"].to_list()
    }
    for d, side, m in (
        cannot.join(cid, on="mention_id").select("decision_id", "side", "mention_id").iter_rows()
    ):
        tags[m].setdefault(("cannot", d), set()).add(side)
    if guard is not None:
        for m, s, k in (
            guard.join(cid, on="mention_id")
            .select("mention_id", "source_id", "guard_key")
            .iter_rows()
        ):
            tags[m].setdefault(("guard", s), set()).add(k)
    parent = {m: m for m in tags}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def clash(ta: dict, tb: dict) -> list[tuple[str, Any]]:
        return [
            k
            for k, va in ta.items()
            if k in tb and len(va) == 1 and len(tb[k]) == 1 and va != tb[k]
        ]

    def union(ra: str, rb: str) -> None:
        parent[rb] = ra
        for k, v in tags[rb].items():
            tags[ra].setdefault(k, set()).update(v)

    conflicts: list[str] = []
    refused = 0
    for a, b, d in must_in.select("mention_id_l", "mention_id_r", "decision_id").iter_rows():
        ra, rb = find(a), find(b)
        if ra == rb:
            continue
        broken = [k[1] for k in clash(tags[ra], tags[rb]) if k[0] == "cannot"]
        if any(c > d for c in broken):
            refused += 1
            later = max(c for c in broken if c > d)
            conflicts.append(
                f"cannot-link #{later} overrides the earlier must-link #{d} ({a} ~ {b})"
            )
            continue
        for c in broken:
            conflicts.append(f"must-link #{d} overrides the earlier cannot-link #{c}")
        union(ra, rb)
    for a, b in model_in.select("mention_id_l", "mention_id_r").iter_rows():
        ra, rb = find(a), find(b)
        if ra == rb:
            continue
        if clash(tags[ra], tags[rb]):
            refused += 1
            continue
        union(ra, rb)
    new = pl.DataFrame(
        {"mention_id": list(parent), "cluster_id": [find(m) for m in parent]},
        schema={"mention_id": pl.String(), "cluster_id": pl.String()},
    )
    return new, refused, conflicts


# ------------------------------------------------------------------ id events


def record_id_events(home: Home, entity_type: str, events: pl.DataFrame) -> int:
    """Append this run's ID events (``kind, old_ids, new_ids, mentions, reason``)
    to the ``id_events`` table in one set-based insert; returns how many."""
    if events.height == 0:
        return 0
    run_at = datetime.now(UTC).replace(tzinfo=None)
    frame = events.select("kind", "old_ids", "new_ids", "mentions", "reason").to_arrow()
    with connect(home) as con:
        con.execute("BEGIN TRANSACTION")
        con.register("new_id_events", frame)
        con.execute(
            "INSERT INTO id_events (entity_type, run_at, kind, old_ids, new_ids, mentions, reason) "
            "SELECT ?, ?, kind, old_ids, new_ids, mentions, reason FROM new_id_events",
            [entity_type, run_at],
        )
        con.unregister("new_id_events")
        con.execute("COMMIT")
    return events.height


def event_reasons(
    events: pl.DataFrame, entities: pl.DataFrame, active: pl.DataFrame
) -> pl.DataFrame:
    """``events`` with a ``reason``: the decisions whose mentions are now in one of
    the event's new entities (``decision #3, #7``), else ``model`` (``new`` events:
    ``new mentions``)."""
    by_entity = (
        active.join(entities, on="mention_id")
        .group_by("entity_id")
        .agg(pl.col("decision_id").unique().sort())
    )
    tagged = (
        events.with_row_index("_i")
        .explode("new_ids")
        .join(by_entity, left_on="new_ids", right_on="entity_id", how="left")
        .explode("decision_id")
        .group_by("_i")
        .agg(pl.col("decision_id").drop_nulls().unique().sort())
    )
    ev = events.with_row_index("_i").join(tagged, on="_i", how="left")
    return ev.with_columns(
        pl.when(pl.col("decision_id").list.len() > 0)
        .then(
            pl.lit("decision ")
            + pl.col("decision_id")
            .list.eval(pl.lit("#") + pl.element().cast(pl.String))
            .list.join(", ")
        )
        .when(pl.col("kind") == "new")
        .then(pl.lit("new mentions"))
        .otherwise(pl.lit("model"))
        .alias("reason")
    ).drop("_i", "decision_id")


def id_events(home: Home, entity_type: str | None = None) -> pl.DataFrame:
    """The ID event history (oldest first), optionally for one entity type."""
    with connect(home) as con:
        return _frame(
            con,
            "SELECT * FROM id_events WHERE ? IS NULL OR entity_type = ? ORDER BY event_id",
            [entity_type, entity_type],
        )


def issued_ids(home: Home, entity_type: str, among: pl.Series | None = None) -> set[str]:
    """Every entity ID ever issued for ``entity_type`` (from the event history); of
    those in ``among`` only, when given (a million IDs make a slow Python set)."""
    if not home.decisions.exists():
        return set()
    every = (
        "SELECT unnest(list_concat(old_ids, new_ids)) AS id FROM id_events WHERE entity_type = ?"
    )
    with connect(home) as con:
        if among is None:
            sql = f"SELECT DISTINCT id FROM ({every})"
        else:
            # Narrowed before the distinct: the 1M IDs of a 1,000,000-person world's
            # history made a distinct set first (0.16-0.26 s, now 0.07 s).
            con.register("_among", among.to_frame("id").to_arrow())
            sql = f"SELECT DISTINCT id FROM ({every}) SEMI JOIN _among USING (id)"
        rows = con.execute(sql, [entity_type]).fetchall()
    return {r[0] for r in rows}


# ------------------------------------------------------------------ review queue

REVIEW_BAND = (0.3, 0.9)
WEAK_WEIGHT = 8.0  # a link below this match weight is weak (p ≈ 0.997 before the prior)
LARGE_ENTITY = 50

KEY_FIELDS = {
    "person": [
        "source_id",
        "name_native",
        "name_latin",
        "dob",
        "sex",
        "id_number",
        "id_masked",
        "phone",
        "phone_masked",
        "city",
        "district",
    ],
    "business": ["source_id", "name", "uscc", "city", "district"],
}


def lone_weak_edges(
    edges: pl.DataFrame,
    nodes: pl.Series,
    weak_weight: float,
    ends: tuple[str, str] = ("mention_id_l", "mention_id_r"),
) -> pl.DataFrame:
    """The rows of ``edges`` (ends in the ``ends`` columns, ``match_weight``) below
    ``weak_weight`` that alone join two parts, a part being a connected component of
    ``nodes`` over the edges at or above it: the single weak link holding two
    strongly linked groups together."""
    from linkage.clusters import connected_components

    a, b = ends
    strong = edges.filter(pl.col("match_weight") >= weak_weight).select(
        pl.col(a).alias("mention_id_l"), pl.col(b).alias("mention_id_r")
    )
    parts = connected_components(nodes, strong)
    return (
        edges.filter(pl.col("match_weight") < weak_weight)
        .join(parts.rename({"mention_id": a, "cluster_id": "_part_a"}), on=a)
        .join(parts.rename({"mention_id": b, "cluster_id": "_part_b"}), on=b)
        .filter(pl.col("_part_a") != pl.col("_part_b"))
        .filter(
            pl.len().over(
                pl.min_horizontal("_part_a", "_part_b"), pl.max_horizontal("_part_a", "_part_b")
            )
            == 1
        )
        .drop("_part_a", "_part_b")
    )


def review_candidates(
    entities: pl.DataFrame,
    scored: pl.DataFrame,
    kept_edges: pl.DataFrame,
    *,
    band: tuple[float, float] = REVIEW_BAND,
    weak_weight: float = WEAK_WEIGHT,
    large_entity: int = LARGE_ENTITY,
) -> pl.DataFrame:
    """What a reviewer should see for one entity type (``kind, mention_id_l,
    mention_id_r, entity_id_l, entity_id_r, match_weight, match_probability,
    size``): ``uncertain`` scored pairs in the probability ``band`` that sit in
    two entities; ``weak_link``
    edges below ``weak_weight`` that alone join two strongly linked parts of an
    entity; ``large_entity`` entities above the 99.9th size percentile and
    ``large_entity`` mentions (one row each, its two smallest mentions)."""

    ent = entities.select("mention_id", "entity_id")
    el = ent.rename({"mention_id": "mention_id_l", "entity_id": "entity_id_l"})
    er = ent.rename({"mention_id": "mention_id_r", "entity_id": "entity_id_r"})
    cols = [
        "kind",
        "mention_id_l",
        "mention_id_r",
        "entity_id_l",
        "entity_id_r",
        "match_weight",
        "match_probability",
        "size",
    ]
    sizes = ent.group_by("entity_id").agg(pl.len().alias("size"))
    lo, hi = band
    uncertain = (
        scored.filter(pl.col("match_probability").is_between(lo, hi, closed="left"))
        .select("mention_id_l", "mention_id_r", "match_weight", "match_probability")
        .join(el, on="mention_id_l")
        .join(er, on="mention_id_r")
        # Within one entity a doubtful pair is outvoted by stronger paths (the weak
        # links below catch the ones that are not); across entities it may be a miss.
        .filter(pl.col("entity_id_l") != pl.col("entity_id_r"))
        .join(sizes.rename({"entity_id": "entity_id_l"}), on="entity_id_l")
        .with_columns(pl.lit("uncertain").alias("kind"))
        .select(cols)
    )
    # Weak links: components over the strong edges inside each entity; a weak edge
    # joining two such parts, alone between them, holds the entity together.
    inner = kept_edges.filter(pl.col("match_weight").is_not_null())
    multi = ent.join(sizes.filter(pl.col("size") > 1), on="entity_id")
    weak = (
        lone_weak_edges(inner, multi["mention_id"], weak_weight)
        .join(el, on="mention_id_l")
        .join(er, on="mention_id_r")
        .join(sizes.rename({"entity_id": "entity_id_l"}), on="entity_id_l")
        .with_columns(pl.lit("weak_link").alias("kind"))
        .select(cols)
    )
    cut = sizes["size"].quantile(0.999) if sizes.height else 0
    big = (
        sizes.filter((pl.col("size") > cut) | (pl.col("size") > large_entity))
        .filter(pl.col("size") > 2)
        .join(
            ent.sort("mention_id")
            .group_by("entity_id", maintain_order=True)
            .agg(pl.col("mention_id").head(2)),
            on="entity_id",
        )
        .select(
            pl.lit("large_entity").alias("kind"),
            pl.col("mention_id").list.get(0).alias("mention_id_l"),
            pl.col("mention_id").list.get(1).alias("mention_id_r"),
            pl.col("entity_id").alias("entity_id_l"),
            pl.col("entity_id").alias("entity_id_r"),
            pl.lit(None, dtype=pl.Float64).alias("match_weight"),
            pl.lit(None, dtype=pl.Float64).alias("match_probability"),
            "size",
        )
    )
    schema = {
        "kind": pl.String(),
        "mention_id_l": pl.String(),
        "mention_id_r": pl.String(),
        "entity_id_l": pl.String(),
        "entity_id_r": pl.String(),
        "match_weight": pl.Float64(),
        "match_probability": pl.Float64(),
        "size": pl.Int64(),
    }
    return pl.concat([f.cast(pl.Schema(schema)) for f in (uncertain, weak, big)])


def review_queue(home: Home, *, limit: int | None = 50) -> list[dict[str, Any]]:
    """The review queue over both entity types, most urgent first: weak links and
    large entities, then uncertain pairs closest to even odds. Pairs a decision
    already covers are left out. Each item carries both mentions' key fields."""
    items: list[pl.DataFrame] = []
    decided: set[tuple[str, str]] = set()
    for etype in ENTITY_TYPES:
        act = active_decisions(home, etype)
        for _, g in act.group_by("decision_id"):
            a = g.filter(pl.col("side") == "a")["mention_id"].to_list()
            b = g.filter(pl.col("side") == "b")["mention_id"].to_list()
            decided.update((min(x, y), max(x, y)) for x in a for y in b)
    for etype in ENTITY_TYPES:
        p = home.lake / "linkage" / f"{etype}_review.parquet"
        if not p.exists():
            continue
        q = pl.read_parquet(p).with_columns(pl.lit(etype).alias("entity_type"))
        if decided:
            dec = pl.DataFrame(
                list(decided),
                schema={"mention_id_l": pl.String(), "mention_id_r": pl.String()},
                orient="row",
            )
            q = q.join(dec, on=["mention_id_l", "mention_id_r"], how="anti")
        items.append(q)
    if not items:
        return []
    q = (
        pl.concat(items)
        .with_columns(
            pl.col("kind")
            .replace_strict(
                {"weak_link": 0, "large_entity": 1, "uncertain": 2}, return_dtype=pl.Int8
            )
            .alias("_rank"),
            (pl.col("match_weight").abs()).alias("_closeness"),
        )
        .sort(
            ["_rank", "_closeness", "size", "mention_id_l"],
            descending=[False, False, True, False],
            nulls_last=True,
        )
    )
    if limit is not None:
        q = q.head(limit)
    q = q.drop("_rank", "_closeness")
    ids = list(set(q["mention_id_l"].to_list()) | set(q["mention_id_r"].to_list()))
    fields = (
        lake.mentions(home)
        .filter(pl.col("mention_id").is_in(ids))
        .select("mention_id", "entity_type", *{c for cs in KEY_FIELDS.values() for c in cs})
        .collect()
    )
    by_id = {r["mention_id"]: r for r in fields.iter_rows(named=True)}
    out = []
    for r in q.iter_rows(named=True):
        keys = KEY_FIELDS[r["entity_type"]]
        r["left"] = {k: by_id.get(r["mention_id_l"], {}).get(k) for k in ["mention_id", *keys]}
        r["right"] = {k: by_id.get(r["mention_id_r"], {}).get(k) for k in ["mention_id", *keys]}
        r["left"]["mention_id"] = r["mention_id_l"]
        r["right"]["mention_id"] = r["mention_id_r"]
        out.append(r)
    return out
