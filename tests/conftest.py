"""Shared fixtures: one tiny simulated world, simulated and ingested once per session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tessera.config import Home

TINY = {"persons": 600, "seed": 11, "days": 3}


@pytest.fixture(autouse=True)
def _no_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests use the embedded (SQLite) databases unless a test asks for a server."""
    monkeypatch.delenv("TESSERA_PG_URL", raising=False)
    monkeypatch.delenv("TESSERA_MYSQL_URL", raising=False)


@pytest.fixture(scope="session")
def simulated_home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    """A tiny world's landing zone and truth (not ingested). Treat as read-only."""
    from simulation.run import simulate
    from simulation.world import WorldConfig

    home = Home(tmp_path_factory.mktemp("world") / "home")
    mp = pytest.MonkeyPatch()
    mp.delenv("TESSERA_PG_URL", raising=False)
    mp.delenv("TESSERA_MYSQL_URL", raising=False)
    try:
        simulate(home, WorldConfig(**TINY))
    finally:
        mp.undo()
    return home


@pytest.fixture(scope="session")
def ingested_home(
    simulated_home: Home, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Home, object]:
    """A copy of the tiny world, ingested once; returns (home, IngestReport). Read-only."""
    from connectors.catalog import load_specs
    from connectors.ingest import ingest

    home = Home(tmp_path_factory.mktemp("ingested") / "home")
    shutil.copytree(simulated_home.root, home.root)
    report = ingest(home, load_specs(home.sources_dir))
    return home, report


@pytest.fixture
def fresh_copy(simulated_home: Home, tmp_path: Path) -> Home:
    """A private, writable copy of the simulated (not ingested) world."""
    home = Home(tmp_path / "home")
    shutil.copytree(simulated_home.root, home.root)
    return home
