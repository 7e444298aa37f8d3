"""De-identification of the analysis tables (HIPAA Safe Harbor, 45 CFR 164.514(b)(2)). Pure.

The rules are data (``vertebra/data/deidentification.yaml``, versioned); this module applies
them. Documented with a worked example in docs/algorithms/deidentification.md.

Contracts
---------
* :func:`deidentify` turns identified, calendar-dated :class:`AnalysisTables` into tables on
  the ``days_from_treatment`` time base (see :mod:`vertebra.core.analytics.schema`) that the
  same analytics read, with the same results for the same cohort and cut-off:

  - patient ids -> pseudonyms 1..n from a random permutation (new on every call, mapping not
    kept); rows sorted by pseudonym, so row order does not reveal the registry order;
  - treatment date -> ``treatment_year``; completion and event dates -> whole days after the
    patient's own treatment date (``completed_day``, ``day``); ``followup_days`` = days from
    treatment to ``as_of``; schedule dates (target, window) dropped, because as days they
    would reveal the treatment month (months differ in length);
  - ``expected`` (the time point was due by ``as_of``) decided before the dates go;
  - events after ``as_of`` dropped; ages capped at the rule set's ``age_cap`` (90 = "90 or
    older");
  - only allow-listed columns survive, text cells must be codes, no date-typed column remains
    (a violation raises :class:`DeidentificationError`, never passes silently).

* :func:`release` prepares de-identified tables to leave the server as files: drops the
  columns that would give back dates together with the export date (``followup_days``) and
  pools clinics with fewer than ``min_clinic_patients`` patients.
* :func:`coarsen_filter` widens a treatment-date filter to whole years (researchers cannot
  probe treatment dates by narrowing a date range).
* :func:`release_manifest` / :func:`release_readme` describe a release (what was removed and
  why, row counts, follow-up completeness, rule-set version), without any calendar date.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date
from functools import cache
from importlib.resources import files
from typing import Any

import numpy as np
import pandas as pd

from vertebra.core.analytics.cohort import CohortFilter, due_by
from vertebra.core.analytics.schema import AnalysisTables
from vertebra.core.codebook import codebook
from vertebra.core.disclosure import Withheld, suppress_values, withhold_small_groups
from vertebra.core.disclosure import policy as disclosure_policy
from vertebra.core.yamltext import load_yaml

__all__ = [
    "DeidentificationError",
    "Release",
    "RuleSet",
    "SafeHarborItem",
    "check_deidentified",
    "coarsen_filter",
    "deidentify",
    "follow_up_completeness",
    "release",
    "release_manifest",
    "release_readme",
    "ruleset",
]

_TABLES = ("patients", "timepoints", "events")
_SAFE_HARBOR_IDS = tuple("ABCDEFGHIJKLMNOPQR")
_STATUSES = ("removed", "transformed", "replaced", "not_collected")


class DeidentificationError(ValueError):
    """The input cannot be de-identified, or the output would break a rule (names the rule)."""


@dataclass(frozen=True)
class SafeHarborItem:
    """One of the 18 Safe Harbor identifiers, 164.514(b)(2)(i)(A)-(R), and how it is handled."""

    id: str
    identifier: str
    status: str
    handling: str

    def to_dict(self) -> dict[str, str]:
        """{id, identifier, status, handling}."""
        return {
            "id": self.id,
            "identifier": self.identifier,
            "status": self.status,
            "handling": self.handling,
        }


@dataclass(frozen=True)
class RuleSet:
    """The de-identification rule set (``vertebra/data/deidentification.yaml``)."""

    version: str
    age_cap: int
    min_clinic_patients: int
    pooled_clinic_id: str
    relative_days: Mapping[str, Mapping[str, str]]
    dropped_dates: Mapping[str, tuple[str, ...]]
    columns: Mapping[str, tuple[str, ...]]
    code_pattern: str
    release_drop: Mapping[str, tuple[str, ...]]
    safe_harbor: tuple[SafeHarborItem, ...]


@cache
def ruleset() -> RuleSet:
    """The rule set from the data file (read once). DeidentificationError if the file breaks
    its own contract: all 18 Safe Harbor items A-R in order, known statuses, known tables."""
    raw: Any = load_yaml(
        files("vertebra").joinpath("data", "deidentification.yaml").read_text(encoding="utf-8")
    )
    items = tuple(SafeHarborItem(**{k: str(v) for k, v in i.items()}) for i in raw["safe_harbor"])
    if tuple(i.id for i in items) != _SAFE_HARBOR_IDS:
        raise DeidentificationError("safe_harbor must list the 18 identifiers A to R in order")
    bad = [i.id for i in items if i.status not in _STATUSES]
    if bad:
        raise DeidentificationError(f"safe_harbor {bad}: status must be one of {_STATUSES}")
    rules = RuleSet(
        version=str(raw["version"]),
        age_cap=int(raw["age_cap"]),
        min_clinic_patients=int(raw["min_clinic_patients"]),
        pooled_clinic_id=str(raw["pooled_clinic_id"]),
        relative_days={t: dict(m) for t, m in raw["relative_days"].items()},
        dropped_dates={t: tuple(c) for t, c in raw["dropped_dates"].items()},
        columns={
            t: tuple(raw["columns"][t])
            + (_item_answer_columns() if t == raw.get("item_answers") else ())
            for t in _TABLES
        },
        code_pattern=str(raw["code_pattern"]),
        release_drop={t: tuple(c) for t, c in raw["release_drop"].items()},
        safe_harbor=items,
    )
    if not re.fullmatch(rules.code_pattern, rules.pooled_clinic_id):
        raise DeidentificationError("pooled_clinic_id must itself be a code")
    return rules


def _item_answer_columns() -> tuple[str, ...]:
    """The research codebook's item-level answer columns (choice codes and numbers only)."""
    return tuple(c.name for c in codebook().item_columns())


# ---------------------------------------------------------------------------- de-identify


def deidentify(
    tables: AnalysisTables, *, as_of: date, rng: np.random.Generator | None = None
) -> AnalysisTables:
    """De-identified copies of calendar-dated ``tables`` at the data cut-off ``as_of``.

    See the module contract. ``rng`` draws the pseudonyms (default: a generator seeded from the
    operating system's entropy, so no one can recompute the mapping). Raises
    DeidentificationError for tables that are already de-identified or whose output would
    break a rule.
    """
    if tables.time_base != "calendar":
        raise DeidentificationError("the tables are already de-identified")
    rules = ruleset()
    rng = rng if rng is not None else np.random.default_rng()
    src = tables.patients
    ids = src["patient_id"].to_numpy()
    pseudonym = pd.Series(rng.permutation(len(src)) + 1, index=ids)
    treated = pd.Series(_dates(src["treatment_date"]).to_numpy(), index=ids)
    patients = _patients(src, treated, pseudonym, as_of, rules)
    timepoints = _timepoints(tables.timepoints, treated, pseudonym, as_of, rules)
    events = _events(tables.events, treated, pseudonym, as_of, rules)
    out = AnalysisTables.of(patients, timepoints, events, exclusions=tables.exclusions)
    check_deidentified(out)
    return out


def _dates(col: pd.Series) -> pd.Series:
    """A date column as datetime64 at midnight (times of day are dropped first)."""
    if not pd.api.types.is_datetime64_dtype(col.dtype):  # already datetime64: no re-parse
        col = pd.to_datetime(col)
    return col.dt.normalize()


def _days(when: pd.Series, origin: pd.Series) -> pd.Series:
    """Whole days from ``origin`` to ``when`` (aligned row by row), nullable Int64."""
    delta = _dates(when).to_numpy() - origin.to_numpy()
    return pd.Series(pd.to_timedelta(delta).days, index=when.index).astype("Int64")


def _keep(frame: pd.DataFrame, table: str, rules: RuleSet) -> pd.DataFrame:
    """Only the allow-listed columns of ``table``, in the rule set's order."""
    return frame[[c for c in rules.columns[table] if c in frame.columns]]


def _patients(
    src: pd.DataFrame, treated: pd.Series, pseudonym: pd.Series, as_of: date, rules: RuleSet
) -> pd.DataFrame:
    """Patients: pseudonym, treatment year, days to the cut-off, capped age; sorted."""
    when = treated.reindex(src["patient_id"].to_numpy())
    cutoff = pd.Series(pd.Timestamp(as_of), index=src.index)
    out = src.assign(
        patient_id=src["patient_id"].map(pseudonym).to_numpy(),
        treatment_year=pd.Series(when.dt.year.to_numpy(), index=src.index).astype("Int64"),
        followup_days=_days(cutoff, pd.Series(when.to_numpy(), index=src.index)),
        age=pd.to_numeric(src["age"], errors="coerce").clip(upper=rules.age_cap),
    )
    out = _keep(out, "patients", rules)
    return out.sort_values("patient_id", kind="stable").reset_index(drop=True)


def _timepoints(
    src: pd.DataFrame, treated: pd.Series, pseudonym: pd.Series, as_of: date, rules: RuleSet
) -> pd.DataFrame:
    """Time points: days after treatment instead of dates, and `expected` at the cut-off."""
    src = src[src["patient_id"].isin(pseudonym.index)]
    origin = treated.reindex(src["patient_id"].to_numpy())
    out = src.assign(
        expected=due_by(src, as_of),
        patient_id=src["patient_id"].map(pseudonym).to_numpy(),
    )
    for date_col, day_col in rules.relative_days["timepoints"].items():
        if date_col in src.columns:
            out[day_col] = _days(src[date_col], origin)
    out = _keep(out, "timepoints", rules)
    return out.sort_values(["patient_id", "months"], kind="stable").reset_index(drop=True)


def _events(
    src: pd.DataFrame, treated: pd.Series, pseudonym: pd.Series, as_of: date, rules: RuleSet
) -> pd.DataFrame:
    """Events on or before the cut-off (or undated), dated in days after treatment."""
    when = _dates(src["date"])
    src = src[src["patient_id"].isin(pseudonym.index) & ~(when > pd.Timestamp(as_of))]
    origin = treated.reindex(src["patient_id"].to_numpy())
    out = src.assign(patient_id=src["patient_id"].map(pseudonym).to_numpy())
    for date_col, day_col in rules.relative_days["events"].items():
        out[day_col] = _days(src[date_col], origin)
    out = _keep(out, "events", rules)
    return out.sort_values(["patient_id", "day"], kind="stable").reset_index(drop=True)


def check_deidentified(tables: AnalysisTables) -> None:
    """Raise DeidentificationError unless every table is on the days_from_treatment time base,
    holds only allow-listed columns, no date- or time-typed column, and text cells that are
    codes (``code_pattern``): prose, e-mail addresses, phone numbers, URLs and dates fail."""
    rules = ruleset()
    if tables.time_base != "days_from_treatment":
        raise DeidentificationError("tables on the calendar time base are not de-identified")
    code = re.compile(rules.code_pattern)
    for name in _TABLES:
        frame: pd.DataFrame = getattr(tables, name)
        extra = [c for c in frame.columns if c not in rules.columns[name]]
        if extra:
            raise DeidentificationError(f"{name}: columns not in the allow-list: {extra}")
        for col in frame.columns:
            series = frame[col]
            kind = series.dtype
            if pd.api.types.is_datetime64_any_dtype(kind) or pd.api.types.is_timedelta64_dtype(
                kind
            ):
                raise DeidentificationError(f"{name}.{col}: a date column")
            if pd.api.types.is_numeric_dtype(kind) or pd.api.types.is_bool_dtype(kind):
                continue
            values = pd.unique(series.dropna().astype(object).to_numpy())
            for v in values:
                if isinstance(v, bool | np.bool_):
                    continue
                if not code.fullmatch(str(v)):
                    raise DeidentificationError(
                        f"{name}.{col}: a text value that is not a code (length {len(str(v))})"
                    )


# -------------------------------------------------------------------------------- release


@dataclass(frozen=True)
class Release:
    """De-identified tables ready to leave the server, how many clinics were pooled, and
    what the minimum cell size withheld (``vertebra.core.disclosure``)."""

    tables: AnalysisTables
    pooled_clinics: int
    withheld: Withheld | None = None


def release(tables: AnalysisTables) -> Release:
    """``tables`` (de-identified) as files may carry them: the ``release_drop`` columns
    removed, clinics with fewer than ``min_clinic_patients`` patients pooled, and the patients
    of arms below the minimum cell size withheld (all of them when the cohort is below it:
    ``withheld.cohort``; see :func:`vertebra.core.disclosure.withhold_small_groups`)."""
    check_deidentified(tables)
    rules = ruleset()
    frames = {
        name: getattr(tables, name).drop(
            columns=[c for c in rules.release_drop.get(name, ()) if c in getattr(tables, name)]
        )
        for name in _TABLES
    }
    patients = frames["patients"]
    sizes = patients["clinic_id"].astype(str).value_counts()
    small = sizes[sizes < rules.min_clinic_patients].index
    if len(small):
        clinic = patients["clinic_id"].astype(str)
        patients = patients.assign(
            clinic_id=clinic.where(~clinic.isin(small), rules.pooled_clinic_id)
        )
    out = AnalysisTables.of(patients, frames["timepoints"], frames["events"])
    # Minimum cell size: no arm of fewer than 11 patients leaves the server (and no cohort).
    out, withheld = withhold_small_groups(out)
    if withheld.arms:
        out = _renumber(out)
    # Stored rows left out upstream (implausible dates) are still reported, by count and reason.
    out = replace(out, exclusions=tables.exclusions)
    check_deidentified(out)
    return Release(tables=out, pooled_clinics=len(small), withheld=withheld)


def _renumber(tables: AnalysisTables) -> AnalysisTables:
    """Pseudonyms 1..n again after patients were withheld (order kept: it is random), so the
    gaps do not show which pseudonyms were left out."""
    ids = tables.patients["patient_id"]
    new = pd.Series(np.arange(1, len(ids) + 1), index=ids.to_numpy())
    return AnalysisTables.of(
        *(
            frame.assign(patient_id=frame["patient_id"].map(new).to_numpy())
            for frame in (tables.patients, tables.timepoints, tables.events)
        )
    )


def coarsen_filter(flt: CohortFilter) -> CohortFilter:
    """``flt`` with its treatment-date bounds widened to whole years (1 January of the start
    year, 31 December of the end year): de-identified tables know only the treatment year, and
    a researcher must not learn treatment dates by narrowing a date range."""
    start = date(flt.treated_from.year, 1, 1) if flt.treated_from else None
    end = date(flt.treated_to.year, 12, 31) if flt.treated_to else None
    return replace(flt, treated_from=start, treated_to=end)


def follow_up_completeness(tables: AnalysisTables) -> list[dict[str, Any]]:
    """Per time point (in order of months): n_expected (due by the cut-off or answered),
    n_completed and their ratio (None when nothing was expected); the report's definition."""
    tp = tables.timepoints
    tp = tp[tp["patient_id"].isin(tables.patients["patient_id"])]
    done = tp["completed"].astype("boolean").fillna(False).astype(bool)
    due = tp["expected"].astype("boolean").fillna(False).astype(bool) | done
    grouped = (
        pd.DataFrame({"timepoint": tp["timepoint"].astype(str), "months": tp["months"]})
        .assign(expected=due.to_numpy(), completed=done.to_numpy())
        .groupby(["months", "timepoint"], sort=True)[["expected", "completed"]]
        .sum()
        .reset_index()
    )
    return [
        {
            "timepoint": str(timepoint),
            "months": float(months),
            "n_expected": int(n_expected),
            "n_completed": int(n_completed),
            "completeness": round(int(n_completed) / int(n_expected), 4) if n_expected else None,
        }
        for months, timepoint, n_expected, n_completed in zip(
            grouped["months"],
            grouped["timepoint"],
            grouped["expected"],
            grouped["completed"],
            strict=True,
        )
    ]


def _removed(rules: RuleSet) -> list[dict[str, str]]:
    """What the identified tables had that a release has not, and why (for the manifest)."""
    out = [
        {
            "column": "patients.treatment_date",
            "now": "patients.treatment_year",
            "why": "Safe Harbor (C): only the year of a date may be kept",
        }
    ]
    for table, mapping in rules.relative_days.items():
        for date_col, day_col in mapping.items():
            out.append(
                {
                    "column": f"{table}.{date_col}",
                    "now": f"{table}.{day_col} (days after the patient's treatment)",
                    "why": "Safe Harbor (C): only the year of a date may be kept",
                }
            )
    for table, cols in rules.dropped_dates.items():
        for col in cols:
            out.append(
                {
                    "column": f"{table}.{col}",
                    "now": f"dropped ({table}.months and {table}.expected remain)",
                    "why": "a schedule date; as days after treatment it would reveal the "
                    "treatment month, because calendar months differ in length",
                }
            )
    for table, cols in rules.release_drop.items():
        for col in cols:
            out.append(
                {
                    "column": f"{table}.{col}",
                    "now": "dropped",
                    "why": "with the export date it would give back each treatment date",
                }
            )
    out.append(
        {
            "column": "patients.patient_id",
            "now": "a pseudonym 1..n, random order, mapping not kept",
            "why": "Safe Harbor (R): no registry id or code derived from the person",
        }
    )
    out.append(
        {
            "column": "patients.age",
            "now": f"capped at {rules.age_cap} (read: {rules.age_cap} or older)",
            "why": "Safe Harbor (C): ages over 89 form one category",
        }
    )
    return out


def release_manifest(rel: Release, *, cutoff_year: int, table_format: str) -> dict[str, Any]:
    """The manifest of a release: rule-set version, tables with row counts and columns,
    follow-up completeness, what was removed and why, the Safe Harbor checklist. It holds no
    calendar date (only the year of the data cut-off)."""
    rules = ruleset()
    return {
        "kind": "Vertebra research export: de-identified (HIPAA Safe Harbor, 45 CFR 164.514(b)(2))",
        "ruleset_version": rules.version,
        "data_cutoff_year": cutoff_year,
        "time_base": "days_from_treatment",
        "tables": {
            name: {
                "file": f"{name}.{table_format}",
                "rows": len(getattr(rel.tables, name)),
                "columns": [str(c) for c in getattr(rel.tables, name).columns],
            }
            for name in _TABLES
        },
        "follow_up_completeness": suppress_values(follow_up_completeness(rel.tables)),
        "disclosure": {
            **disclosure_policy().to_dict(),
            "withheld_arms": sorted(rel.withheld.arms) if rel.withheld else [],
        },
        "removed": _removed(rules),
        "pooled_clinics": {
            "count": rel.pooled_clinics,
            "min_clinic_patients": rules.min_clinic_patients,
            "pooled_clinic_id": rules.pooled_clinic_id,
        },
        "survival_censoring": (
            "followup_days is not released, so surgery-free survival from these tables is "
            "censored at the last completed follow-up (last_contact)"
        ),
        "safe_harbor": [item.to_dict() for item in rules.safe_harbor],
        # Stored rows the registry read left out (implausible dates), and why.
        "left_out": [e.to_dict() for e in rel.tables.exclusions],
        "units": {"dose": "million cells (docs/units.md)"},
    }


def release_readme(manifest: Mapping[str, Any]) -> str:
    """The README of a release, in plain words, from its manifest."""
    lines = [
        "# Vertebra research export (de-identified)",
        "",
        f"De-identified under HIPAA Safe Harbor (45 CFR 164.514(b)(2)) by rule set "
        f"{manifest['ruleset_version']}; data cut-off in {manifest['data_cutoff_year']}. "
        "There are no calendar dates: `treatment_year` is the year of treatment, and "
        "`completed_day` and `day` count whole days after the patient's own treatment "
        "(day 0).",
        "`patient_id` is a pseudonym made for this export only; it links the three tables "
        "and nothing else. An `age` of 90 means 90 or older. `expected` says whether a time "
        "point was due by the data cut-off. `dose` is the injected cell dose in million cells.",
        "",
        "## Tables",
        "",
        "| table | file | rows |",
        "|---|---|---|",
    ]
    for name, t in manifest["tables"].items():
        lines.append(f"| {name} | {t['file']} | {t['rows']} |")
    lines += [
        "",
        "## Follow-up completeness (completed of expected)",
        "",
        "| time point | expected | completed | completeness |",
        "|---|---|---|---|",
    ]
    for row in manifest["follow_up_completeness"]:
        pct = "–" if row["completeness"] is None else f"{100 * row['completeness']:.1f} %"
        lines.append(f"| {row['timepoint']} | {row['n_expected']} | {row['n_completed']} | {pct} |")
    pooled = manifest["pooled_clinics"]
    lines += [
        "",
        "## What was removed or changed, and why",
        "",
        *[f"- `{r['column']}` → {r['now']}: {r['why']}." for r in manifest["removed"]],
        f"- Clinics with fewer than {pooled['min_clinic_patients']} patients: `clinic_id` = "
        f"`{pooled['pooled_clinic_id']}` ({pooled['count']} clinic(s) pooled).",
        f"- Minimum cell size {manifest['disclosure']['min_cell']} (policy "
        f"{manifest['disclosure']['version']}): arms with fewer patients are not exported"
        + (
            f" (withheld: {', '.join(manifest['disclosure']['withheld_arms'])})"
            if manifest["disclosure"]["withheld_arms"]
            else " (none withheld)"
        )
        + "; counts of 1-10 above read 'fewer than 11 (suppressed)'.",
        "- Free text (adverse-event descriptions, event details, notes) is never exported.",
        *[f"- {e['note']}" for e in manifest.get("left_out", [])],
        f"- Survival: {manifest['survival_censoring']}.",
        "",
        "## Safe Harbor checklist (45 CFR 164.514(b)(2)(i))",
        "",
        "| | identifier | status | handling |",
        "|---|---|---|---|",
        *[
            f"| {i['id']} | {i['identifier']} | {i['status']} | {i['handling']} |"
            for i in manifest["safe_harbor"]
        ],
        "",
        "Full manifest: `manifest.json`. Rules: docs/algorithms/deidentification.md.",
        "",
    ]
    return "\n".join(lines)
