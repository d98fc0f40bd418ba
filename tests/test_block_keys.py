"""Hashed blocking keys (``linkage.block_keys``): the existing mentions found through
the sidecars' hashes are those the blocking keys' exact join finds (a superset by
construction: a hash collision may only add one), a full link writes the base's
sidecar, and a sidecar that no longer matches its features file is computed again.

World: a copy of the session's linked world (``tests/linked_world.py``)."""

from __future__ import annotations

import os

import duckdb
import polars as pl
import pytest
from linked_world import copy_of_linked_world

from linkage import block_keys, stamped
from linkage.parts import linkage_parts
from linkage.report import ENTITY_TYPES
from tessera.config import Home

ARROW = pl.CompatLevel.newest()


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    return copy_of_linked_world(tmp_path_factory, "block_keys")


def _exact_uids(con: duckdb.DuckDBPyConnection, keys: list, base: str) -> set[int]:
    """The stored rows sharing some key's values with a ``probe`` row: the exact join
    of each key's expressions (what the increment did before the sidecars)."""
    arms = []
    for key in keys:
        theirs = ", ".join(f"{t} AS k{i}" for i, (_, t) in enumerate(key))
        present = " AND ".join(f"({t}) IS NOT NULL" for _, t in key)
        on = " AND ".join(f"({m}) = n.k{i}" for i, (m, _) in enumerate(key))
        arms.append(
            f"SELECT e.uid FROM {base} AS e JOIN "
            f"(SELECT DISTINCT {theirs} FROM probe WHERE {present}) n ON {on}"
        )
    return {r[0] for r in con.sql(" UNION ".join(arms)).fetchall()}


@pytest.mark.parametrize("etype", ENTITY_TYPES)
def test_hashed_keys_find_what_the_exact_join_finds(home: Home, etype: str) -> None:
    target = home.lake / "linkage"
    keys = block_keys.model_keys(target / f"{etype}_model.json")
    assert keys, etype
    (base,) = linkage_parts(home, etype, "features")
    car = block_keys.sidecar(base)
    # Written by the full link (linkage.report.settle), for this file and these keys.
    assert car.exists() and stamped.matches(car, block_keys._state(base, keys))
    stored = pl.read_parquet(base)
    # Probe rows: a sample of the stored ones with every key column kept, some with
    # their IDs and phones blanked (thin mentions pair by name alone).
    probe = stored.sample(min(300, stored.height), seed=3)
    blank = [c for c in ("id_any", "id_key", "phone_any", "phone_key") if c in probe.columns]
    probe = pl.concat([probe, probe.head(50).with_columns(pl.lit(None).alias(c) for c in blank)])
    none = stored.head(0)
    con = duckdb.connect()
    try:
        con.register("probe", probe.to_arrow(compat_level=ARROW))
        con.register("none", none.to_arrow(compat_level=ARROW))
        con.register("stored", stored.to_arrow(compat_level=ARROW))
        hashed = set(block_keys.matching_uids(con, keys, [car], "none", "probe").to_list())
        # The rows not in a stored file yet are hashed on the fly: the same answer.
        on_the_fly = set(block_keys.matching_uids(con, keys, [], "stored", "probe").to_list())
        exact = _exact_uids(con, keys, f"read_parquet('{base}')")
    finally:
        con.close()
    assert exact, etype
    assert hashed >= exact
    assert on_the_fly == hashed
    # Collisions of 32-bit hashes among a few thousand rows: none expected.
    assert len(hashed - exact) <= max(1, len(exact) // 1000)


def test_a_stale_sidecar_is_computed_again(home: Home) -> None:
    target = home.lake / "linkage"
    keys = block_keys.model_keys(target / "person_model.json")
    base = target / "person_features.parquet"
    car = block_keys.sidecar(base)
    good = pl.read_parquet(car)
    # A sidecar recorded for other keys (or another file state) is not used.
    stamped.write(car, good.head(3), "stale")
    con = duckdb.connect()
    try:
        assert block_keys.ensure(con, base, keys) == car
        assert pl.read_parquet(car).equals(good)
        # The features file rewritten (a new modification time): hashed again.
        st = base.stat()
        os.utime(base, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
        before = car.stat().st_mtime_ns
        block_keys.ensure(con, base, keys)
        assert car.stat().st_mtime_ns != before
        assert stamped.matches(car, block_keys._state(base, keys))
        assert pl.read_parquet(car).equals(good)
    finally:
        con.close()
