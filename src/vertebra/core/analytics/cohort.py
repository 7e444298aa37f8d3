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

from vertebra.core.analytics.schema import MEASURES, AnalysisTables, SchemaError, time_base

__all__ = [
    "SURGERY_KINDS",
    "CohortFilter",
    "Panel",
    "build_panel",
    "cutoff_days",
    "due_by",
    "event_days",
    "relative_days",
    "select_patients",
    "str_categorical",
    "take_rows",
]

#: Event kinds that count as "subsequent surgery" for surgery-free survival.
SURGERY_KINDS = ("surgery", "subsequent_surgery")

#: Mean Gregorian month in days (as in survival.DAYS_PER_MONTH).
_DAYS_PER_MONTH = 365.25 / 12

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
        mask &= _treated_between(patients, flt.treated_from, flt.treated_to)
    return mask


def _treated_between(patients: pd.DataFrame, start: date | None, end: date | None) -> BoolArray:
    """Treated within [start, end] (inclusive; None = open). On the days_from_treatment time
    base only the treatment year is known, so the bounds are whole years: a patient matches
    when their treatment year lies between the years of ``start`` and ``end``."""
    mask = np.ones(len(patients), dtype=bool)
    if time_base(patients) == "calendar":
        td = pd.to_datetime(patients["treatment_date"]).to_numpy()
        if start is not None:
            mask &= td >= np.datetime64(start)
        if end is not None:
            mask &= td <= np.datetime64(end)
        return mask
    year = pd.to_numeric(patients["treatment_year"], errors="coerce").to_numpy(
        dtype=np.float64, na_value=np.nan
    )
    if start is not None:
        mask &= year >= start.year
    if end is not None:
        mask &= year <= end.year
    return mask


def str_categorical(col: pd.Series) -> pd.Categorical:
    """Exactly `pd.Categorical(col.astype(str))`, without formatting every row as a string.

    Categories are the distinct values as strings, sorted as strings (so clinic 10 comes
    before clinic 9, as before); only the distinct values are formatted, which at 10^6 rows
    saves about a second per column. Columns with missing values take the plain route
    (there `astype(str)` turns NaN into the category "nan").
    """
    if col.dtype == object or col.isna().any():
        return pd.Categorical(col.astype(str))
    if isinstance(col.dtype, pd.CategoricalDtype):
        codes = np.asarray(col.cat.codes.to_numpy(), dtype=np.int64)
        values = np.asarray(col.cat.categories.astype(str), dtype=object)
    else:
        fcodes, uniques = pd.factorize(col.to_numpy())
        codes = np.asarray(fcodes, dtype=np.int64)
        values = np.asarray(pd.Index(uniques).astype(str), dtype=object)
    used = np.flatnonzero(np.bincount(codes, minlength=len(values)) > 0)
    names = values[used]
    order = np.argsort(names, kind="stable")
    new_code = np.full(len(values), -1, dtype=np.int64)
    new_code[used[order]] = np.arange(len(used))
    remapped: Any = new_code[codes]  # pandas-stubs wants a Sequence[int]
    return pd.Categorical.from_codes(remapped, categories=pd.Index(list(names[order])))


@dataclass
class Panel:
    """The filtered cohort as dense arrays. Row i of every array is `patients.iloc[i]`.

    * arm_codes: index into `arms` per patient.
    * tp_ids / tp_months: time points ordered by months; column 0 is baseline.
    * expected[i, t]: due by `as_of` (window_closes, else due_date, <= as_of) or answered;
      on the days_from_treatment time base the table's `expected` column (decided at the data
      cut-off before the dates were removed) or answered.
    * completed[i, t]: the questionnaire was completed.
    * values[measure][i, t]: score, NaN unless completed and scorable.
    * opioid[i, t]: 1.0 on opioids, 0.0 not, NaN unknown; mme likewise.
      Score, opioid and MME grids are read-only (they may share the input table's memory).
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
    return _flags(tp["completed"])


def _flags(col: pd.Series) -> BoolArray:
    """A yes/no column as bool (bool, 0/1, or text "true"/"yes"/"completed"); missing = no."""
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


class _Layout:
    """Where each row of the long `timepoints` table lands in the patients x time points grid.

    Two equivalent strategies, chosen by `_layout`:

    * reshape (fast path): the table holds exactly one row per patient x time point, in the
      order of the `patients` table, with the same time point order inside every patient's
      block (this is how `vertebra.core.synth` writes it). A long column is then just
      `column.reshape(N, T)` with its columns permuted into months order and the cohort's
      rows kept: no id lookup, no scatter.
    * scatter (general): row -> (patient index, time point index) by an id lookup; cells
      with no row stay empty (NaN / not expected / not completed).

    `tests/core/test_analytics_fastpaths.py` checks that both give identical panels.
    """

    def __init__(
        self,
        n: int,
        t_count: int,
        *,
        keep: BoolArray | None = None,
        perm: npt.NDArray[np.int64] | None = None,
        rows: npt.NDArray[np.int64] | None = None,
        cols: npt.NDArray[np.int64] | None = None,
        sel: BoolArray | None = None,
    ) -> None:
        self.n, self.t_count = n, t_count
        self.keep, self.perm = keep, perm  # reshape strategy (keep None = every patient)
        self.rows, self.cols, self.sel = rows, cols, sel  # scatter strategy

    @property
    def is_reshape(self) -> bool:
        """True for the reshape (fast) strategy."""
        return self.rows is None

    def grid(self, long: npt.NDArray[Any], fill: Any) -> npt.NDArray[Any]:
        """The long column `long` as an n x T grid; cells without a row get `fill`."""
        if self.rows is None:
            block = long.reshape(-1, self.t_count)
            if self.perm is not None:
                block = block[:, self.perm]
            if self.keep is not None:
                block = block[self.keep]
            return block
        assert self.cols is not None and self.sel is not None
        out = np.full((self.n, self.t_count), fill, dtype=long.dtype)
        out[self.rows, self.cols] = long[self.sel]
        return out


def _timepoint_codes(tp: pd.DataFrame, tp_ids: list[str]) -> npt.NDArray[np.int64]:
    """Index into `tp_ids` of every timepoints row (cheap on categoricals)."""
    tpc = tp["timepoint"]
    if isinstance(tpc.dtype, pd.CategoricalDtype):
        remap = pd.Index(tp_ids).get_indexer(tpc.cat.categories.astype(str))
        return np.asarray(remap[tpc.cat.codes.to_numpy()], dtype=np.int64)
    return np.asarray(pd.Categorical(tpc, categories=tp_ids).codes, dtype=np.int64)


def _reshape_layout(
    all_ids: npt.NDArray[Any], tp_pid: npt.NDArray[Any], col: npt.NDArray[np.int64], keep: BoolArray
) -> _Layout | None:
    """The reshape layout if the rows are ordered patient x time point (see `_Layout`)."""
    n_all, t_count = len(all_ids), int(col.max()) + 1 if len(col) else 0
    if t_count == 0 or len(tp_pid) != n_all * t_count or tp_pid.dtype != all_ids.dtype:
        return None
    block = col.reshape(n_all, t_count)
    first = block[0]
    if not np.array_equal(np.sort(first), np.arange(t_count)):
        return None  # the first block is not one row per time point
    if not (block == first).all() or not (tp_pid.reshape(n_all, t_count) == all_ids[:, None]).all():
        return None
    perm = np.argsort(first)  # grid column j <- block column perm[j]
    return _Layout(
        int(keep.sum()),
        t_count,
        keep=None if keep.all() else keep,
        perm=None if np.array_equal(perm, np.arange(t_count)) else perm,
    )


def _layout(
    pts_all: pd.DataFrame,
    pts: pd.DataFrame,
    keep: BoolArray,
    tp: pd.DataFrame,
    tp_ids: list[str],
    allow_reshape: bool = True,
) -> _Layout:
    """Choose the reshape layout when the table allows it, else the scatter layout."""
    t_count = len(tp_ids)
    col = _timepoint_codes(tp, tp_ids)
    tp_pid = tp["patient_id"].to_numpy()
    if allow_reshape:
        fast = _reshape_layout(pts_all["patient_id"].to_numpy(), tp_pid, col, keep)
        if fast is not None:
            return fast
    n = len(pts)
    row = pd.Index(pts["patient_id"]).get_indexer(tp["patient_id"])
    sel = row >= 0  # rows of patients outside the cohort are dropped here
    r, c = row[sel].astype(np.int64), col[sel]
    dup = np.bincount(r * t_count + c, minlength=n * t_count) > 1
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        raise SchemaError(
            f"timepoints: patient {pts['patient_id'].iloc[i // t_count]!r} has time point "
            f"{tp_ids[i % t_count]!r} more than once"
        )
    return _Layout(n, t_count, rows=r, cols=c, sel=sel)


def _day_numbers(col: pd.Series) -> FloatArray:
    """Dates as days since 1970-01-01 (float64, NaN for missing): cheap to compare and subtract."""
    d = pd.to_datetime(col).to_numpy().astype("datetime64[D]")
    out = d.astype(np.int64).astype(np.float64)
    out[np.isnat(d)] = np.nan
    return out


def relative_days(col: pd.Series) -> FloatArray:
    """A days-after-treatment column (int, nullable Int64 or float) as float64 with NaN."""
    return pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def due_by(timepoints: pd.DataFrame, as_of: date) -> BoolArray:
    """Per calendar time-point row: its answer window has closed by `as_of` (window_closes
    <= as_of), or, for tables without windows, its due date has passed. Missing dates: False.

    The one definition of "due" shared by `build_panel` and de-identification (which stores
    it as the `expected` column before removing the dates).
    """
    due_col = "window_closes" if "window_closes" in timepoints.columns else "due_date"
    return np.asarray(pd.to_datetime(timepoints[due_col]).to_numpy() <= np.datetime64(as_of))


def cutoff_days(patients: pd.DataFrame, as_of: date) -> FloatArray:
    """Per patient: days from treatment to the data cut-off.

    Calendar: `as_of` - treatment_date. days_from_treatment: the `followup_days` column (the
    cut-off was fixed at de-identification, so `as_of` is not used), +inf when the table has
    none (a released research table: its events were already cut at the cut-off).
    """
    if time_base(patients) == "calendar":
        treat = pd.to_datetime(patients["treatment_date"]).to_numpy().astype("datetime64[D]")
        return (np.datetime64(as_of, "D") - treat).astype(np.float64)
    if "followup_days" not in patients.columns:
        return np.full(len(patients), np.inf)
    return relative_days(patients["followup_days"])


def take_rows(values: FloatArray, row: npt.NDArray[np.intp], fill: float) -> FloatArray:
    """``values[row]`` per element, ``fill`` where row is -1 (not in the cohort)."""
    if len(values) == 0:
        return np.full(len(row), fill)
    return np.where(row >= 0, values[np.maximum(row, 0)], fill)


def event_days(
    events: pd.DataFrame, patients: pd.DataFrame, row: npt.NDArray[np.intp]
) -> FloatArray:
    """Per event: days after its patient's treatment; NaN for an event without a date or of a
    patient outside the cohort (`row` = the patient's row in `patients`, -1 when absent).
    Works on either time base."""
    if time_base(patients) == "calendar":
        treat = take_rows(_day_numbers(patients["treatment_date"]), row, np.nan)
        return np.asarray(_day_numbers(events["date"]) - treat, dtype=np.float64)
    return np.where(row >= 0, relative_days(events["day"]), np.nan)


def build_panel(
    tables: AnalysisTables,
    flt: CohortFilter,
    as_of: date,
    with_contact: bool = False,
    *,
    allow_reshape: bool = True,
) -> Panel:
    """Filter patients and pivot their time points into dense arrays (see `Panel`).

    `with_contact` also computes `contact_days` (needed only for last-contact censoring).
    `allow_reshape=False` forces the general id-lookup layout (tests compare the two).
    """
    pts_all = tables.patients
    keep = select_patients(pts_all, flt)
    pts = pts_all.loc[keep].reset_index(drop=True)
    arm_cat = str_categorical(pts["arm"])
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
    lay = _layout(pts_all, pts, keep, tp, tp_ids, allow_reshape)

    done = _completed_flags(tp)
    completed = lay.grid(done, False)
    # Expected once the answer window has closed (the patient can no longer answer), or, for
    # tables without windows, once the due date has passed; answered early counts too.
    # De-identified tables carry that decision, made at their data cut-off, as `expected`.
    relative = time_base(pts_all) == "days_from_treatment"
    due = _flags(tp["expected"]) if relative else due_by(tp, as_of)
    expected = lay.grid(due | done, False)

    def _grid(column: str) -> FloatArray | None:
        """A score grid; NaN where the questionnaire was not completed (read-only array).

        When the grid is a plain reshape of the column and the column is already NaN
        wherever the questionnaire was not completed (as the synth and export write it),
        the column's own memory is used: no 48 MB copy per score at 10^6 patients.
        """
        if column not in tp.columns:
            return None
        grid = lay.grid(_floats(tp[column]), np.nan)
        shared = lay.is_reshape and lay.keep is None and lay.perm is None
        if not (shared and (np.isnan(grid) | completed).all()):
            grid = np.where(completed, grid, np.nan)
        grid = grid.view()
        grid.flags.writeable = False  # shared with the input table: never modify in place
        return grid

    values = {m: g for m in MEASURES if (g := _grid(m)) is not None}

    contact_days = None
    if with_contact:
        if relative:  # completion day, else the nominal offset (as due_date stands in above)
            days = lay.grid(
                relative_days(tp["completed_day"])
                if "completed_day" in tp.columns
                else _floats(tp["months"]) * _DAYS_PER_MONTH,
                np.nan,
            )
        else:
            treat = _day_numbers(pts["treatment_date"])
            date_col = "completed_date" if "completed_date" in tp.columns else "due_date"
            days = lay.grid(_day_numbers(tp[date_col]), np.nan) - treat[:, None]
        days[~completed | np.isnan(days)] = 0.0
        contact_days = days.max(axis=1) if days.shape[1] else np.zeros(len(pts))
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
