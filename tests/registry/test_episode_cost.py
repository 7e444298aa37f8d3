"""Cost and coverage of a treatment episode (issue 18): recorded through the service with its
audit row, validated (non-negative, plausible range, paid <= price unless explained),
corrected with history, entered on the episode page and shown on the record, via the API too."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from tests.registry.factories import DAY0
from tests.registry.web import bearer, last_seq, signed_in
from vertebra.core.plausibility import check_episode_cost, rules
from vertebra.registry import corrections, services
from vertebra.registry.models import AuditEvent, Patient, TreatmentEpisode
from vertebra.registry.permissions import Actor

pytestmark = pytest.mark.django_db

COST = {
    "price": Decimal("12000.00"),
    "currency": "usd",
    "billed_to": "self_pay",
    "patient_paid": Decimal("12000.00"),
    "cost_note": "",
}


def _start(actor: Actor, patient: Patient, **cost: object) -> TreatmentEpisode:
    return services.start_episode(
        actor=actor, patient_id=patient.pk, arm="cell_therapy", start_date=DAY0, cost=cost
    )


def test_the_cost_is_stored_with_the_episode_and_audited_in_the_same_row(
    clinician: Actor, patient: Patient
) -> None:
    seq = last_seq()
    episode = _start(clinician, patient, **COST)
    episode.refresh_from_db()
    assert (episode.price, episode.currency, episode.billed_to, episode.patient_paid) == (
        Decimal("12000.00"), "USD", "self_pay", Decimal("12000.00"),
    )  # fmt: skip
    rows = list(AuditEvent.objects.filter(id__gt=seq, object_type="treatmentepisode"))
    assert len(rows) == 1
    assert rows[0].new_values["price"] == "12000.00"
    assert rows[0].new_values["currency"] == "USD"
    assert rows[0].new_values["billed_to"] == "self_pay"


@pytest.mark.parametrize(
    ("cost", "field", "words"),
    [
        ({"price": Decimal("-1"), "currency": "USD"}, "price", "negative"),
        ({"price": Decimal("9000000"), "currency": "USD"}, "price", "0 to 500,000 USD"),
        ({"price": Decimal("100"), "currency": ""}, "currency", "choose the currency"),
        ({"price": Decimal("100"), "currency": "XYZ"}, "currency", "choose one of"),
        ({"currency": "USD"}, "currency", "leave it empty"),
        ({"billed_to": "insurer"}, "price", "price that was billed"),
        (
            {"price": Decimal("100"), "patient_paid": Decimal("150"), "currency": "USD"},
            "cost_note",
            "paid more than the price",
        ),
    ],
)
def test_implausible_costs_are_refused_with_the_field_named(
    clinician: Actor, patient: Patient, cost: dict[str, object], field: str, words: str
) -> None:
    with pytest.raises(ValidationError) as err:
        _start(clinician, patient, **cost)
    messages = " ".join(err.value.message_dict[field])
    assert words in messages
    assert not TreatmentEpisode.objects.filter(patient=patient).exists()


def test_paying_more_than_the_price_is_accepted_with_a_note(
    clinician: Actor, patient: Patient
) -> None:
    episode = _start(
        clinician, patient, price=Decimal("100"), patient_paid=Decimal("150"),
        currency="EUR", billed_to="self_pay", cost_note="second session billed later",
    )  # fmt: skip
    assert episode.patient_paid == Decimal("150")


def test_the_pure_rule_matches_the_hand_worked_cases() -> None:
    r = rules()
    assert check_episode_cost(None, None, "", "", "", r) == []
    assert check_episode_cost(0.0, 0.0, "USD", "trial", "", r) == []  # trial: free to patient
    assert check_episode_cost(500000.0, None, "USD", "", "", r) == []  # bound is inclusive
    assert [x.field for x in check_episode_cost(500000.01, None, "USD", "", "", r)] == ["price"]


def test_a_cost_is_corrected_with_a_reason_and_kept_in_history(
    clinician: Actor, patient: Patient
) -> None:
    episode = _start(clinician, patient)
    assert episode.price is None
    corrected = corrections.correct_record(
        actor=clinician, record_type="episodes", object_id=episode.pk,
        expected_version=episode.version,
        changes={"price": Decimal("4500"), "currency": "GBP", "billed_to": "insurer",
                 "patient_paid": Decimal("500")},
        reason="invoice arrived",
    )  # fmt: skip
    assert (corrected.price, corrected.currency, corrected.version) == (Decimal("4500"), "GBP", 2)
    row = AuditEvent.objects.filter(object_type="treatmentepisode", action="update").get()
    assert row.reason == "invoice arrived"
    assert row.old_values["price"] is None and row.new_values["price"] == "4500"
    with pytest.raises(ValidationError):  # the same rules hold for a correction
        corrections.correct_record(
            actor=clinician, record_type="episodes", object_id=episode.pk, expected_version=2,
            changes={"patient_paid": Decimal("9999")}, reason="typo",
        )  # fmt: skip


def test_the_episode_page_records_the_cost_and_the_record_shows_it(
    coordinator: Actor, patient: Patient
) -> None:
    client = signed_in(coordinator)
    url = f"/clinic/patients/{patient.pk}/episodes/new/"
    form = client.get(url).content.decode()
    for name in ("price", "currency", "billed_to", "patient_paid", "cost_note"):
        assert f'name="{name}"' in form
    bad = client.post(url, {"arm": "surgery", "start_date": "2024-03-01", "price": "100",
                            "currency": "USD", "patient_paid": "200"})  # fmt: skip
    assert bad.status_code == 400
    assert "paid more than the price" in bad.content.decode()
    ok = client.post(url, {"arm": "surgery", "start_date": "2024-03-01", "price": "45000",
                           "currency": "USD", "billed_to": "insurer", "patient_paid": "3200.50"})  # fmt: skip
    assert ok.status_code == 302, ok.content.decode()[:2000]
    page = client.get(f"/clinic/patients/{patient.pk}/").content.decode()
    assert 'price <span class="episode-price">USD 45,000.00</span>' in page
    assert "billed to insurer" in page
    assert "USD 3,200.50" in page


def test_the_api_takes_and_returns_the_cost(clinician: Actor, patient: Patient) -> None:
    client = signed_in(clinician)
    response = client.post(
        f"/api/v1/patients/{patient.pk}/episodes",
        {"arm": "physical_therapy", "start_date": dt.date(2024, 3, 1).isoformat(),
         "price": 1200.1, "currency": "USD", "billed_to": "insurer", "patient_paid": 240},
        content_type="application/json",
        headers=bearer(clinician),
    )  # fmt: skip
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["price"], body["currency"], body["billed_to"], body["patient_paid"]) == (
        "1200.10", "USD", "insurer", "240.00",
    )  # fmt: skip
