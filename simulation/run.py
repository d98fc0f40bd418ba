"""Simulate the world and let every source system deliver, day by day.

``simulate(home, cfg)`` writes ``landing/<source>/<day>/`` for the file-drop
systems, fills the live databases (SQLite files unless a server is configured),
and writes the truth and a log of the deliberate faults under ``truth/``,
apart from the landing zone. Same config, same bytes.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import polars as pl

from connectors.catalog import builtin_specs
from connectors.spec import SourceSpec
from simulation.agencies import PROFILES
from simulation.deliver import delivery_path, population, rng_for, write
from simulation.faults import inject_malformed_rows, reencode, truncate_file
from simulation.profiles import SimProfile
from simulation.world import World, WorldConfig, generate_world
from tessera.config import DatabaseServers, Home

TEXT_KINDS = ("csv", "delimited", "jsonl", "xml", "fixed_width")


@dataclass
class Fault:
    """One deliberate fault, as the truth knows it."""

    kind: str
    source_id: str
    day: str
    file: str
    detail: str
    affected: int = 0


@dataclass
class SimulationReport:
    persons: int
    businesses: int
    days: int
    files: int = 0
    rows: int = 0
    per_source: dict[str, int] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    databases: dict[str, dict] = field(default_factory=dict)


def profiles() -> dict[str, SimProfile]:
    """Profiles of every built-in system (file drops and databases)."""
    from connectors.catalog.databases import DATABASE_PROFILES

    return {**PROFILES, **DATABASE_PROFILES}


def plan_faults(world: World, specs: list[SourceSpec]) -> dict[tuple[str, int], str]:
    """Which (source, day) deliveries get which fault: a handful, never on day 0
    but days 1 and 2, chosen by the seed among delta sources that deliver at least
    a few rows a day. A duplicate delivery planned for day d is re-sent on day d+1."""
    cfg = world.config
    if not cfg.faults:
        return {}
    rng = rng_for(cfg.seed, "faults")
    profs = profiles()

    def expected_rows(s: SourceSpec) -> float:
        p = profs[s.id]
        return population(world, p.population, cfg.start)[0].height * p.daily_rate

    busy = [
        s
        for s in specs
        if s.cadence == "delta" and s.database is None and s.id in profs and expected_rows(s) >= 5
    ]
    text = sorted(s.id for s in busy if s.format.kind in TEXT_KINDS)
    # Re-encoding only shows in a file that carries Chinese text (an all-ASCII file
    # has the same bytes in GB18030): names in hanzi, addresses, Chinese headers.
    chinese = {
        s.id
        for s in busy
        if any(
            not c.name.isascii() or c.rule in ("name:hanzi", "address:full", "address:city")
            for c in s.columns
        )
    }
    utf8 = sorted(
        s.id
        for s in busy
        if s.format.kind in ("csv", "delimited")
        and s.format.encoding == "utf-8"
        and s.id in chinese
    )
    # Fixed fault days (not "the days delivered"), so delivering more days later
    # never changes what was delivered before.
    days = [1, 2]
    plan: dict[tuple[str, int], str] = {}
    wanted = [
        ("malformed_rows", text),
        ("malformed_rows", text),
        ("wrong_encoding", utf8),
        ("truncated", text),
        ("duplicate_delivery", text),
        ("schema_change", text),
    ]
    for kind, pool in wanted:
        for _ in range(50 if pool else 0):
            # A duplicate is re-sent the day after, so it is planned on day 1 (seen from day 2 on).
            day = 1 if kind == "duplicate_delivery" else days[int(rng.integers(len(days)))]
            key = (pool[int(rng.integers(len(pool)))], day)
            if key not in plan:
                plan[key] = kind
                break
    return plan


def _schema_change(spec: SourceSpec, frame: pl.DataFrame) -> tuple[pl.DataFrame, str]:
    """Rename the first required identity column, as a system upgrade would."""
    for c in spec.columns:
        if c.required and c.field not in ("key",) and not c.field.startswith("fact:"):
            new = f"{c.name}_v2"
            return frame.rename({c.name: new}), f"column {c.name} renamed to {new}"
    raise ValueError(f"{spec.id}: no column to rename")


def _postpone(
    faults: dict[tuple[str, int], str], source_id: str, day_index: int, kind: str
) -> None:
    """A fault planned on an empty delivery moves to the source's next day."""
    faults.pop((source_id, day_index), None)
    if (source_id, day_index + 1) not in faults:
        faults[(source_id, day_index + 1)] = kind


def deliver_day(
    world: World,
    home: Home,
    specs: list[SourceSpec],
    day_index: int,
    faults: dict[tuple[str, int], str],
    report: SimulationReport,
    servers: DatabaseServers | None = None,
    delta_scale: float = 1.0,
) -> None:
    """Every system delivers (or updates its database) for one simulated day; the
    delta files carry ``delta_scale`` times their usual number of events."""
    cfg = world.config
    profs = profiles()
    for spec in specs:
        prof = profs[spec.id]
        if delta_scale != 1.0 and spec.cadence == "delta":
            prof = replace(prof, daily_rate=prof.daily_rate * delta_scale)
        if spec.database is not None:
            from connectors.database import database_url
            from simulation.databases import write_database_day

            url = database_url(spec, servers or DatabaseServers.from_env(), home)
            log = write_database_day(world, spec, prof, day_index, url, home.truth)
            report.databases.setdefault(spec.id, {})[cfg.day(day_index).isoformat()] = (
                asdict(log) if hasattr(log, "__dataclass_fields__") else dict(log)
            )
            continue
        fault = faults.get((spec.id, day_index))
        renamed: list[str] = []

        def alter(
            frame: pl.DataFrame,
            spec: SourceSpec = spec,
            fault: str | None = fault,
            renamed: list[str] = renamed,
        ) -> pl.DataFrame:
            if fault == "schema_change" and frame.height:
                frame, detail = _schema_change(spec, frame)
                renamed.append(detail)
            return frame

        written = write(world, spec, prof, day_index, home.landing, home.truth, alter=alter)
        if written is None:
            continue
        path = written.path
        report.files += 1
        report.rows += written.rows
        report.per_source[spec.id] = report.per_source.get(spec.id, 0) + written.rows
        if fault is not None and written.rows == 0:
            _postpone(faults, spec.id, day_index, fault)
            continue
        if fault is None or fault == "duplicate_delivery":
            continue  # a duplicate is re-sent the next day (resend_duplicates)
        rel = str(path.relative_to(home.root))
        day = cfg.day(day_index).isoformat()
        frng = rng_for(cfg.seed, "fault", spec.id, day_index)
        if fault == "schema_change":
            report.faults.append(Fault(fault, spec.id, day, rel, renamed[0], written.rows))
        elif fault == "malformed_rows":
            n = inject_malformed_rows(spec.format, path, frng, max(1, written.rows // 200))
            report.faults.append(Fault(fault, spec.id, day, rel, f"{n} malformed record(s)", n))
        elif fault == "truncated":
            truncate_file(path, frng)
            report.faults.append(Fault(fault, spec.id, day, rel, "file cut short mid-record"))
        elif fault == "wrong_encoding":
            reencode(path, spec.format.encoding, "gb18030")
            report.faults.append(
                Fault(fault, spec.id, day, rel, f"declared {spec.format.encoding}, sent gb18030")
            )


def resend_duplicates(
    home: Home,
    world: World,
    specs: list[SourceSpec],
    day_index: int,
    faults: dict[tuple[str, int], str],
    report: SimulationReport,
) -> None:
    """The duplicate-delivery fault: yesterday's file arrives again, unchanged, today."""
    if day_index == 0:
        return
    cfg = world.config
    for spec in specs:
        if faults.get((spec.id, day_index - 1)) != "duplicate_delivery":
            continue
        original = delivery_path(home.landing, spec, cfg.day(day_index - 1))
        if not original.exists():
            continue
        copy = delivery_path(home.landing, spec, cfg.day(day_index)).parent / (
            "resent_" + original.name
        )
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(original, copy)
        report.faults.append(
            Fault(
                "duplicate_delivery",
                spec.id,
                cfg.day(day_index).isoformat(),
                str(copy.relative_to(home.root)),
                f"same bytes as {original.relative_to(home.root)}",
            )
        )


def write_world_truth(world: World, home: Home) -> None:
    """The entity tables themselves, for evaluation only."""
    t = home.truth
    t.mkdir(parents=True, exist_ok=True)
    world.persons.write_parquet(t / "persons.parquet")
    world.businesses.write_parquet(t / "businesses.parquet")
    world.cases.write_parquet(t / "cases.parquet")
    world.list_entries.write_parquet(t / "list_entries.parquet")


def simulate(
    home: Home,
    cfg: WorldConfig,
    *,
    specs: list[SourceSpec] | None = None,
    servers: DatabaseServers | None = None,
    days: range | None = None,
    progress: Callable[[str], None] | None = None,
    delta_records: int | None = None,
) -> SimulationReport:
    """Generate the world and deliver ``days`` (default: all of ``cfg.days``).

    ``delta_records`` (a benchmark's day of a given size): each day's delta files
    together carry about that many records (their event rates scaled alike; see
    :func:`expected_delta_rows`)."""
    home.ensure()
    specs = list(specs if specs is not None else builtin_specs())
    world = generate_world(cfg)
    write_world_truth(world, home)
    faults = plan_faults(world, specs)
    report = SimulationReport(cfg.persons, cfg.businesses, cfg.days)
    for d in days if days is not None else range(cfg.days):
        if progress:
            progress(cfg.day(d).isoformat())
        scale = 1.0
        if delta_records is not None:
            expected = expected_delta_rows(world, specs, d)
            scale = delta_records / expected if expected else 1.0
        deliver_day(world, home, specs, d, faults, report, servers, scale)
        resend_duplicates(home, world, specs, d, faults, report)
    log = home.truth / "faults.jsonl"
    existing = log.read_text(encoding="utf-8").splitlines() if log.exists() else []
    lines = sorted(
        set(existing)
        | {json.dumps(asdict(f), ensure_ascii=False, sort_keys=True) for f in report.faults}
    )
    log.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    (home.truth / "world.json").write_text(
        json.dumps(
            {
                "persons": cfg.persons,
                "seed": cfg.seed,
                "days": cfg.days,
                "horizon": cfg.horizon,
                "start": cfg.start.isoformat(),
                "faults": cfg.faults,
            },
            indent=2,
        ),
        encoding="utf-8",
    )
    return report


def expected_delta_rows(world: World, specs: list[SourceSpec], day_index: int) -> float:
    """The expected number of records the file-drop delta sources deliver on a day:
    each one's population that day times its daily event rate."""
    profs = profiles()
    day = world.config.day(day_index)
    return sum(
        population(world, profs[s.id].population, day)[0].height * profs[s.id].daily_rate
        for s in specs
        if s.cadence == "delta" and s.database is None
    )


def load_faults(home: Home) -> list[Fault]:
    path = home.truth / "faults.jsonl"
    if not path.exists():
        return []
    return [
        Fault(**json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line
    ]
