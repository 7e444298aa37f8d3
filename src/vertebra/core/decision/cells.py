"""From the analysis tables to the decision aid's cell table (additive counts per cell).

Contract
--------
:func:`build_cell_table` reads the outcomes dashboard's analysis tables
(:mod:`vertebra.core.analytics.schema`, either time base: the web shell passes the
de-identified ones) and returns a :class:`CellTable`: one row per non-empty *leaf*
(arm row x condition x age band x baseline ODI band x STarT Back group) holding only sums:

====================  ===========================================================
n                     patients in the leaf (all have a baseline ODI)
n_expected            of those, whose 12-month questionnaire was due by the cut-off
                      (or answered anyway): the analytics' ``expected``
n_completed           12-month questionnaire completed
n_pairs               baseline and 12-month ODI both scored
n_responders          pairs meeting the ODI responder rule (responders.yaml)
sum_change            Σ (12-month ODI - baseline ODI) over pairs
sumsq_change          Σ (12-month ODI - baseline ODI)² over pairs
n_followed            treated at least 12 x 30.4375 days before the data cut-off
n_surgery             of those, a subsequent surgery on days 0 to 12 x 30.4375
====================  ===========================================================

Every figure the page shows for any group of similar patients is a function of these sums
over the leaves in the group (:mod:`vertebra.core.decision.estimate`), so a request never
touches patient rows, and the cached object holds no patient-level data.

Every per-patient quantity comes from the analytics: the panel (`build_panel`: expected,
completed, scores), the vectorised responder rule (`responder_flags`), and the day
arithmetic of surgery-free survival (`cutoff_days`, `event_days`, `SURGERY_KINDS`). Tests
check the figures against `arm_outcomes` and a Kaplan-Meier fit on the same patients.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from vertebra.core.analytics import (
    AnalysisTables,
    CohortFilter,
    Exclusion,
    build_panel,
    responder_flags,
)
from vertebra.core.analytics.cohort import SURGERY_KINDS, cutoff_days, event_days
from vertebra.core.analytics.schema import MEASURES, TimeBase
from vertebra.core.analytics.survival import DAYS_PER_MONTH, can_censor_at_cutoff
from vertebra.core.decision.rules import DecisionRules

__all__ = [
    "KEYS",
    "SUMS",
    "UNKNOWN",
    "CellTable",
    "ClinicSums",
    "build_cell_table",
    "clinic_leaf_sums",
    "leaf_sums",
    "merge_leaves",
    "patient_frame",
]

#: Leaf key columns (text codes).
KEYS: tuple[str, ...] = ("arm", "condition", "age_band", "odi_band", "startback")
#: Additive columns of a leaf.
SUMS: tuple[str, ...] = (
    "n",
    "n_expected",
    "n_completed",
    "n_pairs",
    "n_responders",
    "sum_change",
    "sumsq_change",
    "n_followed",
    "n_surgery",
)
#: STarT Back group of a patient without a recorded group.
UNKNOWN = "unknown"

BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class CellTable:
    """Leaf sums plus what the page may say about the registry as a whole.

    * leaves: columns KEYS + SUMS, one row per non-empty leaf (sorted by KEYS).
    * n_treated: patients in the tables (every arm, with or without a baseline).
    * n_in_scope: patients that can be "like" someone: an arm row of the rule set, an age band
      and a baseline ODI (= leaves["n"].sum()).
    * surgery_available: False for tables without the days to the data cut-off (a released
      research export), where "followed for 12 months" cannot be decided.
    """

    rules_version: str
    time_base: TimeBase
    leaves: pd.DataFrame
    n_treated: int
    n_in_scope: int
    surgery_available: bool
    #: Stored rows the registry read left out, and why (one sentence each).
    data_notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Summary (without the leaves) for logs and the API."""
        return {
            "rules_version": self.rules_version,
            "time_base": self.time_base,
            "n_treated": self.n_treated,
            "n_in_scope": self.n_in_scope,
            "surgery_available": self.surgery_available,
            "left_out": list(self.data_notes),
        }


def _measure_column(measure: str) -> str:
    """The timepoints column holding the instrument ``measure`` (e.g. odi -> odi)."""
    return next(col for col, inst in MEASURES.items() if inst == measure)


def _surgery_within(
    tables: AnalysisTables, pts: pd.DataFrame, horizon: float
) -> npt.NDArray[np.bool_]:
    """Per patient: a subsequent surgery on day 0 to ``horizon`` after treatment.

    Surgeries before treatment are history, not outcomes (as in surgery-free survival).
    """
    events = tables.events
    out = np.zeros(len(pts), dtype=bool)
    if events.empty:
        return out
    row = pd.Index(pts["patient_id"]).get_indexer(events["patient_id"])
    days = event_days(events, pts, row)
    kind = events["kind"].astype(str).to_numpy()
    with np.errstate(invalid="ignore"):
        sel = (row >= 0) & np.isin(kind, SURGERY_KINDS) & (days >= 0) & (days <= horizon)
    out[row[sel]] = True
    return out


def patient_frame(
    tables: AnalysisTables, as_of: date, rules: DecisionRules, *, by_clinic: bool = False
) -> pd.DataFrame:
    """One row per patient in scope: the leaf keys and the 0/1 (or change) summands.

    ``as_of`` is the data cut-off of calendar tables (de-identified tables carry their own).
    Patients without an arm row, an age band or a baseline ODI are left out (see CellTable).
    With ``by_clinic``, the first column is the patient's ``clinic_id`` (from the tables).
    """
    if tables.patients.empty:  # an empty registry: no patient is like anyone yet
        empty = pd.DataFrame({c: pd.Series(dtype=object) for c in KEYS}).assign(
            **{c: pd.Series(dtype=np.float64 if "change" in c else np.int64) for c in SUMS}
        )
        if by_clinic:
            empty.insert(0, "clinic_id", pd.Series(dtype=np.int64))
        return empty
    panel = build_panel(tables, CohortFilter(), as_of)
    pts = panel.patients
    n = panel.n
    grid = panel.values.get(_measure_column(rules.measure))
    base = grid[:, 0] if grid is not None else np.full(n, np.nan)
    if grid is not None and rules.timepoint in panel.tp_ids:
        j = panel.tp_ids.index(rules.timepoint)
        expected, completed, follow = panel.expected[:, j], panel.completed[:, j], grid[:, j]
    else:  # no 12-month time point in these tables: nothing is due, nothing can be shown
        expected = completed = np.zeros(n, dtype=bool)
        follow = np.full(n, np.nan)
    pair = ~np.isnan(base) & ~np.isnan(follow)
    responder, _ = responder_flags(rules.measure, base, follow)
    change = np.where(pair, follow - base, 0.0)

    horizon = rules.months * DAYS_PER_MONTH
    surgery_available = can_censor_at_cutoff(pts)
    if surgery_available:
        followed = cutoff_days(pts, as_of) >= horizon
        surgery = followed & _surgery_within(tables, pts, horizon)
    else:
        followed = surgery = np.zeros(n, dtype=bool)

    arm_of = {r: a.id for a in rules.arms for r in a.registry_arms}
    arm = pts["arm"].astype(str).map(arm_of)
    age_code = rules.age_band_codes(pd.to_numeric(pts["age"], errors="coerce"))
    odi_code = rules.odi_band_codes(base)
    startback = pts["startback_group"].astype(str).to_numpy()
    startback = np.where(np.isin(startback, rules.startback_groups), startback, UNKNOWN)
    keep = arm.notna().to_numpy() & (age_code >= 0) & (odi_code >= 0)

    age_ids = np.asarray([b.id for b in rules.age_bands], dtype=object)
    odi_ids = np.asarray([b.id for b in rules.odi_bands], dtype=object)
    frame = pd.DataFrame(
        {
            "arm": arm.to_numpy(dtype=object),
            "condition": pts["condition"].astype(str).to_numpy(dtype=object),
            "age_band": age_ids[np.maximum(age_code, 0)],
            "odi_band": odi_ids[np.maximum(odi_code, 0)],
            "startback": startback.astype(object),
            "n": np.ones(n, dtype=np.int64),
            "n_expected": expected.astype(np.int64),
            "n_completed": completed.astype(np.int64),
            "n_pairs": pair.astype(np.int64),
            "n_responders": (responder & pair).astype(np.int64),
            "sum_change": change,
            "sumsq_change": change * change,
            "n_followed": followed.astype(np.int64),
            "n_surgery": surgery.astype(np.int64),
        }
    )
    if by_clinic:
        frame.insert(0, "clinic_id", pts["clinic_id"].to_numpy())
    return frame.loc[keep].reset_index(drop=True)


def leaf_sums(frame: pd.DataFrame) -> pd.DataFrame:
    """Sum the SUMS columns of a per-patient frame over its KEYS (one row per non-empty leaf)."""
    return frame.groupby(list(KEYS), sort=True, observed=True)[list(SUMS)].sum().reset_index()


def build_cell_table(tables: AnalysisTables, as_of: date, rules: DecisionRules) -> CellTable:
    """Aggregate :func:`patient_frame` into leaf sums (see the module docstring)."""
    return _cell_table(
        leaf_sums(patient_frame(tables, as_of, rules)),
        rules=rules,
        time_base=tables.time_base,
        n_treated=len(tables.patients),
        surgery_available=can_censor_at_cutoff(tables.patients),
        data_notes=tuple(e.note for e in tables.exclusions),
    )


def _cell_table(
    leaves: pd.DataFrame,
    *,
    rules: DecisionRules,
    time_base: TimeBase,
    n_treated: int,
    surgery_available: bool,
    data_notes: tuple[str, ...],
) -> CellTable:
    return CellTable(
        rules_version=rules.version,
        time_base=time_base,
        leaves=leaves,
        n_treated=n_treated,
        n_in_scope=int(leaves["n"].sum()) if len(leaves) else 0,
        surgery_available=surgery_available,
        data_notes=data_notes,
    )


# ------------------------------------------------------------ sums kept per clinic


def clinic_leaf_sums(tables: AnalysisTables, as_of: date, rules: DecisionRules) -> pd.DataFrame:
    """The leaf sums of each clinic's patients: ``clinic_id`` + KEYS + SUMS, one row per
    non-empty (clinic, leaf), sorted. A patient's summands depend on nobody else's, so the
    rows of any clinics, from any number of calls, summed by :func:`merge_leaves` are the
    leaves of those clinics' patients together."""
    frame = patient_frame(tables, as_of, rules, by_clinic=True)
    if frame.empty:
        return frame
    by = ["clinic_id", *KEYS]
    return frame.groupby(by, sort=True, observed=True)[list(SUMS)].sum().reset_index()


def merge_leaves(clinic_leaves: pd.DataFrame) -> pd.DataFrame:
    """The leaves (KEYS + SUMS, one row per non-empty leaf, sorted by KEYS) of the patients
    whose clinic sums are the rows of ``clinic_leaves`` (see :func:`clinic_leaf_sums`)."""
    frame = clinic_leaves.drop(columns="clinic_id")
    return frame.reset_index(drop=True) if frame.empty else leaf_sums(frame)


@dataclass(frozen=True)
class ClinicSums:
    """The cell table's sums kept per clinic, so that a change to a few clinics' patients
    recomputes theirs only (the analysis snapshot keeps them; ADR 0022 §12): the leaf sums
    per clinic (:func:`clinic_leaf_sums`), the patients in the tables per clinic, and the
    stored rows the tables left out, (what, reason) -> count, for all these clinics together.
    Clinic ids are text, as de-identified tables hold them."""

    leaves: pd.DataFrame
    treated: dict[str, int]
    left_out: dict[tuple[str, str], int]
    surgery_available: bool
    time_base: TimeBase

    @classmethod
    def of(cls, tables: AnalysisTables, as_of: date, rules: DecisionRules) -> ClinicSums:
        """The sums of every clinic in ``tables``."""
        treated = tables.patients["clinic_id"].astype(str).value_counts()
        return cls(
            clinic_leaf_sums(tables, as_of, rules),
            {str(c): int(n) for c, n in treated.items()},
            {(e.what, e.reason): e.count for e in tables.exclusions},
            can_censor_at_cutoff(tables.patients),
            tables.time_base,
        )

    @property
    def n_treated(self) -> int:
        """Patients in the tables, every clinic."""
        return sum(self.treated.values())

    def replaced(
        self,
        clinics: frozenset[int],
        after: ClinicSums,
        left_out_before: dict[tuple[str, str], int],
    ) -> ClinicSums:
        """These sums with ``clinics``' replaced by ``after`` (those clinics' sums now);
        ``left_out_before``: the rows of ``clinics`` these sums count as left out."""
        gone = {str(int(c)) for c in clinics}
        kept = self.leaves[~self.leaves["clinic_id"].astype(str).isin(gone)]
        leaves = pd.concat([kept, after.leaves], ignore_index=True) if len(after.leaves) else kept
        left_out = dict(self.left_out)
        for key in set(left_out_before) | set(after.left_out):
            count = left_out.pop(key, 0) - left_out_before.get(key, 0) + after.left_out.get(key, 0)
            if count:
                left_out[key] = count
        return replace(
            self,
            leaves=leaves.sort_values(["clinic_id", *KEYS], kind="stable").reset_index(drop=True),
            treated={c: n for c, n in self.treated.items() if c not in gone} | after.treated,
            left_out=left_out,
        )

    def cell_table(self, rules: DecisionRules) -> CellTable:
        """The cell table of every clinic's patients (its notes sorted by what and reason)."""
        notes = (Exclusion(w, n, r).note for (w, r), n in sorted(self.left_out.items()))
        return _cell_table(
            merge_leaves(self.leaves),
            rules=rules,
            time_base=self.time_base,
            n_treated=self.n_treated,
            surgery_available=self.surgery_available,
            data_notes=tuple(notes),
        )
