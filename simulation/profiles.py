"""How each simulated agency behaves: who it knows, how often it delivers,
how it errs, and how it makes up the facts in its rows.

A profile is data; :mod:`simulation.deliver` turns (world, spec, profile, day)
into files. The connectors never read these: they only see the files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Fact generators, by shape (see ``simulation.deliver.fact_values``):
#   ("day",)                  the delivery day
#   ("back", n)               a date up to n days before the delivery day
#   ("ahead", lo, hi)         a date lo..hi days after the delivery day
#   ("ctx", column)           a column of the population frame (case number, list expiry, ...)
#   ("money", median, sigma)  a log-normal amount, 2 decimals
#   ("int", lo, hi)           an integer in [lo, hi]
#   ("choice", (a, b, ...))   one of the values
#   ("code", prefix, width)   prefix + random digits
#   ("city", suffix)          a city name + suffix (stations, airports, hotels)
FactGen = tuple[Any, ...]


@dataclass(frozen=True)
class ErrorRates:
    """Per-row probabilities of each kind of error an agency makes."""

    typo: float = 0.0
    homophone: float = 0.0
    swapped_name: float = 0.0
    transposed_digits: float = 0.0
    missing: float = 0.0
    stale_address: float = 0.0
    stale_phone: float = 0.0
    duplicate: float = 0.0
    # Businesses (the subject of a business source, or an employer named on a person row):
    biz_name_variant: float = 0.0  # legal form changed/dropped, city prefix dropped/added/bracketed
    biz_name_typo: float = 0.0  # one character of the name replaced (a homophone where one exists)
    uscc_error: float = 0.0  # two adjacent characters of the USCC transposed (fails its check)
    uscc_missing: float = 0.0  # USCC not recorded

    def as_dict(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class SimProfile:
    """The simulated behaviour of one source system.

    ``population`` names who the system knows (see ``simulation.deliver.POPULATIONS``);
    snapshot systems deliver ``coverage`` of it every ``snapshot_every`` days, delta
    systems deliver ``daily_rate`` events per member per day (drawn with a
    per-member activity weight, so some people travel or shop far more than others).
    """

    population: str
    errors: ErrorRates = field(default_factory=ErrorRates)
    coverage: float = 1.0
    daily_rate: float = 0.0
    snapshot_every: int = 7
    key_prefix: str = "R"
    facts: dict[str, FactGen] = field(default_factory=dict)


# Typical agencies. Registries keyed by ID are careful; commerce is sloppy.
CAREFUL = ErrorRates(
    typo=0.003,
    homophone=0.003,
    transposed_digits=0.002,
    missing=0.01,
    stale_address=0.02,
    stale_phone=0.05,
    duplicate=0.001,
    biz_name_variant=0.05,
    biz_name_typo=0.005,
    uscc_error=0.005,
)
ORDINARY = ErrorRates(
    typo=0.01,
    homophone=0.01,
    swapped_name=0.003,
    transposed_digits=0.005,
    missing=0.05,
    stale_address=0.1,
    stale_phone=0.1,
    duplicate=0.005,
    biz_name_variant=0.3,
    biz_name_typo=0.03,
    uscc_error=0.03,
    uscc_missing=0.1,
)
SLOPPY = ErrorRates(
    typo=0.03,
    homophone=0.03,
    swapped_name=0.01,
    transposed_digits=0.01,
    missing=0.12,
    stale_address=0.25,
    stale_phone=0.2,
    duplicate=0.02,
    biz_name_variant=0.5,
    biz_name_typo=0.06,
    uscc_error=0.05,
    uscc_missing=0.3,
)
