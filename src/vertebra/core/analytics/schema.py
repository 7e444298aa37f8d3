"""The analytics input contract: three analysis-ready tables and their validation.

The tables are the ones written by ``vertebra synth`` and ``vertebra export csv``:

``patients`` - one row per patient
    required: patient_id (unique), clinic_id, arm, condition, treatment_date (date),
    age (years), sex ("female"/"male"/other; "F"/"M" accepted), startback_group
    ("low"/"medium"/"high"), pain_duration_months.
    optional: cell_source, adjunct, dose (numeric, any unit the registry uses for the dose
    filter), the index episode's cost (cost_price, cost_patient_paid: numbers in
    cost_currency, an ISO 4217 code; cost_billed_to: self_pay/insurer/trial/other), and any
    other columns (ignored).

``timepoints`` - one row per patient x scheduled time point (including ones not answered)
    required: patient_id, timepoint (id such as "baseline", "month_12"), months (nominal
    months after treatment; 0 for baseline), due_date (target date), completed (bool),
    odi (0-100), nrs_back (0-10).
    optional: nrs_leg, promis_pf, promis_pi (T-scores), opioid_use (bool: taking an opioid),
    psfs (PSFS mean 0-10), work_status_band (working, off_work_back_pain, not_in_paid_work,
    other) or work_status (the answer code 1-9, grouped as work_status.yaml says): the
    return-to-work analysis,
    mme (morphine milligram equivalents/day, 0 when none), completed_date, window_closes
    (last day of the answer window; when present a time point is "expected" once its window
    has closed, otherwise once due_date has passed).
    Scores are NaN when not answered or not scorable.

``events`` - one row per event (may be empty)
    required: patient_id, kind ("adverse_event", "surgery", "repeat_injection"), date.
    optional: ctcae_grade (1-5), serious (bool), relatedness ("harvest", "procedure",
    "product", "unrelated", ...).

Time base. The tables above are on the **calendar** time base. De-identified tables
(:mod:`vertebra.core.deidentify`) carry no calendar date and are on the
**days_from_treatment** time base instead (`time_base` tells which; the three tables must agree):

* patients: ``treatment_year`` (int) instead of ``treatment_date``; optional
  ``followup_days`` (days from treatment to the data cut-off; without it, survival can only be
  censored at the last contact).
* timepoints: ``expected`` instead of ``due_date`` (bool: the time point was due by the data
  cut-off, decided before the dates were removed); optional ``completed_day``. Schedule dates
  have no day counterpart: calendar months differ in length, so days to a "3 months" target
  would give the treatment month away; ``months`` is the nominal offset.
* events: ``day`` instead of ``date``; only events on or before the data cut-off.

A "day" is a whole number of days after the patient's own treatment date (treatment = day 0).

`validate_tables` raises `SchemaError` naming every missing column of every table at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd

__all__ = [
    "ALIASES",
    "EVENTS_OPTIONAL",
    "EVENTS_REQUIRED",
    "MEASURES",
    "PATIENTS_OPTIONAL",
    "PATIENTS_REQUIRED",
    "TIMEPOINTS_OPTIONAL",
    "TIMEPOINTS_REQUIRED",
    "AnalysisTables",
    "SchemaError",
    "TimeBase",
    "read_parquet_table",
    "read_tables",
    "time_base",
    "validate_tables",
]

PATIENTS_REQUIRED: tuple[str, ...] = (
    "patient_id",
    "clinic_id",
    "arm",
    "condition",
    "treatment_date",
    "age",
    "sex",
    "startback_group",
    "pain_duration_months",
)
PATIENTS_OPTIONAL: tuple[str, ...] = (
    "cell_source",
    "adjunct",
    "dose",
    # cost of the index episode (vertebra.core.analytics.cost; docs/algorithms/cost.md)
    "cost_price",
    "cost_patient_paid",
    "cost_currency",
    "cost_billed_to",
)
TIMEPOINTS_REQUIRED: tuple[str, ...] = (
    "patient_id",
    "timepoint",
    "months",
    "due_date",
    "completed",
    "odi",
    "nrs_back",
)
TIMEPOINTS_OPTIONAL: tuple[str, ...] = (
    "nrs_leg",
    "promis_pf",
    "promis_pi",
    "opioid_use",
    "mme",
    "completed_date",
    "psfs",
    "work_status_band",
    "work_status",
)
EVENTS_REQUIRED: tuple[str, ...] = ("patient_id", "kind", "date")
EVENTS_OPTIONAL: tuple[str, ...] = ("ctcae_grade", "serious", "relatedness")

TimeBase = Literal["calendar", "days_from_treatment"]
#: days_from_treatment tables: calendar column -> its replacement (required in its place).
RELATIVE_REQUIRED: Mapping[str, Mapping[str, str]] = {
    "patients": {"treatment_date": "treatment_year"},
    "timepoints": {"due_date": "expected"},
    "events": {"date": "day"},
}
#: days_from_treatment tables: further columns read (``expected`` is required).
RELATIVE_EXTRA: Mapping[str, tuple[str, ...]] = {
    "patients": ("followup_days",),
    "timepoints": ("completed_day",),
    "events": (),
}

#: Score columns of `timepoints` -> instrument id (for direction and responder rules).
MEASURES: Mapping[str, str] = {
    "odi": "odi",
    "nrs_back": "nrs_back",
    "nrs_leg": "nrs_leg",
    "promis_pf": "promis_pf_4a",
    "promis_pi": "promis_pi_4a",
}

#: Accepted alternative column names (the synth generator's and export's spelling) -> contract
#: name. Applied only when the contract name is absent.
ALIASES: Mapping[str, Mapping[str, str]] = {
    "patients": {"startback_risk": "startback_group", "cell_dose_e6": "dose"},
    "timepoints": {
        "promis_pf_t": "promis_pf",
        "promis_pi_t": "promis_pi",
        "opioid_mme": "mme",
        "response_date": "completed_date",
    },
    "events": {"event_type": "kind", "event_date": "date"},
}

_NUMERIC = {
    "patients": ("age", "pain_duration_months"),
    "timepoints": ("months", "odi", "nrs_back"),
}


class SchemaError(ValueError):
    """The input tables do not meet the contract; the message names every problem found."""


@dataclass(frozen=True)
class Exclusion:
    """Stored rows left out of the tables, how many, and why: said beside every result.

    ``what`` names the rows in plural words ("patients", "adverse or clinical events"),
    ``reason`` is a plain clause without any patient's data (also shown to researchers).
    """

    what: str
    count: int
    reason: str

    @property
    def note(self) -> str:
        """One sentence for reports and pages."""
        what = self.what if self.count != 1 else self.what.removesuffix("s")
        return f"{self.count} {what} left out: {self.reason}."

    def to_dict(self) -> dict[str, object]:
        return {"what": self.what, "count": self.count, "reason": self.reason, "note": self.note}


@dataclass(frozen=True)
class AnalysisTables:
    """The three input tables. Construct with `AnalysisTables.of(...)` to validate.

    ``exclusions`` records stored rows the reader left out (e.g. a date outside the plausible
    range, which no frame can hold); every report and page built from the tables says so.
    """

    patients: pd.DataFrame
    timepoints: pd.DataFrame
    events: pd.DataFrame
    exclusions: tuple[Exclusion, ...] = ()

    @classmethod
    def of(
        cls,
        patients: pd.DataFrame,
        timepoints: pd.DataFrame,
        events: pd.DataFrame | None = None,
        *,
        exclusions: tuple[Exclusion, ...] = (),
    ) -> AnalysisTables:
        """Validate and wrap; `events` None means "no events recorded" (an empty table).

        A `timepoints` table with a `status` column ("completed", "missed", ...) but no
        `completed` column gets `completed = status == "completed"`. Columns spelled as in
        `ALIASES` (the synth generator's names) are renamed to the contract names.
        """
        patients = _apply_aliases(patients, "patients")
        timepoints = _apply_aliases(timepoints, "timepoints")
        if events is not None:
            events = _apply_aliases(events, "events")
        if "completed" not in timepoints.columns and "status" in timepoints.columns:
            timepoints = timepoints.assign(
                completed=timepoints["status"].astype(str).eq("completed").to_numpy()
            )
        if events is None:
            events = pd.DataFrame(
                {c: pd.Series(dtype="object") for c in _required("events", time_base(patients))}
            )
        validate_tables(patients, timepoints, events)
        return cls(patients, timepoints, events, tuple(exclusions))

    @property
    def time_base(self) -> TimeBase:
        """The time base: "calendar" (dates) or "days_from_treatment" (de-identified)."""
        return time_base(self.patients)


def time_base(patients: pd.DataFrame) -> TimeBase:
    """The time base of a patients table: days_from_treatment when it has ``treatment_year``
    and no ``treatment_date``, else calendar (whose validation names a missing date)."""
    relative = "treatment_year" in patients.columns and "treatment_date" not in patients.columns
    return "days_from_treatment" if relative else "calendar"


def _required(table: str, base: TimeBase) -> tuple[str, ...]:
    """The required columns of ``table`` on time base ``base``."""
    req = {"patients": PATIENTS_REQUIRED, "timepoints": TIMEPOINTS_REQUIRED}.get(
        table, EVENTS_REQUIRED
    )
    if base == "calendar":
        return req
    swap = RELATIVE_REQUIRED[table]
    return tuple(swap.get(c, c) for c in req)


def _apply_aliases(df: pd.DataFrame, table: str) -> pd.DataFrame:
    mapping = {
        alias: name
        for alias, name in ALIASES[table].items()
        if alias in df.columns and name not in df.columns
    }
    return df.rename(columns=mapping, copy=False) if mapping else df


def _wanted(table: str) -> set[str]:
    req = {"patients": PATIENTS_REQUIRED, "timepoints": TIMEPOINTS_REQUIRED}.get(
        table, EVENTS_REQUIRED
    )
    opt = {"patients": PATIENTS_OPTIONAL, "timepoints": TIMEPOINTS_OPTIONAL}.get(
        table, EVENTS_OPTIONAL
    )
    extra = {"timepoints": ("status", "window_closes")}.get(table, ())
    relative = (*RELATIVE_REQUIRED[table].values(), *RELATIVE_EXTRA[table])
    return {*req, *opt, *extra, *relative, *ALIASES[table]}


def validate_tables(patients: pd.DataFrame, timepoints: pd.DataFrame, events: pd.DataFrame) -> None:
    """Check the contract; raise SchemaError listing all missing columns and other problems.

    Checks: required columns of the patients table's time base present in all three tables
    (so a de-identified patients table with calendar-dated time points is refused); unique
    patient_id; numeric score/covariate columns are numeric. (Unique (patient_id, timepoint)
    is checked when the panel is built.) Unknown patient ids in timepoints/events are
    allowed (they are ignored, e.g. after a filter).
    """
    problems: list[str] = []
    base = time_base(patients)
    for name, df, required in (
        ("patients", patients, _required("patients", base)),
        ("timepoints", timepoints, _required("timepoints", base)),
        ("events", events, _required("events", base)),
    ):
        missing = [c for c in required if c not in df.columns]
        if missing:
            problems.append(f"{name}: missing column(s) {', '.join(missing)}")
        for col in _NUMERIC.get(name, ()):
            if col in df.columns and not pd.api.types.is_numeric_dtype(df[col]):
                problems.append(f"{name}.{col}: expected numbers, got dtype {df[col].dtype}")
    if problems:
        raise SchemaError("; ".join(problems))
    if patients["patient_id"].duplicated().any():
        dup = patients.loc[patients["patient_id"].duplicated(), "patient_id"].iloc[0]
        raise SchemaError(f"patients: patient_id {dup!r} appears more than once")
    # Duplicate (patient_id, timepoint) rows are detected by build_panel, where the dense
    # grid makes the check a bincount instead of hashing 6M row pairs here.


#: Columns that hold a code from a short list: read as pandas categoricals even where the file
#: stores plain strings (the synth's cost_currency: 578 MB of Python strings at 10^7
#: patients, 9.5 MB as a categorical).
_CODE_COLUMNS = frozenset(
    {
        "sex",
        "condition",
        "startback_group",
        "arm",
        "cell_source",
        "adjunct",
        "cost_currency",
        "cost_billed_to",
        "timepoint",
        "status",
        "work_status_band",
        "kind",
        "event_type",
        "relatedness",
    }
)


def _read_parquet(path: Path, wanted: set[str], numeric_nullable: bool) -> pd.DataFrame:
    """Read only the contract's columns of one Parquet file, without Python objects.

    The synth tables also carry item-level answers and identifiers that would double the
    memory of a 10^6-patient report, so only `wanted` columns are decoded (multithreaded).
    Dictionary-encoded strings and code columns (`_CODE_COLUMNS`) arrive as pandas
    categoricals and dates as datetime64
    (`date_as_object=False`; Python `date` objects would cost seconds per 6M-row column).
    With `numeric_nullable`, integer and boolean columns that contain nulls (scores such as
    nrs_back, opioid_use) arrive as float64 with NaN, converted once by Arrow, which is what
    the panel needs anyway, instead of pandas' nullable Int8/boolean (slow to convert later).
    Other columns keep the pandas metadata, so nullable booleans become BooleanDtype.
    """
    import pyarrow as pa  # type: ignore[import-untyped]
    import pyarrow.parquet as papq  # type: ignore[import-untyped]

    # The footer is read once: its column names decide which columns are read as
    # dictionaries. Not papq.read_table: that imports pyarrow.dataset (0.3 s).
    meta = papq.read_metadata(path)
    names = [c for c in meta.schema.to_arrow_schema().names if c in wanted]
    dictionaries = [c for c in names if c in _CODE_COLUMNS]
    pf = papq.ParquetFile(path, metadata=meta, read_dictionary=dictionaries)
    if "completed" in names and "status" in names:
        names.remove("status")  # only a fallback for `completed`
    table = pf.read(columns=names, use_threads=True)
    if numeric_nullable:
        nullable = [
            i
            for i, f in enumerate(table.schema)
            if f.name != "completed"
            and (pa.types.is_integer(f.type) or pa.types.is_boolean(f.type))
            and table.column(i).null_count > 0
        ]
        for i in nullable:  # integers with nulls become float64/NaN in to_pandas by themselves
            if pa.types.is_boolean(table.field(i).type):
                table = table.set_column(i, table.field(i).name, table.column(i).cast(pa.float64()))
        if nullable:  # the pandas metadata would turn them back into Int8 / boolean
            table = table.replace_schema_metadata(None)
    # split_blocks: one block per column, so pandas does not copy same-typed columns into one
    # 2-D block (a 6M x 8 float copy); most numeric columns then convert without a copy.
    # use_threads=False: the conversion is memory-bound; its thread pool only burned CPU here.
    return table.to_pandas(date_as_object=False, split_blocks=True, use_threads=False)


def read_tables(directory: str | Path) -> AnalysisTables:
    """Read patients/timepoints/events from DIR as .parquet (preferred) or .csv, and validate.

    Raises SchemaError (a ValueError) if a table file is missing or does not meet the contract.
    """
    base = Path(directory)
    if not base.is_dir():
        raise SchemaError(f"{base}: not a directory")
    frames: dict[str, pd.DataFrame] = {}
    for name in ("patients", "timepoints", "events"):
        pq, csv = base / f"{name}.parquet", base / f"{name}.csv"
        wanted = _wanted(name)
        # Read only the contract's columns: the synth tables also carry item-level answers
        # and identifiers that would double the memory of a 10^6-patient report.
        if pq.exists():
            frames[name] = _read_parquet(pq, wanted, numeric_nullable=name == "timepoints")
        elif csv.exists():
            frames[name] = pd.read_csv(csv, usecols=wanted.__contains__, low_memory=False)
            for col in (
                "treatment_date",
                "due_date",
                "window_closes",
                "completed_date",
                "date",
                "response_date",
                "event_date",
            ):
                if col in frames[name].columns:
                    frames[name][col] = pd.to_datetime(frames[name][col])
        elif name == "events":
            frames[name] = pd.DataFrame({c: pd.Series(dtype="object") for c in EVENTS_REQUIRED})
        else:
            raise SchemaError(f"{base}: no {name}.parquet or {name}.csv")
    return AnalysisTables.of(frames["patients"], frames["timepoints"], frames["events"])


def read_parquet_table(path: str | Path, name: str) -> pd.DataFrame:
    """One table (``name``: patients, timepoints or events) from a Parquet file exactly as
    `read_tables` reads it: the contract's columns only, same dtypes, aliases applied."""
    frame = _read_parquet(Path(path), _wanted(name), numeric_nullable=name == "timepoints")
    return _apply_aliases(frame, name)
