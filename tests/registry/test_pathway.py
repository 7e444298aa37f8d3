"""Chain of custody of the cell-therapy pathway: harvest → processing → injection.

Requirement (issue 5, DESIGN capability 3): steps in order, an autologous product injected only
into its own patient, an allogeneic lot only once released; violations refused with a clear
message and nothing written.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.core.exceptions import ValidationError

from tests.registry.factories import DAY0, make_actor, make_episode, make_lot, make_patient
from vertebra.registry import services
from vertebra.registry.errors import ChainOfCustodyError, NotFound
from vertebra.registry.models import (
    Arm,
    AuditEvent,
    CellSource,
    Clinic,
    Harvest,
    Injection,
    Patient,
    Processing,
    Role,
    Sterility,
    TreatmentEpisode,
)
from vertebra.registry.permissions import Actor

pytestmark = pytest.mark.django_db

DAY1 = DAY0 + dt.timedelta(days=1)


def harvest(actor: Actor, episode: TreatmentEpisode, **kw: Any) -> Harvest:
    args: dict[str, Any] = {
        "source": CellSource.BONE_MARROW_ILIAC_CREST,
        "harvested_on": DAY0,
        "volume_ml": 60.0,
    }
    args.update(kw)
    return services.record_harvest(actor=actor, episode_id=episode.pk, **args)


def process(actor: Actor, episode: TreatmentEpisode, **kw: Any) -> Processing:
    args: dict[str, Any] = {
        "method": "bmac",
        "lab": "Northside cell lab",
        "processed_on": DAY0,
        "product_id": f"PRD-{episode.pk}",
        "tnc_per_ml": 25.0,  # million cells per mL
        "viability_pct": 96.5,
        "sterility": Sterility.PASS,
        "adjunct_prp": True,
    }
    args.update(kw)
    return services.record_processing(actor=actor, episode_id=episode.pk, **args)


def inject(actor: Actor, episode: TreatmentEpisode, **kw: Any) -> Injection:
    args: dict[str, Any] = {
        "levels": ["L5-S1", "L4-L5"],
        "target": "intradiscal",
        "guidance": "fluoroscopy",
        "volume_ml": 2.0,
        "injected_on": DAY1,
        "cell_dose": 50.0,  # million cells
    }
    if "allogeneic_lot_id" not in kw:
        args["product_id"] = f"PRD-{episode.pk}"
    args.update(kw)
    return services.record_injection(actor=actor, episode_id=episode.pk, **args)


@pytest.fixture
def episode(patient: Patient) -> TreatmentEpisode:
    return make_episode(patient)


def test_autologous_pathway_in_order_is_recorded_and_attributed(
    clinician: Actor, episode: TreatmentEpisode
) -> None:
    h = harvest(clinician, episode)
    p = process(clinician, episode)
    i = inject(clinician, episode)
    assert h.operator == clinician.user and p.harvest == h
    assert i.processing == p and i.allogeneic_lot is None
    assert i.levels == ["L4-L5", "L5-S1"]  # stored in spinal order
    assert i.operator == clinician.user
    assert list(AuditEvent.objects.values_list("object_type", flat=True)) == [
        "harvest",
        "processing",
        "injection",
    ]


def test_released_allogeneic_lot_can_be_injected_directly(
    clinician: Actor, registry_admin: Actor, episode: TreatmentEpisode
) -> None:
    lot = services.register_lot(actor=registry_admin, lot_number="UC-001", product="UC-MSC")
    services.release_lot(actor=registry_admin, lot_id=lot.pk, released_on=DAY0)
    injection = inject(clinician, episode, allogeneic_lot_id=lot.pk)
    assert injection.allogeneic_lot == lot and injection.processing is None


def test_unreleased_lot_is_refused(clinician: Actor, episode: TreatmentEpisode) -> None:
    lot = make_lot()
    with pytest.raises(ChainOfCustodyError, match="has not been released"):
        inject(clinician, episode, allogeneic_lot_id=lot.pk)
    assert not Injection.objects.exists()


def test_lot_injected_before_its_release_date_is_refused(
    clinician: Actor, episode: TreatmentEpisode
) -> None:
    lot = make_lot(released_on=DAY1 + dt.timedelta(days=1))
    with pytest.raises(ChainOfCustodyError, match=r"before lot .* was released"):
        inject(clinician, episode, allogeneic_lot_id=lot.pk)


def test_product_made_from_an_unreleased_lot_is_refused(
    clinician: Actor, episode: TreatmentEpisode
) -> None:
    lot = make_lot()
    harvest(
        clinician,
        episode,
        source=CellSource.UMBILICAL_CORD_ALLOGENEIC,
        allogeneic_lot_id=lot.pk,
        volume_ml=None,
    )
    process(clinician, episode, method="culture_expanded")
    with pytest.raises(ChainOfCustodyError, match="has not been released"):
        inject(clinician, episode)


def test_another_patients_product_is_refused(
    clinician: Actor, clinic: Clinic, episode: TreatmentEpisode
) -> None:
    donor_episode = make_episode(make_patient(clinic))
    harvest(clinician, donor_episode)
    process(clinician, donor_episode)
    with pytest.raises(ChainOfCustodyError, match="only into the patient it was harvested from"):
        inject(clinician, episode, product_id=f"PRD-{donor_episode.pk}")
    assert not Injection.objects.exists()


def test_unknown_product_gets_the_same_refusal_as_a_foreign_one(
    clinician: Actor, episode: TreatmentEpisode
) -> None:
    with pytest.raises(ChainOfCustodyError, match="only into the patient it was harvested from"):
        inject(clinician, episode, product_id="NO-SUCH-PRODUCT")


def test_processing_before_harvest_is_refused(clinician: Actor, episode: TreatmentEpisode) -> None:
    with pytest.raises(ChainOfCustodyError, match="record the harvest before processing"):
        process(clinician, episode)
    assert not Processing.objects.exists()


def test_injection_before_processing_is_refused(
    clinician: Actor, episode: TreatmentEpisode
) -> None:
    harvest(clinician, episode)
    with pytest.raises(ChainOfCustodyError, match="not processed from this patient's harvest"):
        inject(clinician, episode)


@pytest.mark.parametrize(
    ("sterility", "words"), [(Sterility.FAIL, "failed"), (Sterility.PENDING, "still pending")]
)
def test_product_without_a_passed_sterility_result_is_refused(
    clinician: Actor, episode: TreatmentEpisode, sterility: str, words: str
) -> None:
    harvest(clinician, episode)
    process(clinician, episode, sterility=sterility)
    with pytest.raises(ChainOfCustodyError, match=f"sterility result is {words}"):
        inject(clinician, episode)


def test_sterility_result_arriving_later_unblocks_injection(
    clinician: Actor, episode: TreatmentEpisode
) -> None:
    harvest(clinician, episode)
    process(clinician, episode, sterility=Sterility.PENDING)
    services.record_sterility_result(actor=clinician, episode_id=episode.pk, sterility="pass")
    assert inject(clinician, episode).processing is not None
    with pytest.raises(ValidationError, match="reason"):
        services.record_sterility_result(actor=clinician, episode_id=episode.pk, sterility="fail")


def test_harvest_only_on_a_cell_therapy_episode(clinician: Actor, patient: Patient) -> None:
    pt_episode = make_episode(patient, arm=Arm.PHYSICAL_THERAPY)
    with pytest.raises(ChainOfCustodyError, match="physical therapy episode"):
        harvest(clinician, pt_episode)


def test_second_harvest_and_second_processing_are_refused(
    clinician: Actor, episode: TreatmentEpisode
) -> None:
    harvest(clinician, episode)
    with pytest.raises(ChainOfCustodyError, match="already has a harvest"):
        harvest(clinician, episode)
    process(clinician, episode)
    with pytest.raises(ChainOfCustodyError, match="already processed"):
        process(clinician, episode, product_id="PRD-other")


def test_allogeneic_source_needs_a_lot_and_autologous_cannot_have_one(
    clinician: Actor, episode: TreatmentEpisode
) -> None:
    with pytest.raises(ChainOfCustodyError, match="needs its lot"):
        harvest(clinician, episode, source=CellSource.OTHER_ALLOGENEIC)
    with pytest.raises(ChainOfCustodyError, match="cannot name an allogeneic lot"):
        harvest(clinician, episode, allogeneic_lot_id=make_lot().pk)


def test_dates_out_of_order_are_refused(clinician: Actor, episode: TreatmentEpisode) -> None:
    harvest(clinician, episode, harvested_on=DAY1)
    with pytest.raises(ChainOfCustodyError, match="before the harvest date"):
        process(clinician, episode, processed_on=DAY0)
    process(clinician, episode, processed_on=DAY1)
    with pytest.raises(ChainOfCustodyError, match="before the processing date"):
        inject(clinician, episode, injected_on=DAY0)


def test_future_dates_are_refused(clinician: Actor, episode: TreatmentEpisode) -> None:
    tomorrow = dt.date.today() + dt.timedelta(days=2)
    with pytest.raises(ValidationError, match="cannot be in the future"):
        harvest(clinician, episode, harvested_on=tomorrow)


def test_exactly_one_product_must_be_named(clinician: Actor, episode: TreatmentEpisode) -> None:
    lot = make_lot(released_on=DAY0)
    with pytest.raises(ChainOfCustodyError, match="exactly one product"):
        inject(clinician, episode, allogeneic_lot_id=lot.pk, product_id="PRD-x")


def test_levels_are_validated(clinician: Actor, episode: TreatmentEpisode) -> None:
    lot = make_lot(released_on=DAY0)
    for levels in ([], ["L6-S1"], ["L4-L5", "L4-L5"]):
        with pytest.raises(ValidationError):
            inject(clinician, episode, allogeneic_lot_id=lot.pk, levels=levels)


def test_operator_must_be_a_clinician_of_the_clinic(
    clinician: Actor, coordinator: Actor, other_clinic: Clinic, episode: TreatmentEpisode
) -> None:
    outsider = make_actor(Role.CLINICIAN, other_clinic)
    for operator in (coordinator.user, outsider.user):
        with pytest.raises(ValidationError, match="operator"):
            harvest(clinician, episode, operator_id=operator.pk)


def test_other_clinics_episode_is_not_found(clinician: Actor, other_patient: Patient) -> None:
    foreign = make_episode(other_patient)
    with pytest.raises(NotFound):
        harvest(clinician, foreign)
    assert not Harvest.objects.exists()


def test_a_lot_is_released_once(registry_admin: Actor) -> None:
    lot = make_lot()
    services.release_lot(actor=registry_admin, lot_id=lot.pk, released_on=DAY0)
    with pytest.raises(ChainOfCustodyError, match="already released"):
        services.release_lot(actor=registry_admin, lot_id=lot.pk, released_on=DAY1)
