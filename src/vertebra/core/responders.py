"""Responder classification: did a patient's change from baseline reach the MCID?

Thresholds are data (``vertebra/data/responders.yaml``); the direction of improvement comes
from the instrument definition, so "improvement" is a decrease on ODI/NRS/RMDQ/PROMIS-PI and an
increase on PROMIS-PF. The rule (Ostelo 2008): responder when the improvement reaches the
points threshold OR the percentage-of-baseline threshold. With baseline 0 the percentage is
undefined and only the points rule applies.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from functools import cache
from importlib.resources import files
from typing import Any

from vertebra.core.instruments import get_definition
from vertebra.core.yamltext import load_yaml

__all__ = [
    "NoResponderRuleError",
    "ResponderResult",
    "ResponderRule",
    "classify_change",
    "responder_rule",
    "responder_rules",
]

# Changes are differences of rounded scores (e.g. 45.6 - 35.6 = 9.999999999999996); compare
# with a tolerance far below any score's resolution so that exactly 10 points counts as 10.
_EPS = 1e-9


class NoResponderRuleError(KeyError):
    """Raised for an instrument without a responder threshold."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "no responder rule"


@dataclass(frozen=True, slots=True)
class ResponderRule:
    """Thresholds for one instrument; `percent`/`substantial_percent` None = no % rule."""

    instrument_id: str
    points: float
    percent: float | None
    substantial_percent: float | None
    source: str
    verified: bool


@dataclass(frozen=True, slots=True)
class ResponderResult:
    """Change between two scores, classified against the instrument's responder rule.

    * change: follow_up - baseline (raw, signed).
    * improvement: change in the "better" direction (positive = better).
    * pct_change: improvement as a percentage of baseline; None when baseline is 0 or the
      instrument has no percentage rule (T-scores).
    * mcid_met: improvement >= points, or pct_change >= percent.
    * substantial: pct_change >= substantial_percent; None when the instrument has no such rule.
      False (not None) when baseline is 0, because no improvement is possible from the floor of a
      higher-is-worse scale.
    """

    instrument_id: str
    baseline: float
    follow_up: float
    change: float
    improvement: float
    pct_change: float | None
    mcid_met: bool
    substantial: bool | None
    rule_verified: bool

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return asdict(self)


@cache
def responder_rules() -> Mapping[str, ResponderRule]:
    """All thresholds from the data file, keyed by instrument id (read once)."""
    raw: Any = load_yaml(
        files("vertebra").joinpath("data", "responders.yaml").read_text(encoding="utf-8")
    )
    rules: dict[str, ResponderRule] = {}
    for ident, r in raw["rules"].items():
        get_definition(ident)  # a rule for an unknown instrument is a data bug: fail loudly
        rules[ident] = ResponderRule(
            instrument_id=ident,
            points=float(r["points"]),
            percent=None if r.get("percent") is None else float(r["percent"]),
            substantial_percent=(
                None if r.get("substantial_percent") is None else float(r["substantial_percent"])
            ),
            source=str(r["source"]),
            verified=bool(r["verified"]),
        )
    return rules


def responder_rule(instrument_id: str) -> ResponderRule:
    """The rule for one instrument; NoResponderRuleError (listing those with rules) if none."""
    rules = responder_rules()
    if instrument_id not in rules:
        raise NoResponderRuleError(
            f"no responder rule for {instrument_id!r}; rules exist for: {', '.join(rules)}"
        )
    return rules[instrument_id]


def classify_change(instrument_id: str, baseline: float, follow_up: float) -> ResponderResult:
    """Classify the change from `baseline` to `follow_up` on `instrument_id`.

    Both scores must be finite numbers within the instrument's range (ValueError otherwise).
    Raises NoResponderRuleError if the instrument has no threshold.
    """
    rule = responder_rule(instrument_id)
    defn = get_definition(instrument_id)
    for name, value in (("baseline", baseline), ("follow_up", follow_up)):
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise ValueError(f"{instrument_id}: {name} must be a finite number, got {value!r}")
        if not defn.range_min <= value <= defn.range_max:
            raise ValueError(
                f"{instrument_id}: {name} {value} is outside the range "
                f"{defn.range_min:g}-{defn.range_max:g}"
            )
    change = float(follow_up) - float(baseline)
    # "+ 0.0" turns -0.0 into 0.0 so that JSON never shows a negative zero.
    improvement = (change if defn.direction == "higher_is_better" else -change) + 0.0
    pct = _pct(improvement, float(baseline), rule.percent is not None)
    mcid = improvement >= rule.points - _EPS or (
        pct is not None and rule.percent is not None and pct >= rule.percent - _EPS
    )
    return ResponderResult(
        instrument_id=instrument_id,
        baseline=float(baseline),
        follow_up=float(follow_up),
        change=change,
        improvement=improvement,
        pct_change=pct,
        mcid_met=mcid,
        substantial=_substantial(rule, pct, float(baseline)),
        rule_verified=rule.verified,
    )


def _pct(improvement: float, baseline: float, has_rule: bool) -> float | None:
    """Improvement as % of baseline; None when undefined (baseline 0) or not meaningful."""
    if not has_rule or baseline == 0:
        return None
    return improvement / abs(baseline) * 100.0


def _substantial(rule: ResponderRule, pct: float | None, baseline: float) -> bool | None:
    if rule.substantial_percent is None:
        return None
    if baseline == 0:
        # percentage undefined; on a higher-is-worse scale nothing can improve from 0.
        return False
    return pct is not None and pct >= rule.substantial_percent - _EPS
