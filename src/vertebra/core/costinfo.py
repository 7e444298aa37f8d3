"""Typical cost ranges and coverage of each treatment, with sources (``data/learn/cost.yaml``).

Pure: reads the packaged, versioned data file. Shown on /learn/cost/ and in the decision aid;
the synthetic generator's price ranges cite these entries (docs/algorithms/cost.md). Every
figure carries its source ids and a status (V read in the source, U unverified), which pages
show beside it; :func:`load_cost_info` refuses a file whose source ids do not resolve, whose
range is inverted, or whose entry has no status.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any

from vertebra.core.yamltext import load_yaml

__all__ = ["CostInfo", "CostSource", "TreatmentCost", "cost_info", "load_cost_info"]

_STATUSES = ("V", "U")
_COVERAGE = ("usually", "sometimes", "rarely")


@dataclass(frozen=True)
class CostSource:
    """One cited source: citation text, optional URL, status (V/U) and what was checked."""

    id: str
    citation: str
    status: str
    note: str
    url: str = ""

    @property
    def unverified(self) -> bool:
        return self.status != "V"


@dataclass(frozen=True)
class TreatmentCost:
    """The typical price range of one treatment and how often insurance covers it."""

    id: str
    arm: str
    label: str
    low: float
    high: float
    per: str
    as_of: str
    price_words: str
    coverage: str  # usually / sometimes / rarely
    coverage_words: str
    sources: tuple[CostSource, ...]
    status: str

    @property
    def unverified(self) -> bool:
        return self.status != "V" or any(s.unverified for s in self.sources)


@dataclass(frozen=True)
class CostInfo:
    """The whole file: version, date of the last edit, currency, treatments, sources."""

    version: str
    updated: dt.date
    currency: str
    treatments: tuple[TreatmentCost, ...]
    sources: Mapping[str, CostSource]

    def for_arm(self, arm: str) -> TreatmentCost | None:
        """The entry of a registry arm ("cell_therapy", "surgery", ...), if any."""
        return next((t for t in self.treatments if t.arm == arm), None)

    @property
    def any_unverified(self) -> bool:
        return any(t.unverified for t in self.treatments)


def _text(raw: Any) -> str:
    return " ".join(str(raw or "").split())


def load_cost_info(text: str) -> CostInfo:
    """Parse a cost file (YAML text); ValueError naming the first problem found."""
    raw = load_yaml(text)
    sources = {
        str(s["id"]): CostSource(
            id=str(s["id"]),
            citation=_text(s["citation"]),
            status=str(s["status"]),
            note=_text(s.get("note")),
            url=str(s.get("url") or ""),
        )
        for s in raw["sources"]
    }
    for s in sources.values():
        if s.status not in _STATUSES:
            raise ValueError(f"cost.yaml: source {s.id}: status must be one of {_STATUSES}")
    treatments = []
    for t in raw["treatments"]:
        low, high = float(t["low"]), float(t["high"])
        if not 0 <= low <= high:
            raise ValueError(f"cost.yaml: {t['id']}: need 0 <= low <= high")
        missing = [sid for sid in t["sources"] if sid not in sources]
        if missing or not t["sources"]:
            raise ValueError(f"cost.yaml: {t['id']}: unknown or no sources {missing}")
        if t.get("status") not in _STATUSES or t.get("coverage") not in _COVERAGE:
            raise ValueError(f"cost.yaml: {t['id']}: status V/U and coverage {_COVERAGE} needed")
        treatments.append(
            TreatmentCost(
                id=str(t["id"]),
                arm=str(t["arm"]),
                label=str(t["label"]),
                low=low,
                high=high,
                per=str(t["per"]),
                as_of=str(t["as_of"]),
                price_words=_text(t["price_words"]),
                coverage=str(t["coverage"]),
                coverage_words=_text(t["coverage_words"]),
                sources=tuple(sources[sid] for sid in t["sources"]),
                status=str(t["status"]),
            )
        )
    updated = raw["updated"]
    if not isinstance(updated, dt.date):
        updated = dt.date.fromisoformat(str(updated))
    return CostInfo(
        version=str(raw["version"]),
        updated=updated,
        currency=str(raw["currency"]),
        treatments=tuple(treatments),
        sources=sources,
    )


@cache
def cost_info() -> CostInfo:
    """The packaged cost file (read once)."""
    return load_cost_info(
        files("vertebra").joinpath("data", "learn", "cost.yaml").read_text(encoding="utf-8")
    )
