"""The incremental snapshot refresh (ADR 0022 §9): after audited changes the worker re-reads
only the patients they name, and the snapshot's tables are a whole read's, value for value,
for every scope; a new day, a forced refresh or too many changes read everything. Both
databases.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd
import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.outcomes.conftest import NOW, TODAY
from tests.outcomes.test_columnar_reads import assert_same, fixed_pseudonyms
from tests.outcomes.test_snapshot import _from_snapshot
from tests.registry.factories import make_actor
from vertebra.cohort.loader import load_cohort
from vertebra.core.decision import build_cell_table, decision_rules
from vertebra.core.synth import Cohort, generate_cohort
from vertebra.followup.worker import open_windows
from vertebra.outcomes import snapshot
from vertebra.outcomes.selectors import Scope, read_tables
from vertebra.registry import corrections
from vertebra.registry.audit import record_audit
from vertebra.registry.models import (
    AdverseEvent,
    AuditEvent,
    Clinic,
    Condition,
    Diagnosis,
    Patient,
    Role,
    TreatmentEpisode,
)

pytestmark = pytest.mark.django_db
__all__ = ["fixed_pseudonyms"]  # the fixture, used by name

#: The changes a property example may make, each through the services a clinic uses.
CHANGES = (
    "sex", "birth", "price", "condition", "void_adverse_event", "new_patients", "open_windows",
)  # fmt: skip


@pytest.fixture(autouse=True)
def _no_prepared_reports(settings: Any) -> None:
    """The stored reports are not what these tests compare (and cost most of a refresh)."""
    settings.SNAPSHOT_PREPARE_REPORTS = False


def _snapshot_tables(scope: Scope) -> Any:
    return _from_snapshot(scope, as_of=TODAY)


def _assert_snapshot_is_a_whole_read() -> None:
    """Registry-wide identified and de-identified, and each clinic: snapshot == direct read;
    the decision aid's cell table == one built from a direct read."""
    scopes = [Scope(None, False), Scope(None, True)]
    scopes += [Scope(frozenset({pk}), False) for pk in Clinic.objects.values_list("pk", flat=True)]
    for scope in scopes:
        assert_same(_snapshot_tables(scope), read_tables(scope, as_of=TODAY))
    assert_cells_are_a_whole_reads()


def assert_cells_are_a_whole_reads() -> None:
    """The snapshot's cell table (after an incremental refresh: the previous one with the
    changed clinics' sums replaced) equals one built from a direct de-identified read: counts
    exactly, sums of changes to rounding (they are added in another order)."""
    today = snapshot._window_today()
    stored, _ = snapshot.decision_cells()
    assert stored is not None
    want = build_cell_table(read_tables(Scope(None, True), as_of=today), today, decision_rules())
    assert stored.to_dict() == want.to_dict()
    got, expected = stored.leaves, want.leaves
    assert list(got.columns) == list(expected.columns)
    exact = [c for c in got.columns if c not in ("sum_change", "sumsq_change")]
    pd.testing.assert_frame_equal(got[exact], expected[exact])
    for column in ("sum_change", "sumsq_change"):
        np.testing.assert_allclose(got[column], expected[column], rtol=1e-12, atol=1e-9)


def _correct(record_type: str, record: Any, patient: Patient, **changes: Any) -> None:
    actor = make_actor(Role.CLINICIAN, patient.clinic)
    corrections.correct_record(
        actor=actor,
        record_type=record_type,
        object_id=record.pk,
        expected_version=record.version,
        changes=changes,
        reason="re-checked against the chart",
    )


def _reprice(episode: TreatmentEpisode) -> None:
    """Correct the episode's price to 25,000 USD (100 paid by the patient)."""
    _correct(
        "episodes",
        episode,
        episode.patient,
        price="25000.00",
        patient_paid="100.00",
        currency="USD",
    )


def _reprice_first() -> TreatmentEpisode:
    """Reprice the first live episode (:func:`_reprice`); that episode."""
    episode = TreatmentEpisode.objects.filter(voided_at=None).order_by("pk").first()
    assert episode is not None
    _reprice(episode)
    return episode


def _change(kind: str, pick: int) -> set[int]:
    """Make one change of ``kind`` to the ``pick``-th eligible record; the patients changed."""
    if kind == "open_windows":  # the worker's pass, some weeks after the cohort's day
        last = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
        open_windows(NOW + dt.timedelta(days=7 * (1 + pick % 20)))
        opened = AuditEvent.objects.filter(id__gt=last, reason="window opened")
        return set(opened.values_list("patient_id", flat=True))
    if kind == "new_patients":
        before = set(Patient.objects.values_list("pk", flat=True))
        load_cohort(generate_cohort(2, 1000 + pick, today=TODAY), now=NOW)
        return set(Patient.objects.values_list("pk", flat=True)) - before
    if kind in ("sex", "birth"):
        patients = list(Patient.objects.order_by("pk"))
        patient = patients[pick % len(patients)]
        if kind == "sex":
            _correct(
                "patients", patient, patient, sex="female" if patient.sex == "male" else "male"
            )
        else:
            _correct("patients", patient, patient, date_of_birth=dt.date(1951, 3, 4))
        return {patient.pk}
    if kind == "price":
        episodes = list(TreatmentEpisode.objects.filter(voided_at=None).order_by("pk"))
        episode = episodes[pick % len(episodes)]
        _reprice(episode)
        return {episode.patient_id}
    if kind == "condition":
        diagnoses = list(Diagnosis.objects.filter(voided_at=None).order_by("pk"))
        diagnosis = diagnoses[pick % len(diagnoses)]
        other = next(c for c in Condition.values if c != diagnosis.condition)
        _correct("diagnoses", diagnosis, diagnosis.patient, condition=other)
        return {diagnosis.patient_id}
    events = list(AdverseEvent.objects.filter(voided_at=None).order_by("pk"))
    if not events:
        return set()
    event = events[pick % len(events)]
    actor = make_actor(Role.CLINICIAN, event.patient.clinic)
    corrections.void_record(
        actor=actor,
        record_type="adverse-events",
        object_id=event.pk,
        expected_version=event.version,
        reason="entered on the wrong patient",
    )
    return {event.patient_id}


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    n=st.integers(3, 25),
    seed=st.integers(0, 10_000),
    changes=st.lists(st.sampled_from(CHANGES), min_size=1, max_size=4),
    pick=st.integers(0, 10_000),
)
def test_an_incremental_refresh_gives_the_tables_of_a_whole_read(
    db: Any, fixed_pseudonyms: None, n: int, seed: int, changes: list[str], pick: int
) -> None:
    """Property: for a random registry and a random run of audited changes, the refresh after
    them re-reads exactly the changed patients and its tables equal a direct read's for every
    scope, identified or not."""
    with transaction.atomic():
        load_cohort(generate_cohort(n, seed, today=TODAY), now=NOW)
        assert snapshot.refresh(force=True).manifest["read"]["kind"] == "full"
        changed: set[int] = set()
        for step, kind in enumerate(changes):
            changed |= _change(kind, pick + step)
        result = snapshot.refresh()
        if changed:
            assert result.outcome == "built"
            assert result.manifest["read"]["kind"] == "incremental"
            assert result.manifest["read"]["patients_reread"] == len(changed)
        _assert_snapshot_is_a_whole_read()
        transaction.set_rollback(True)


def test_a_correction_re_reads_one_patient_and_is_audited(
    loaded: Cohort, fixed_pseudonyms: None
) -> None:
    assert snapshot.refresh().manifest["read"]["kind"] == "full"
    assert snapshot.refresh().outcome == "unchanged"
    episode = _reprice_first()
    result = snapshot.refresh()
    assert result.outcome == "built"
    assert result.manifest["read"]["kind"] == "incremental"
    assert result.manifest["read"]["patients_reread"] == 1
    steps = result.manifest["seconds"]  # where the refresh's time went, step by step
    assert set(steps) == {"read", "cells", "parquet", "both", "carry", "reports"}
    assert steps["both"] >= steps["cells"]  # the Parquet was written beside the cell table
    assert steps["read"] == result.manifest["read"]["seconds"]
    assert all(v >= 0 for v in steps.values())
    assert (
        result.manifest["rows"]["episodes"]
        == TreatmentEpisode.objects.filter(voided_at=None).count()
    )
    row = AuditEvent.objects.filter(action="read", new_values__snapshot=True).order_by("-id")[0]
    assert row.new_values["patients_reread"] == 1
    assert result.manifest["cell_clinics"] == 1  # the decision aid's sums: that clinic's only
    assert set(result.manifest["read"]["steps"]) == {
        "snapshot", "changed", "rows", "cells_before", "splice",
    }  # fmt: skip
    tables = _snapshot_tables(Scope(None, False))
    prices = tables.patients.set_index("patient_id")["cost_price"]
    assert prices[episode.patient_id] == 25000.0
    _assert_snapshot_is_a_whole_read()
    assert snapshot.refresh().outcome == "unchanged"  # its own audit row is a read


def test_a_change_without_a_patient_re_reads_nobody(loaded: Cohort) -> None:
    """A data-changing row that names no patient (a clinic, a lot) moves the watermark; the
    new snapshot re-reads no patient and keeps every row."""
    first = snapshot.refresh().manifest
    record_audit(
        actor=make_actor(Role.REGISTRY_ADMIN), action="create", object_type="clinic", object_id="x"
    )
    result = snapshot.refresh()
    assert result.outcome == "built"
    assert result.manifest["read"] == {**result.manifest["read"], "kind": "incremental"}
    assert result.manifest["read"]["patients_reread"] == 0
    assert result.manifest["rows"] == first["rows"]
    assert first["cell_clinics"] is None and result.manifest["cell_clinics"] == 0
    assert_cells_are_a_whole_reads()


def test_a_forced_refresh_a_new_day_or_many_changes_read_everything(
    loaded: Cohort, monkeypatch: pytest.MonkeyPatch, fixed_pseudonyms: None
) -> None:
    snapshot.refresh()
    load_cohort(generate_cohort(4, 77, today=TODAY), now=NOW)
    monkeypatch.setattr(snapshot, "INCREMENTAL_MAX_PATIENTS", 3)
    assert snapshot.refresh().manifest["read"]["kind"] == "full"  # 4 new patients > 3
    _assert_snapshot_is_a_whole_read()
    assert snapshot.refresh(force=True).manifest["read"]["kind"] == "full"
    tomorrow = snapshot._window_today() + dt.timedelta(days=1)
    monkeypatch.setattr(snapshot, "_window_today", lambda: tomorrow)
    assert snapshot.refresh().manifest["read"]["kind"] == "full"  # the window moved


def test_the_refresh_after_another_splices_into_the_frames_it_wrote(
    loaded: Cohort, monkeypatch: pytest.MonkeyPatch, fixed_pseudonyms: None
) -> None:
    """The process that built a snapshot keeps the frames it wrote: its next incremental
    refresh reads the changed patient from the database and nothing back from Parquet (that
    read back was the fixed cost of an incremental read at 1,000,000 patients)."""
    first = snapshot.refresh().manifest
    loads: list[Any] = []
    real_load = snapshot._load
    monkeypatch.setattr(snapshot, "_load", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    _reprice_first()
    result = snapshot.refresh()
    assert result.manifest["read"] == {**result.manifest["read"], "kind": "incremental"}
    assert result.manifest["read"]["patients_reread"] == 1
    assert loads == []
    held = snapshot.current()
    assert held is not None and held.manifest["built_at"] != first["built_at"]
    assert loads == []  # the page's read too: the new snapshot is held already
    _assert_snapshot_is_a_whole_read()  # and what is held is what was stored (its check)


def test_a_snapshot_without_stored_cell_sums_gets_them_computed_again(loaded: Cohort) -> None:
    """A snapshot an older release wrote has no per-clinic sums: the incremental refresh after
    it computes the decision aid's table from every clinic, and the one after that from the
    changed clinic only."""
    snapshot.refresh()
    held = snapshot.current()
    assert held is not None
    (held.path / "cells_by_clinic.json").unlink()
    episode = _reprice_first()
    result = snapshot.refresh().manifest
    assert result["read"]["kind"] == "incremental" and result["cell_clinics"] is None
    assert_cells_are_a_whole_reads()
    _correct(
        "episodes", TreatmentEpisode.objects.get(pk=episode.pk), episode.patient, price="30000.00"
    )
    assert snapshot.refresh().manifest["cell_clinics"] == 1
    assert_cells_are_a_whole_reads()


def test_correcting_a_left_out_row_updates_the_decision_aids_notes(
    loaded: Cohort, fixed_pseudonyms: None
) -> None:
    """Rows the tables leave out (odd dates) are counted per clinic too: after the clinic
    corrects its year-25 treatment date, the incremental refresh recomputes that clinic and
    the decision aid's "left out" notes are a direct read's again."""
    from tests.outcomes.test_odd_rows import YEAR_25, _corrupt

    _corrupt()  # one odd row of each kind, written past the services (no audit row)
    assert snapshot.refresh(force=True).manifest["cell_clinics"] is None
    before, _ = snapshot.decision_cells()
    assert before is not None and len(before.data_notes) >= 2
    assert_cells_are_a_whole_reads()
    episode = TreatmentEpisode.objects.get(start_date=YEAR_25)
    first = Diagnosis.objects.filter(patient=episode.patient).order_by("diagnosed_on")[0]
    _correct("episodes", episode, episode.patient, start_date=first.diagnosed_on)
    result = snapshot.refresh().manifest
    assert result["read"]["kind"] == "incremental" and result["cell_clinics"] == 1
    after, _ = snapshot.decision_cells()
    assert after is not None and after.data_notes != before.data_notes
    assert after.n_treated == before.n_treated + 1
    assert_cells_are_a_whole_reads()


def test_another_process_computes_every_clinics_cell_sums(
    loaded: Cohort, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stored sums come from code as well as rows: a worker that did not make them (a new
    release) computes the decision aid's table from every clinic on its first refresh."""
    snapshot.refresh()
    monkeypatch.setattr(snapshot, "BUILDING_PROCESS", "another-worker")
    _reprice_first()
    result = snapshot.refresh().manifest
    assert result["read"]["kind"] == "incremental" and result["cell_clinics"] is None
    assert_cells_are_a_whole_reads()
