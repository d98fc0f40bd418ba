"""Resources shared by the assets: where the data lives and the check thresholds."""

from __future__ import annotations

import dagster as dg

from connectors.checks import SourceThresholds
from tessera.config import Home
from tessera.quality import LinkageThresholds


class TesseraHome(dg.ConfigurableResource):
    """Where Tessera's data lives; defaults to ``$TESSERA_HOME`` or ``./data``."""

    path: str | None = None

    def home(self) -> Home:
        return Home.resolve(self.path).ensure()


class QualityThresholds(dg.ConfigurableResource):
    """Thresholds of the asset checks (defaults in :class:`connectors.checks.SourceThresholds`
    and :class:`tessera.quality.LinkageThresholds`)."""

    max_validity_drop: float = SourceThresholds.max_validity_drop
    min_values: int = SourceThresholds.min_values
    max_entity_mentions: int = LinkageThresholds.max_entity_mentions
    min_pairwise_precision: float = LinkageThresholds.min_pairwise_precision
    min_pairwise_recall: float = LinkageThresholds.min_pairwise_recall
    max_entity_drop: float = LinkageThresholds.max_entity_drop

    def source(self) -> SourceThresholds:
        return SourceThresholds(self.max_validity_drop, self.min_values)

    def linkage(self) -> LinkageThresholds:
        return LinkageThresholds(
            self.max_entity_mentions,
            self.min_pairwise_precision,
            self.min_pairwise_recall,
            self.max_entity_drop,
        )
