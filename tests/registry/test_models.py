"""Database constraints and field validators of the registry schema (both databases)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction

from tests.registry.factories import (
    DAY0,
    make_clinic,
    make_episode,
    make_lot,
    make_patient,
    make_user,
)
from vertebra.registry.models import (
    AllogeneicLot,
    Clinic,
    Diagnosis,
    Harvest,
    Injection,
    Membership,
    Processing,
    RegulatoryStatus,
    Role,
)

pytestmark = pytest.mark.django_db


def _refused(make: Callable[[], object]) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        make()


def test_registered_trial_needs_nct_irb_and_ind() -> None:
    _refused(
        lambda: Clinic.objects.create(
            name="Trial site", regulatory_status=RegulatoryStatus.REGISTERED_TRIAL
        )
    )
    clinic = Clinic(
        name="Trial site",
        regulatory_status=RegulatoryStatus.REGISTERED_TRIAL,
        nct_id="NCT0123456",  # 7 digits
        irb="WIRB 2023-1",
        ind_number="IND 12345",
    )
    with pytest.raises(ValidationError, match="NCT followed by 8 digits"):
        clinic.full_clean()
    clinic.nct_id = "NCT01234567"
    clinic.full_clean()
    clinic.save()


def test_clinic_roles_need_a_clinic_registry_roles_may_not() -> None:
    user = make_user()
    _refused(lambda: Membership.objects.create(user=user, clinic=None, role=Role.CLINICIAN))
    Membership.objects.create(user=user, clinic=None, role=Role.RESEARCHER)
    _refused(lambda: Membership.objects.create(user=user, clinic=None, role=Role.RESEARCHER))


def test_mrn_is_unique_per_clinic_only() -> None:
    a, b = make_clinic(), make_clinic()
    make_patient(a, mrn="M1")
    make_patient(b, mrn="M1")
    _refused(lambda: make_patient(a, mrn="M1"))


@pytest.mark.parametrize(
    "field_values",
    [
        {"pfirrmann_grade": 6},
        {"pfirrmann_grade": 0},
        {"modified_pfirrmann_grade": 9},
        {"modified_pfirrmann_grade": 0},
        {"modic_type": 4},
        {"disc_height_pct": 101.0},
        {"spondylolisthesis_grade": 6},
    ],
)
def test_imaging_findings_out_of_range_are_refused_by_the_database(
    field_values: dict[str, object],
) -> None:
    patient = make_patient(make_clinic())
    _refused(
        lambda: Diagnosis.objects.create(
            patient=patient,
            condition="degenerative_disc_disease",
            icd10="M51.36",
            diagnosed_on=DAY0,
            **field_values,
        )
    )


def test_each_pfirrmann_scale_keeps_its_own_range() -> None:
    # ADR 0006: a modified grade above the classic range fits its own column only.
    patient = make_patient(make_clinic())
    fields = {"condition": "degenerative_disc_disease", "icd10": "M51.36", "diagnosed_on": DAY0}
    modified = Diagnosis(patient=patient, modified_pfirrmann_grade=7, **fields)
    modified.full_clean()
    modified.save()
    both = Diagnosis.objects.create(
        patient=patient, pfirrmann_grade=4, modified_pfirrmann_grade=6, **fields
    )
    assert (both.pfirrmann_grade, both.modified_pfirrmann_grade) == (4, 6)
    classic = Diagnosis(patient=patient, pfirrmann_grade=7, **fields)
    with pytest.raises(ValidationError) as caught:
        classic.full_clean()
    assert set(caught.value.message_dict) == {"pfirrmann_grade"}


def test_injection_written_without_the_prp_column_reads_as_no_prp() -> None:
    # Bulk loads and SQL imports that do not name adjunct_prp get the database default.
    user = make_user()
    episode = make_episode(make_patient(make_clinic()))
    lot = make_lot(released_on=DAY0)
    table = connection.ops.quote_name(Injection._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (episode_id, allogeneic_lot_id, levels, target, guidance, "
            "volume_ml, injected_on, operator_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            [episode.pk, lot.pk, '["L4-L5"]', "intradiscal", "ct", 1.0, DAY0, user.pk],
        )
    assert Injection.objects.get(episode=episode).adjunct_prp is False


def test_icd10_code_is_validated() -> None:
    patient = make_patient(make_clinic())
    diagnosis = Diagnosis(patient=patient, condition="sciatica", icd10="M5431", diagnosed_on=DAY0)
    with pytest.raises(ValidationError, match="ICD-10-CM"):
        diagnosis.full_clean()


def test_pathway_rows_keep_their_invariants_in_the_database() -> None:
    user = make_user()
    episode = make_episode(make_patient(make_clinic()))
    lot = AllogeneicLot.objects.create(lot_number="L1", product="UC")
    _refused(lambda: AllogeneicLot.objects.create(lot_number="L2", product="x", released=True))
    _refused(
        lambda: Harvest.objects.create(
            episode=episode, source="adipose", allogeneic_lot=lot, harvested_on=DAY0, operator=user
        )
    )
    harvest = Harvest.objects.create(
        episode=episode, source="adipose", harvested_on=DAY0, operator=user
    )
    _refused(
        lambda: Processing.objects.create(
            harvest=harvest, method="svf", lab="L", processed_on=DAY0, product_id="P",
            viability_pct=120,
        )
    )  # fmt: skip
    _refused(
        lambda: Injection.objects.create(
            episode=episode, levels=["L4-L5"], target="facet", guidance="ct", volume_ml=1,
            injected_on=DAY0, operator=user,
        )
    )  # fmt: skip
