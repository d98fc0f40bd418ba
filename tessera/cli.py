"""The ``tessera`` console script.

Subcommands: ``sources``, ``simulate``, ``ingest``, ``link``, ``eval``, ``review``,
``decide``, ``why``, ``bench``, ``demo``. Every
one takes ``--home DIR`` (default ``$TESSERA_HOME`` or ``./data``); ``--json``
prints machine-readable output instead of tables.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from rich.console import Console
from rich.table import Table

from tessera.config import Home

console = Console()
err_console = Console(stderr=True)


def _home(args: argparse.Namespace) -> Home:
    return Home.resolve(args.home)


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, indent=2, default=str) + "\n")


# ------------------------------------------------------------------ sources


def catalog_rows(home: Home) -> list[dict[str, Any]]:
    """One row per source: the spec's facts joined with the simulated error profile."""
    from connectors.catalog import load_specs
    from simulation.run import profiles

    profs = profiles()
    rows = []
    for s in load_specs(home.sources_dir):
        p = profs.get(s.id)
        rows.append(
            {
                "id": s.id,
                "title": s.title,
                "domain": s.domain,
                "entity": s.entity,
                "format": s.format.kind,
                "encoding": s.format.encoding
                if s.format.kind in ("csv", "delimited", "fixed_width")
                else None,
                "engine": s.engine,
                "cadence": s.cadence,
                "duplicate_free": s.duplicate_free,
                "columns": len(s.columns),
                "population": p.population if p else None,
                "errors": p.errors.as_dict() if p else None,
            }
        )
    return rows


def cmd_sources(args: argparse.Namespace) -> int:
    rows = catalog_rows(_home(args))
    if args.markdown:
        from tessera.catalog_doc import render_markdown

        sys.stdout.write(render_markdown(rows))
        return 0
    if args.json:
        _print_json(rows)
        return 0
    t = Table(title=f"{len(rows)} source systems")
    for c in (
        "id",
        "domain",
        "entity",
        "format",
        "engine",
        "cadence",
        "typo",
        "homophone",
        "swap",
        "digits",
        "missing",
        "stale addr",
        "dup",
    ):
        t.add_column(c)
    for r in rows:
        e = r["errors"] or {}
        t.add_row(
            r["id"],
            r["domain"],
            r["entity"],
            r["format"] + (f" ({r['encoding']})" if r["encoding"] else ""),
            r["engine"],
            r["cadence"],
            *[
                f"{e.get(k, 0):.1%}" if e else "-"
                for k in (
                    "typo",
                    "homophone",
                    "swapped_name",
                    "transposed_digits",
                    "missing",
                    "stale_address",
                    "duplicate",
                )
            ],
        )
    console.print(t)
    return 0


# ------------------------------------------------------------------ simulate


def run_simulate(home: Home, persons: int, seed: int, days: int, faults: bool, quiet: bool = False):
    from simulation.run import simulate
    from simulation.world import WorldConfig

    cfg = WorldConfig(persons=persons, seed=seed, days=days, faults=faults)
    with console.status("simulating…") as status:
        rep = simulate(
            home, cfg, progress=None if quiet else (lambda d: status.update(f"simulating {d}…"))
        )
    return rep


def cmd_simulate(args: argparse.Namespace) -> int:
    home = _home(args)
    t0 = time.perf_counter()
    rep = run_simulate(home, args.persons, args.seed, args.days, not args.no_faults, args.json)
    secs = time.perf_counter() - t0
    if args.json:
        _print_json(asdict(rep) | {"seconds": round(secs, 2)})
        return 0
    console.print(
        f"[bold]Simulated[/] {rep.persons:,} persons, {rep.businesses:,} businesses over "
        f"{rep.days} day(s): {rep.files:,} files, {rep.rows:,} rows, "
        f"{len(rep.databases)} databases, in {secs:.1f} s → {home.root}"
    )
    for f in rep.faults:
        console.print(f"  fault [yellow]{f.kind}[/] in {f.file}: {f.detail}")
    return 0


# ------------------------------------------------------------------ ingest


def _specs(home: Home):
    from connectors.catalog import load_specs

    return load_specs(home.sources_dir)


def run_ingest(home: Home, quiet: bool = False):
    from connectors.catalog import load_specs
    from connectors.ingest import ingest

    specs = load_specs(home.sources_dir)
    with console.status("ingesting…") as status:
        return ingest(
            home, specs, progress=None if quiet else (lambda s: status.update(f"ingesting {s}…"))
        )


def cmd_ingest(args: argparse.Namespace) -> int:
    home = _home(args)
    t0 = time.perf_counter()
    rep = run_ingest(home, args.json)
    secs = time.perf_counter() - t0
    if args.json:
        _print_json(
            {
                "seconds": round(secs, 2),
                "totals": rep.totals(),
                "sources": rep.by_source(),
                "failures": rep.failures,
                "files": [asdict(f) for f in rep.files],
            }
        )
        return 1 if rep.failures else 0
    t = Table(title="Ingest: rows read = staged + quarantined")
    for c in (
        "source",
        "files",
        "read",
        "staged",
        "quarantined",
        "duplicates",
        "skipped",
        "db ins/upd/del",
    ):
        t.add_column(c, justify="right" if c != "source" else "left")
    engines = {s.id: s.engine for s in _specs(home)}
    for sid, s in rep.by_source().items():
        ops = (
            f"{s['inserted']:,}/{s['updated']:,}/{s['deleted']:,}"
            if engines.get(sid, "file") != "file"
            else ""
        )
        t.add_row(
            sid,
            *(
                f"{s[k]:,}"
                for k in ("files", "read", "staged", "quarantined", "duplicates", "skipped")
            ),
            ops,
        )
    tot = rep.totals()
    t.add_row(
        "[bold]total",
        *(
            f"[bold]{tot[k]:,}"
            for k in ("files", "read", "staged", "quarantined", "duplicates", "skipped")
        ),
        "",
    )
    console.print(t)
    console.print(f"ingested in {secs:.1f} s")
    for sid, err in rep.failures.items():
        err_console.print(f"[red]FAILED[/] {sid}: {err}")
    return 1 if rep.failures else 0


# ------------------------------------------------------------------ link / eval


def _scores_line(name: str, scores: dict | None) -> str:
    if not scores:
        return f"{name}: -"
    p, b = scores["pairwise"], scores["bcubed"]
    return (
        f"{name}: pairwise P {p['precision']:.5f} R {p['recall']:.5f} F1 {p['f1']:.5f}; "
        f"B-cubed P {b['precision']:.5f} R {b['recall']:.5f} F1 {b['f1']:.5f}"
    )


def cmd_link(args: argparse.Namespace) -> int:
    from linkage.report import evaluate_all, has_truth, link_all

    home = _home(args)
    with console.status("linking…"):
        out = link_all(home)
        scores = evaluate_all(home, detail=False) if has_truth(home) else None
    if args.json:
        _print_json({"link": out, "evaluation": scores})
        return 0
    for etype, r in out.items():
        console.print(
            f"[bold]{etype}[/]: {r['mentions']:,} mentions, {r['candidate_pairs']:,} candidate pairs "
            f"({r['pairs_per_mention']} per mention) → {r['clusters']:,} clusters; "
            f"guard split {r['guard_split_clusters']} cluster(s); seconds {r['seconds']}"
        )
        d, ids = r["decisions"], r["entity_ids"]
        console.print(
            f"   decisions: {d['must_link']} must-link, {d['cannot_link']} cannot-link "
            f"({d['cannot_split_clusters']} cluster(s) split, {d['refused_edges']} edge(s) refused); "
            f"entity IDs: {ids['kept']:,} kept, {ids['issued']:,} new, events {ids['events']}; "
            f"{r['review_candidates']:,} to review"
        )
        for c in d["conflicts"]:
            console.print(f"   [yellow]conflict[/]: {c}")
        if scores:
            console.print("   " + _scores_line("model", scores[etype]["model"]))
            console.print("   " + _scores_line("naive rule", scores[etype]["naive_rule"]))
    return 0


def cmd_link_model(args: argparse.Namespace) -> int:
    """Train (unless --model exists), predict and cluster one entity type, and report
    the steps' seconds: what `tessera bench --linkage` times. Writes no clusters."""
    from pathlib import Path

    from linkage.run import link

    home = _home(args)
    res = link(home, entity_type=args.type, model_path=Path(args.model) if args.model else None)
    t = res.timings
    splink = t.get("blocking", 0.0) + t.get("scoring", 0.0)
    out = {
        "entity_type": args.type,
        "mentions": res.mentions,
        "candidate_pairs": res.candidate_pairs,
        "pairs_per_mention": round(res.pairs_per_mention, 2),
        "edges": res.edges.height,
        "clusters": res.clusters["cluster_id"].n_unique(),
        "seconds": {k: round(v, 2) for k, v in t.items()},
        "train_predict_cluster_seconds": round(
            sum(t.get(k, 0.0) for k in ("train", "blocking", "scoring", "evidence", "cluster")), 2
        ),
        # Splink's blocking and scoring of every candidate pair.
        "pairs_per_second": round(res.candidate_pairs / splink) if splink else None,
    }
    if args.json:
        _print_json(out)
    else:
        console.print(out)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from linkage.report import evaluate_all

    scores = evaluate_all(_home(args))
    if args.json:
        _print_json(scores)
        return 0
    for etype, s in scores.items():
        console.print(f"[bold]{etype}[/]")
        console.print("   " + _scores_line("model", s["model"]))
        console.print("   " + _scores_line("naive rule", s["naive_rule"]))
        for fm in (s["model"] or {}).get("false_merges", [])[:3]:
            console.print(
                f"   false merge: {json.dumps(fm, ensure_ascii=False, default=str)[:200]}"
            )
        for ml in (s["model"] or {}).get("missed_links", [])[:3]:
            console.print(
                f"   missed link: {json.dumps(ml, ensure_ascii=False, default=str)[:200]}"
            )
    return 0


# ------------------------------------------------------------------ review / decide / why


def cmd_review(args: argparse.Namespace) -> int:
    from linkage.decisions import review_queue

    items = review_queue(_home(args), limit=args.limit)
    if args.json:
        _print_json(items)
        return 0
    t = Table(title=f"review queue ({len(items)} shown)")
    for c in ("kind", "weight", "p", "left", "right", "entities"):
        t.add_column(c)

    def show(m: dict[str, Any]) -> str:
        vals = [str(v) for k, v in m.items() if v is not None and k != "source_id"]
        return f"{m.get('source_id')}: " + " | ".join(vals)

    for it in items:
        w, p = it["match_weight"], it["match_probability"]
        ents = it["entity_id_l"] + (
            "" if it["entity_id_l"] == it["entity_id_r"] else f" / {it['entity_id_r']}"
        )
        t.add_row(
            it["kind"],
            "-" if w is None else f"{w:.2f}",
            "-" if p is None else f"{p:.3f}",
            show(it["left"]),
            show(it["right"]),
            f"{ents} ({it['size']})",
        )
    console.print(t)
    return 0


def cmd_decide(args: argparse.Namespace) -> int:
    from linkage.decisions import DecisionError, record_decision

    try:
        d = record_decision(
            _home(args), args.a, args.b, same=args.same, reason=args.reason, who=args.who
        )
    except DecisionError as e:
        err_console.print(f"[red]refused[/]: {e}")
        return 2
    if args.json:
        _print_json(asdict(d))
        return 0
    console.print(
        f"decision #{d.decision_id}: {d.kind} {d.a} ~ {d.b} ({d.entity_type}, "
        f"{len(d.mentions_a)}+{len(d.mentions_b)} mentions) by {d.who}: {d.reason}. "
        "Applied on the next `tessera link`."
    )
    return 0


def cmd_why(args: argparse.Namespace) -> int:
    from linkage.explain import why

    pairs = why(_home(args), args.entity_id)
    if args.json:
        _print_json(pairs)
        return 0 if pairs else 1
    if not pairs:
        err_console.print(f"no evidence for {args.entity_id} (a single mention, or unknown)")
        return 1
    for p in pairs:
        head = (
            f"decision #{p['decision_id']}"
            if p["source"] == "decision"
            else f"weight {p['match_weight']:.2f} (p {p['match_probability']:.4f})"
        )
        console.print(f"[bold]{p['mention_id_l']} ~ {p['mention_id_r']}[/]: {head}")
        parts = [
            f"{c['comparison']}={c['level']}"
            + (f" {c['log2_bf']:+.2f}" if c["log2_bf"] is not None else "")
            for c in p["contributions"]
            if c["level"] != "null"
        ]
        if parts:
            prior = p["prior_log2"]
            console.print(
                "   " + ", ".join(parts) + (f"; prior {prior:+.2f}" if prior is not None else "")
            )
    return 0


# ------------------------------------------------------------------ warehouse


def cmd_publish(args: argparse.Namespace) -> int:
    from warehouse.publish import publish

    home = _home(args)
    base = home.warehouse if args.incremental and home.warehouse.exists() else None
    with console.status("publishing…"):
        out = publish(home, base=base)
    if args.json:
        _print_json(out)
        return 0
    counts = ", ".join(f"{k} {v:,}" for k, v in out["counts"].items())
    how = out.get("mode", "full")
    if how == "incremental":
        how += f", {out['touched']:,} entities rebuilt"
    elif out.get("full_reason"):
        how += f": {out['full_reason']}"
    console.print(
        f"published {out['path']} in {out['seconds']:.1f} s ({how}; "
        f"reference date {out['reference_date']})"
    )
    console.print(f"   {counts}")
    return 0


def _evidence_row(r: dict) -> dict:
    """One linking pair: its weight and the comparisons that said most, in bits."""
    c = r.get("contributions") or {}
    parts = sorted(
        (
            (c.get(k.replace("_log2_bf", "_level")), v)
            for k, v in c.items()
            if k.endswith("_log2_bf") and v
        ),
        key=lambda kv: -abs(kv[1]),
    )
    return {
        "pair": f"{r['mention_id_l'][:9]}… ~ {r['mention_id_r'][:9]}…",
        "weight": f"{r['match_weight']:.1f}",
        "by": r.get("decided_by") or "",
        "because": ", ".join(f"{lvl} {bf:+.1f}" for lvl, bf in parts[:4]),
    }


def print_entity_file(doc: dict) -> None:
    """The per-entity file as rich tables (the same content as ``--json``)."""
    g = doc["golden"]
    title = g.get("name_native") or g.get("name") or doc["entity_id"]
    t = Table(title=f"{title}  ·  {doc['entity_id']}  ·  {doc['entity_type']}", show_header=False)
    for k, v in g.items():
        src = doc.get("lineage", {}).get(k)
        where = (
            f"{src.get('source')} · {src.get('record')}"
            if isinstance(src, dict)
            else str(src or "")
        )
        t.add_row(k, json.dumps(v, ensure_ascii=False) if isinstance(v, dict) else str(v), where)
    t.add_row("mentions", str(doc["n_mentions"]), f"seen {doc['first_seen']} … {doc['last_seen']}")
    console.print(t)
    sections = (
        ("sources", "which systems know them"),
        ("lists", "lists and status"),
        ("relationships", "relationships"),
        ("facts", "timeline (latest first)"),
        ("evidence", "why these records are one entity"),
    )
    for key, heading in sections:
        rows = doc.get(key) or []
        if not rows:
            continue
        if key == "evidence":
            rows = [_evidence_row(r) for r in rows]
        tt = Table(title=heading)
        cols = list(rows[0].keys())[:8]
        for c in cols:
            tt.add_column(c)
        for r in rows[:15]:
            tt.add_row(*[str(r.get(c, ""))[:60] for c in cols])
        console.print(tt)


def cmd_show(args: argparse.Namespace) -> int:
    from tessera.cli_access import guarded, session

    @guarded
    def read(args: argparse.Namespace) -> dict:
        with session(args) as s:
            return s.file(args.entity_id)

    doc = read(args)
    if isinstance(doc, int):
        return doc
    if args.json:
        _print_json(doc)
    else:
        print_entity_file(doc)
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from tessera.cli_access import cmd_search_example, guarded, print_hits, session

    if args.example:
        return cmd_search_example(args)
    if not args.query:
        err_console.print("give a QUERY or --example field=value …")
        return 2

    @guarded
    def run(args: argparse.Namespace) -> list:
        with session(args) as s:
            return s.search(
                args.query, kind=args.kind, dob=args.dob, sex=args.sex, limit=args.limit
            )

    hits = run(args)
    if isinstance(hits, int):
        return hits
    if args.json:
        _print_json(hits)
        return 0
    print_hits(f"search: {args.query}", hits)
    return 0


# ------------------------------------------------------------------ bench / demo


def cmd_bench(args: argparse.Namespace) -> int:
    from tessera.bench import bench_pipeline, run_bench

    if args.linkage:  # train + predict + cluster on an ingested home, in child processes
        from tessera.bench import bench_linkage

        if not args.home:
            err_console.print("--linkage needs --home: an ingested home")
            return 2
        _print_json(bench_linkage(args.home, args.repeat))
        return 0
    if args.delta:  # one day of about N delta records, landing to published
        from tessera.bench_delta import bench_delta

        if not args.home:
            err_console.print("--delta needs --home: a published world")
            return 2
        _print_json(bench_delta(args.home, args.delta))
        return 0
    if args.pipeline:  # the whole Dagster graph (`tessera run`) in a child process
        result = bench_pipeline(args.persons, args.days, args.seed, args.home)
        _print_json(result)
        return 0
    result = run_bench(args.persons, args.days, args.seed, args.home, args.repeat)
    if args.json:
        _print_json(result)
    else:
        t = Table(title=f"bench: {args.persons:,} persons")
        for c in ("stage", "median s", "rows", "rows/s", "peak RSS MiB"):
            t.add_column(c)
        for st in result["stages"]:
            t.add_row(
                st["stage"],
                f"{st['seconds_median']:.2f}",
                f"{st['rows']:,}",
                f"{st['rows_per_second']:,.0f}",
                f"{st['peak_rss_mib']:,.0f}",
            )
        console.print(t)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    home = _home(args)
    console.rule("Tessera demo")
    console.print(f"home: {home.root}")
    if (home.landing).exists() and any(home.landing.iterdir()):
        console.print("landing zone already populated: reusing it (delete the home to start over)")
    else:
        rep = run_simulate(home, args.persons, args.seed, args.days, True)
        console.print(
            f"[bold]1. simulate[/]: {rep.persons:,} persons, {rep.businesses:,} businesses, "
            f"{rep.days} days → {rep.files:,} files ({rep.rows:,} rows) + "
            f"{len(rep.databases)} live databases; {len(rep.faults)} deliberate faults"
        )
    rep_i = run_ingest(home)
    tot = rep_i.totals()
    console.print(
        f"[bold]2. ingest[/]: {tot['files']} files, {tot['read']:,} rows read = "
        f"{tot['staged']:,} staged + {tot['quarantined']:,} quarantined; "
        f"{tot['duplicates']} duplicate deliveries, {tot['skipped']} already ingested"
    )
    from connectors.lake import quarantine_summary

    for row in quarantine_summary(home):
        console.print(f"   quarantined {row['rows']:>5} from {row['file']}: {row['reason']}")
    for sid, err in rep_i.failures.items():
        err_console.print(f"[red]FAILED[/] {sid}: {err}")
    from linkage.report import evaluate_all, link_all

    with console.status("linking…"):
        linked = link_all(home)
        scores = evaluate_all(home, detail=False)
    for etype, r in linked.items():
        console.print(
            f"[bold]3. link {etype} mentions[/]: {r['mentions']:,} mentions, {r['candidate_pairs']:,} candidate "
            f"pairs → {r['clusters']:,} clusters"
        )
        console.print("   " + _scores_line("model", scores[etype]["model"]))
        console.print("   " + _scores_line("naive rule", scores[etype]["naive_rule"]))
    from warehouse.entity_file import file
    from warehouse.publish import connect, publish
    from warehouse.search import search

    with console.status("publishing…"):
        pub = publish(home)
    shown = ", ".join(f"{k} {pub['counts'][k]:,}" for k in ("entities", "facts", "list_entries"))
    console.print(f"[bold]4. publish[/]: {pub['path']} in {pub['seconds']:.1f} s: {shown}")
    con = connect(home)
    try:
        # An example: the person on a list whom the most systems know.
        picked = con.execute(
            "SELECT e.entity_id, e.name_native FROM entities e "
            "JOIN list_entries l USING (entity_id) JOIN memberships m USING (entity_id) "
            "WHERE e.entity_type = 'person' GROUP BY ALL "
            "ORDER BY count(DISTINCT m.source_id) DESC, e.entity_id LIMIT 1"
        ).fetchall()
    finally:
        con.close()
    if picked:
        eid, name = picked[0]
        console.print(f"[bold]5. search[/] {name!r}:")
        for h in search(home, name, limit=3):
            console.print(f"   {h['entity_id']}  score {h['score']:.3f}  {h.get('reason', '')}")
        console.print(f"[bold]6. show[/] {eid}:")
        print_entity_file(file(home, eid))
    console.print(
        "Next: `tessera search NAME`, `tessera show ENTITY_ID`, `tessera eval`, or `dagster dev`."
    )
    return 1 if rep_i.failures else 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tessera", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    def add(name: str, help_: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_)
        sp.add_argument(
            "--home", default=None, help="data directory (default $TESSERA_HOME or ./data)"
        )
        sp.add_argument("--json", action="store_true", help="machine-readable output")
        return sp

    src = add("sources", "list the source systems and their error profiles")
    src.add_argument("--markdown", action="store_true", help="print docs/sources.md")
    src.set_defaults(fn=cmd_sources)
    s = add("simulate", "generate the world and deliver its files")
    s.add_argument("--persons", type=int, default=20_000)
    s.add_argument("--seed", type=int, default=42)
    s.add_argument("--days", type=int, default=7)
    s.add_argument("--no-faults", action="store_true", help="deliver without deliberate faults")
    s.set_defaults(fn=cmd_simulate)
    add("ingest", "ingest pending deliveries: raw, staged, quarantine").set_defaults(fn=cmd_ingest)
    pb = add("publish", "build the DuckDB warehouse and swap it in atomically")
    pb.add_argument(
        "--incremental",
        action="store_true",
        help="rebuild only the entities changed since the live warehouse was built "
        "(a full build when a relink or a rewritten file requires it)",
    )
    pb.set_defaults(fn=cmd_publish)
    sh = add("show", "the file of one entity: golden record, sources, lists, timeline, evidence")
    sh.add_argument("entity_id")
    sh.add_argument("--user", default=None, help="who is asking (default $TESSERA_USER or OS user)")
    sh.set_defaults(fn=cmd_show)
    se = add("search", "search by ID (full or masked), phone, plate, passport, USCC or name")
    se.add_argument("query", nargs="?", default=None)
    se.add_argument("--kind", choices=["id", "phone", "plate", "passport", "uscc", "email", "name"])
    se.add_argument("--dob", default=None, help="YYYY-MM-DD, narrows name searches")
    se.add_argument("--sex", choices=["M", "F"], default=None)
    se.add_argument("--limit", type=int, default=10)
    se.add_argument(
        "--example", action="append", default=[], metavar="FIELD=VALUE",
        help="search by example, scored with the Splink model (repeat: name=张伟 dob=1990-01-01 …)",
    )  # fmt: skip
    se.add_argument("--entity-type", choices=["person", "business"], default="person")
    se.add_argument("--user", default=None, help="who is asking (default $TESSERA_USER or OS user)")
    se.set_defaults(fn=cmd_search)
    from tessera.cli_access import register as register_access

    register_access(add)
    add(
        "link", "link persons (Splink) and businesses; scores against the truth if present"
    ).set_defaults(fn=cmd_link)
    lm = add("link-model", "train, predict and cluster one entity type and time each step")
    lm.add_argument("--type", choices=["person", "business"], default="person")
    lm.add_argument("--model", default=None, help="model JSON (trained and saved if absent)")
    lm.set_defaults(fn=cmd_link_model)
    add(
        "eval", "score the saved clusters against the simulated truth, with the naive rule"
    ).set_defaults(fn=cmd_eval)
    r = add("review", "list uncertain pairs, weak links and large entities to review")
    r.add_argument("--limit", type=int, default=50, help="at most this many items")
    r.set_defaults(fn=cmd_review)
    dc = add("decide", "record a must-link (--same) or cannot-link (--different) decision")
    dc.add_argument("a", help="a mention ID (M…) or entity ID (E…)")
    dc.add_argument("b", help="a mention ID (M…) or entity ID (E…)")
    g = dc.add_mutually_exclusive_group(required=True)
    g.add_argument("--same", dest="same", action="store_true", help="must-link")
    g.add_argument("--different", dest="same", action="store_false", help="cannot-link")
    dc.add_argument("--reason", required=True, help="why (kept with the decision)")
    dc.add_argument("--who", default=None, help="who decides (default $USER)")
    dc.set_defaults(fn=cmd_decide)
    w = add("why", "the pairs and per-comparison evidence that hold an entity together")
    w.add_argument("entity_id")
    w.set_defaults(fn=cmd_why)
    b = add("bench", "measure each stage: seconds, rows, peak RSS")
    b.add_argument("--persons", type=int, default=100_000)
    b.add_argument("--days", type=int, default=3)
    b.add_argument("--seed", type=int, default=7)
    b.add_argument("--repeat", type=int, default=1, help="runs per stage (median reported)")
    b.add_argument("--pipeline", action="store_true", help="only the `pipeline` stage: tessera run")
    b.add_argument(
        "--linkage", action="store_true",
        help="only person linkage (train + predict + cluster) on the ingested --home",
    )  # fmt: skip
    b.add_argument(
        "--delta", type=int, metavar="N",
        help="deliver one more day of about N delta records into the published --home "
        "and time `tessera run` on it (landing to published)",
    )  # fmt: skip
    b.set_defaults(fn=cmd_bench)
    d = add("demo", "simulate a default world and run everything that exists")
    d.add_argument("--persons", type=int, default=20_000)
    d.add_argument("--seed", type=int, default=42)
    d.add_argument("--days", type=int, default=7)
    d.set_defaults(fn=cmd_demo)
    from tessera.cli_pipeline import add_commands

    add_commands(add)  # run, ui, advance (the Dagster pipeline)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Splink explains its training at WARNING level; the CLI reports its own
    # figures, so keep the terminal for errors (TESSERA_LOG=INFO to see them).
    logging.basicConfig(level=os.environ.get("TESSERA_LOG", "ERROR"))
    logging.getLogger("splink").setLevel(os.environ.get("TESSERA_LOG", "ERROR"))
    try:
        return int(args.fn(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
