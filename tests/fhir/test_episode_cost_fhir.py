"""An episode's cost and coverage travel as extensions of its Procedure: valid R4(B), and
parsed back to the same values (the lossless round trip of test_import_lossless covers the
registry path with the synthetic cohort's costs)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from vertebra.core.fhir import EpisodeRecord, fhir_codes
from vertebra.core.fhir.parse import parse_episode
from vertebra.core.fhir.pathway import episode
from vertebra.core.fhir.validate import validate_resource


def test_cost_extensions_validate_and_parse_back() -> None:
    codes = fhir_codes()
    record = EpisodeRecord(
        id=7, patient_id=3, arm="cell_therapy", start_date=dt.date(2025, 2, 1),
        price=Decimal("12500.10"), currency="USD", billed_to="self_pay",
        patient_paid=Decimal("13000.00"), cost_note="imaging billed with the treatment",
    )  # fmt: skip
    resource = episode(record, codes)
    validate_resource(resource)
    by_url = {e["url"].rsplit("/", 1)[-1]: e for e in resource["extension"]}
    assert by_url["episode-price"]["valueMoney"] == {"value": 12500.1, "currency": "USD"}
    assert by_url["episode-billed-to"]["valueCoding"]["code"] == "self_pay"
    parsed = parse_episode(resource, codes)
    assert parsed is not None
    assert parsed.cost == {
        "price": Decimal("12500.10"),
        "currency": "USD",
        "billed_to": "self_pay",
        "patient_paid": Decimal("13000.00"),
        "cost_note": "imaging billed with the treatment",
    }


def test_an_episode_without_cost_has_no_extension() -> None:
    codes = fhir_codes()
    record = EpisodeRecord(id=1, patient_id=1, arm="surgery", start_date=dt.date(2025, 1, 1))
    resource = episode(record, codes)
    validate_resource(resource)
    assert "extension" not in resource
    parsed = parse_episode(resource, codes)
    assert parsed is not None and parsed.cost == {}
