"""Query latencies on a published warehouse, through the audited API.

``bench_queries(home, ...)`` opens one :class:`warehouse.session.Session` (one
warm read-only connection; each call also writes its audit row, as in real
use) and times, per query kind, many queries drawn deterministically from the
warehouse itself:

- identifier lookup: full resident IDs (p50 / p95 / p99);
- name search: hanzi names, spaced pinyin, and pinyin with two letters
  transposed (p50 / p95 / p99);
- search by example: name + dob, masked ID + sex, phone (p50 / p95 / p99);
- ``show`` (the entity file) (p50 / p95 / p99).

The bench user is ``bench`` (an analyst unless ``tessera.toml`` says otherwise),
so its rows in the audit log are easy to tell apart.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from tessera.config import Home
from warehouse.session import Session


def _percentiles(ms: list[float]) -> dict[str, float]:
    qs = statistics.quantiles(ms, n=100, method="inclusive")
    return {
        "n": len(ms),
        "p50_ms": round(statistics.median(ms), 2),
        "p95_ms": round(qs[94], 2),
        "p99_ms": round(qs[98], 2),
        "max_ms": round(max(ms), 2),
    }


def _typo(pinyin: str, rng: random.Random) -> str:
    s = pinyin.replace(" ", "")
    if len(s) < 4:
        return s
    i = rng.randrange(1, len(s) - 1)
    return s[:i] + s[i + 1] + s[i] + s[i + 2 :]


def bench_queries(
    home: Home,
    *,
    n_id: int = 1000,
    n_name: int = 300,
    n_example: int = 100,
    n_show: int = 100,
    seed: int = 7,
    user: str = "bench",
) -> dict[str, Any]:
    """Latency percentiles (milliseconds) per query kind; see the module docstring."""
    rng = random.Random(seed)
    with Session(home, user=user) as s:
        people = s.con.execute(
            "SELECT entity_id, name_native, name_latin, dob, sex, id_number, phone "
            "FROM entities WHERE entity_type = 'person' AND id_number IS NOT NULL "
            "AND name_native IS NOT NULL ORDER BY hash(entity_id) LIMIT ?",
            [max(n_id, n_name, n_example, n_show)],
        ).fetchall()
        if not people:
            raise ValueError("no person with an ID in the warehouse")

        def timed(calls: list[Callable[[], Any]]) -> dict[str, float]:
            calls[0]()  # warm-up (not counted)
            ms = []
            for call in calls:
                t = time.perf_counter()
                call()
                ms.append((time.perf_counter() - t) * 1000)
            return _percentiles(ms)

        pick = [people[i % len(people)] for i in range(max(n_id, n_name, n_example, n_show))]
        out: dict[str, Any] = {"entities_sampled": len(people)}
        out["id_lookup"] = timed(
            [lambda p=p: s.search(p[5], kind="id", limit=10) for p in pick[:n_id]]
        )
        names = []
        for i, p in enumerate(pick[:n_name]):
            q = (p[1], p[2], _typo(p[2] or "", rng))[i % 3]
            names.append(lambda q=q: s.search(q, kind="name", limit=10))
        out["name_search"] = timed(names)
        examples = []
        for i, p in enumerate(pick[:n_example]):
            ex = (
                {"name": p[1], "dob": str(p[3])},
                {"id_number": p[5][:6] + "********" + p[5][-4:], "sex": p[4]},
                {"phone": p[6], "name": p[2]},
            )[i % 3]
            ex = {k: v for k, v in ex.items() if v is not None and v != "None"}
            examples.append(lambda ex=ex: s.search_example(ex, limit=10))
        out["example_search"] = timed(examples)
        out["show"] = timed([lambda p=p: s.file(p[0]) for p in pick[:n_show]])
    return out
