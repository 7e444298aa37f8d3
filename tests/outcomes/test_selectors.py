"""`analysis_tables` rebuilds the analysis tables from the registry: right rows, right scope,
no identifiers for researchers, one audit row per read."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd
import pytest

from tests.outcomes.conftest import TODAY
from tests.registry.factories import DAY0, make_actor, make_clinic, make_episode, make_patient
from vertebra.core.analytics import AnalysisTables, CohortFilter, build_report
from vertebra.core.synth import Cohort
from vertebra.outcomes.selectors import AUDIT_OBJECT_TYPE, IDENTIFYING_COLUMNS, analysis_tables
from vertebra.registry import services
from vertebra.registry.errors import PermissionDeniedError
from vertebra.registry.models import AuditEvent, CellSource, Clinic, Patient, Role
from vertebra.registry.permissions import Actor

pytestmark = pytest.mark.django_db


def _synth_arms(cohort: Cohort) -> pd.Series:
    """The synth's arms, which the registry must give back exactly (``allogeneic_prp``
    included: the loader records PRP on the allogeneic injection, ``Injection.adjunct_prp``)."""
    return cohort.patients["arm"].astype(str)


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
    before = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
    analysis_tables(actor=actor, filter=CohortFilter.build(arms=["bmac"], conditions=["sciatica"]))
    rows = list(AuditEvent.objects.filter(id__gt=before))
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
    assert AuditEvent.objects.order_by("-id").first().action == "denied"  # type: ignore[union-attr]


# --- arm mapping from the pathway (PRP at processing or on the injection) ---------------------

DAY1 = DAY0 + dt.timedelta(days=1)


def _allogeneic_episode(clinician: Actor, lot_id: int, *, prp: bool) -> int:
    """A cell-therapy episode whose only injection is a released allogeneic lot (no harvest, no
    processing), with or without PRP; returns the patient id."""
    patient = make_patient(Clinic.objects.get(pk=next(iter(clinician.clinic_ids))))
    episode = make_episode(patient)
    services.record_injection(
        actor=clinician, episode_id=episode.pk, levels=["L4-L5"], target="intradiscal",
        guidance="fluoroscopy", volume_ml=1.0, injected_on=DAY1, allogeneic_lot_id=lot_id,
        cell_dose=6.0, adjunct_prp=prp,
    )  # fmt: skip
    return patient.pk


def _autologous_episode(clinician: Actor, *, processing_prp: bool, injection_prp: bool) -> int:
    """A bone-marrow episode harvested, processed and injected; returns the patient id."""
    patient = make_patient(Clinic.objects.get(pk=next(iter(clinician.clinic_ids))))
    episode = make_episode(patient)
    common: dict[str, Any] = {"actor": clinician, "episode_id": episode.pk}
    services.record_harvest(
        **common, source=CellSource.BONE_MARROW_ILIAC_CREST, harvested_on=DAY0, volume_ml=60.0
    )
    services.record_processing(
        **common, method="bmac", lab="Lab", processed_on=DAY0, product_id=f"P-{episode.pk}",
        sterility="pass", adjunct_prp=processing_prp,
    )  # fmt: skip
    services.record_injection(
        **common, levels=["L5-S1"], target="intradiscal", guidance="fluoroscopy",
        volume_ml=2.0, injected_on=DAY1, product_id=f"P-{episode.pk}",
        adjunct_prp=injection_prp,
    )  # fmt: skip
    return patient.pk


def test_allogeneic_lot_injected_with_prp_reads_back_as_allogeneic_prp() -> None:
    clinic = make_clinic()
    clinician = make_actor(Role.CLINICIAN, clinic)
    admin = make_actor(Role.REGISTRY_ADMIN)
    lot = services.register_lot(actor=admin, lot_number="UC-PRP-1", product="UC-MSC")
    services.release_lot(actor=admin, lot_id=lot.pk, released_on=DAY0)
    with_prp = _allogeneic_episode(clinician, lot.pk, prp=True)
    without = _allogeneic_episode(clinician, lot.pk, prp=False)
    rows = analysis_tables(actor=clinician).patients.set_index("patient_id")
    assert rows.loc[with_prp, ["arm", "cell_source", "adjunct"]].tolist() == [
        "allogeneic_prp", "allogeneic", "prp",
    ]  # fmt: skip
    assert rows.loc[without, "arm"] == "allogeneic"
    assert pd.isna(rows.loc[without, "adjunct"])


@pytest.mark.parametrize(
    ("processing_prp", "injection_prp", "arm"),
    [(False, False, "bmac"), (True, False, "bmac_prp"), (False, True, "bmac_prp"),
     (True, True, "bmac_prp")],
)  # fmt: skip
def test_autologous_prp_counts_from_processing_or_injection(
    processing_prp: bool, injection_prp: bool, arm: str
) -> None:
    clinician = make_actor(Role.CLINICIAN, make_clinic())
    pid = _autologous_episode(clinician, processing_prp=processing_prp, injection_prp=injection_prp)
    rows = analysis_tables(actor=clinician).patients.set_index("patient_id")
    assert rows.loc[pid, "arm"] == arm


def test_startback_group_comes_from_the_baseline_questionnaire(loaded: Cohort) -> None:
    """Loaded cohorts have no screening: the group is the baseline STarT Back's, and unknown
    exactly where the baseline was not completed."""
    tables = analysis_tables(actor=_all_clinics_actor(), filter=CohortFilter())
    tp = loaded.timepoints
    answered = set(
        tp[(tp["timepoint"].astype(str) == "baseline") & (tp["status"] == "completed")][
            "patient_id"
        ]
    )
    risk = loaded.patients.set_index("patient_id")["startback_risk"].astype(str)
    want = {
        f"SYN-{int(pid):07d}": (risk[pid] if pid in answered else "unknown")
        for pid in loaded.patients["patient_id"]
    }
    mrn = dict(Patient.objects.values_list("pk", "mrn"))
    got = {
        mrn[int(pid)]: group
        for pid, group in zip(
            tables.patients["patient_id"], tables.patients["startback_group"], strict=True
        )
    }
    assert got == want
    assert {"low", "medium", "high"} <= set(got.values())
