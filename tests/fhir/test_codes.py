"""The code lists (data/fhir/codes.yaml): complete for every registry value, unverified
external codes never emitted, and typos fail loudly instead of exporting invented codes."""

from __future__ import annotations

from importlib.resources import files
from typing import Any

import pytest
import yaml
from django.db import models

from vertebra.core.fhir import FhirCodes
from vertebra.core.fhir.codes import parse_codes
from vertebra.core.instruments import list_instruments
from vertebra.registry import models as m


def raw() -> dict[str, Any]:
    text = files("vertebra").joinpath("data", "fhir", "codes.yaml").read_text(encoding="utf-8")
    return dict(yaml.safe_load(text))


#: Vertebra code system -> the registry choices whose stored values it must cover.
CHOICES: dict[str, type[models.TextChoices]] = {
    "condition": m.Condition,
    "spinal-level": m.SpinalLevel,
    "laterality": m.Laterality,
    "stenosis": m.Stenosis,
    "treatment-arm": m.Arm,
    "cell-source": m.CellSource,
    "processing-method": m.ProcessingMethod,
    "sterility": m.Sterility,
    "injection-target": m.InjectionTarget,
    "image-guidance": m.Guidance,
    "prior-treatment": m.PriorTreatmentKind,
    "clinical-event": m.ClinicalEventKind,
    "ae-category": m.AdverseEventCategory,
    "relatedness": m.Relatedness,
    "ae-status": m.AdverseEventStatus,
    "consent-kind": m.ConsentKind,
    "regulatory-status": m.RegulatoryStatus,
}


@pytest.mark.parametrize("system", sorted(CHOICES))
def test_every_registry_value_has_a_code(codes: FhirCodes, system: str) -> None:
    assert set(CHOICES[system].values) == set(codes.codesystems[system])


def test_fhir_value_maps_cover_the_registry(codes: FhirCodes) -> None:
    assert set(codes.fhir["ae_outcome"]["map"]) == set(m.AdverseEventOutcome.values)
    assert set(codes.fhir["consent_scope"]["map"]) == set(m.ConsentKind.values)
    assert set(codes.fhir["ae_severity"]["by_ctcae_grade"]) == {1, 2, 3, 4, 5}
    # Registry sex codes are FHIR administrative-gender codes, written as they are.
    assert set(m.Sex.values) == {"female", "male", "other", "unknown"}


def test_every_instrument_has_a_score_code(codes: FhirCodes) -> None:
    assert {d.id for d in list_instruments()} <= set(codes.instruments)
    data = raw()
    del data["instruments"]["odi"]
    with pytest.raises(ValueError, match="no FHIR entry for instrument"):
        parse_codes(data)


def test_unverified_external_codes_are_never_emitted(codes: FhirCodes) -> None:
    for instrument_id, entry in raw()["instruments"].items():
        emitted = {
            c["code"]
            for c in codes.instrument_coding(instrument_id)
            if c["system"] == "http://loinc.org"
        }
        loinc = entry.get("loinc")
        if loinc is None:
            assert emitted == set()
        elif loinc["status"] == "V":
            assert emitted == {loinc["code"]} and loinc["source"]
        else:
            assert emitted == set(), f"{instrument_id}: unverified LOINC {loinc['code']} emitted"
    assert codes.instrument_coding("promis_pf_4a")[0]["code"] == "promis_pf_4a"


def test_every_fhir_code_records_its_status_and_source(codes: FhirCodes) -> None:
    for key, entry in codes.fhir.items():
        assert entry["status"] in ("V", "U"), key
        assert entry["source"], key


def test_typos_fail_loudly(codes: FhirCodes) -> None:
    with pytest.raises(KeyError):
        codes.coding("treatment-arm", "stem_cells")  # closed system: not a registry value
    with pytest.raises(KeyError):
        codes.coding("no-such-system", "x")
    with pytest.raises(KeyError):
        codes.extension_url("modic")
    with pytest.raises(KeyError):
        codes.identifier_system("ssn")
    # Open systems take the values of other versioned data (protocol time points, bands).
    assert codes.coding("followup-timepoint", "month_3")["code"] == "month_3"
