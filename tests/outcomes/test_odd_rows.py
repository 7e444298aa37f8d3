"""One odd stored row never breaks a shared page (issue 12, issue 14): rows dated outside the
plausible range (a year-0025 typo stored before plausibility existed, or written by SQL) are
left out of every analysis, and every page and report says how many and why.

The rows are written straight through the ORM (``update``/``create``), bypassing the services
and their plausibility gate, exactly as a legacy row or an SQL edit would be. Both databases.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator

import pytest
from django.core.cache import cache
from django.db import transaction
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.registry.factories import make_actor
from vertebra.core.analytics import CohortFilter, build_report
from vertebra.core.decision import build_cell_table, decision_rules
from vertebra.core.synth import Cohort
from vertebra.outcomes.selectors import Scope, read_tables
from vertebra.registry.models import (
    AdverseEvent,
    AdverseEventCategory,
    Clinic,
    ClinicalEvent,
    ClinicalEventKind,
    Patient,
    PriorTreatment,
    PriorTreatmentKind,
    Role,
    TreatmentEpisode,
)

pytestmark = pytest.mark.django_db

YEAR_25 = dt.date(25, 3, 1)
DDD = "degenerative_disc_disease"


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    """The decision aid's figures live in the analysis snapshot (a folder per test, see
    tests/conftest.py); the default cache is cleared so nothing is carried over."""
    cache.clear()
    yield
    cache.clear()


def _client(role: str, *clinics: Clinic) -> Client:
    client = Client()
    client.force_login(make_actor(role, *clinics).user)
    return client


def _treated_patients(n: int) -> list[int]:
    """``n`` distinct treated patients, lowest ids first."""
    ids = TreatmentEpisode.objects.order_by("patient_id").values_list("patient_id", flat=True)
    return list(dict.fromkeys(ids))[:n]


def _clinic_of(patient_id: int) -> int:
    """The patient's clinic (rows written here bypass the services, which would set it)."""
    return int(Patient.objects.values_list("clinic_id", flat=True).get(pk=patient_id))


def _corrupt() -> dict[str, int]:
    """Write one odd row of each kind, bypassing the services; return what was written."""
    first, second, third, fourth = _treated_patients(4)
    TreatmentEpisode.objects.filter(patient_id=first).update(start_date=YEAR_25)
    Patient.objects.filter(pk=second).update(date_of_birth=dt.date(1850, 1, 1))
    AdverseEvent.objects.create(
        patient_id=third, clinic_id=_clinic_of(third), description="typo",
        category=AdverseEventCategory.OTHER, onset=dt.date(25, 1, 1),
    )  # fmt: skip
    ClinicalEvent.objects.create(
        patient_id=third, kind=ClinicalEventKind.SUBSEQUENT_SURGERY, occurred_on=dt.date(9999, 1, 1)
    )
    PriorTreatment.objects.create(
        patient_id=fourth, kind=PriorTreatmentKind.PHYSICAL_THERAPY, started_on=dt.date(1, 1, 1)
    )
    return {"patients": 2, "events": 2, "prior": 1}


def test_every_shared_page_answers_200_and_says_what_was_left_out(loaded: Cohort) -> None:
    _corrupt()
    clinics = list(Clinic.objects.all())
    lead = _client(Role.CLINICIAN, *clinics)

    board = lead.get("/clinic/outcomes/")
    assert board.status_code == 200
    html = board.content.decode()
    assert "118 patients" in html  # 120 loaded, 2 left out whole
    assert 'id="data-notes"' in html
    assert "2 patients left out: a stored treatment date or birth date lies outside" in html
    assert "2 adverse or clinical events left out" in html
    assert "1 prior-treatment start date left out" in html

    report = lead.get("/clinic/outcomes/report.json")
    assert report.status_code == 200
    data = json.loads(report.content)
    assert data["n_patients"] == 118
    left_out = {e["what"]: e["count"] for e in data["exclusions"]}
    assert left_out == {
        "patients": 2,
        "adverse or clinical events": 2,
        "prior-treatment start dates": 1,
    }
    assert all("plausible range" in e["note"] for e in data["exclusions"])

    researcher = _client(Role.RESEARCHER)
    page = researcher.get("/clinic/outcomes/")
    assert page.status_code == 200
    assert "2 patients left out" in page.content.decode()
    assert "0025" not in page.content.decode()  # no calendar date leaks to researchers

    decide = Client().get(f"/decide/?condition={DDD}&age=45")
    assert decide.status_code == 200
    assert "2 patients left out" in decide.content.decode()

    api = Client().get(f"/api/v1/decision-aid?condition={DDD}&age=45")
    assert api.status_code == 200
    notes = api.json()["registry"]["left_out"]
    assert any(note.startswith("2 patients left out") for note in notes)


def test_the_pdf_report_answers_200_with_odd_rows(loaded: Cohort) -> None:
    pytest.importorskip("weasyprint")
    _corrupt()
    lead = _client(Role.CLINICIAN, *Clinic.objects.all())
    response = lead.get("/clinic/outcomes/report.pdf")
    assert response.status_code == 200
    assert response.content.startswith(b"%PDF")


def test_without_odd_rows_nothing_is_said(loaded: Cohort) -> None:
    lead = _client(Role.CLINICIAN, *Clinic.objects.all())
    data = json.loads(lead.get("/clinic/outcomes/report.json").content)
    assert data["exclusions"] == [] and data["n_patients"] == 120
    assert 'id="data-notes"' not in lead.get("/clinic/outcomes/").content.decode()


class _Rollback(Exception):
    """Undo one example's odd row."""


#: Dates no analysis may hold: before 1900 (down to year 1) or far in the future.
ODD_DATES = st.one_of(
    st.dates(min_value=dt.date(1, 1, 1), max_value=dt.date(1899, 12, 31)),
    st.dates(min_value=dt.date(2300, 1, 1), max_value=dt.date(9999, 12, 31)),
)
TARGETS = st.sampled_from(("episode", "birth", "adverse_event", "clinical_event", "prior"))


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(target=TARGETS, day=ODD_DATES, nth=st.integers(min_value=0, max_value=30))
def test_one_odd_row_anywhere_never_breaks_analytics(
    loaded: Cohort, target: str, day: dt.date, nth: int
) -> None:
    """Property: whatever table and whatever odd date, the tables, the report and the decision
    aid's cell table build, and the count of rows left out is exactly one."""
    patient = _treated_patients(nth + 1)[-1]
    try:
        with transaction.atomic():
            if target == "episode":
                TreatmentEpisode.objects.filter(patient_id=patient).update(start_date=day)
            elif target == "birth":
                Patient.objects.filter(pk=patient).update(date_of_birth=day)
            elif target == "adverse_event":
                AdverseEvent.objects.create(
                    patient_id=patient, clinic_id=_clinic_of(patient), description="odd",
                    category="other", onset=day,
                )  # fmt: skip
            elif target == "clinical_event":
                ClinicalEvent.objects.create(
                    patient_id=patient, kind=ClinicalEventKind.SUBSEQUENT_SURGERY, occurred_on=day
                )
            else:
                PriorTreatment.objects.create(
                    patient_id=patient, kind=PriorTreatmentKind.OTHER, started_on=day
                )
            _check_one_left_out(target)
            raise _Rollback
    except _Rollback:
        pass


def _check_one_left_out(target: str) -> None:
    today = dt.date.today()
    identified = read_tables(Scope(clinic_ids=None, deidentified=False))
    assert sum(e.count for e in identified.exclusions) == 1
    whole_patient = target in ("episode", "birth")
    assert len(identified.patients) == (119 if whole_patient else 120)
    report = build_report(identified, CohortFilter(), today)
    assert report.to_dict()["exclusions"][0]["count"] == 1
    deidentified = read_tables(Scope(clinic_ids=None, deidentified=True), as_of=today)
    cells = build_cell_table(deidentified, today, decision_rules())
    assert len(cells.data_notes) == 1


def test_note_wording_is_singular_for_one(loaded: Cohort) -> None:
    patient = _treated_patients(1)[0]
    TreatmentEpisode.objects.filter(patient_id=patient).update(start_date=YEAR_25)
    tables = read_tables(Scope(clinic_ids=None, deidentified=False))
    (exclusion,) = tables.exclusions
    assert exclusion.note.startswith("1 patient left out: a stored treatment date")


def test_the_trajectory_of_a_left_out_patient_says_why(loaded: Cohort) -> None:
    patient = _treated_patients(1)[0]
    TreatmentEpisode.objects.filter(patient_id=patient).update(start_date=YEAR_25)
    clinic = Patient.objects.get(pk=patient).clinic
    response = _client(Role.CLINICIAN, clinic).get(f"/clinic/outcomes/patient/{patient}/")
    assert response.status_code == 200
    body = response.content.decode()
    assert 'id="no-trajectory"' in body
    assert "1 patient left out: a stored treatment date or birth date" in body


def test_the_research_release_says_what_was_left_out(loaded: Cohort) -> None:
    from vertebra.core.deidentify import release, release_manifest, release_readme

    _corrupt()
    tables = read_tables(Scope(clinic_ids=None, deidentified=True), as_of=dt.date.today())
    manifest = release_manifest(release(tables), cutoff_year=2026, table_format="csv")
    assert {e["what"]: e["count"] for e in manifest["left_out"]}["patients"] == 2
    readme = release_readme(manifest)
    assert "- 2 patients left out: a stored treatment date or birth date" in readme
    assert "`dose` is the injected cell dose in million cells" in readme
