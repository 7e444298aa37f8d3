"""Researchers' tables, reports and pages from the registry: no identifier and no calendar date
of any patient (HIPAA Safe Harbor, 45 CFR 164.514(b)(2)), and the same results as the
identified tables of the same cohort."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

import pandas as pd
import pytest
from django.test import Client

from tests.core.test_deidentify import assert_reports_equal, comparable
from tests.outcomes.conftest import TODAY
from tests.registry.factories import make_actor, make_episode, make_patient
from vertebra.core.analytics import AnalysisTables, CohortFilter, build_report
from vertebra.core.synth import Cohort
from vertebra.followup.models import FollowUpTimePoint
from vertebra.outcomes.reports import report_for
from vertebra.outcomes.selectors import AUDIT_OBJECT_TYPE, analysis_tables, system_tables
from vertebra.registry.models import (
    AdverseEvent,
    AuditEvent,
    Clinic,
    ClinicalEvent,
    Patient,
    PriorTreatment,
    Role,
    TreatmentEpisode,
)

pytestmark = pytest.mark.django_db

ISO_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")
CANARY = {
    "mrn": "CANARY-MRN-77",
    "given_name": "Zebulon",
    "family_name": "Quartermaine",
    "email": "zebulon.q@example.org",
    "phone": "+1 555 867 5309",
    "date_of_birth": dt.date(1931, 7, 4),  # 93 at treatment: "90 or older"
}


def _canary(clinic: Clinic) -> Patient:
    """A patient with every identifier filled in and free text that repeats them."""
    patient = make_patient(clinic, **CANARY)
    make_episode(patient, start_date=dt.date(2024, 9, 12))
    text = f"{CANARY['given_name']} {CANARY['family_name']} {CANARY['phone']} 2024-09-13"
    AdverseEvent.objects.create(
        patient=patient,
        clinic=clinic,
        description=text,
        category="procedure",
        onset=dt.date(2024, 9, 13),
    )
    ClinicalEvent.objects.create(
        patient=patient, kind="subsequent_surgery", occurred_on=dt.date(2025, 2, 2), details=text
    )
    return patient


def _identifiers() -> set[str]:
    """Every identifier and every calendar date of every patient in the registry, as text."""
    out: set[str] = set()
    for row in Patient.objects.values_list(
        "mrn", "given_name", "family_name", "email", "phone", "date_of_birth"
    ):
        out |= {str(v) for v in row if v not in ("", None)}
    dated: list[tuple[Any, tuple[str, ...]]] = [
        (TreatmentEpisode, ("start_date",)),
        (FollowUpTimePoint, ("target", "opens", "closes")),
        (AdverseEvent, ("onset", "resolved_on")),
        (ClinicalEvent, ("occurred_on",)),
        (PriorTreatment, ("started_on",)),
    ]
    for model, fields in dated:
        for row in model.objects.values_list(*fields):
            out |= {v.isoformat() for v in row if v is not None}
    for done in FollowUpTimePoint.objects.exclude(completed_at=None).values_list(
        "completed_at", flat=True
    ):
        out.add(done.date().isoformat())
    return out


def _text(value: Any) -> str:
    """A cell as text; a date or timestamp as its ISO date."""
    if isinstance(value, pd.Timestamp | dt.date):
        return value.date().isoformat() if isinstance(value, pd.Timestamp) else value.isoformat()
    return str(value)


def _cells(tables: AnalysisTables) -> set[str]:
    """Every cell of the three tables as text."""
    cells: set[str] = set()
    for frame in (tables.patients, tables.timepoints, tables.events):
        cells |= {_text(v) for v in frame.astype(object).to_numpy().ravel()}
    return cells


def test_researcher_tables_hold_no_identifier_or_date_of_any_patient(loaded: Cohort) -> None:
    """HIPAA-164.514(b)(2)(i): names, MRN, e-mail, phone, birth date, every calendar date."""
    _canary(Clinic.objects.order_by("pk").first())  # type: ignore[arg-type]
    tables = analysis_tables(actor=make_actor(Role.RESEARCHER), as_of=TODAY)
    assert len(tables.patients) == 121
    assert tables.time_base == "days_from_treatment"
    for frame in (tables.patients, tables.timepoints, tables.events):
        for col in frame.columns:
            assert not pd.api.types.is_datetime64_any_dtype(frame[col]), col
    cells = _cells(tables)
    forbidden = _identifiers()
    assert {CANARY["mrn"], CANARY["family_name"], "1931-07-04", "2024-09-12"} <= forbidden
    assert not cells & forbidden
    assert not [c for c in cells if ISO_DATE.search(c)]
    assert tables.patients["age"].max() == 90  # the canary is 93
    # the scan does find what it looks for: the clinic's own (identified) tables have dates
    clinic_view = analysis_tables(actor=make_actor(Role.CLINICIAN, *Clinic.objects.all()))
    assert len(_cells(clinic_view) & forbidden) > 100
    assert 2024 in set(tables.patients["treatment_year"])


def test_researcher_results_equal_the_identified_ones(loaded: Cohort) -> None:
    """Completeness, responder rates, KM, AEs, comparisons: the researcher's report of the
    whole registry equals a clinician's (every clinic) report of the same patients."""
    clinician = make_actor(Role.CLINICIAN, *Clinic.objects.all())
    identified = analysis_tables(actor=clinician, as_of=TODAY)
    deidentified = analysis_tables(actor=make_actor(Role.RESEARCHER), as_of=TODAY)
    ours = build_report(deidentified, CohortFilter(), TODAY)
    theirs = build_report(identified, CohortFilter(), TODAY)
    assert ours.survival.censoring == theirs.survival.censoring == "as_of"
    assert ours.n_patients == theirs.n_patients == 120
    assert_reports_equal(comparable(theirs.to_dict()), comparable(ours.to_dict()))
    month_12 = {tp.timepoint: tp for tp in ours.outcomes[ours.arms[0]]}["month_12"]
    assert month_12.n_expected > 0  # the comparison covers real completeness figures


def test_researcher_treatment_date_filter_is_widened_to_years(loaded: Cohort) -> None:
    researcher = make_actor(Role.RESEARCHER)
    flt = CohortFilter(treated_from=dt.date(2025, 6, 30), treated_to=dt.date(2025, 7, 1))
    report, _status = report_for(researcher, flt, TODAY)
    assert report is not None
    treated = pd.to_datetime(loaded.patients["treatment_date"]).dt.year
    # The report itself may withhold small arms (minimum cell size): count the tables.
    tables = analysis_tables(actor=researcher, filter=flt, as_of=TODAY)
    assert len(tables.patients) == int((treated == 2025).sum())
    assert report.to_dict()["filter"]["treated_from"] == "2025-01-01"


def test_researcher_pages_show_no_calendar_date(loaded: Cohort) -> None:
    """Dashboard, JSON and the HTML of the PDF, for a researcher: no YYYY-MM-DD anywhere."""
    from vertebra.outcomes.rendering import report_html

    researcher = make_actor(Role.RESEARCHER)
    client = Client()
    client.force_login(researcher.user)
    page = client.get("/clinic/outcomes/")
    assert page.status_code == 200
    body = page.content.decode()
    shown = re.search(r"<strong>(\d+) patients</strong>", body)
    assert shown is not None and 11 <= int(shown.group(1)) <= 120  # small arms withheld
    assert 'id="disclosure-note"' in body and "fewer than 11" in body
    assert "calendar dates withheld" in body
    assert not ISO_DATE.search(body), ISO_DATE.search(body)
    data = client.get("/clinic/outcomes/report.json")
    assert data.status_code == 200
    report = json.loads(data.content)
    assert report["as_of"] is None and report["time_base"] == "days_from_treatment"
    assert not ISO_DATE.search(data.content.decode())
    rep, _status = report_for(researcher, CohortFilter(), TODAY)
    assert rep is not None
    assert not ISO_DATE.search(report_html(rep))


def test_deidentified_system_read_is_audited(loaded: Cohort) -> None:
    before = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
    tables = system_tables(purpose="export-research", deidentified=True, as_of=TODAY)
    assert tables.time_base == "days_from_treatment"
    row = AuditEvent.objects.get(id__gt=before)
    assert (row.action, row.object_type) == ("read", AUDIT_OBJECT_TYPE)
    assert row.actor_username == "system:export-research"
    assert row.new_values["deidentified"] is True and row.new_values["n_patients"] == 120
    with pytest.raises(ValueError, match="MRN"):
        system_tables(purpose="x", deidentified=True, with_mrn=True)
