"""The few numbers a clinic lead shows a board, and the report's filters in words.

Pure functions of a report's JSON form (``Report.to_dict()``), shared by the dashboard and
the HTML/PDF report so both say the same thing in the same words.

Contracts
---------
* Every rate is given with its numerator and denominator ("54% (169 of 312)").
* Small cells may be suppressed upstream (researcher views): a count or rate that is marked
  suppressed (``{"suppressed": true}``, a string such as ``"<11"``, or None where a count is
  due) is shown as :data:`SUPPRESSED` and left out of sums, never a crash. Headline sums
  then say they cover only the cells shown.
* Codes never reach people: arms, conditions, time points and cell sources go through
  :func:`vertebra.core.labels.label`; clinics through the ``clinic_names`` the caller passes
  (their names for clinic staff, "Clinic A", "Clinic B" ... for researchers).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vertebra.core import charts, disclosure
from vertebra.core.analytics.stats import wilson_ci
from vertebra.core.labels import format_date, label, vocabulary

__all__ = [
    "ALL_CLINICS_KEY",
    "CELL_ARMS",
    "KEY_TIMEPOINT",
    "MIN_CELL",
    "SUPPRESSED",
    "Headline",
    "arm_styles",
    "arms_words",
    "clinic_letters",
    "comparison_error_words",
    "count_text",
    "filter_words",
    "headlines",
    "honesty_notes",
    "interval_text",
    "is_suppressed",
    "number",
    "outcome_words",
    "pct_text",
    "rate_text",
    "responder_words",
    "share_text",
]

#: The time point the headline numbers are about.
KEY_TIMEPOINT = "month_12"
#: The smallest count shown to researchers and the words a suppressed value reads as: the one
#: policy of vertebra.core.disclosure (data/disclosure.yaml), which applies it upstream.
MIN_CELL = disclosure.policy().min_cell
SUPPRESSED = disclosure.policy().text


def is_suppressed(value: Any) -> bool:
    """Whether ``value`` is a small-cell marker rather than a number."""
    if getattr(value, "suppressed", False) is True:  # disclosure.Suppressed
        return True
    if isinstance(value, Mapping):
        return bool(value.get("suppressed"))
    if isinstance(value, str):
        return value.strip().startswith("<") or "suppress" in value.lower()
    return False


def _int(value: Any) -> int | None:
    """The count in ``value``, or None when it is missing or suppressed."""
    if isinstance(value, bool) or value is None or is_suppressed(value):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if math.isfinite(number) else None


def count_text(value: Any) -> str:
    """A count for people: "312", or the suppression words, or "–" when unknown."""
    if is_suppressed(value):
        return SUPPRESSED
    n = _int(value)
    return "–" if n is None else f"{n:,}"


def number(value: Any) -> float | None:
    """``value`` as a finite float, or None when it is missing, suppressed or not a number."""
    if isinstance(value, bool) or value is None or is_suppressed(value):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def share_text(value: Any) -> str:
    """A proportion in [0, 1] as "62%"; the suppression words or "–" otherwise."""
    if is_suppressed(value):
        return SUPPRESSED
    x = number(value)
    return "–" if x is None else f"{100 * x:.0f}%"


def interval_text(ci: Any) -> str:
    """A CI of proportions as "55% to 68%"; "–" when missing or partial."""
    if is_suppressed(ci):
        return SUPPRESSED
    if not isinstance(ci, (list, tuple)) or len(ci) != 2:
        return "–"
    lo, hi = number(ci[0]), number(ci[1])
    return "–" if lo is None or hi is None else f"{100 * lo:.0f}% to {100 * hi:.0f}%"


def pct_text(rate: Mapping[str, Any] | None, *, ci: bool = True) -> str:
    """'62% (95% CI 55–68)' or '–' with no denominator; suppression words when suppressed."""
    if is_suppressed(rate):
        return SUPPRESSED
    if not rate or rate.get("rate") is None or is_suppressed(rate.get("rate")):
        return "–"
    text = f"{rate['rate'] * 100:.0f}%"
    bounds = rate.get("ci")
    if ci and bounds and None not in bounds:
        text += f" (95% CI {bounds[0] * 100:.0f}–{bounds[1] * 100:.0f})"
    return text


def rate_text(rate: Mapping[str, Any] | None, *, ci: bool = True) -> str:
    """'62% (95% CI 55–68), 122 of 197': a rate always with its numerator and denominator."""
    if is_suppressed(rate):
        return SUPPRESSED
    if not rate:
        return "– (0 of 0)"
    num, den = rate.get("numerator"), rate.get("denominator")
    if is_suppressed(num) or is_suppressed(den):
        return SUPPRESSED
    return f"{pct_text(rate, ci=ci)}, {count_text(num or 0)} of {count_text(den or 0)}"


@dataclass(frozen=True)
class Headline:
    """One headline number: what it is, the figure, and its denominator in words."""

    key: str
    label: str
    value: str
    detail: str


def _key_tp(arm: Mapping[str, Any]) -> Mapping[str, Any]:
    return next((tp for tp in arm["timepoints"] if tp["timepoint"] == KEY_TIMEPOINT), {})


def _pooled(pairs: Sequence[tuple[Any, Any]]) -> tuple[int, int, bool]:
    """Sum of numerators and denominators over cells; and whether a cell was left out."""
    num = den = 0
    partial = False
    for n, d in pairs:
        ni, di = _int(n), _int(d)
        if ni is None or di is None:
            partial = partial or n is not None or d is not None
            continue
        num, den = num + ni, den + di
    return num, den, partial


def _share(num: int, den: int) -> str:
    if den <= 0:
        return "–"
    share = 100 * num / den
    # "0%" for 2 of 500 would hide the events: one decimal below 10 %
    return f"{share:.1f}%" if 0 < share < 10 else f"{share:.0f}%"


def _ci_words(num: int, den: int) -> str:
    if den <= 0:
        return ""
    lo, hi = wilson_ci(num, den)
    return f"95% CI {100 * float(lo):.0f}–{100 * float(hi):.0f}%"


def responder_words(d: Mapping[str, Any], measure: str = "odi") -> str:
    """The responder rule in words, from the report's rules (from the data file)."""
    rule = d.get("responder_rules", {}).get(measure, {})
    what = label("measure", measure).split(" (")[0]
    points, percent = rule.get("points"), rule.get("percent")
    if points is None:
        return "Responder: improvement reaching the MCID."
    text = f"Responder: {what} better by at least {points:g} points"
    if percent is not None:
        text += f" or {percent:g}%"
    return text + "."


def headlines(d: Mapping[str, Any], measure: str = "odi") -> list[Headline]:
    """Patients; follow-up at 12 months; responders at 12 months both ways; serious adverse
    events; surgery-free at 12 months. Pooled over the arms of the report ``d``."""
    arms = d["arms"]
    key = label("timepoint", KEY_TIMEPOINT).lower()
    tps = [_key_tp(a) for a in arms.values()]
    out = [
        Headline(
            "patients",
            "Patients",
            count_text(d["n_patients"]),
            f"{len(arms)} treatment{'s' if len(arms) != 1 else ''}; "
            + (f"as of {format_date(d['as_of'])}" if d.get("as_of") else "calendar dates withheld"),
        )
    ]
    num, den, partial = _pooled([(tp.get("n_completed"), tp.get("n_expected")) for tp in tps])
    note = " (cells under 11 left out)" if partial else ""
    out.append(
        Headline(
            "completeness",
            f"Follow-up at {key}",
            _share(num, den),
            f"{num:,} of {den:,} patients due answered{note}",
        )
    )
    for kind, title, words in (
        ("responder_rate_completers", f"Responders at {key}", "who answered"),
        ("responder_rate_all", "Responders, missing = non-response", "due"),
    ):
        rates = [((tp.get(measure) or {}).get(kind) or {}) for tp in tps]
        num, den, partial = _pooled([(r.get("numerator"), r.get("denominator")) for r in rates])
        note = " (cells under 11 left out)" if partial else ""
        ci = _ci_words(num, den)
        out.append(
            Headline(
                kind,
                title,
                _share(num, den),
                f"{num:,} of {den:,} patients {words}{f' ({ci})' if ci else ''}{note}",
            )
        )
    ae = [a["adverse_events"]["serious"] for a in arms.values()]
    num, den, partial = _pooled(
        [
            (c.get("patients"), a["adverse_events"].get("n_patients"))
            for c, a in zip(ae, arms.values(), strict=True)
        ]
    )
    events = sum(_int(c.get("events")) or 0 for c in ae)
    note = " (cells under 11 left out)" if partial else ""
    out.append(
        Headline(
            "serious_ae",
            "Serious adverse events",
            _share(num, den),
            f"{num:,} of {den:,} patients; {events:,} event{'s' if events != 1 else ''}{note}",
        )
    )
    out.append(_surgery_free(arms))
    return out


def _surgery_free(arms: Mapping[str, Any]) -> Headline:
    """Kaplan–Meier surgery-free share at 12 months, arms pooled by their size."""
    total = weighted = 0.0
    surgeries = 0
    for a in arms.values():
        point: Mapping[str, Any] = next(
            (p for p in a.get("surgery_free", []) if p.get("months") == 12.0), {}
        )
        n = _int(a.get("n_patients"))
        share = number(point.get("survival"))
        if n is None or share is None:
            continue
        total += n
        weighted += n * share
        surgeries += _int(point.get("events_before")) or 0
    if not total:
        # No arm has a 12-month estimate (the report drops a curve resting on too few
        # patients or surgeries): say so, rather than "0 had surgery".
        return Headline(
            "surgery_free",
            "Surgery-free at 12 months",
            "–",
            "Not estimated: too few patients or surgeries for a Kaplan–Meier curve",
        )
    return Headline(
        "surgery_free",
        "Surgery-free at 12 months",
        f"{100 * weighted / total:.0f}%",
        f"Kaplan–Meier; {surgeries:,} had surgery by 12 months",
    )


def as_of_words(d: Mapping[str, Any]) -> str:
    """The report's as-of date in the one date format, or words when it is withheld."""
    if d.get("as_of"):
        return format_date(d["as_of"])
    return "the data cut-off (calendar dates withheld: de-identified data)"


def clinic_letters(ids: Sequence[Any]) -> dict[str, str]:
    """De-identified clinic names: "Clinic A", "Clinic B", ... in order of the ids."""
    out: dict[str, str] = {}
    for k, cid in enumerate(sorted({str(i) for i in ids}, key=lambda s: (len(s), s))):
        letters = ""
        n = k
        while True:
            letters = chr(ord("A") + n % 26) + letters
            n = n // 26 - 1
            if n < 0:
                break
        out[cid] = f"Clinic {letters}"
    return out


_OUTCOME_KINDS = (
    (
        "_responder_completers_",
        "{m} responders at {t} among those who answered (difference in proportion)",
    ),
    ("_responder_all_", "{m} responders at {t}, missing = non-response (difference in proportion)"),
    ("_change_", "change in {m} at {t} (points)"),
)


def outcome_words(code: str) -> str:
    """A comparison outcome in words: ``odi_change_month_12`` -> "change in ODI at 12 months
    (points)"; an unknown code falls back to :func:`vertebra.core.labels.label`."""
    for marker, words in _OUTCOME_KINDS:
        measure, sep, timepoint = code.partition(marker)
        if sep:
            what = label("measure", measure).split(" (")[0]
            return words.format(m=what, t=label("timepoint", timepoint).lower())
    return label("outcome", code)


#: The arms that together are "cell therapy (all sources)".
CELL_ARMS = frozenset(
    {"bmac", "bmac_prp", "adipose", "adipose_prp", "allogeneic", "allogeneic_prp"}
)


def arms_words(codes: Sequence[str]) -> str:
    """A group of arms in words: all cell arms together are "Cell therapy (all sources)"."""
    if len(codes) > 1 and set(codes) <= CELL_ARMS:
        return label("arm_group", "cell")
    return " + ".join(label("arm", c) for c in codes)


def comparison_error_words(text: str) -> str:
    """``"bmac+adipose vs surgery: no overlap ..."`` with the arms in words."""
    match = re.fullmatch(r"([a-z0-9_+]+) vs ([a-z0-9_+]+): (.*)", text, re.S)
    if not match:
        return text
    treated, control, reason = match.groups()
    return f"{arms_words(treated.split('+'))} vs {arms_words(control.split('+'))}: {reason}"


def honesty_notes(notes: Sequence[str]) -> list[str]:
    """The report's honesty notes in words (no column names)."""
    return [n.replace("n_expected", "patients due") for n in notes]


def survival_method_words(survival: Mapping[str, Any]) -> str:
    """What the surgery-free curves count and how their CI is computed, in one sentence pair.

    Reads the report's ``survival`` section (``event_definition``, ``ci_method``); older
    reports without them give "".
    """
    events = survival.get("event_definition") or {}
    method = survival.get("ci_method")
    parts = []
    if events:
        parts.append(
            f"The event is {events.get('non_surgical_arms')}; for surgery it is "
            f"{events.get('surgical_arms')}."
        )
    if method:
        parts.append(f"Confidence intervals: {method}.")
    return " ".join(parts)


def logrank_words(lr: Mapping[str, Any]) -> str:
    """The log-rank result with what it compares: "Log-rank test of time to conversion ..."."""
    stat = number(lr.get("statistic"))
    p = number(lr.get("p_value"))
    text = (
        f"Log-rank test of time to conversion to surgery across the non-surgical treatments "
        f"({', '.join(label('arm', a) for a in lr.get('arms') or ())}): χ² = "
        f"{'–' if stat is None else f'{stat:.2f}'}, df = {lr.get('df')}, "
        f"p = {'–' if p is None else f'{p:.3g}'}."
    )
    excluded = lr.get("excluded") or ()
    if excluded:
        text += (
            f" Not in the test: {', '.join(label('arm', a) for a in excluded)}, whose later "
            "surgery is a re-operation, "
            "not a conversion."
        )
    return text


#: Arms without a fixed colour slot: "cell_therapy" appears only when the cell arms are not
#: split (so it may take the first free slot), "other" is rare.
_FLOATING_ARMS = ("cell_therapy", "other")


def arm_styles(arms: Sequence[str]) -> dict[str, charts.Style]:
    """A distinct chart style per arm, stable across filters: each of the ten usual arms keeps
    its slot (its place in ``labels.yaml``), others take the first free one."""
    fixed = [a for a in vocabulary("arm") if a not in _FLOATING_ARMS]
    return charts.assign_styles(list(arms), {a: i for i, a in enumerate(fixed)})


#: The `clinic_names` entry that names every clinic the reader may see, for a filter that
#: names none: a clinic's staff read their clinic's name there, not "All clinics".
ALL_CLINICS_KEY = "*"


def _join(words: Sequence[str]) -> str:
    return " or ".join(words)


def filter_words(
    flt: Mapping[str, Any], clinic_names: Mapping[str, str] | None = None, timepoint: str = ""
) -> str:
    """The cohort filter in words: "All clinics · Degenerative disc disease · 12 months".

    Without a clinic in the filter the first words are ``clinic_names[ALL_CLINICS_KEY]``
    when given (the reader's own clinics), else "All clinics"."""
    names = clinic_names or {}
    clinics = [names.get(str(c), f"Clinic {c}") for c in flt.get("clinics") or ()]
    parts = [_join(clinics) if clinics else names.get(ALL_CLINICS_KEY, "All clinics")]
    conditions = [label("condition", c) for c in flt.get("conditions") or ()]
    parts.append(_join(conditions) if conditions else "All conditions")
    arms = [label("arm", a) for a in flt.get("arms") or ()]
    parts.append(_join(arms) if arms else "All treatments")
    sources = [label("cell_source", s) for s in flt.get("cell_sources") or ()]
    if sources:
        parts.append("Cell source: " + _join(sources))
    adjuncts = [label("adjunct", a) for a in flt.get("adjuncts") or ()]
    if adjuncts:
        parts.append("Adjunct: " + _join(adjuncts))
    lo, hi = flt.get("dose_min"), flt.get("dose_max")
    if lo is not None or hi is not None:
        if lo is not None and hi is not None:
            parts.append(f"Dose {lo:g}–{hi:g} million cells")
        elif lo is not None:
            parts.append(f"Dose over {lo:g} million cells")
        else:
            parts.append(f"Dose up to {hi:g} million cells")
    start, end = flt.get("treated_from"), flt.get("treated_to")
    if start or end:
        if start and end:
            parts.append(f"Treated {format_date(start)} to {format_date(end)}")
        elif start:
            parts.append(f"Treated from {format_date(start)}")
        else:
            parts.append(f"Treated up to {format_date(end)}")
    if timepoint:
        parts.append(label("timepoint", timepoint))
    return " · ".join(parts)
