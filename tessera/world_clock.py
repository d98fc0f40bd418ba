"""The demo's clock: advance a simulated world by whole days.

The world a home was simulated with is recorded in ``truth/world.json`` (persons,
seed, days delivered, horizon, start, faults). Advancing delivers the next day
only (``simulation.run.simulate`` with ``days=range(d, d + 1)``): earlier
deliveries stay byte for byte the same, the live databases apply that day's
changes, and the ingest picks up just the new files and rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date

from tessera.config import Home


@dataclass(frozen=True)
class Advanced:
    """One delivered day: its date, files and rows written."""

    day: str
    files: int
    rows: int


def world_config(home: Home, days: int | None = None):  # -> simulation.world.WorldConfig
    """The ``WorldConfig`` of the world in ``home`` (``days`` overridden if given)."""
    from simulation.world import WorldConfig

    path = home.truth / "world.json"
    if not path.exists():
        raise FileNotFoundError(f"no simulated world in {home.root}: run `tessera simulate` first")
    w = json.loads(path.read_text(encoding="utf-8"))
    return WorldConfig(
        persons=int(w["persons"]),
        seed=int(w["seed"]),
        days=int(days if days is not None else w["days"]),
        start=date.fromisoformat(w.get("start", "2026-01-01")),
        faults=bool(w.get("faults", True)),
        horizon=int(w.get("horizon", 30)),
    )


def advance(home: Home, days: int = 1, *, delta_records: int | None = None) -> list[Advanced]:
    """Deliver the next ``days`` days of the world in ``home``, one at a time.
    Raises ``ValueError`` past the world's horizon.

    ``delta_records`` (benchmarks): only the file-drop delta sources deliver, about
    that many records in all per day (the snapshot files and the databases wait for
    a later day; a database catches up on the days it missed)."""
    from connectors.catalog import builtin_specs
    from simulation.run import simulate

    specs = None
    if delta_records is not None:
        specs = [s for s in builtin_specs() if s.cadence == "delta" and s.database is None]

    out = []
    for _ in range(days):
        cfg = world_config(home)
        d = cfg.days  # index of the next day to deliver
        if d >= cfg.horizon:
            raise ValueError(f"the world ends after {cfg.horizon} days; nothing more to deliver")
        rep = simulate(
            home,
            world_config(home, days=d + 1),
            days=range(d, d + 1),
            specs=specs,
            delta_records=delta_records,
        )
        out.append(Advanced(cfg.day(d).isoformat(), rep.files, rep.rows))
    return out
