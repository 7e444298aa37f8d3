"""The public clinic directory's figures: one clinic's outcomes, per treatment, small cells
suppressed. Pure (no Django): tables in, figures out, the date passed in.

Contracts
---------
* :func:`clinic_figures` reuses the outcome report (:func:`vertebra.core.analytics.build_report`
  with the minimum cell of :mod:`vertebra.core.disclosure`, comparisons and benchmark off) and
  the headline numbers of :mod:`vertebra.core.analytics.headline`; it computes no statistic of
  its own. Follow-up completeness, responders both ways (among those who answered; missing =
  non-response), serious adverse events and Kaplan–Meier surgery-free share are those of the
  report at 12 months, each with its numerator and denominator.
* The six cell-therapy arms are shown together as "Cell therapy (all sources)": per cell source
  a clinic's groups would mostly be smaller than the minimum cell, and a patient choosing a
  clinic asks how its cell therapy went. The arms the clinic offered are listed separately
  (names only, no counts).
* A treatment with fewer than ``min_cell`` patients at the clinic gives no figure (it is named
  in ``withheld``, with no count); inside a shown treatment, a figure resting on a cell of 1 to
  ``min_cell - 1`` reads as not shown, with the reason.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from vertebra.core import disclosure
from vertebra.core.analytics import AnalysisTables, CohortFilter, build_report
from vertebra.core.analytics.headline import (
    CELL_ARMS,
    KEY_TIMEPOINT,
    Headline,
    headlines,
    is_suppressed,
)
from vertebra.core.labels import label

__all__ = [
    "CELL_GROUP",
    "FIGURE_KEYS",
    "NOT_SHOWN",
    "ClinicFigures",
    "GroupFigures",
    "clinic_figures",
    "figures_of_clinics",
    "group_label",
]

#: The arm code the cell-therapy arms are pooled under (labelled "Cell therapy (all sources)").
CELL_GROUP = "cell_therapy"
#: The headline numbers shown per treatment, in order (keys of ``headline.headlines``).
FIGURE_KEYS = (
    "completeness",
    "responder_rate_completers",
    "responder_rate_all",
    "serious_ae",
    "surgery_free",
)
#: How the detail of a suppressed figure begins.
NOT_SHOWN = "Not shown:"
#: Never compared: no adjusted comparison and no benchmark on a directory page.
_NO_COMPARISON = "no-comparison"


def group_label(code: str) -> str:
    """A treatment group in words: the pooled cell arms read "Cell therapy (all sources)"."""
    return label("arm_group", "cell") if code == CELL_GROUP else label("arm", code)


@dataclass(frozen=True)
class GroupFigures:
    """One treatment at one clinic: its patients and its headline numbers at 12 months."""

    code: str
    label: str
    n_patients: int
    figures: tuple[Headline, ...]

    @property
    def shown(self) -> tuple[Headline, ...]:
        """The figures with a value (pages list the others by name only)."""
        return tuple(h for h in self.figures if not h.detail.startswith(NOT_SHOWN))

    @property
    def not_shown(self) -> tuple[Headline, ...]:
        """The figures suppressed because a small cell is behind them."""
        return tuple(h for h in self.figures if h.detail.startswith(NOT_SHOWN))


@dataclass(frozen=True)
class ClinicFigures:
    """What the directory shows of one clinic's outcomes.

    ``n_patients`` is the number treated (first episodes), or the suppression words when it is
    1 to ``min_cell - 1``. ``arms_offered`` are the arms any patient was treated with (codes,
    cell arms refined by source). ``groups`` hold the treatments with at least ``min_cell``
    patients, cell therapy first; ``withheld`` the codes of the smaller ones.
    """

    clinic_id: str
    n_patients: int | disclosure.Suppressed
    arms_offered: tuple[str, ...]
    groups: tuple[GroupFigures, ...]
    withheld: tuple[str, ...]
    min_cell: int

    @property
    def n_shown(self) -> int:
        """Patients in the treatments whose figures are shown."""
        return sum(g.n_patients for g in self.groups)


def _pooled(tables: AnalysisTables) -> AnalysisTables:
    """``tables`` with every cell-therapy arm renamed :data:`CELL_GROUP`."""
    patients = tables.patients.copy()
    arm = patients["arm"].astype(str)
    patients["arm"] = arm.where(~arm.isin(list(CELL_ARMS)), CELL_GROUP)
    return AnalysisTables.of(
        patients, tables.timepoints, tables.events, exclusions=tables.exclusions
    )


def _not_shown(h: Headline, min_cell: int) -> Headline:
    return replace(
        h,
        value="–",
        detail=f"{NOT_SHOWN} fewer than {min_cell} patients or events behind this figure, "
        "and small numbers could identify someone.",
    )


def _key_timepoint(arm: Mapping[str, Any]) -> Mapping[str, Any]:
    return next((tp for tp in arm.get("timepoints", []) if tp["timepoint"] == KEY_TIMEPOINT), {})


def _hidden(key: str, arm: Mapping[str, Any], min_cell: int) -> bool:
    """Whether the cell behind headline ``key`` of one arm was suppressed (or, for the
    surgery-free share, left out because it rests on a few surgeries)."""
    tp = _key_timepoint(arm)
    if key == "completeness":
        return disclosure.follow_up_hidden(tp, min_cell)
    if key.startswith("responder_rate"):
        odi = tp.get("odi") or {}
        rate = odi.get(key)
        if rate is None:  # the whole instrument block was suppressed (too few scored)
            return bool(odi.get("suppressed"))
        return is_suppressed(rate) or is_suppressed(rate.get("numerator"))
    if key == "serious_ae":
        ae = arm.get("adverse_events", {})
        serious = ae.get("serious", {})
        return is_suppressed(ae.get("n_patients")) or is_suppressed(serious.get("patients"))
    if key == "surgery_free":
        return not arm.get("surgery_free")
    return False


def _figure(h: Headline, arm: Mapping[str, Any], min_cell: int) -> Headline:
    """Headline ``h`` of one arm as shown: not shown when its cell was suppressed; a missing
    12-month survival estimate says why rather than "0 had surgery".

    Complementary suppression (:func:`vertebra.core.disclosure.follow_up_hidden`, the one rule
    the report applies too): when follow-up completeness is not shown (few answered, or few
    missing), the responder figures go too, because their denominators (those who answered,
    those due) would give the hidden count back by subtraction.
    """
    if _hidden(h.key, arm, min_cell):
        return _not_shown(h, min_cell)
    if h.key.startswith("responder_rate") and _hidden("completeness", arm, min_cell):
        return _not_shown(h, min_cell)
    if h.key == "surgery_free" and h.value == "–":
        return replace(h, detail="No estimate yet: too few patients followed for 12 months.")
    return h


def _group_figure(code: str, h: Headline) -> Headline:
    """For the surgery group, "surgery-free" means free of a further operation."""
    if code == "surgery" and h.key == "surgery_free":
        return replace(h, label="Free of further surgery at 12 months")
    return h


def _group(d: Mapping[str, Any], code: str, arm: Mapping[str, Any], min_cell: int) -> GroupFigures:
    """The headline numbers of one arm of the report ``d``."""
    one = {**d, "arms": {code: arm}, "n_patients": arm["n_patients"]}
    shown = {h.key: h for h in headlines(one)}
    figures = tuple(_group_figure(code, _figure(shown[k], arm, min_cell)) for k in FIGURE_KEYS)
    return GroupFigures(
        code=code, label=group_label(code), n_patients=int(arm["n_patients"]), figures=figures
    )


def clinic_figures(
    tables: AnalysisTables,
    clinic_id: str,
    as_of: dt.date,
    *,
    min_cell: int | None = None,
) -> ClinicFigures:
    """The directory figures of clinic ``clinic_id`` (a ``clinic_id`` value of the tables).

    ``min_cell`` defaults to the disclosure policy's (11). Raises nothing for a clinic without
    patients: it has no figure and ``n_patients`` 0.
    """
    return figures_of_clinics(tables, [clinic_id], as_of, min_cell=min_cell)[str(clinic_id)]


def figures_of_clinics(
    tables: AnalysisTables,
    clinic_ids: Iterable[str],
    as_of: dt.date,
    *,
    min_cell: int | None = None,
) -> dict[str, ClinicFigures]:
    """:func:`clinic_figures` of each of ``clinic_ids`` (as text -> figures), the tables
    split by clinic once: each clinic's report is built from its own rows, not by filtering
    every clinic's rows again per clinic (a registry of hundreds of clinics)."""
    k = disclosure.policy().min_cell if min_cell is None else min_cell
    patient_clinics = tables.patients["clinic_id"].astype(str).to_numpy()
    rows = pd.Series(patient_clinics).groupby(patient_clinics).indices
    by_patient = pd.Series(patient_clinics, index=tables.patients["patient_id"].to_numpy())
    tp_clinic = by_patient.reindex(tables.timepoints["patient_id"].to_numpy()).to_numpy()
    ev_clinic = by_patient.reindex(tables.events["patient_id"].to_numpy()).to_numpy()
    tp_rows = pd.Series(tp_clinic).groupby(tp_clinic, dropna=True).indices
    ev_rows = pd.Series(ev_clinic).groupby(ev_clinic, dropna=True).indices
    empty = np.array([], dtype=np.int64)
    out: dict[str, ClinicFigures] = {}
    for cid in dict.fromkeys(str(c) for c in clinic_ids):
        own = AnalysisTables.of(
            tables.patients.iloc[rows.get(cid, empty)],
            tables.timepoints.iloc[tp_rows.get(cid, empty)],
            tables.events.iloc[ev_rows.get(cid, empty)],
            exclusions=tables.exclusions,
        )
        out[cid] = _one_clinic(own, cid, as_of, k)
    return out


def _one_clinic(own: AnalysisTables, clinic_id: str, as_of: dt.date, k: int) -> ClinicFigures:
    """The figures of ``clinic_id`` from ``own``, the tables' rows of that clinic."""
    n = len(own.patients)
    offered = tuple(sorted(own.patients["arm"].astype(str).unique()))
    count: int | disclosure.Suppressed = disclosure.suppressed() if disclosure.is_small(n, k) else n
    if n == 0:
        return ClinicFigures(str(clinic_id), 0, (), (), (), k)
    report = build_report(
        _pooled(own),
        CohortFilter(clinics=(str(clinic_id),)),
        as_of,
        comparison_timepoint=_NO_COMPARISON,
        min_cell=k,
    )
    d = report.to_dict()
    arms: dict[str, Any] = d.get("arms", {})
    order = sorted(arms, key=lambda a: (a != CELL_GROUP, group_label(a)))
    groups = tuple(_group(d, code, arms[code], k) for code in order)
    withheld: Sequence[str] = sorted(
        (report.withheld.arms if report.withheld else {}), key=group_label
    )
    if report.cohort_suppressed:
        withheld = sorted(set(_pooled_codes(offered)), key=group_label)
    return ClinicFigures(str(clinic_id), count, offered, groups, tuple(withheld), k)


def _pooled_codes(arms: Sequence[str]) -> list[str]:
    """Arm codes with the cell arms pooled under :data:`CELL_GROUP`."""
    return [CELL_GROUP if a in CELL_ARMS else a for a in arms]
