"""De-identification (HIPAA Safe Harbor) in the pure core: no identifier or calendar date
survives, the analytics give the same results on the de-identified tables, and a release is
safe to leave the server. The worked example is the one in docs/algorithms/deidentification.md."""

from __future__ import annotations

import math
import re
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vertebra.core.analytics import AnalysisTables, CohortFilter, build_report, read_tables
from vertebra.core.deidentify import (
    DeidentificationError,
    check_deidentified,
    coarsen_filter,
    deidentify,
    follow_up_completeness,
    release,
    release_manifest,
    release_readme,
    ruleset,
)
from vertebra.core.synth import generate_cohort

REPO = Path(__file__).resolve().parents[2]
AS_OF = date(2026, 11, 25)
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
TIMEPOINTS = (("baseline", 0.0, 0), ("month_3", 3.0, 92), ("month_12", 12.0, 365))


# ------------------------------------------------------------------ hand-made identified tables


def _identified(people: list[dict[str, Any]]) -> AnalysisTables:
    """Calendar tables for ``people`` (dicts with identifiers, dates and answers), carrying
    every identifier as an extra column and free text on the events, as a careless selector
    might: de-identification must drop them all."""
    patients = pd.DataFrame(
        {
            "patient_id": [p["registry_id"] for p in people],
            "clinic_id": [str(p["clinic"]) for p in people],
            "arm": [p["arm"] for p in people],
            "condition": "degenerative_disc_disease",
            "treatment_date": pd.to_datetime([p["treated"] for p in people]),
            "age": [float(p["age"]) for p in people],
            "sex": [p["sex"] for p in people],
            "startback_group": "medium",
            "pain_duration_months": 14.0,
            "mrn": [p["mrn"] for p in people],
            "given_name": [p["given"] for p in people],
            "family_name": [p["family"] for p in people],
            "email": [p["email"] for p in people],
            "phone": [p["phone"] for p in people],
            "date_of_birth": pd.to_datetime([p["born"] for p in people]),
        }
    )
    tps, events = [], []
    for p in people:
        for k, (key, months, offset) in enumerate(TIMEPOINTS):
            target = p["treated"] + timedelta(days=offset)
            answered = p["answers"][k]
            tps.append(
                {
                    "patient_id": p["registry_id"],
                    "timepoint": key,
                    "months": months,
                    "target_date": pd.Timestamp(target),
                    "due_date": pd.Timestamp(target - timedelta(days=14)),
                    "window_closes": pd.Timestamp(target + timedelta(days=14)),
                    "status": "completed" if answered is not None else "missed",
                    "completed": answered is not None,
                    "completed_date": (
                        pd.Timestamp(target + timedelta(days=p["late"])) if answered else pd.NaT
                    ),
                    "odi": np.nan if answered is None else answered,
                    "nrs_back": np.nan if answered is None else answered / 10,
                }
            )
        for kind, offset in p["events"]:
            events.append(
                {
                    "patient_id": p["registry_id"],
                    "kind": kind,
                    "date": pd.Timestamp(p["treated"] + timedelta(days=offset)),
                    "ctcae_grade": 1.0 if kind == "adverse_event" else None,
                    "description": f"{p['given']} {p['family']} called from {p['phone']}",
                }
            )
    event_frame = pd.DataFrame(
        events, columns=["patient_id", "kind", "date", "ctcae_grade", "description"]
    )
    return AnalysisTables.of(patients, pd.DataFrame(tps), event_frame)


def _dates_of(p: dict[str, Any], tables: AnalysisTables) -> set[date]:
    """Every calendar date of person ``p`` anywhere in the identified tables."""
    pid = p["registry_id"]
    found: set[date] = {p["born"], p["treated"]}
    for name, cols in (
        ("timepoints", ("target_date", "due_date", "window_closes", "completed_date")),
        ("events", ("date",)),
    ):
        frame = getattr(tables, name)
        rows = frame[frame["patient_id"] == pid]
        for col in cols:
            found |= {ts.date() for ts in pd.to_datetime(rows[col]).dropna()}
    return found


def _date_spellings(day: date) -> set[str]:
    """The ways a date could appear in a cell."""
    return {day.isoformat(), day.strftime("%m/%d/%Y"), day.strftime("%d.%m.%Y"), str(day)}


# Names that are not also Python/pandas spellings of values ("False", "Nan", ...).
_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=3, max_size=10).filter(
    lambda s: s not in {"true", "false", "nan", "none", "nat"}
)


@st.composite
def _person(draw: st.DrawFn, registry_id: int) -> dict[str, Any]:
    """One synthetic person with identifiers, dates, answers and events."""
    treated = draw(st.dates(date(2019, 1, 1), date(2026, 11, 20)))
    age = draw(st.integers(18, 104))
    given = draw(_names).capitalize()
    family = draw(_names).capitalize()
    return {
        "registry_id": registry_id,
        "clinic": draw(st.integers(1, 4)),
        "arm": draw(st.sampled_from(["bmac", "physical_therapy", "steroid_injection"])),
        "treated": treated,
        "born": treated - timedelta(days=int(age * 365.25) + draw(st.integers(1, 300))),
        "age": age,
        "sex": draw(st.sampled_from(["female", "male", "other", "unknown"])),
        "mrn": f"MRN-{draw(st.integers(10_000, 99_999))}",
        "given": given,
        "family": family,
        "email": f"{given.lower()}.{family.lower()}@example.org",
        "phone": f"+1 555 {draw(st.integers(1_000_000, 9_999_999))}",
        "late": draw(st.integers(-10, 10)),
        "answers": [draw(st.one_of(st.none(), st.integers(0, 100).map(float))) for _ in TIMEPOINTS],
        "events": draw(
            st.lists(
                st.tuples(
                    st.sampled_from(["adverse_event", "subsequent_surgery", "repeat_injection"]),
                    st.integers(-30, 900),
                ),
                max_size=3,
            )
        ),
    }


@st.composite
def _people(draw: st.DrawFn) -> list[dict[str, Any]]:
    """1-8 people with distinct registry ids (as a registry would have)."""
    ids = draw(st.lists(st.integers(1, 10_000), min_size=1, max_size=8, unique=True))
    return [draw(_person(i)) for i in ids]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(people=_people(), seed=st.integers(0, 2**32 - 1))
def test_no_identifier_or_calendar_date_survives(people: list[dict[str, Any]], seed: int) -> None:
    """HIPAA-164.514(b)(2): no value equals a name, MRN, e-mail, phone, birth date or any
    calendar date of any patient; no date-typed column; only allow-listed columns; ages <= 90."""
    identified = _identified(people)
    tables = deidentify(identified, as_of=AS_OF, rng=np.random.default_rng(seed))
    forbidden: set[str] = set()
    for p in people:
        forbidden |= {p["mrn"], p["given"], p["family"], p["email"], p["phone"]}
        for day in _dates_of(p, identified):
            forbidden |= _date_spellings(day)
    rules = ruleset()
    for name in ("patients", "timepoints", "events"):
        frame: pd.DataFrame = getattr(tables, name)
        assert set(frame.columns) <= set(rules.columns[name]), name
        for col in frame.columns:
            assert not pd.api.types.is_datetime64_any_dtype(frame[col]), f"{name}.{col}"
            cells = {
                v.date().isoformat() if isinstance(v, pd.Timestamp) else str(v)
                for v in frame[col].astype(object).to_numpy()
            }
            assert not cells & forbidden, f"{name}.{col}"
            assert not any(ISO_DATE.search(c) for c in cells), f"{name}.{col}"
    assert (tables.patients["age"] <= rules.age_cap).all()
    assert sorted(tables.patients["patient_id"]) == list(range(1, len(people) + 1))


# -------------------------------------------------------------------------- the worked example

DANA: dict[str, Any] = {
    "registry_id": 4711,
    "clinic": 2,
    "arm": "bmac",
    "treated": date(2025, 3, 14),
    "born": date(1934, 2, 11),
    "age": 91,
    "sex": "female",
    "mrn": "MRN-0042",
    "given": "Dana",
    "family": "Example",
    "email": "dana@example.org",
    "phone": "+1 555 0100",
    "late": 6,
    "answers": [52.0, 30.0, None],
    "events": [("adverse_event", 2), ("subsequent_surgery", 301), ("repeat_injection", 700)],
}


def test_worked_example_of_the_documentation() -> None:
    """docs/algorithms/deidentification.md: Dana, 91, treated 14 March 2025, cut-off
    25 November 2026. Day counts are from her own treatment date."""
    out = deidentify(_identified([DANA]), as_of=AS_OF, rng=np.random.default_rng(0))
    patient = out.patients.iloc[0].to_dict()
    assert patient == {
        "patient_id": 1,
        "clinic_id": "2",
        "arm": "bmac",
        "condition": "degenerative_disc_disease",
        "treatment_year": 2025,
        "followup_days": 621,  # 14 March 2025 -> 25 November 2026
        "age": 90.0,  # 91 -> "90 or older"
        "sex": "female",
        "startback_group": "medium",
        "pain_duration_months": 14.0,
    }
    tps = out.timepoints.set_index("timepoint")
    assert list(tps.columns) == ["patient_id", "months", "expected", "status", "completed",
                                 "completed_day", "odi", "nrs_back"]  # fmt: skip
    assert tps["completed_day"].tolist()[:2] == [6, 98]  # answered 6 days after each target
    assert pd.isna(tps.loc["month_12", "completed_day"])
    assert tps["expected"].tolist() == [True, True, True]  # every window closed by the cut-off
    # the repeat injection on day 700 is after the cut-off (day 621): dropped
    assert out.events[["kind", "day"]].values.tolist() == [
        ["adverse_event", 2], ["subsequent_surgery", 301],
    ]  # fmt: skip
    assert "description" not in out.events.columns  # free text never survives


# ------------------------------------------------------------------ same results, same cohort


def assert_reports_equal(a: Any, b: Any, path: str = "") -> None:
    """Deep equality of two report dicts; floats to 1e-9 relative or 1e-6 absolute, because
    rows come in another order and sums (a variance of equal values, 0 or 2e-7) change with
    the order."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            assert_reports_equal(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_reports_equal(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6) or (
            math.isnan(a) and math.isnan(b)
        ), path
    else:
        assert a == b, path


def comparable(report: dict[str, Any]) -> dict[str, Any]:
    """A report dict without the fields that differ by design (the as-of date and time base)."""
    return {k: v for k, v in report.items() if k not in ("as_of", "time_base")}


@pytest.fixture(scope="module")
def synth_tables() -> AnalysisTables:
    """300 synthetic patients (3 clinics) as calendar tables."""
    cohort = generate_cohort(300, 11, today=AS_OF)
    return AnalysisTables.of(cohort.patients, cohort.timepoints, cohort.events)


@pytest.mark.parametrize("censoring", ["as_of", "last_contact"])
def test_report_on_deidentified_tables_equals_the_identified_one(
    synth_tables: AnalysisTables, censoring: Any
) -> None:
    """Completeness, responders, KM (both censorings), AEs, comparisons: all unchanged."""
    deid = deidentify(synth_tables, as_of=AS_OF)
    theirs = build_report(synth_tables, CohortFilter(), AS_OF, censoring=censoring).to_dict()
    ours = build_report(deid, CohortFilter(), AS_OF, censoring=censoring).to_dict()
    assert_reports_equal(comparable(theirs), comparable(ours))
    assert ours["as_of"] is None and ours["time_base"] == "days_from_treatment"
    assert theirs["as_of"] == AS_OF.isoformat() and theirs["time_base"] == "calendar"


def test_year_filter_selects_the_same_patients(synth_tables: AnalysisTables) -> None:
    """A treatment-date filter widened to whole years selects the same patients either way."""
    flt = coarsen_filter(CohortFilter(treated_from=date(2024, 5, 17), treated_to=date(2025, 2, 3)))
    assert (flt.treated_from, flt.treated_to) == (date(2024, 1, 1), date(2025, 12, 31))
    deid = deidentify(synth_tables, as_of=AS_OF)
    a = build_report(synth_tables, flt, AS_OF)
    b = build_report(deid, flt, AS_OF)
    assert a.n_patients == b.n_patients > 0
    assert_reports_equal(comparable(a.to_dict()), comparable(b.to_dict()))


def test_pseudonyms_are_a_fresh_random_permutation(synth_tables: AnalysisTables) -> None:
    """Safe Harbor (R): 1..n, unrelated to the registry ids, different on every read, rows in
    pseudonym order in every table (row order must not reveal the registry order either)."""
    key = ["age", "arm", "clinic_id", "treatment_year", "pain_duration_months", "dose"]
    registry = synth_tables.patients.assign(
        treatment_year=pd.to_datetime(synth_tables.patients["treatment_date"]).dt.year,
        clinic_id=synth_tables.patients["clinic_id"].astype(str),
        dose=synth_tables.patients["dose"].astype(float).fillna(-1),
    )[["patient_id", *key]]
    reads = []
    for _ in range(2):
        deid = deidentify(synth_tables, as_of=AS_OF)
        assert deid.patients["patient_id"].tolist() == list(range(1, len(registry) + 1))
        for frame in (deid.timepoints, deid.events):
            assert frame["patient_id"].is_monotonic_increasing
        reads.append(
            deid.patients.assign(
                clinic_id=deid.patients["clinic_id"].astype(str),
                treatment_year=deid.patients["treatment_year"].astype(int),
                dose=deid.patients["dose"].astype(float).fillna(-1),
            )[["patient_id", *key]]
        )
    # follow people who are unique on the key from the registry into both reads
    both = registry.merge(reads[0], on=key, suffixes=("", "_1")).merge(
        reads[1], on=key, suffixes=("", "_2")
    )
    unique = both[~both.duplicated(key, keep=False)]
    assert len(unique) > len(registry) / 2
    assert (unique["patient_id"] == unique["patient_id_1"]).mean() < 0.1
    assert (unique["patient_id_1"] == unique["patient_id_2"]).mean() < 0.1


# ------------------------------------------------------------------------------- release


def test_release_drops_followup_days_and_pools_small_clinics(
    synth_tables: AnalysisTables,
) -> None:
    deid = deidentify(synth_tables, as_of=AS_OF)
    # make clinic "3" small: keep only 4 of its patients
    pts = deid.patients
    small = pts[pts["clinic_id"].astype(str) == "3"]["patient_id"].iloc[4:]
    keep = ~pts["patient_id"].isin(small)
    shrunk = AnalysisTables.of(
        pts[keep].assign(clinic_id=pts["clinic_id"].astype(str)),
        deid.timepoints,
        deid.events,
    )
    rel = release(shrunk)
    assert "followup_days" not in rel.tables.patients.columns
    assert rel.pooled_clinics == 1
    assert set(rel.tables.patients["clinic_id"]) == {"1", "2", ruleset().pooled_clinic_id}
    # the released tables still give a report: survival censored at the last contact
    report = build_report(rel.tables, CohortFilter(), AS_OF)
    assert report.survival.censoring == "last_contact" and report.to_dict()["as_of"] is None


def test_release_round_trips_through_csv_and_parquet(
    synth_tables: AnalysisTables, tmp_path: Path
) -> None:
    """The files of a release read back (read_tables) with the same completeness."""
    rel = release(deidentify(synth_tables, as_of=AS_OF))
    want = follow_up_completeness(rel.tables)
    for fmt in ("csv", "parquet"):
        folder = tmp_path / fmt
        folder.mkdir()
        for name in ("patients", "timepoints", "events"):
            frame = getattr(rel.tables, name)
            if fmt == "csv":
                frame.to_csv(folder / f"{name}.csv", index=False)
            else:
                frame.to_parquet(folder / f"{name}.parquet", index=False)
        back = read_tables(folder)
        assert back.time_base == "days_from_treatment"
        assert follow_up_completeness(back) == want
        assert build_report(back, CohortFilter(), AS_OF).n_patients == len(rel.tables.patients)


def test_manifest_and_readme_say_what_and_why_without_dates(
    synth_tables: AnalysisTables,
) -> None:
    rel = release(deidentify(synth_tables, as_of=AS_OF))
    manifest = release_manifest(rel, cutoff_year=AS_OF.year, table_format="csv")
    assert manifest["ruleset_version"] == ruleset().version
    assert manifest["tables"]["patients"]["rows"] == len(rel.tables.patients)
    assert [i["id"] for i in manifest["safe_harbor"]] == list("ABCDEFGHIJKLMNOPQR")
    removed = {r["column"] for r in manifest["removed"]}
    assert {"patients.treatment_date", "timepoints.target_date", "events.date",
            "patients.followup_days"} <= removed  # fmt: skip
    month_12 = next(r for r in manifest["follow_up_completeness"] if r["timepoint"] == "month_12")
    released_arms = sorted(set(rel.tables.patients["arm"].astype(str)))  # minimum cell size
    report = build_report(synth_tables, CohortFilter.build(arms=released_arms), AS_OF)
    n_expected = sum(
        tp.n_expected for arm in report.arms for tp in report.outcomes[arm]
        if tp.timepoint == "month_12"
    )  # fmt: skip
    assert month_12["n_expected"] == n_expected
    readme = release_readme(manifest)
    assert not ISO_DATE.search(readme) and "90 or older" in readme
    assert not ISO_DATE.search(str(manifest))


# --------------------------------------------------------------------------------- the guards


def test_check_refuses_free_text_dates_and_unknown_columns(
    synth_tables: AnalysisTables,
) -> None:
    deid = deidentify(synth_tables, as_of=AS_OF)
    prose = deid.events.assign(relatedness="called the clinic on Monday")
    with pytest.raises(DeidentificationError, match="not a code"):
        check_deidentified(AnalysisTables.of(deid.patients, deid.timepoints, prose))
    email = deid.patients.assign(sex="jane@example.org")
    with pytest.raises(DeidentificationError, match="not a code"):
        check_deidentified(AnalysisTables.of(email, deid.timepoints, deid.events))
    extra = deid.patients.assign(date_of_birth=pd.Timestamp("1950-01-01"))
    with pytest.raises(DeidentificationError, match="allow-list"):
        check_deidentified(AnalysisTables.of(extra, deid.timepoints, deid.events))
    with pytest.raises(DeidentificationError, match="already"):
        deidentify(deid, as_of=AS_OF)
    with pytest.raises(DeidentificationError, match="calendar"):
        check_deidentified(synth_tables)


def test_the_documentation_lists_the_checklist_of_the_rule_set() -> None:
    """docs/algorithms/deidentification.md shows every Safe Harbor item with its status."""
    doc = (REPO / "docs" / "algorithms" / "deidentification.md").read_text(encoding="utf-8")
    rules = ruleset()
    assert f"version {rules.version}" in doc
    for item in rules.safe_harbor:
        assert f"| {item.id} | {item.identifier} | {item.status} |" in doc, item.id
