"""The decision aid's rule set: who is "like you", the outcome, the minimum cell size, the arms.

The rules are data (``vertebra/data/decision/rules.yaml``, versioned); this module reads and
checks them and offers the two banding functions the similarity rule needs. Pure: no Django,
no database, no clock. See docs/algorithms/decision-aid.md.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any

import numpy as np
import numpy.typing as npt

from vertebra.core.decision.widening import Level
from vertebra.core.instruments import get_definition
from vertebra.core.knowledge import find_promising_language
from vertebra.core.responders import responder_rule
from vertebra.core.yamltext import load_yaml

__all__ = [
    "AgeBand",
    "ArmGroup",
    "Caveat",
    "DecisionRules",
    "DecisionRulesError",
    "OdiBand",
    "decision_rules",
    "parse_rules",
]


class DecisionRulesError(ValueError):
    """The rule-set file breaks its own contract; the message names every problem."""


@dataclass(frozen=True)
class AgeBand:
    """A fixed age band [lower, upper] in whole years; ``upper`` None = no upper limit."""

    id: str
    lower: int
    upper: int | None
    label: str

    def contains(self, age: float) -> bool:
        """True when ``age`` (whole years at treatment, or the person's age) is in the band."""
        return age >= self.lower and (self.upper is None or age <= self.upper)


@dataclass(frozen=True)
class OdiBand:
    """A baseline-ODI band of the decision aid: one or more adjacent bands of the instrument."""

    id: str
    bands: tuple[str, ...]
    label: str


@dataclass(frozen=True)
class ArmGroup:
    """One row of the page: the registry arms pooled into it and its knowledge-base page."""

    id: str
    label: str
    registry_arms: tuple[str, ...]
    learn: str


@dataclass(frozen=True)
class Caveat:
    """A plain-language caveat with the ids of the sources that support it (may be none)."""

    id: str
    text: str
    sources: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"id": self.id, "text": self.text, "sources": list(self.sources)}


@dataclass(frozen=True)
class DecisionRules:
    """The parsed rule set (see rules.yaml for the meaning of every field)."""

    version: str
    timepoint: str
    months: int
    measure: str
    min_patients: int
    age_bands: tuple[AgeBand, ...]
    odi_bands: tuple[OdiBand, ...]
    startback_groups: tuple[str, ...]
    arms: tuple[ArmGroup, ...]
    caveats: tuple[Caveat, ...]
    #: The ladder of ever wider groups, narrowest first (rules.yaml ``widening``).
    widening: tuple[Level, ...] = ()

    def age_band(self, age: float) -> AgeBand | None:
        """The band holding ``age``; None when no band does (under the lowest, or not a number)."""
        if not isinstance(age, int | float) or isinstance(age, bool) or not math.isfinite(age):
            return None
        return next((b for b in self.age_bands if b.contains(age)), None)

    def age_band_codes(self, ages: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """Vectorised :meth:`age_band`: index into ``age_bands`` per age, -1 for none (NaN too)."""
        a = np.asarray(ages, dtype=np.float64)
        out = np.full(a.shape, -1, dtype=np.int64)
        for i, band in enumerate(self.age_bands):
            upper = np.inf if band.upper is None else band.upper
            out[(a >= band.lower) & (a <= upper)] = i
        return out

    def odi_band(self, score: float) -> OdiBand | None:
        """The band of a baseline ODI ``score`` (0-100): the instrument's band (upper edges
        inclusive, ``InstrumentDefinition.band_for``) mapped to the aid's band; None when not
        a score."""
        if (
            not isinstance(score, int | float)
            or isinstance(score, bool)
            or not math.isfinite(score)
        ):
            return None
        defn = get_definition(self.measure)
        if not defn.range_min <= score <= defn.range_max:
            return None
        inst = defn.band_for(float(score))
        return next((b for b in self.odi_bands if inst in b.bands), None)

    def odi_band_label(self, band_id: str) -> str:
        """The plain label of the aid's band ``band_id`` (KeyError if none)."""
        return next(b.label for b in self.odi_bands if b.id == band_id)

    def odi_band_codes(self, scores: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """Vectorised :meth:`odi_band`: index into ``odi_bands`` per score, -1 for NaN.

        The instrument band is ``searchsorted(uppers, score, side="left")`` (inclusive upper
        edges, as ``band_for``); a test checks equality with the scalar function.
        """
        s = np.asarray(scores, dtype=np.float64)
        inst = get_definition(self.measure).bands
        uppers = np.asarray([b.upper for b in inst])
        to_aid = np.asarray(
            [next(i for i, g in enumerate(self.odi_bands) if b.id in g.bands) for b in inst] + [-1],
            dtype=np.int64,
        )
        codes = np.searchsorted(uppers, np.where(np.isnan(s), np.inf, s), side="left")
        return np.asarray(to_aid[codes], dtype=np.int64)

    def arm(self, arm_id: str) -> ArmGroup:
        """The arm group with this id (KeyError if none)."""
        for a in self.arms:
            if a.id == arm_id:
                return a
        raise KeyError(arm_id)

    def to_dict(self) -> dict[str, Any]:
        """JSON form of the rules a result was computed with."""
        return {
            "version": self.version,
            "outcome": {
                "timepoint": self.timepoint,
                "months": self.months,
                "measure": self.measure,
            },
            "min_patients": self.min_patients,
            "similarity": {
                "condition": "same condition (first recorded diagnosis)",
                "age_bands": [
                    {"id": b.id, "from": b.lower, "to": b.upper, "label": b.label}
                    for b in self.age_bands
                ],
                "baseline_odi_bands": [
                    {"id": b.id, "label": b.label, "instrument_bands": list(b.bands)}
                    for b in self.odi_bands
                ],
                "startback_groups": list(self.startback_groups),
            },
            "arms": [
                {"id": a.id, "label": a.label, "registry_arms": list(a.registry_arms)}
                for a in self.arms
            ],
            "widening": [
                {"id": lv.id, "keys": list(lv.keys), "describe": lv.describe}
                for lv in self.widening
            ],
        }


def _band(raw: Mapping[str, Any]) -> AgeBand:
    upper = raw.get("to")
    return AgeBand(
        id=str(raw["id"]),
        lower=int(raw["from"]),
        upper=None if upper is None else int(upper),
        label=str(raw["label"]),
    )


#: The keys a widening level may match on, and the first level's (the "like you" block).
WIDENING_KEYS: tuple[str, ...] = ("condition", "age_band")


def _check_widening(levels: tuple[Level, ...]) -> list[str]:
    """Problems of the ladder: it starts at condition + age band, each level keeps a subset
    of the previous level's keys (so the groups nest), and ids are unique."""
    problems: list[str] = []
    if not levels:
        return ["widening: at least one level"]
    if set(levels[0].keys) != set(WIDENING_KEYS):
        problems.append(f"widening: the first level must match on {list(WIDENING_KEYS)}")
    for prev, nxt in itertools.pairwise(levels):
        if not set(nxt.keys) < set(prev.keys):
            problems.append(f"widening: level {nxt.id} must drop a key of {prev.id}")
    if len({lv.id for lv in levels}) != len(levels):
        problems.append("widening: duplicate level id")
    for lv in levels:
        try:
            lv.describe.format(condition="c", age_band="a")
        except (KeyError, IndexError, ValueError):
            problems.append(
                f"widening: level {lv.id}: describe may use only {{condition}} and {{age_band}}"
            )
        for phrase in find_promising_language(lv.describe):
            problems.append(f"widening {lv.id}: promising wording {phrase!r} is not allowed")
    return problems


def _check(rules: DecisionRules) -> list[str]:
    """Every problem of a parsed rule set (empty when it is sound)."""
    problems: list[str] = []
    if rules.min_patients < 1:
        problems.append("min_patients must be at least 1")
    bands = rules.age_bands
    if not bands:
        problems.append("similarity.age_bands: at least one band")
    for prev, nxt in itertools.pairwise(bands):
        if prev.upper is None or nxt.lower != prev.upper + 1:
            problems.append(f"age band {nxt.id} must start the year after {prev.id} ends")
    if bands and bands[-1].upper is not None:
        problems.append("the last age band must have no upper limit (to: null)")
    try:
        responder_rule(rules.measure)  # the responder rule is reused, never restated here
        inst_bands = [b.id for b in get_definition(rules.measure).bands]
    except KeyError as exc:
        problems.append(f"outcome.measure: {exc}")
        inst_bands = []
    merged = [b for band in rules.odi_bands for b in band.bands]
    if merged != inst_bands:
        problems.append(
            f"baseline_odi_bands must cover the instrument bands {inst_bands} once each, "
            f"in order; got {merged}"
        )
    ids = [a.id for a in rules.arms]
    if len(set(ids)) != len(ids):
        problems.append("arms: duplicate id")
    pooled = [r for a in rules.arms for r in a.registry_arms]
    if len(set(pooled)) != len(pooled):
        problems.append("arms: a registry arm belongs to two rows")
    problems.extend(_check_widening(rules.widening))
    missing = {"not_a_promise", "not_causal", "sham"} - {c.id for c in rules.caveats}
    if missing:
        problems.append(f"caveats: the page needs the caveats {sorted(missing)}")
    for c in rules.caveats:
        for phrase in find_promising_language(c.text):
            problems.append(f"caveat {c.id}: promising wording {phrase!r} is not allowed")
    return problems


def parse_rules(raw: Mapping[str, Any]) -> DecisionRules:
    """Build and check a rule set from its YAML mapping (DecisionRulesError on any problem)."""
    try:
        sim = raw["similarity"]
        rules = DecisionRules(
            version=str(raw["version"]),
            timepoint=str(raw["outcome"]["timepoint"]),
            months=int(raw["outcome"]["months"]),
            measure=str(raw["outcome"]["measure"]),
            min_patients=int(raw["min_patients"]),
            age_bands=tuple(_band(b) for b in sim["age_bands"]),
            odi_bands=tuple(
                OdiBand(str(b["id"]), tuple(str(x) for x in b["bands"]), str(b["label"]))
                for b in sim["baseline_odi_bands"]
            ),
            startback_groups=tuple(str(g) for g in sim["startback_groups"]),
            arms=tuple(
                ArmGroup(
                    id=str(a["id"]),
                    label=str(a["label"]),
                    registry_arms=tuple(str(r) for r in a["registry_arms"]),
                    learn=str(a["learn"]),
                )
                for a in raw["arms"]
            ),
            caveats=tuple(
                Caveat(str(c["id"]), " ".join(str(c["text"]).split()), tuple(c["sources"]))
                for c in raw["caveats"]
            ),
            widening=tuple(
                Level(str(lv["id"]), tuple(str(k) for k in lv["keys"]), str(lv["describe"]))
                for lv in raw["widening"]
            ),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise DecisionRulesError(f"decision rules: missing or malformed field: {exc}") from None
    problems = _check(rules)
    if problems:
        raise DecisionRulesError("decision rules: " + "; ".join(problems))
    return rules


@cache
def decision_rules() -> DecisionRules:
    """The packaged rule set (read and checked once)."""
    text = files("vertebra").joinpath("data", "decision", "rules.yaml").read_text(encoding="utf-8")
    return parse_rules(load_yaml(text))
