"""Shared configuration: where data lives (``TESSERA_HOME``) and the typed run settings.

Every path the libraries use comes from :class:`Home`; nothing else reads the
environment for locations.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOME = Path("data")


@dataclass(frozen=True)
class Home:
    """The directory tree under ``$TESSERA_HOME`` (default ``./data``)."""

    root: Path

    @classmethod
    def resolve(cls, home: str | os.PathLike[str] | None = None) -> Home:
        """Home from an explicit path, else ``$TESSERA_HOME``, else ``./data``."""
        chosen = home if home is not None else os.environ.get("TESSERA_HOME", DEFAULT_HOME)
        return cls(Path(chosen).resolve())

    @property
    def landing(self) -> Path:
        """Where the simulated source systems deliver files: ``landing/<source>/<day>/``."""
        return self.root / "landing"

    @property
    def truth(self) -> Path:
        """The simulated truth, apart from the landing zone; read only by evaluation."""
        return self.root / "truth"

    @property
    def lake(self) -> Path:
        """Parquet between stages: ``raw/``, ``staged/``, ``quarantine/``, ``linkage/``."""
        return self.root / "lake"

    @property
    def sources_dir(self) -> Path:
        """User-supplied SourceSpec TOML files."""
        return self.root / "sources"

    @property
    def state(self) -> Path:
        """Durable connector state (ingest ledger, database cursors)."""
        return self.root / "state"

    @property
    def databases(self) -> Path:
        """Embedded (SQLite) stand-ins for the live source databases."""
        return self.root / "databases"

    @property
    def warehouse(self) -> Path:
        return self.root / "warehouse.duckdb"

    @property
    def decisions(self) -> Path:
        return self.root / "decisions.duckdb"

    @property
    def dagster_home(self) -> Path:
        return self.root / "dagster"

    def ensure(self) -> Home:
        """Create the top-level directories; returns self for chaining."""
        for p in (
            self.landing,
            self.truth,
            self.lake,
            self.sources_dir,
            self.state,
            self.databases,
        ):
            p.mkdir(parents=True, exist_ok=True)
        return self


@dataclass(frozen=True)
class DatabaseServers:
    """Live database servers for the database-backed source systems.

    Unset means embedded: each system is a SQLite file under ``home/databases``.
    """

    postgres_url: str | None = None
    mysql_url: str | None = None

    @classmethod
    def from_env(cls) -> DatabaseServers:
        return cls(
            postgres_url=os.environ.get("TESSERA_PG_URL") or None,
            mysql_url=os.environ.get("TESSERA_MYSQL_URL") or None,
        )
