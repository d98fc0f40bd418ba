"""The catalog of source systems: the built-in specs plus user TOML specs.

``builtin_specs()`` are the 40+ systems of the simulated world;
``load_specs(home)`` adds every ``*.toml`` in ``$TESSERA_HOME/sources/``.
A user spec may not reuse a built-in id.
"""

from __future__ import annotations

from pathlib import Path

from connectors.catalog.commercial import COMMERCIAL
from connectors.catalog.court import COURT
from connectors.catalog.municipal import MUNICIPAL
from connectors.catalog.transport import TRANSPORT
from connectors.spec import SourceSpec, SpecError, load_toml


def builtin_specs() -> tuple[SourceSpec, ...]:
    """All built-in source systems, file drops first, then live databases."""
    from connectors.catalog.databases import DATABASE_SPECS

    return MUNICIPAL + COURT + COMMERCIAL + TRANSPORT + DATABASE_SPECS


def user_specs(sources_dir: Path) -> tuple[SourceSpec, ...]:
    """Specs from ``*.toml`` files in a directory (sorted by file name)."""
    if not sources_dir.is_dir():
        return ()
    return tuple(load_toml(p) for p in sorted(sources_dir.glob("*.toml")))


def load_specs(sources_dir: Path | None = None) -> tuple[SourceSpec, ...]:
    """Built-in specs plus the user's; raises SpecError on a clashing id."""
    specs = builtin_specs()
    if sources_dir is not None:
        seen = {s.id for s in specs}
        for s in user_specs(sources_dir):
            if s.id in seen:
                raise SpecError(f"user spec {s.id!r} clashes with an existing source id")
            seen.add(s.id)
            specs += (s,)
    return specs
