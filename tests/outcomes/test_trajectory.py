"""The patient trajectory page at any registry size (issue 17, "no page waits for a full
read"): the patient's own rows are read now, for this patient alone; the median path of the
patient's arm comes from the analysis snapshot, as of its time, built by the worker for a wide
scope. The two together give the page a read of the whole scope gave."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from django.utils import timezone

from tests.followup.helpers import PSFS_NAMES, answers_for
from tests.registry.factories import make_actor
from tests.registry.web import signed_in
from vertebra.core.analytics import CohortFilter
from vertebra.core.instruments import score
from vertebra.core.labels import label
from vertebra.core.synth import Cohort
from vertebra.followup.models import FollowUpTimePoint
from vertebra.followup.services import submit_responses
from vertebra.outcomes import columnar, median_paths, snapshot
from vertebra.outcomes.selectors import AUDIT_OBJECT_TYPE, Scope, patient_tables, read_tables
from vertebra.outcomes.trajectory import PatientTrajectory, patient_trajectory
from vertebra.outcomes.trajectory import median_paths as paths_of
from vertebra.registry.errors import PermissionDeniedError
from vertebra.registry.models import AuditEvent, Clinic, Patient, Role

pytestmark = pytest.mark.django_db

URL = "/clinic/outcomes/patient/"


@pytest.fixture
def production(loaded: Cohort, settings: Any) -> Iterator[None]:
    """A web process as in production: the worker refreshed the snapshot (and prepared the
    default results); no build in a request, every scope "wide"."""
    settings.SNAPSHOT_PREPARE_REPORTS = True
    assert snapshot.refresh(force=True).outcome == "built"
    settings.SNAPSHOT_BUILD_INLINE = False
    settings.SNAPSHOT_INLINE_MAX_PATIENTS = 0
    snapshot.results.clear()
    yield
    snapshot.results.clear()


@pytest.fixture
def whole_reads(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The ``patient_ids`` of every registry read from now on (None: a read of a whole
    scope)."""
    seen: list[Any] = []
    real = columnar.read_frames

    def spy(clinic_ids: Any, **kwargs: Any) -> Any:
        seen.append(kwargs.get("patient_ids"))
        return real(clinic_ids, **kwargs)

    monkeypatch.setattr(columnar, "read_frames", spy)
    return seen


def _drawn(view: PatientTrajectory | None) -> Any:
    """``view`` with each chart's per-drawing element ids (a counter) taken out."""
    if view is None:
        return None
    measures = [
        dataclasses.replace(m, svg=re.sub(r"vc\d+-", "vc-", m.svg.html())) for m in view.measures
    ]
    return dataclasses.replace(view, measures=measures)


def _rows_of(frame: pd.DataFrame, patient_id: int) -> pd.DataFrame:
    mine = frame[frame["patient_id"] == patient_id].reset_index(drop=True)
    return mine.astype({c: object for c in mine.columns if mine[c].dtype == "category"})


def test_a_patients_own_read_gives_the_rows_and_page_of_the_scopes_read(loaded: Cohort) -> None:
    """For every patient of every clinic: the one-patient read holds exactly the patient's
    rows of the clinic's whole read, and the trajectory drawn from it beside the clinic's
    median paths is the one drawn from the whole read."""
    for clinic in Clinic.objects.order_by("pk"):
        actor = make_actor(Role.CLINICIAN, clinic)
        whole = read_tables(Scope(frozenset({clinic.pk}), False))
        paths = paths_of(whole)
        assert len(whole.patients) > 0
        for pid in whole.patients["patient_id"].astype(int):
            own = patient_tables(actor=actor, patient_id=pid)
            for name in ("patients", "timepoints"):
                pd.testing.assert_frame_equal(
                    _rows_of(getattr(own, name), pid), _rows_of(getattr(whole, name), pid)
                )
            assert _drawn(patient_trajectory(own, pid, paths)) == _drawn(
                patient_trajectory(whole, pid, paths)
            )


def test_a_median_path_is_the_median_of_the_arms_answers(loaded: Cohort) -> None:
    """Checked against numpy's median of the completed answers, arm by arm."""
    whole = read_tables(Scope(None, False))
    paths = paths_of(whole)
    arms = whole.patients.set_index("patient_id")["arm"].astype(str)
    tp = whole.timepoints.assign(arm=arms.reindex(whole.timepoints["patient_id"]).to_numpy())
    assert set(paths) == set(arms)
    for arm, path in paths.items():
        assert path.cohort_n == int((arms == arm).sum())
        months = [m for _key, m in path.timepoints]
        assert months == sorted(months) and months[0] == 0.0
        for key, _months in path.timepoints:
            rows = tp[(tp["arm"] == arm) & (tp["timepoint"].astype(str) == key)]
            rows = rows[rows["completed"].astype(bool)]
            for measure in ("odi", "nrs_back"):
                values = rows[measure].dropna().to_numpy(dtype=float)
                median, n = path.medians[measure][key]
                assert n == len(values)
                assert median == (float(np.median(values)) if len(values) else None)


def test_the_page_reads_one_patient_and_takes_the_median_from_the_snapshot(
    production: None, whole_reads: list[Any]
) -> None:
    anna = Patient.objects.get(given_name="Anna", family_name="Whitfield")
    last = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first()
    response = signed_in(make_actor(Role.CLINICIAN, anna.clinic)).get(f"{URL}{anna.pk}/")
    assert response.status_code == 200
    html = response.content.decode()
    assert whole_reads == [{anna.pk}]  # the patient's rows only; never the clinic's
    assert "Median of" in html and 'id="snapshot-status"' in html and "Figures as of" in html
    assert 'id="median-preparing"' not in html
    clinic_tables = read_tables(Scope(frozenset({anna.clinic_id}), False))
    expected = patient_trajectory(clinic_tables, anna.pk, paths_of(clinic_tables))
    assert _drawn(response.context["view"]) == _drawn(expected)
    reads = AuditEvent.objects.filter(id__gt=last, action="read", object_type=AUDIT_OBJECT_TYPE)
    own = reads.get(patient_id=anna.pk)
    assert own.clinic_id == anna.clinic_id and own.new_values["n_patients"] == 1
    (median,) = reads.exclude(patient_id=anna.pk)
    assert median.new_values["source"] == "stored" and "snapshot" in median.new_values


def test_a_new_answer_shows_at_once_the_median_as_of_the_snapshot(production: None) -> None:
    """The worker has not refreshed since the answer: the patient's line and row have it, the
    median column keeps the snapshot's count."""
    episodes = read_tables(Scope(None, False)).patients["patient_id"].astype(int)
    point = next(
        p
        for p in FollowUpTimePoint.objects.exclude(status="completed").order_by("pk")
        if p.patient_id in set(episodes) and "odi" in p.instruments
    )
    patient = Patient.objects.get(pk=point.patient_id)
    client = signed_in(make_actor(Role.CLINICIAN, patient.clinic))
    before = client.get(f"{URL}{patient.pk}/").context["view"]
    FollowUpTimePoint.objects.filter(pk=point.pk).update(status="open")
    now = timezone.make_aware(dt.datetime.combine(point.opens, dt.time(9)))
    answers = answers_for(point)
    submit_responses(point, answers, "t" * 20, now, psfs_names=PSFS_NAMES)
    after = client.get(f"{URL}{patient.pk}/").context["view"]
    odi = score("odi", answers["odi"]).score
    row = next(r for r in after.measures[0].rows if r[0] == label("timepoint", point.key))
    assert row[2] == "Answered" and row[3] == f"{odi:.1f}"
    old = {r[0]: r[5] for r in before.measures[0].rows}
    assert row[5] == old.get(row[0], "0")  # the median's count: as of the snapshot
    assert after.cohort_n == before.cohort_n


def test_while_the_median_is_prepared_the_page_shows_the_patients_own_line(
    loaded: Cohort, settings: Any
) -> None:
    """No snapshot yet, then a wide scope's paths not stored: the patient's own line, a
    notice, no median; once the worker served the request, the median."""
    settings.SNAPSHOT_BUILD_INLINE = False
    settings.SNAPSHOT_PREPARE_REPORTS = False
    settings.SNAPSHOT_INLINE_MAX_PATIENTS = 0
    anna = Patient.objects.get(given_name="Anna", family_name="Whitfield")
    client = signed_in(make_actor(Role.CLINICIAN, anna.clinic))
    pages = []
    for step in ("no snapshot", "not prepared", "served"):
        if step == "not prepared":
            assert snapshot.refresh(force=True).outcome == "built"
        if step == "served":
            assert snapshot.serve_requests(snapshot._root()) >= 1
        snapshot.results.clear()
        response = client.get(f"{URL}{anna.pk}/")
        assert response.status_code == 200
        pages.append(response.content.decode())
    schedule = FollowUpTimePoint.objects.filter(patient=anna).count()
    for html in pages[:2]:
        assert 'id="median-preparing"' in html and "is being prepared" in html
        section = html[html.index('class="patient-trajectory"') : html.index('id="patient-psfs"')]
        assert section.count('<th scope="row">') == 2 * schedule  # all its time points, twice
        assert "This patient" in html and "Median of" not in html  # no median column either
        assert 'class="vchart"' in html  # the patient's own line is drawn
    assert "Median of" in pages[2] and 'id="median-preparing"' not in pages[2]


def test_only_clinic_staff_read_a_patients_rows(loaded: Cohort) -> None:
    anna = Patient.objects.get(given_name="Anna", family_name="Whitfield")
    other = Clinic.objects.exclude(pk=anna.clinic_id).first()
    assert other is not None
    elsewhere = patient_tables(actor=make_actor(Role.CLINICIAN, other), patient_id=anna.pk)
    assert len(elsewhere.patients) == 0 and len(elsewhere.timepoints) == 0
    with pytest.raises(PermissionDeniedError):
        patient_tables(actor=make_actor(Role.RESEARCHER), patient_id=anna.pk)
    assert AuditEvent.objects.filter(action="denied", role=Role.RESEARCHER).exists()


def test_a_researchers_scope_stores_no_median_paths(loaded: Cohort) -> None:
    deidentified = read_tables(Scope(None, True))
    build = median_paths.paths_builder(median_paths.WHAT, CohortFilter(), dt.date.today())
    assert build(deidentified) is None
