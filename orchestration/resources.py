"""Resources shared by the assets."""

from __future__ import annotations

import dagster as dg

from tessera.config import Home


class TesseraHome(dg.ConfigurableResource):
    """Where Tessera's data lives; defaults to ``$TESSERA_HOME`` or ``./data``."""

    path: str | None = None

    def home(self) -> Home:
        return Home.resolve(self.path).ensure()
