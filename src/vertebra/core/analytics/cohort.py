"""Cohort selection (`CohortFilter`) and the dense patient x time point panel.

The panel turns the long `timepoints` table into 2-D numpy arrays (patients x time points) so
that every per-arm, per-time-point statistic is a handful of `np.bincount` calls: no per-patient
Python loop, which is what makes 1,000,000 patients fit in seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from vertebra.core.analytics.schema import MEASURES, AnalysisTables, SchemaError

__all__ = ["SURGERY_KINDS", "CohortFilter", "Panel", "build_panel", "select_patients"]

#: Event kinds that count as "subsequent surgery" for surgery-free survival.
SURGERY_KINDS = ("surgery", "subsequent_surgery")

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class CohortFilter:
    """Which patients a report covers. Empty tuples / None mean "no restriction".

    Values are compared as strings, so clinic ids may be given as "3" or 3. `dose_min`/
    `dose_max` select patients whose `dose` lies in the closed band (patients without a dose,
    e.g. non-cell arms, are excluded when either bound is set). `treated_from`/`treated_to`
    are inclusive treatment-date bounds.
    """

    clinics: tuple[str, ...] = ()
    conditions: tuple[str, ...] = ()
    arms: tuple[str, ...] = ()
    cell_sources: tuple[str, ...] = ()
    adjuncts: tuple[str, ...] = ()
    dose_min: float | None = None
    dose_max: float | None = None
    treated_from: date | None = None
    treated_to: date | None = None

    @classmethod
    def build(
        cls,
        *,
        clinics: Sequence[Any] = (),
        conditions: Sequence[str] = (),
        arms: Sequence[str] = (),
        cell_sources: Sequence[str] = (),
        adjuncts: Sequence[str] = (),
        dose_min: float | None = None,
        dose_max: float | None = None,
        treated_from: date | None = None,
        treated_to: date | None = None,
    ) -> CohortFilter:
        """Convenience constructor accepting any sequences (stored as tuples of str)."""
        return cls(
            clinics=tuple(str(c) for c in clinics),
            conditions=tuple(conditions),
            arms=tuple(arms),
            cell_sources=tuple(cell_sources),
            adjuncts=tuple(adjuncts),
            dose_min=dose_min,
            dose_max=dose_max,
            treated_from=treated_from,
            treated_to=treated_to,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description of the filter (dates as ISO strings)."""
        return {
            "clinics": list(self.clinics),
            "conditions": list(self.conditions),
            "arms": list(self.arms),
            "cell_sources": list(self.cell_sources),
            "adjuncts": list(self.adjuncts),
            "dose_min": self.dose_min,
            "dose_max": self.dose_max,
            "treated_from": self.treated_from.isoformat() if self.treated_from else None,
            "treated_to": self.treated_to.isoformat() if self.treated_to else None,
        }


def _isin(col: pd.Series, values: tuple[str, ...]) -> BoolArray:
    """Membership by string value; cheap on categoricals (compares the categories only)."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        cats = np.asarray(col.cat.categories.astype(str))
        keep = np.isin(cats, np.asarray(values, dtype=str))
        codes = col.cat.codes.to_numpy()
        return (codes >= 0) & keep[np.maximum(codes, 0)]
    return np.asarray(col.astype(str).isin(values).to_numpy(), dtype=bool)


def select_patients(patients: pd.DataFrame, flt: CohortFilter) -> BoolArray:
    """Boolean mask of the `patients` rows that satisfy `flt` (SchemaError if a column is absent)."""
    mask = np.ones(len(patients), dtype=bool)
    for attr, column in (
        ("clinics", "clinic_id"),
        ("conditions", "condition"),
        ("arms", "arm"),
        ("cell_sources", "cell_source"),
        ("adjuncts", "adjunct"),
    ):
        values: tuple[str, ...] = getattr(flt, attr)
        if not values:
            continue
        if column not in patients.columns:
            raise SchemaError(f"patients: missing column {column} needed by the {attr} filter")
        mask &= _isin(patients[column], values)
    if flt.dose_min is not None or flt.dose_max is not None:
        if "dose" not in patients.columns:
            raise SchemaError("patients: missing column dose needed by the dose filter")
        dose = pd.to_numeric(patients["dose"], errors="coerce").to_numpy(dtype=np.float64)
        lo = -np.inf if flt.dose_min is None else flt.dose_min
        hi = np.inf if flt.dose_max is None else flt.dose_max
        with np.errstate(invalid="ignore"):
            mask &= (dose >= lo) & (dose <= hi)
    if flt.treated_from is not None or flt.treated_to is not None:
        td = pd.to_datetime(patients["treatment_date"]).to_numpy()
        if flt.treated_from is not None:
            mask &= td >= np.datetime64(flt.treated_from)
        if flt.treated_to is not None:
            mask &= td <= np.datetime64(flt.treated_to)
    return mask


@dataclass
class Panel:
    """The filtered cohort as dense arrays. Row i of every array is `patients.iloc[i]`.

    * arm_codes: index into `arms` per patient.
    * tp_ids / tp_months: time points ordered by months; column 0 is baseline.
    * expected[i, t]: due by `as_of` (window_closes, else due_date, <= as_of) or answered.
    * completed[i, t]: the questionnaire was completed.
    * values[measure][i, t]: score, NaN unless completed and scorable.
    * opioid[i, t]: 1.0 on opioids, 0.0 not, NaN unknown; mme likewise.
    * last_contact: latest completed follow-up date (or treatment date), days since treatment.
    """

    patients: pd.DataFrame
    arms: list[str]
    arm_codes: npt.NDArray[np.int64]
    tp_ids: list[str]
    tp_months: FloatArray
    expected: BoolArray
    completed: BoolArray
    values: dict[str, FloatArray] = field(default_factory=dict)
    opioid: FloatArray | None = None
    mme: FloatArray | None = None
    contact_days: FloatArray | None = None

    @property
    def n(self) -> int:
        """Patients in the cohort."""
        return len(self.arm_codes)


def _completed_flags(tp: pd.DataFrame) -> BoolArray:
    """`completed` as bool; a missing value means not completed (never "unknown = yes")."""
    col = tp["completed"]
    if pd.api.types.is_bool_dtype(col):
        return col.to_numpy(dtype=bool)
    if pd.api.types.is_numeric_dtype(col):
        return np.asarray(col.fillna(0).to_numpy() != 0, dtype=bool)
    s = col.astype(str).str.lower()
    return np.asarray(s.isin(("true", "1", "yes", "completed")).to_numpy(), dtype=bool)


def _floats(col: pd.Series) -> FloatArray:
    """Column as float64 with NaN for missing (handles nullable Int8/boolean and strings)."""
    if col.dtype == object:
        col = col.map(
            lambda v: {"true": 1.0, "false": 0.0}.get(v.lower(), v) if isinstance(v, str) else v
        )
    if pd.api.types.is_bool_dtype(col):  # numpy bool or nullable BooleanDtype
        return np.asarray(col.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)
    num = col if pd.api.types.is_numeric_dtype(col) else pd.to_numeric(col, errors="coerce")
    return np.asarray(num.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)


def build_panel(
    tables: AnalysisTables, flt: CohortFilter, as_of: date, with_contact: bool = False
) -> Panel:
    """Filter patients and pivot their time points into dense arrays (see `Panel`).

    `with_contact` also computes `contact_days` (needed only for last-contact censoring).
    """
    pts_all = tables.patients
    keep = select_patients(pts_all, flt)
    pts = pts_all.loc[keep].reset_index(drop=True)
    arm_cat = pd.Categorical(pts["arm"].astype(str))
    arms = [str(a) for a in arm_cat.categories]
    arm_codes = np.asarray(arm_cat.codes, dtype=np.int64)

    tp = tables.timepoints
    # One (timepoint, months) pair per time point; groupby on a categorical avoids hashing
    # 6M strings.
    order = (
        tp.groupby(tp["timepoint"], observed=True, sort=False)["months"]
        .first()
        .sort_values(kind="stable")
    )
    tp_ids = [str(x) for x in order.index]
    tp_months = order.to_numpy(dtype=np.float64)
    if not tp_ids or tp_months[0] != 0:
        raise SchemaError("timepoints: no baseline row (a time point with months = 0)")
    n, t_count = len(pts), len(tp_ids)
    row = pd.Index(pts["patient_id"]).get_indexer(tp["patient_id"])
    tpc = tp["timepoint"]
    if isinstance(tpc.dtype, pd.CategoricalDtype):
        remap = pd.Index(tp_ids).get_indexer(tpc.cat.categories.astype(str))
        col = remap[tpc.cat.codes.to_numpy()]
    else:
        col = pd.Categorical(tpc, categories=tp_ids).codes
    sel = row >= 0  # rows of patients outside the cohort are dropped here
    r, c = row[sel], np.asarray(col, dtype=np.int64)[sel]
    cell = r * t_count + c
    dup = np.bincount(cell, minlength=n * t_count) > 1
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        raise SchemaError(
            f"timepoints: patient {pts['patient_id'].iloc[i // t_count]!r} has time point "
            f"{tp_ids[i % t_count]!r} more than once"
        )

    completed = np.zeros((n, t_count), dtype=bool)
    comp_flags = _completed_flags(tp)[sel]
    completed[r, c] = comp_flags
    # Expected once the answer window has closed (the patient can no longer answer), or, for
    # tables without windows, once the due date has passed; answered early counts too.
    due_col = "window_closes" if "window_closes" in tp.columns else "due_date"
    due = pd.to_datetime(tp[due_col]).to_numpy()[sel]
    expected = np.zeros((n, t_count), dtype=bool)
    expected[r, c] = (due <= np.datetime64(as_of)) | comp_flags

    values: dict[str, FloatArray] = {}
    for column in MEASURES:
        if column not in tp.columns:
            continue
        arr = np.full((n, t_count), np.nan)
        arr[r, c] = _floats(tp[column])[sel]
        arr[~completed] = np.nan  # a score without a completed questionnaire is not data
        values[column] = arr

    def _grid(column: str) -> FloatArray | None:
        if column not in tp.columns:
            return None
        arr = np.full((n, t_count), np.nan)
        arr[r, c] = _floats(tp[column])[sel]
        arr[~completed] = np.nan
        return arr

    contact_days = None
    if with_contact:
        treat = pd.to_datetime(pts["treatment_date"]).to_numpy().astype("datetime64[D]")
        date_col = "completed_date" if "completed_date" in tp.columns else "due_date"
        contact = pd.to_datetime(tp[date_col]).to_numpy().astype("datetime64[D]")[sel]
        days_long = (contact - treat[r]).astype(np.float64)
        days_long[~comp_flags | np.isnan(days_long)] = 0.0
        contact_days = np.zeros(n)
        # A groupby max rather than np.maximum.at, which is unbuffered and slow at 6M rows.
        if len(r):
            contact_days = (
                pd.Series(days_long).groupby(r).max().reindex(range(n), fill_value=0.0)
            ).to_numpy(dtype=np.float64)
    return Panel(
        patients=pts,
        arms=arms,
        arm_codes=arm_codes,
        tp_ids=tp_ids,
        tp_months=tp_months,
        expected=expected,
        completed=completed,
        values=values,
        opioid=_grid("opioid_use"),
        mme=_grid("mme"),
        contact_days=contact_days,
    )
