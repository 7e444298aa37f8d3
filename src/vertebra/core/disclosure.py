"""Minimum cell size for what researchers see (statistical disclosure control). Pure.

The policy is data (``vertebra/data/disclosure.yaml``, versioned, with its source: the CMS
cell size suppression policy, 11); this module applies it at two levels:

* **Groups, on the de-identified tables** (:func:`withhold_small_groups`): the patients of
  every arm with fewer than ``min_cell`` patients are left out of the tables before any
  figure is computed; when fewer than ``min_cell`` patients remain the tables are emptied.
  So no arm-level figure (and no cohort) is ever computed from 1-10 patients.
* **Cells, on a report's JSON** (:func:`suppress_report`): inside the arms that remain, every
  count of 1 to ``min_cell - 1`` (patients, events, completers, at risk ...) is replaced by
  :data:`SUPPRESSED` (the words "fewer than 11 (suppressed)"), and every statistic computed
  from such a group (mean, SD, CI, rate, survival) by None; the object that held them gets
  ``"suppressed": true``. A rate is also suppressed when its complement (denominator minus
  numerator) is small. Benchmark clinics and comparisons with a small n are removed whole.

A suppressed value is a :class:`Suppressed` string: JSON carries the words, a template prints
them as they are and can test ``value.suppressed``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import TYPE_CHECKING, Any

from vertebra.core.yamltext import load_yaml

if TYPE_CHECKING:  # the analytics package imports this module: no import cycle at run time
    from vertebra.core.analytics.schema import AnalysisTables

__all__ = [
    "DisclosurePolicy",
    "Suppressed",
    "Withheld",
    "follow_up_hidden",
    "is_small",
    "policy",
    "suppress_report",
    "suppress_values",
    "suppressed",
    "withhold_small_groups",
]


@dataclass(frozen=True)
class DisclosurePolicy:
    """The minimum cell policy (``vertebra/data/disclosure.yaml``)."""

    version: str
    min_cell: int
    source: str
    text: str
    note: str

    def to_dict(self) -> dict[str, Any]:
        """{version, min_cell, source, note}: what a report says about its suppression."""
        return {
            "version": self.version,
            "min_cell": self.min_cell,
            "source": self.source,
            "note": self.note,
        }


@cache
def policy() -> DisclosurePolicy:
    """The policy from the data file (read once). ValueError if ``min_cell`` is below 2 or the
    text does not name it."""
    raw: Any = load_yaml(
        files("vertebra").joinpath("data", "disclosure.yaml").read_text(encoding="utf-8")
    )
    out = DisclosurePolicy(
        version=str(raw["version"]),
        min_cell=int(raw["min_cell"]),
        source=" ".join(str(raw["source"]).split()),
        text=str(raw["text"]),
        note=" ".join(str(raw["note"]).split()),
    )
    if out.min_cell < 2 or str(out.min_cell) not in out.text:
        raise ValueError("disclosure.yaml: min_cell must be >= 2 and named in `text`")
    return out


class Suppressed(str):
    """A suppressed value: prints as the policy's words, and says so (``suppressed``)."""

    __slots__ = ()
    suppressed = True


def suppressed() -> Suppressed:
    """The suppressed value of the current policy."""
    return Suppressed(policy().text)


def is_small(count: Any, min_cell: int) -> bool:
    """True for a count of 1 to ``min_cell - 1`` (0 describes no one and is shown)."""
    if isinstance(count, bool) or not isinstance(count, int | float):
        return False
    return 0 < count < min_cell


# ----------------------------------------------------------------------------- groups


@dataclass(frozen=True)
class Withheld:
    """What :func:`withhold_small_groups` left out: arms (name -> patients) and whether the
    whole cohort was withheld (fewer than ``min_cell`` patients in it)."""

    arms: Mapping[str, int]
    cohort: bool
    min_cell: int

    def to_dict(self) -> dict[str, Any]:
        """{arms: [names], cohort: bool} — no counts (they are small by definition)."""
        return {"arms": sorted(self.arms), "cohort": self.cohort}


def withhold_small_groups(
    tables: AnalysisTables, min_cell: int | None = None
) -> tuple[AnalysisTables, Withheld]:
    """``tables`` without the patients of arms smaller than ``min_cell`` (default: the
    policy's), and empty when fewer than ``min_cell`` patients remain; what was left out.

    Filters the three tables consistently (time points and events follow their patients) and
    keeps their ``exclusions`` (what the reader left out as implausible, and why).
    """
    k = policy().min_cell if min_cell is None else min_cell
    patients = tables.patients
    sizes = patients["arm"].astype(str).value_counts()
    small = {str(arm): int(n) for arm, n in sizes.items() if is_small(int(n), k)}
    keep = ~patients["arm"].astype(str).isin(list(small))
    cohort = bool(0 < int(keep.sum()) < k) or bool(len(patients) and not keep.any())
    if cohort:
        keep &= False
    if keep.all():
        return tables, Withheld(arms={}, cohort=False, min_cell=k)
    ids = patients.loc[keep, "patient_id"]
    out = type(tables).of(
        patients.loc[keep].reset_index(drop=True),
        tables.timepoints[tables.timepoints["patient_id"].isin(ids)].reset_index(drop=True),
        tables.events[tables.events["patient_id"].isin(ids)].reset_index(drop=True),
        # The data-quality notes (rows left out as implausible) still hold for what remains.
        exclusions=tables.exclusions,
    )
    return out, Withheld(arms=small, cohort=cohort, min_cell=k)


# ------------------------------------------------------------------------------ cells

#: Keys holding a count of patients, events or answers.
COUNT_KEYS = frozenset(
    {
        "n",
        "n_patients",
        "n_expected",
        "n_completed",
        "n_missing",
        "n_scored",
        "n_change",
        "at_risk",
        "events_before",
        "events",
        "patients",
        "n_treated",
        "n_control",
        "numerator",
        "denominator",
        "n_total",
        "n_excluded_missing_covariate",
        # cost (vertebra.core.analytics.cost)
        "n_cost_recorded",
        "n_other_currency",
        "n_evaluable",
        "n_due",
        "n_responders",
    }
)
#: Statistic keys that depend on the group a count describes: count key -> statistics.
_DEPENDENT = {
    "n": ("mean", "median", "sd", "ci", "rate", "value", "total"),
    "n_scored": ("mean", "median", "sd"),
    "n_change": ("mean_change", "mean_change_sd", "mean_change_ci"),
    "at_risk": ("survival", "ci", "returned", "returned_ci"),
    "events_before": ("survival", "ci", "returned", "returned_ci"),
    "events": ("events_per_100", "events_per_100_ci", "ci", "monthly", "median_months"),
    "patients": ("patients_per_100", "patients_ci"),
    "n_missing": ("n_completed", "completeness"),  # expected - completed = missing
    "n_completed": ("completeness",),
    "n_total": ("overall_rate",),
    # cost per responder = total / responders: each count gives the figure away
    "n_evaluable": ("value", "ci", "total"),
    "n_due": ("value", "ci", "total"),
    "n_responders": ("value", "ci", "total"),
    "numerator": ("rate", "ci"),
    "denominator": ("rate", "ci"),
}


#: (part, whole) counts in one object: a small whole - part is suppressed with the part
#: (responders among those with a cost: non-responders = whole - responders).
_COUNT_PAIRS = (("n_responders", "n_evaluable"), ("n_responders", "n_due"))

#: The counts of a time point's follow-up: due (n_expected) = answered + missing.
_FOLLOW_UP = frozenset({"n_expected", "n_completed", "n_missing"})
#: Rates of one measure that share their numerator (responders): completers', all due.
_RATE_PAIRS = (
    ("responder_rate_completers", "responder_rate_all"),
    ("substantial_rate_completers", "substantial_rate_all"),
)
#: Statistics of those who answered that would give their number back (a rate with its
#: numerator; a CI with its SD gives n).
_ANSWERED_STATS = frozenset({"rate", "ci", "mean_change_ci", "events_per_100_ci"})


def _is_hidden(value: Any) -> bool:
    return getattr(value, "suppressed", False) is True or (
        isinstance(value, dict) and value.get("suppressed") is True
    )


def _numerator_hidden(rate: Mapping[str, Any], k: int) -> bool:
    return _is_hidden(rate.get("numerator")) or _rate_is_small(rate, k)


def follow_up_hidden(
    timepoint: Mapping[str, Any],
    min_cell: int | None = None,
    hiding: set[str] | frozenset[str] = frozenset(),
) -> bool:
    """Whether the follow-up completeness of ``timepoint`` (a report time point: n_expected,
    n_completed, n_missing) is not shown: one of its counts is small or suppressed already
    (or in ``hiding``). The one rule of complementary suppression for follow-up: when it holds,
    the responder figures (and every count of those who answered) go too, since due - answered
    gives the hidden missing count back. Used by the report and the public directory."""
    k = policy().min_cell if min_cell is None else min_cell
    return any(
        key in hiding or _is_hidden(timepoint.get(key)) or is_small(timepoint.get(key), k)
        for key in _FOLLOW_UP
    )


def _rate_is_small(rate: Mapping[str, Any], k: int) -> bool:
    num, den = rate.get("numerator"), rate.get("denominator")
    if not isinstance(num, int) or not isinstance(den, int):
        return False
    return is_small(den, k) or is_small(num, k) or is_small(den - num, k)


class _Walker:
    """One pass of :func:`suppress_report`: counts the values it suppresses."""

    def __init__(self, k: int, text: Suppressed) -> None:
        self.k = k
        self.text = text
        self.count = 0

    def value(self, item: Any) -> Any:
        if isinstance(item, dict):
            return self.mapping(item)
        if isinstance(item, list):
            return [self.value(x) for x in item]
        return item

    def mapping(self, obj: dict[str, Any]) -> dict[str, Any]:
        out = {key: self.value(item) for key, item in obj.items()}
        self.complement(out)
        self.responders(out)
        hidden: set[str] = set()
        if "numerator" in out and "denominator" in out and _rate_is_small(out, self.k):
            hidden |= {"numerator", "rate", "ci"}
            if is_small(out["denominator"], self.k):
                hidden.add("denominator")
        for part, whole in _COUNT_PAIRS:  # whole - part would give a small part back
            if part in out and whole in out and isinstance(out[part], int):
                rest = out[whole] - out[part] if isinstance(out[whole], int) else None
                if is_small(rest, self.k):
                    hidden |= {part, *_DEPENDENT.get(part, ())} & out.keys()
        for key in COUNT_KEYS & out.keys():
            if is_small(out[key], self.k):
                hidden.add(key)
                hidden |= set(_DEPENDENT.get(key, ())) & out.keys()
        self.follow_up(out, hidden)
        if not hidden:
            return out
        for key in hidden:
            if isinstance(out[key], dict):  # e.g. the completeness rate of hidden counts
                out[key] = self.blank(out[key])
            else:
                out[key] = self.text if key in COUNT_KEYS else None
        self.count += len(hidden & COUNT_KEYS) or 1
        out["suppressed"] = True
        return out

    def blank(self, obj: dict[str, Any]) -> dict[str, Any]:
        """``obj`` with every count suppressed and every other number removed (as it is when
        it was suppressed already)."""
        if obj.get("suppressed"):
            return obj
        out: dict[str, Any] = {}
        for key, item in obj.items():
            if key in COUNT_KEYS and isinstance(item, int | float) and not isinstance(item, bool):
                out[key] = self.text if item else item
            elif isinstance(item, int | float | list) and not isinstance(item, bool):
                out[key] = None
            else:
                out[key] = item
        out["suppressed"] = True
        return out

    def responders(self, out: dict[str, Any]) -> None:
        """Complementary suppression of one measure's responders: the completers' rate
        (responders / answered) and the all-due rate (responders / due) share a numerator, so
        when one hides it (few responders, or few non-responders among those who answered) the
        other hides it too, or non-responders = answered - responders would give it back."""
        for pair in _RATE_PAIRS:
            rates = [r for r in (out.get(key) for key in pair) if isinstance(r, dict)]
            if len(rates) != len(pair):
                continue
            if not any(_numerator_hidden(r, self.k) for r in rates):
                continue
            for key in pair:
                rate = dict(out[key])
                if isinstance(rate.get("numerator"), int | float) and rate["numerator"]:
                    rate["numerator"] = self.text
                for stat in ("rate", "ci"):
                    if stat in rate:
                        rate[stat] = None
                rate["suppressed"] = True
                out[key] = rate

    def follow_up(self, out: dict[str, Any], hidden: set[str]) -> None:
        """Complementary suppression of follow-up completeness (due = answered + missing): when
        one of the three counts of a time point is hidden, both parts go (answered and
        missing), and so does every figure in the time point that counts those who answered
        (scored, pairs, responder and opioid rates, CIs that would give n back)."""
        if not out.keys() >= _FOLLOW_UP:
            return
        if not follow_up_hidden(out, self.k, hidden):
            return
        hidden |= {"n_completed", "n_missing", "completeness"}
        for key, item in out.items():
            if isinstance(item, dict) and key != "completeness":
                out[key] = self.answered(item)

    def answered(self, obj: dict[str, Any], due: bool = False) -> dict[str, Any]:
        """``obj`` (a measure or the opioids of a hidden time point) with every count, rate
        and CI suppressed; means, medians and SDs stay (no count follows from them), and so
        does the denominator of an all-due rate (``due``: those due, shown beside it)."""
        out: dict[str, Any] = {}
        for key, item in obj.items():
            if isinstance(item, dict):
                out[key] = self.answered(item, due=key.endswith("_rate_all"))
            elif due and key == "denominator":
                out[key] = item
            elif key in COUNT_KEYS and isinstance(item, int | float) and not isinstance(item, bool):
                out[key] = self.text if item else item
            elif key in _ANSWERED_STATS:
                out[key] = None
            else:
                out[key] = item
        out["suppressed"] = True
        return out

    def complement(self, out: dict[str, Any]) -> None:
        """Secondary suppression in a breakdown (categories that add up to a known total,
        e.g. conditions, STarT Back groups, CTCAE grades): when exactly one category was
        suppressed it could be recomputed from the total, so the next smallest goes too."""
        parts = [v for v in out.values() if isinstance(v, dict)]
        if len(parts) < 2 or len(parts) != len(out):
            return
        count = "numerator" if all("numerator" in p for p in parts) else "patients"
        if not all(count in p for p in parts):
            return
        hidden = [p for p in parts if p.get("suppressed")]
        shown = [p for p in parts if not p.get("suppressed") and isinstance(p[count], int)]
        if len(hidden) != 1 or not shown:
            return
        smallest = min(shown, key=lambda p: p[count])
        for key in list(smallest):
            if key in COUNT_KEYS and key != "denominator":
                smallest[key] = self.text
            elif key not in {"denominator", "suppressed"}:
                smallest[key] = None
        smallest["suppressed"] = True
        self.count += 1


def _drop_small_entries(items: list[Any], keys: tuple[str, ...], k: int) -> tuple[list[Any], int]:
    kept = [x for x in items if not any(is_small(x.get(key), k) for key in keys)]
    return kept, len(items) - len(kept)


def suppress_values(value: Any, min_cell: int | None = None) -> Any:
    """``value`` (JSON: mappings, lists, scalars) with every small count suppressed as in
    :func:`suppress_report`, without the report-level parts (for manifests and tables)."""
    rules = policy()
    k = rules.min_cell if min_cell is None else min_cell
    return _Walker(k, Suppressed(rules.text)).value(value)


def suppress_report(report: Mapping[str, Any], min_cell: int | None = None) -> dict[str, Any]:
    """The report JSON (``Report.to_dict()``) with small cells suppressed (module contract),
    plus ``"disclosure"``: the policy (version, min_cell, source, note) and how many values
    were suppressed. Benchmark clinics and comparisons with a small n are removed whole."""
    rules = policy()
    k = rules.min_cell if min_cell is None else min_cell
    d = dict(report)
    dropped = 0
    bench = d.get("benchmark")
    if isinstance(bench, dict) and isinstance(bench.get("clinics"), list):
        clinics, gone = _drop_small_entries(bench["clinics"], ("n",), k)
        d["benchmark"] = {**bench, "clinics": clinics}
        dropped += gone
    if isinstance(d.get("comparisons"), list):
        comparisons, gone = _drop_small_entries(d["comparisons"], ("n_treated", "n_control"), k)
        d["comparisons"] = comparisons
        dropped += gone
    walker = _Walker(k, Suppressed(rules.text))
    out = walker.mapping(d)
    out["disclosure"] = {
        **rules.to_dict(),
        "min_cell": k,
        "suppressed_values": walker.count + dropped,
    }
    return out
