"""The analyst and accountability commands of ``tessera``: every one goes through
:class:`warehouse.session.Session`, so the CLI is audited exactly like the API.

``show``, ``search`` (by identifier, name or ``--example``), ``subject-access``,
``export``, ``correct`` and ``audit``; each takes ``--user`` (default
``$TESSERA_USER``, else the OS user; roles in ``$TESSERA_HOME/tessera.toml``).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from tessera.config import Home

console = Console()
err_console = Console(stderr=True)


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, indent=2, default=str) + "\n")


def session(args: argparse.Namespace):  # noqa: ANN201 (a Session; imported lazily)
    from warehouse.session import Session

    return Session(Home.resolve(args.home), user=getattr(args, "user", None))


def guarded(fn):  # noqa: ANN001, ANN201
    """Refusals and bad input as a message and exit code 2, not a traceback."""

    def run(args: argparse.Namespace) -> int:
        from warehouse.access import AccessError
        from warehouse.corrections import CorrectionError
        from warehouse.matching import ExampleError

        try:
            return fn(args)
        except AccessError as e:
            err_console.print(f"[red]refused[/]: {e}")
            return 2
        except (CorrectionError, ExampleError, FileExistsError, FileNotFoundError) as e:
            err_console.print(f"[red]error[/]: {e}")
            return 2
        except KeyError as e:
            err_console.print(f"no entity {e.args[0]!r} in the warehouse")
            return 2

    return run


def add_user(p: argparse.ArgumentParser) -> None:
    p.add_argument("--user", default=None, help="who is asking (default $TESSERA_USER or OS user)")


def parse_example(items: list[str]) -> dict[str, str]:
    """``field=value`` pairs of ``--example``."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--example takes field=value, not {item!r}")
        out[key.strip()] = value
    return out


def print_hits(title: str, hits: list[dict[str, Any]]) -> None:
    t = Table(title=title)
    for c in ("entity_id", "score", "name", "dob", "sex", "id_number", "phone", "reason"):
        t.add_column(c)
    for h in hits:
        t.add_row(
            h["entity_id"],
            f"{h['score']:.3f}",
            h.get("name_native") or h.get("name") or "",
            str(h.get("dob") or ""),
            h.get("sex") or "",
            h.get("id_number") or h.get("uscc") or "",
            h.get("phone") or "",
            h.get("reason") or "",
        )
    console.print(t)


@guarded
def cmd_search_example(args: argparse.Namespace) -> int:
    example = parse_example(args.example)
    with session(args) as s:
        hits = s.search_example(example, entity_type=args.entity_type, limit=args.limit)
    if args.json:
        _print_json(hits)
    else:
        print_hits(f"search by example: {example}", hits)
    return 0


@guarded
def cmd_subject_access(args: argparse.Namespace) -> int:
    with session(args) as s:
        doc = s.subject_access(args.entity_id)
    text = json.dumps(doc, ensure_ascii=False, indent=2, default=str) + "\n"
    if args.out:
        with open(args.out, "x", encoding="utf-8") as fh:
            fh.write(text)
        if not args.json:
            console.print(
                f"wrote {args.out}: {len(doc['mentions'])} mentions, "
                f"{len(doc['source_records'])} source records, {len(doc['audit'])} audit rows"
            )
    else:
        sys.stdout.write(text)
    return 0


@guarded
def cmd_export(args: argparse.Namespace) -> int:
    with session(args) as s:
        counts = s.export_analyst(args.path)
    if args.json:
        _print_json({"path": args.path, "counts": counts})
    else:
        console.print(
            f"wrote the masked analyst export {args.path}: "
            + ", ".join(f"{k} {v:,}" for k, v in counts.items())
        )
    return 0


@guarded
def cmd_correct(args: argparse.Namespace) -> int:
    with session(args) as s:
        c = s.correct(args.entity_id, args.field, args.value, reason=args.reason)
    if args.json:
        _print_json(c.__dict__)
    else:
        console.print(
            f"correction #{c.correction_id}: {c.entity_id} {c.attribute} = {c.value!r} by "
            f"{c.who}: {c.reason}. Applied on the next `tessera publish`."
        )
    return 0


@guarded
def cmd_audit(args: argparse.Namespace) -> int:
    from warehouse import audit

    with session(args) as s:
        rows = s.audit(
            entity_id=args.entity, user=args.who, action=args.action, since=args.since,
            limit=args.limit,
        )  # fmt: skip
        check = audit.verify(s.home) if args.verify else None
    if args.json:
        _print_json({"rows": rows, "verify": check} if args.verify else rows)
        return 0 if check is None or check["ok"] else 1
    t = Table(title=f"audit log ({len(rows)} rows)")
    for c in ("id", "at", "user", "role", "action", "query", "results", "outcome"):
        t.add_column(c)
    for r in rows:
        t.add_row(
            str(r["id"]),
            r["at"][:19],
            r["user"],
            r["role"],
            r["action"],
            json.dumps(r["query"], ensure_ascii=False)[:60],
            f"{r['n_results']} " + ",".join(r["entity_ids"][:3]),
            r["outcome"][:40],
        )
    console.print(t)
    if check is not None:
        ok = "[green]intact[/]" if check["ok"] else f"[red]broken at row {check['first_bad_id']}[/]"
        console.print(f"hash chain over {check['rows']} rows: {ok}")
        return 0 if check["ok"] else 1
    return 0


def cmd_bench_queries(args: argparse.Namespace) -> int:
    from warehouse.bench_queries import bench_queries

    out = bench_queries(
        Home.resolve(args.home), n_id=args.n_id, n_name=args.n_name, n_example=args.n_example,
        n_show=args.n_show,
    )  # fmt: skip
    out["queries"] = sum(v["n"] for v in out.values() if isinstance(v, dict))
    if args.json:
        _print_json(out)
        return 0
    t = Table(title="query latency (ms, warm connection, audited)")
    for c in ("query", "n", "p50", "p95", "p99", "max"):
        t.add_column(c)
    for k, v in out.items():
        if isinstance(v, dict):
            t.add_row(
                k, str(v["n"]), *(f"{v[p]:.1f}" for p in ("p50_ms", "p95_ms", "p99_ms", "max_ms"))
            )
    console.print(t)
    return 0


def register(add) -> None:  # noqa: ANN001 (cli.build_parser's ``add``)
    """Add the access commands to the ``tessera`` parser (``add(name, help)`` makes one)."""
    sa = add("subject-access", "export everything held on one entity as JSON (auditor, admin)")
    sa.add_argument("entity_id")
    sa.add_argument("--out", default=None, help="write to this new file instead of stdout")
    add_user(sa)
    sa.set_defaults(fn=cmd_subject_access)
    ex = add("export", "write the masked analyst warehouse as a new DuckDB file (admin)")
    ex.add_argument("path")
    add_user(ex)
    ex.set_defaults(fn=cmd_export)
    co = add("correct", "record a field correction, applied on the next publish (admin)")
    co.add_argument("entity_id")
    co.add_argument("field", help="name_native, name_latin, dob, sex, id_number, phone, name, …")
    co.add_argument("value")
    co.add_argument("--reason", required=True, help="why (kept with the correction)")
    add_user(co)
    co.set_defaults(fn=cmd_correct)
    au = add("audit", "read the audit log (auditor, admin)")
    au.add_argument("--entity", default=None, help="rows that returned this entity")
    au.add_argument("--who", default=None, help="rows of this user")
    au.add_argument("--action", default=None)
    au.add_argument("--since", default=None, help="ISO timestamp")
    au.add_argument("--limit", type=int, default=100, help="the newest N rows")
    au.add_argument("--verify", action="store_true", help="check the hash chain")
    add_user(au)
    au.set_defaults(fn=cmd_audit)
    bq = add("bench-queries", "time identifier, name, example search and show on the warehouse")
    bq.add_argument("--n-id", type=int, default=1000)
    bq.add_argument("--n-name", type=int, default=300)
    bq.add_argument("--n-example", type=int, default=150)
    bq.add_argument("--n-show", type=int, default=150)
    bq.set_defaults(fn=cmd_bench_queries)
