"""'Patients like you': registry figures per arm for one person's profile, or none.

Contract
--------
:func:`estimate` takes a :class:`CellTable` (leaf sums, :mod:`vertebra.core.decision.cells`),
a :class:`Profile` (condition, age, optional baseline ODI, optional STarT Back group) and the
rule set, and returns a :class:`DecisionResult` with one :class:`ArmEstimate` per arm row in
the rule set's fixed order (never sorted by result: the aid does not rank treatments).

Similar patients: same condition, same age band, and, when given, the same baseline ODI band
and the same STarT Back group. For each arm:

* **shown** only when at least ``min_patients`` similar patients have a baseline and a
  12-month ODI (so every denominator shown is at least that large: n_similar >= n_expected
  >= n_pairs) **and**, when an optional answer narrows the group, every group at that level of
  detail (the same arm, condition and age band split by the optional answers) is either
  empty or itself large enough. Otherwise subtracting this figure from the wider group's
  figure would give the outcome of fewer than ``min_patients`` people (see the docs).
* Otherwise the group is **widened** step by step along the rule set's ladder (condition +
  age band -> condition -> everyone who had the treatment; :mod:`.widening`), and the
  narrowest group that may be shown gives the figures; ``level`` names it. Which groups may
  be shown is decided once per cell table (complementary suppression), so the figures always
  equal the sums of one whole group and no difference of shown groups isolates few people.
* Not shown at any level: ``shown`` False, reason ``too_few``, and **no number at all** (not
  even the count of similar patients): the page says "no one like you yet".
* Surgery within 12 months needs ``min_patients`` followed for 12 months as well.

Figures: 12-month completeness (completed / due), ODI responder rate among completers
(responders / pairs) and counting everyone due without a pair as not improved
(responders / due), each with a Wilson 95 % interval; mean ODI change with a t interval;
surgery within 12 months (Wilson). The same formulas and functions as the outcomes
dashboard (`wilson_ci`, `t_ci`, `Rate`, `Mean`). Observational: the arms are not comparable
(``observational`` True, caveats in the rule set).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from vertebra.core.analytics import Mean, Rate
from vertebra.core.analytics.stats import t_ci, wilson_ci
from vertebra.core.decision.cells import SUMS, CellTable
from vertebra.core.decision.rules import AgeBand, ArmGroup, DecisionRules, OdiBand
from vertebra.core.decision.widening import path_keys, publishable, safe
from vertebra.core.responders import responder_rule
from vertebra.core.screening import load_ruleset

__all__ = [
    "ArmEstimate",
    "DecisionResult",
    "Profile",
    "ProfileError",
    "conditions",
    "estimate",
]


#: Oldest age accepted from a person (an input sanity bound, not a clinical rule).
MAX_AGE = 120


class ProfileError(ValueError):
    """The profile cannot be matched (unknown condition, age outside every band, ...)."""


def conditions() -> tuple[tuple[str, str], ...]:
    """(id, plain label) of the conditions a person may pick: the screening rule set's
    diagnosis catalogue, whose ids are the registry's condition codes."""
    return tuple((d.id, d.label) for d in load_ruleset().diagnoses)


def _number(value: object) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Profile:
    """What a person tells the aid. ``odi`` (0-100) and ``startback`` are optional."""

    condition: str
    age: int
    odi: float | None = None
    startback: str | None = None

    def check(self, rules: DecisionRules) -> tuple[AgeBand, OdiBand | None]:
        """(age band, baseline ODI band or None); ProfileError naming every problem."""
        problems = []
        if self.condition not in dict(conditions()):
            problems.append(
                f"condition {self.condition!r} is not one of {list(dict(conditions()))}"
            )
        band = rules.age_band(self.age) if _number(self.age) and self.age <= MAX_AGE else None
        if band is None:
            problems.append(
                f"age {self.age!r} must be from {rules.age_bands[0].lower} to {MAX_AGE} years"
            )
        odi_band = None
        if self.odi is not None:
            odi_band = rules.odi_band(self.odi) if _number(self.odi) else None
            if odi_band is None:
                problems.append(f"odi {self.odi!r} must be a score from 0 to 100")
        if self.startback is not None and self.startback not in rules.startback_groups:
            problems.append(
                f"startback {self.startback!r} is not one of {list(rules.startback_groups)}"
            )
        if problems or band is None:
            raise ProfileError("; ".join(problems))
        return band, odi_band


@dataclass(frozen=True)
class ArmEstimate:
    """One arm's registry figures for similar patients; every field None when not shown."""

    arm: str
    label: str
    learn: str
    shown: bool
    reason: str | None
    #: The group the figures come from: "profile" (every answer), or a widening level id.
    level: str | None = None
    n_similar: int | None = None
    n_expected: int | None = None
    n_completed: int | None = None
    #: Of those who answered, with both a baseline and a 12-month score.
    n_pairs: int | None = None
    completeness: Rate | None = None
    responders_completers: Rate | None = None
    responders_all: Rate | None = None
    mean_change: Mean | None = None
    surgery: Rate | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form; rates as {rate, ci, numerator, denominator}, means as {n, mean, sd, ci}."""
        return {
            "arm": self.arm,
            "label": self.label,
            "shown": self.shown,
            "reason": self.reason,
            "level": self.level,
            "n_similar": self.n_similar,
            "n_expected_12m": self.n_expected,
            "n_completed_12m": self.n_completed,
            "n_both_scores_12m": self.n_pairs,
            "completeness_12m": self.completeness.to_dict() if self.completeness else None,
            "odi_responders_completers": (
                self.responders_completers.to_dict() if self.responders_completers else None
            ),
            "odi_responders_missing_as_not_improved": (
                self.responders_all.to_dict() if self.responders_all else None
            ),
            "odi_mean_change": self.mean_change.to_dict() if self.mean_change else None,
            "surgery_within_12m": self.surgery.to_dict() if self.surgery else None,
        }


@dataclass(frozen=True)
class DecisionResult:
    """The figures for one profile. ``arms`` are in the rule set's fixed order."""

    profile: Profile
    age_band: AgeBand
    odi_band: OdiBand | None
    rules: DecisionRules
    arms: tuple[ArmEstimate, ...]
    time_base: str
    n_treated: int
    n_in_scope: int
    surgery_available: bool
    observational: bool = True
    #: Stored registry rows left out of these figures, and why.
    data_notes: tuple[str, ...] = ()

    @property
    def any_shown(self) -> bool:
        """True when at least one arm has figures."""
        return any(a.shown for a in self.arms)

    def similarity(self) -> dict[str, Any]:
        """The similarity rule as applied to this profile (what "like you" meant)."""
        return {
            "condition": self.profile.condition,
            "age_band": self.age_band.id,
            "age_band_label": self.age_band.label,
            "baseline_odi_band": self.odi_band.id if self.odi_band else None,
            "baseline_odi_band_label": self.odi_band.label if self.odi_band else None,
            "startback_group": self.profile.startback,
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON contract of the decision aid (figures only; the web adds evidence)."""
        rule = responder_rule(self.rules.measure)
        return {
            "rules_version": self.rules.version,
            "observational": self.observational,
            "ranking": None,
            "time_base": self.time_base,
            "profile": {
                "condition": self.profile.condition,
                "age": self.profile.age,
                "odi": self.profile.odi,
                "startback": self.profile.startback,
            },
            "similar_patients": self.similarity(),
            "min_patients": self.rules.min_patients,
            "outcome": {
                "timepoint": self.rules.timepoint,
                "measure": self.rules.measure,
                "responder_rule": {
                    "points": rule.points,
                    "percent": rule.percent,
                    "source": rule.source,
                },
            },
            "registry": {
                "n_treated": self.n_treated,
                "n_with_baseline_and_arm": self.n_in_scope,
                "surgery_available": self.surgery_available,
                "left_out": list(self.data_notes),
            },
            "arms": [a.to_dict() for a in self.arms],
            "caveats": [c.to_dict() for c in self.rules.caveats],
        }


def _rate(x: int, n: int) -> Rate:
    lo, hi = wilson_ci(x, n)
    return Rate.of(x, n, float(lo), float(hi))


def _mean(n: int, total: float, squares: float) -> Mean:
    """Mean, SD (n - 1) and t interval from the sums Σx and Σx² of ``n`` values."""
    if n <= 0:
        return Mean(0, None, None, None)
    mean = total / n
    var = max(squares - total * mean, 0.0) / (n - 1) if n > 1 else math.nan
    sd = math.sqrt(var) if n > 1 else math.nan
    lo, hi = t_ci(mean, sd, n)
    return Mean.of(n, mean, sd, float(lo), float(hi))


def _safe(sums: pd.Series, minimum: int) -> bool:
    """A group may be shown, or be a known difference of shown groups: its pairs reach the
    minimum, and its 12-month-followed patients are none or reach it too."""
    return safe(int(sums["n_pairs"]), int(sums["n_followed"]), minimum)


#: The level id of a figure for the person's every answer (the optional answers given).
PROFILE_LEVEL = "profile"


def _figures(arm: ArmGroup, cell: pd.Series, level: str, minimum: int) -> ArmEstimate:
    """The shown figures of one group (its sums ``cell``) at ``level``."""
    n_expected, n_pairs = int(cell["n_expected"]), int(cell["n_pairs"])
    responders = int(cell["n_responders"])
    followed = int(cell["n_followed"])
    return ArmEstimate(
        arm=arm.id,
        label=arm.label,
        learn=arm.learn,
        shown=True,
        reason=None,
        level=level,
        n_similar=int(cell["n"]),
        n_expected=n_expected,
        n_completed=int(cell["n_completed"]),
        n_pairs=n_pairs,
        completeness=_rate(int(cell["n_completed"]), n_expected),
        responders_completers=_rate(responders, n_pairs),
        responders_all=_rate(responders, n_expected),
        mean_change=_mean(n_pairs, float(cell["sum_change"]), float(cell["sumsq_change"])),
        surgery=_rate(int(cell["n_surgery"]), followed) if followed >= minimum else None,
    )


def _match(rows: pd.DataFrame, values: dict[str, str]) -> pd.DataFrame:
    """The rows whose columns equal ``values``."""
    mask = np.ones(len(rows), dtype=bool)
    for col, value in values.items():
        mask &= rows[col].to_numpy() == value
    return rows.loc[mask]


def _arm(
    arm: ArmGroup,
    rows: pd.DataFrame,
    path: dict[str, str],
    dims: dict[str, str],
    shown: dict[str, frozenset[tuple[str, ...]]],
    rules: DecisionRules,
) -> ArmEstimate:
    """One arm's figure: the narrowest group on the person's path that may be shown.

    ``rows`` are the arm's leaves, ``path`` the person's condition and age band, ``dims`` the
    optional answers given, ``shown`` the arm's publishable groups per level.
    """
    minimum = rules.min_patients
    first = rules.widening[0]
    if dims and path_keys(first, path) in shown.get(first.id, frozenset()):
        block = _match(rows, {k: path[k] for k in first.keys})
        cell = _match(block, dims)[list(SUMS)].sum()
        groups = block.groupby(list(dims), observed=True)[list(SUMS)].sum()
        # every group at this level of detail must be safe (no small differences)
        if int(cell["n_pairs"]) >= minimum and all(_safe(g, minimum) for _, g in groups.iterrows()):
            return _figures(arm, cell, PROFILE_LEVEL, minimum)
    for level in rules.widening:
        if path_keys(level, path) in shown.get(level.id, frozenset()):
            cell = _match(rows, {k: path[k] for k in level.keys})[list(SUMS)].sum()
            return _figures(arm, cell, level.id, minimum)
    return ArmEstimate(arm.id, arm.label, arm.learn, shown=False, reason="too_few")


def estimate(cells: CellTable, profile: Profile, rules: DecisionRules) -> DecisionResult:
    """The registry figures per arm for ``profile`` (see the module docstring).

    Raises ProfileError for a profile that cannot be matched, and ValueError when ``cells``
    were built with another rule-set version.
    """
    if cells.rules_version != rules.version:
        raise ValueError(
            f"cell table built with rules {cells.rules_version}, asked with {rules.version}"
        )
    band, odi_band = profile.check(rules)
    leaves = cells.leaves
    published = publishable(leaves, rules.widening, rules.min_patients)
    path = {"condition": profile.condition, "age_band": band.id}
    dims = {
        col: value
        for col, value in (
            ("odi_band", odi_band.id if odi_band else None),
            ("startback", profile.startback),
        )
        if value is not None
    }
    arms = tuple(
        _arm(
            arm,
            leaves[leaves["arm"].to_numpy() == arm.id],
            path,
            dims,
            dict(published.get(arm.id, {})),
            rules,
        )
        for arm in rules.arms
    )
    return DecisionResult(
        profile=profile,
        age_band=band,
        odi_band=odi_band,
        rules=rules,
        arms=arms,
        time_base=cells.time_base,
        n_treated=cells.n_treated,
        n_in_scope=cells.n_in_scope,
        surgery_available=cells.surgery_available,
        data_notes=cells.data_notes,
    )
