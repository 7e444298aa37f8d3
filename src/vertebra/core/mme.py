"""Morphine milligram equivalents (MME) per day, with the CDC 2022 conversion factors.

MME/day = daily dose x factor. Doses are mg/day, except transdermal fentanyl, whose "dose" is
the patch strength in mcg/hr. The factors live in ``vertebra/data/mme_factors.yaml``.

These figures describe total opioid exposure (for outcomes and eligibility such as "> 60 MME/day");
they must never be used to convert a patient from one opioid to another.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any

from vertebra.core.yamltext import load_yaml

__all__ = [
    "InvalidDoseError",
    "OpioidFactor",
    "UnknownOpioidError",
    "known_opioids",
    "mme_per_day",
    "mme_source",
    "opioid_factor",
]


class UnknownOpioidError(KeyError):
    """Raised for an opioid that has no CDC conversion factor; the message lists known ones."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown opioid"


class InvalidDoseError(ValueError):
    """Raised for a negative, infinite or non-numeric daily dose."""


@dataclass(frozen=True, slots=True)
class OpioidFactor:
    """One row of the conversion table."""

    id: str
    label: str
    factor: float
    dose_unit: str
    aliases: tuple[str, ...] = ()


@cache
def _raw() -> Any:
    """The parsed data file, read once from package data."""
    return load_yaml(
        files("vertebra").joinpath("data", "mme_factors.yaml").read_text(encoding="utf-8")
    )


@cache
def _table() -> dict[str, OpioidFactor]:
    """Validate the factor table once."""
    raw = _raw()
    table: dict[str, OpioidFactor] = {}
    for key, row in raw["opioids"].items():
        factor = float(row["factor"])
        if not factor > 0:
            raise ValueError(f"mme_factors.yaml: factor for {key!r} must be positive")
        table[str(key)] = OpioidFactor(
            id=str(key),
            label=str(row["label"]),
            factor=factor,
            dose_unit=str(row["dose_unit"]),
            aliases=tuple(str(a) for a in row.get("aliases", [])),
        )
    return table


def mme_source() -> str:
    """Citation of the conversion table, as stated in the data file."""
    return str(_raw()["source"])


def _normalise(name: str) -> str:
    """Case- and separator-insensitive name: 'Fentanyl patch' -> 'fentanyl_patch'."""
    return "_".join(name.strip().lower().replace("-", " ").replace("_", " ").split())


@cache
def _lookup() -> dict[str, OpioidFactor]:
    """Map every accepted spelling (id and aliases, normalised) to its row."""
    index: dict[str, OpioidFactor] = {}
    for row in _table().values():
        for name in (row.id, *row.aliases):
            index[_normalise(name)] = row
    return index


def known_opioids() -> tuple[OpioidFactor, ...]:
    """All opioids with a factor, in file order."""
    return tuple(_table().values())


def opioid_factor(opioid: str) -> OpioidFactor:
    """Return the conversion row for an opioid id or alias.

    Raises UnknownOpioidError (listing the known ids) if there is none.
    """
    row = _lookup().get(_normalise(opioid)) if isinstance(opioid, str) else None
    if row is None:
        known = ", ".join(_table())
        raise UnknownOpioidError(
            f"unknown opioid {opioid!r}; known opioids (CDC 2022 factors): {known}"
        )
    return row


def mme_per_day(opioid: str, daily_dose: float) -> float:
    """Return MME/day = daily_dose x CDC 2022 factor for `opioid`.

    `daily_dose` is in mg/day, except for fentanyl_transdermal where it is mcg/hr.
    Raises UnknownOpioidError for an opioid without a factor and InvalidDoseError for a dose
    that is negative, not finite or not a number. The result is not rounded.
    """
    row = opioid_factor(opioid)
    if isinstance(daily_dose, bool) or not isinstance(daily_dose, int | float):
        raise InvalidDoseError(f"daily dose must be a number, got {daily_dose!r}")
    dose = float(daily_dose)
    if not math.isfinite(dose) or dose < 0:
        raise InvalidDoseError(
            f"daily dose must be a finite number >= 0 ({row.dose_unit}), got {daily_dose!r}"
        )
    return dose * row.factor
