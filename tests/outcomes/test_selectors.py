"""`analysis_tables` rebuilds the analysis tables from the registry: right rows, right scope,
no identifiers for researchers, one audit row per read."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.outcomes.conftest import TODAY
from tests.registry.factories import make_actor
from vertebra.core.analytics import AnalysisTables, CohortFilter, build_report
from vertebra.core.synth import Cohort
from vertebra.outcomes.selectors import AUDIT_OBJECT_TYPE, IDENTIFYING_COLUMNS, analysis_tables
from vertebra.registry.errors import PermissionDeniedError
from vertebra.registry.models import AuditEvent, Clinic, Patient, Role

pytestmark = pytest.mark.django_db


def _synth_arms(cohort: Cohort) -> pd.Series:
    """The synth's arms as the registry can store them: PRP is recorded at processing, and an
    allogeneic lot has no processing step, so allogeneic_prp is stored as allogeneic."""
    return cohort.patients["arm"].astype(str).replace({"allogeneic_prp": "allogeneic"})


def _all_clinics_actor(role: str = Role.CLINICIAN):  # type: ignore[no-untyped-def]
    return make_actor(role, *Clinic.objects.all())


def test_arm_sizes_and_conditions_equal_the_loaded_cohort(loaded: Cohort) -> None:
    tables = analysis_tables(actor=_all_clinics_actor(), filter=CohortFilter())
    assert len(tables.patients) == len(loaded.patients) == 120
    got = tables.patients["arm"].value_counts().sort_index()
    want = _synth_arms(loaded).value_counts().sort_index()
    pd.testing.assert_series_equal(got, want, check_names=False)
    assert (
        tables.patients["condition"].value_counts().to_dict()
        == loaded.patients["condition"].value_counts().to_dict()
    )
    # age at treatment and dose come back as loaded
    assert sorted(tables.patients["age"].tolist()) == sorted(
        loaded.patients["age"].astype(float).tolist()
    )
    assert tables.patients["dose"].dropna().sum() == pytest.approx(
        loaded.patients["cell_dose_e6"].dropna().sum()
    )
    assert len(tables.timepoints) == len(loaded.timepoints)
    assert len(tables.events) == len(loaded.events)


def test_twelve_month_completeness_equals_the_synth_report(loaded: Cohort) -> None:
    ours = build_report(analysis_tables(actor=_all_clinics_actor()), CohortFilter(), TODAY)
    synth = loaded.patients.assign(arm=_synth_arms(loaded))
    theirs = build_report(
        AnalysisTables.of(synth, loaded.timepoints, loaded.events), CohortFilter(), TODAY
    )
    assert ours.arms == theirs.arms
    for arm in ours.arms:
        a = {tp.timepoint: tp for tp in ours.outcomes[arm]}["month_12"]
        b = {tp.timepoint: tp for tp in theirs.outcomes[arm]}["month_12"]
        assert (a.n_expected, a.n_completed) == (b.n_expected, b.n_completed), arm
        odi_a, odi_b = a.measures["odi"].change, b.measures["odi"].change
        if odi_b is not None and odi_b.mean is not None:
            assert odi_a is not None and odi_a.mean == pytest.approx(odi_b.mean)


def test_scores_match_the_synth_values(loaded: Cohort) -> None:
    tables = analysis_tables(actor=_all_clinics_actor())
    anna = Patient.objects.get(given_name="Anna", family_name="Whitfield")
    ours = tables.timepoints[tables.timepoints["patient_id"] == anna.pk].set_index("timepoint")
    synth_id = int(
        loaded.patients.loc[loaded.patients["first_name"] == "Anna", "patient_id"].iloc[0]
    )
    theirs = loaded.timepoints[loaded.timepoints["patient_id"] == synth_id].set_index("timepoint")
    for col in ("odi", "nrs_back", "nrs_leg"):
        pd.testing.assert_series_equal(
            ours[col].astype(float), theirs[col].astype(float).reindex(ours.index),
            check_names=False,
        )  # fmt: skip


def test_clinician_sees_only_their_clinic(loaded: Cohort) -> None:
    clinic = Clinic.objects.order_by("pk").first()
    assert clinic is not None
    tables = analysis_tables(actor=make_actor(Role.CLINICIAN, clinic))
    expected = Patient.objects.filter(clinic=clinic).count()
    assert len(tables.patients) == expected > 0
    assert set(tables.patients["clinic_id"]) == {str(clinic.pk)}
    assert set(tables.timepoints["patient_id"]) <= set(tables.patients["patient_id"])
    assert set(tables.events["patient_id"]) <= set(tables.patients["patient_id"])
    # asking for another clinic does not widen the scope
    other = Clinic.objects.exclude(pk=clinic.pk).first()
    assert other is not None
    only_other = analysis_tables(
        actor=make_actor(Role.COORDINATOR, clinic), filter=CohortFilter.build(clinics=[other.pk])
    )
    assert len(only_other.patients) == 0


def test_researcher_tables_are_de_identified(loaded: Cohort) -> None:
    tables = analysis_tables(actor=make_actor(Role.RESEARCHER))
    assert len(tables.patients) == 120
    frames = (tables.patients, tables.timepoints, tables.events)
    for frame in frames:
        assert not set(frame.columns) & set(IDENTIFYING_COLUMNS)
    # no identifying value anywhere in any cell
    mrns = set(Patient.objects.values_list("mrn", flat=True))
    names = set(Patient.objects.values_list("family_name", flat=True))
    emails = set(Patient.objects.values_list("email", flat=True)) - {""}
    births = {d.isoformat() for d in Patient.objects.values_list("date_of_birth", flat=True)}
    for frame in frames:
        cells = {str(v) for v in frame.astype(str).to_numpy().ravel()}
        assert not cells & (mrns | names | emails | births)
    # patient ids are pseudonyms 1..n, not registry ids
    assert sorted(tables.patients["patient_id"]) == list(range(1, 121))
    assert tables.patients["age"].max() <= 90


def test_each_read_is_audited_with_the_filter(loaded: Cohort) -> None:
    actor = _all_clinics_actor()
    before = AuditEvent.objects.count()
    analysis_tables(actor=actor, filter=CohortFilter.build(arms=["bmac"], conditions=["sciatica"]))
    rows = list(AuditEvent.objects.filter(seq__gt=before))
    assert len(rows) == 1
    row = rows[0]
    assert (row.action, row.object_type) == ("read", AUDIT_OBJECT_TYPE)
    assert row.new_values["filter"]["arms"] == ["bmac"]
    assert row.new_values["filter"]["conditions"] == ["sciatica"]
    assert row.actor_username == actor.user.username


def test_roles_without_patient_access_are_refused_and_audited(loaded: Cohort) -> None:
    actor = make_actor(Role.REGISTRY_ADMIN)
    with pytest.raises(PermissionDeniedError):
        analysis_tables(actor=actor)
    assert AuditEvent.objects.order_by("-seq").first().action == "denied"  # type: ignore[union-attr]
