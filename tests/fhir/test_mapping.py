"""Hand-worked mapping examples, one or more per resource type; each result validates as R4.

Every expected value below was worked out by hand from the record and docs/fhir.md, not
copied from the mapper's output.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tests.fhir.conftest import BASE
from vertebra.core.fhir import (
    AdverseEventRecord,
    ClinicalEventRecord,
    ClinicRecord,
    ConsentRecord,
    DiagnosisRecord,
    EpisodeRecord,
    FhirCodes,
    HarvestRecord,
    InjectionRecord,
    LotRecord,
    PatientRecord,
    PriorTreatmentRecord,
    ProcessingRecord,
    ResponseRecord,
    clinical,
    pathway,
    people,
    responses,
    validate_resource,
)

AT = dt.datetime(2025, 10, 17, 12, 0, tzinfo=dt.UTC)


def ext(resource: dict[str, Any], name: str) -> Any:
    """The value[x] of Vertebra extension ``name`` (None when absent)."""
    for item in resource.get("extension", []):
        if item["url"] == f"{BASE}/StructureDefinition/{name}":
            return next(v for k, v in item.items() if k.startswith("value"))
    return None


def codes_of(concept: dict[str, Any]) -> set[tuple[str, str]]:
    return {(c["system"], c["code"]) for c in concept["coding"]}


def valid(resource: dict[str, Any] | None) -> dict[str, Any]:
    assert resource is not None
    validate_resource(resource)
    return resource


# ---------------------------------------------------------------------------------- people


def test_organization_carries_regulatory_status_and_nct_id(codes: FhirCodes) -> None:
    clinic = ClinicRecord(
        7, "Fairhaven Spine Centre", "registered_trial", "NCT01234567", "IRB", "IND 1"
    )
    org = valid(people.organization(clinic, codes))
    assert org["id"] == "clinic-7" and org["name"] == "Fairhaven Spine Centre"
    assert {"system": f"{BASE}/sid/nct", "value": "NCT01234567"} in org["identifier"]
    assert ext(org, "regulatory-status")["code"] == "registered_trial"


def test_patient_mrn_is_scoped_to_the_clinic(codes: FhirCodes) -> None:
    record = PatientRecord(12, 3, "MRN-9", "Anna", "Whitfield", dt.date(1973, 9, 13), "female",
                           email="anna@example.org")  # fmt: skip
    patient = valid(people.patient(record, codes))
    assert patient["id"] == "patient-12"
    mrn = patient["identifier"][0]
    assert mrn["system"] == f"{BASE}/sid/mrn/3" and mrn["value"] == "MRN-9"
    assert mrn["type"]["coding"][0]["code"] == "MR"
    assert patient["identifier"][1] == {
        "use": "secondary", "system": f"{BASE}/sid/patient", "value": "12"
    }  # fmt: skip
    assert patient["name"] == [{"use": "official", "family": "Whitfield", "given": ["Anna"]}]
    assert patient["gender"] == "female" and patient["birthDate"] == "1973-09-13"
    assert patient["telecom"] == [{"system": "email", "value": "anna@example.org", "use": "home"}]
    assert patient["managingOrganization"] == {"reference": "Organization/clinic-3"}


def test_consent_active_and_withdrawn(codes: FhirCodes) -> None:
    signed = ConsentRecord(4, 12, "registry", "registry-consent v2", dt.date(2025, 10, 6))
    active = valid(people.consent(signed, codes))
    assert active["status"] == "active"
    assert active["scope"]["coding"][0]["code"] == "research"
    assert active["category"][0]["coding"][0]["code"] == "59284-0"
    assert active["dateTime"] == "2025-10-06" and active["policyRule"] == {
        "text": "registry-consent v2"
    }
    assert active["provision"] == {"type": "permit", "period": {"start": "2025-10-06"}}
    withdrawn = ConsentRecord(5, 12, "treatment", "v1", dt.date(2025, 1, 1), dt.date(2025, 3, 1))
    gone = valid(people.consent(withdrawn, codes))
    assert gone["status"] == "inactive" and gone["scope"]["coding"][0]["code"] == "treatment"
    assert gone["provision"]["period"] == {"start": "2025-01-01", "end": "2025-03-01"}


# -------------------------------------------------------------------------------- clinical


def test_condition_codes_and_imaging_findings(codes: FhirCodes) -> None:
    record = DiagnosisRecord(
        1, 12, "degenerative_disc_disease", "M51.360", dt.date(2025, 8, 21), level="L4-L5",
        laterality="left", pfirrmann_grade=4, modified_pfirrmann_grade=6, modic_type=1,
        disc_height_pct=71.0, spondylolisthesis_grade=0, stenosis="mild",
    )  # fmt: skip
    condition = valid(clinical.condition(record, codes))
    assert codes_of(condition["code"]) == {
        ("http://hl7.org/fhir/sid/icd-10-cm", "M51.360"),
        (f"{BASE}/CodeSystem/condition", "degenerative_disc_disease"),
    }
    assert condition["bodySite"][0]["coding"][0]["code"] == "L4-L5"
    assert condition["recordedDate"] == "2025-08-21"
    # Each scale keeps its own grade (ADR 0006): classic 4 and modified 6, never converted.
    stages = {s["type"]["coding"][0]["code"]: s["summary"]["coding"][0] for s in condition["stage"]}
    assert stages["classic"] == {
        "system": f"{BASE}/CodeSystem/pfirrmann-classic",
        "code": "4",
        "display": "Grade 4",
    }
    assert (
        stages["modified"]["system"].endswith("pfirrmann-modified")
        and stages["modified"]["code"] == "6"
    )
    assert ext(condition, "modic-type") == 1 and ext(condition, "disc-height-percent") == 71.0
    assert ext(condition, "spondylolisthesis-grade") == 0  # "no slip" is a finding, kept
    assert (
        ext(condition, "stenosis")["code"] == "mild"
        and ext(condition, "laterality")["code"] == "left"
    )


def test_condition_without_findings_has_no_stage_or_extensions(codes: FhirCodes) -> None:
    record = DiagnosisRecord(2, 12, "muscle_strain", "S39.012A", dt.date(2025, 1, 2))
    condition = valid(clinical.condition(record, codes))
    assert "stage" not in condition and "extension" not in condition and "bodySite" not in condition


def test_prior_opioid_is_a_medication_statement_with_mme(codes: FhirCodes) -> None:
    record = PriorTreatmentRecord(8, 12, "medication", "opioid at baseline", "tramadol", 100.0,
                                  20.0, started_on=dt.date(2022, 9, 6))  # fmt: skip
    statement = valid(clinical.prior_treatment(record, codes))
    assert statement["resourceType"] == "MedicationStatement" and statement["id"] == "prior-8"
    assert statement["status"] == "unknown"  # no end date: tried, not known to have stopped
    assert statement["medicationCodeableConcept"]["coding"][0]["code"] == "tramadol"
    rate = statement["dosage"][0]["doseAndRate"][0]["rateQuantity"]
    assert rate == {
        "value": 100.0,
        "unit": "mg/day",
        "system": "http://unitsofmeasure.org",
        "code": "mg/d",
    }
    # 100 mg/day tramadol x CDC factor 0.2 = 20 MME/day, as stored.
    assert ext(statement, "mme-per-day")["value"] == 20.0
    assert statement["effectivePeriod"] == {"start": "2022-09-06"}


def test_fentanyl_patch_dose_is_micrograms_per_hour(codes: FhirCodes) -> None:
    record = PriorTreatmentRecord(9, 12, "medication", medication_name="fentanyl patch",
                                  daily_dose=25.0, mme_per_day=60.0, ended_on=dt.date(2024, 1, 1))  # fmt: skip
    statement = valid(clinical.prior_treatment(record, codes))
    assert statement["status"] == "completed"
    assert statement["medicationCodeableConcept"]["coding"][0]["code"] == "fentanyl_transdermal"
    assert statement["dosage"][0]["doseAndRate"][0]["rateQuantity"]["code"] == "ug/h"


def test_prior_injection_is_a_procedure_with_relief(codes: FhirCodes) -> None:
    record = PriorTreatmentRecord(3, 12, "steroid_injection", "epidural", relief_weeks=6)
    procedure = valid(clinical.prior_treatment(record, codes))
    assert procedure["resourceType"] == "Procedure" and procedure["id"] == "prior-3"
    assert procedure["code"]["coding"][0]["code"] == "steroid_injection"
    assert ext(procedure, "relief-weeks")["value"] == 6
    assert procedure["note"] == [{"text": "epidural"}]


def test_clinical_event_is_a_procedure_after_the_episode(codes: FhirCodes) -> None:
    record = ClinicalEventRecord(5, 12, "subsequent_surgery", dt.date(2026, 3, 7), 40, "fusion")
    procedure = valid(clinical.clinical_event(record, codes))
    assert procedure["id"] == "event-5" and procedure["performedDateTime"] == "2026-03-07"
    assert procedure["code"]["coding"][0]["code"] == "subsequent_surgery"
    assert ext(procedure, "treatment-episode") == {"reference": "Procedure/episode-40"}


# ---------------------------------------------------------------------------------- pathway


def test_episode_of_a_non_cell_arm(codes: FhirCodes) -> None:
    procedure = valid(
        pathway.episode(EpisodeRecord(40, 12, "physical_therapy", dt.date(2025, 5, 1)), codes)
    )
    assert procedure["id"] == "episode-40" and procedure["status"] == "unknown"
    assert procedure["code"]["coding"][0] == {
        "system": f"{BASE}/CodeSystem/treatment-arm",
        "code": "physical_therapy",
        "display": "Physical therapy treatment episode",
    }
    assert procedure["performedPeriod"] == {"start": "2025-05-01"}


def test_autologous_pathway_harvest_product_injection(codes: FhirCodes) -> None:
    harvest = HarvestRecord(1, 40, 12, "bone_marrow_iliac_crest", dt.date(2025, 10, 20),
                            volume_ml=60.0, operator_id=4)  # fmt: skip
    taken = valid(pathway.harvest(harvest, codes, {}))
    assert taken["code"]["coding"][0]["code"] == "cell_harvest"
    assert taken["partOf"] == [{"reference": "Procedure/episode-40"}]
    assert taken["bodySite"][0]["coding"][0]["code"] == "bone_marrow_iliac_crest"
    assert ext(taken, "harvest-volume")["value"] == 60.0
    assert taken["performer"][0]["actor"]["identifier"]["value"] == "4"

    processing = ProcessingRecord(2, 1, 12, "bmac", "On-site lab", dt.date(2025, 10, 20), "P-1",
                                  dt.date(2025, 10, 20), "pass", tnc_per_ml=118.0,
                                  cfu_f_per_ml=2450.0, viability_pct=93.1, adjunct_prp=True)  # fmt: skip
    product = valid(pathway.product(processing, codes))
    assert product["resourceType"] == "BiologicallyDerivedProduct" and product["id"] == "product-2"
    assert product["productCategory"] == "cells"
    assert product["identifier"] == [{"system": f"{BASE}/sid/product", "value": "P-1"}]
    assert product["collection"]["source"] == {"reference": "Patient/patient-12"}
    assert product["processing"][0]["timeDateTime"] == "2025-10-20"
    assert (
        ext(product, "tnc-per-ml")["value"] == 118.0
        and ext(product, "cfu-f-per-ml")["value"] == 2450.0
    )
    assert ext(product, "cd34-percent") is None  # not measured: no extension
    assert ext(product, "sterility")["code"] == "pass" and ext(product, "adjunct-prp") is True

    injection = InjectionRecord(3, 40, 12, ["L4-L5", "L5-S1"], "intradiscal", "fluoroscopy", 2.0,
                                dt.date(2025, 10, 20), processing_id=2, cell_dose=240.0)  # fmt: skip
    shot = valid(pathway.injection(injection, codes))
    assert [b["coding"][0]["code"] for b in shot["bodySite"]] == ["L4-L5", "L5-S1"]
    # R4: Procedure.usedReference may not target a BiologicallyDerivedProduct (issue 15).
    assert "usedReference" not in shot
    assert ext(shot, "used-product") == {"reference": "BiologicallyDerivedProduct/product-2"}
    assert ext(shot, "injection-target")["code"] == "intradiscal"
    assert ext(shot, "image-guidance")["code"] == "fluoroscopy"
    assert ext(shot, "cell-dose") == {
        "value": 240.0,
        "unit": "million cells",
        "system": "http://unitsofmeasure.org",
        "code": "10*6",
    }  # fmt: skip  (million cells: docs/units.md)
    assert "performer" not in shot  # no operator recorded, none invented


def test_allogeneic_lot_and_its_injection(codes: FhirCodes) -> None:
    lot = LotRecord(9, "LOT-9", "Allogeneic disc progenitor cells", True, dt.date(2023, 5, 2))
    product = valid(pathway.lot(lot, codes))
    assert product["id"] == "lot-9" and product["status"] == "available"
    assert ext(product, "lot-released") == "2023-05-02"
    assigned = HarvestRecord(6, 41, 13, "umbilical_cord_allogeneic", dt.date(2025, 1, 1), lot_id=9)
    harvest = valid(pathway.harvest(assigned, codes, {9: lot}))
    assert harvest["code"]["coding"][0]["code"] == "allogeneic_lot_assignment"
    assert "bodySite" not in harvest  # nothing was taken from the patient
    assert "usedReference" not in harvest
    assert ext(harvest, "used-product") == {"reference": "BiologicallyDerivedProduct/lot-9"}
    assert ext(harvest, "allogeneic-lot") == {
        "system": f"{BASE}/sid/allogeneic-lot",
        "value": "LOT-9",
    }
    shot = valid(pathway.injection(
        InjectionRecord(7, 41, 13, ["L5-S1"], "intradiscal", "ct", 1.0, dt.date(2025, 1, 2), lot_id=9,
                        adjunct_prp=True), codes))  # fmt: skip
    assert ext(shot, "used-product") == {"reference": "BiologicallyDerivedProduct/lot-9"}
    assert ext(shot, "adjunct-prp") is True


# --------------------------------------------------------------------------- adverse events


def _links() -> dict[int, clinical.EpisodeLinks]:
    harvests = [HarvestRecord(1, 40, 12, "adipose", dt.date(2025, 1, 1))]
    injections = [
        InjectionRecord(8, 40, 12, ["L4-L5"], "facet", "ultrasound", 1.0, dt.date(2025, 2, 1), processing_id=2),
        InjectionRecord(3, 40, 12, ["L4-L5"], "intradiscal", "fluoroscopy", 1.0, dt.date(2025, 1, 2), processing_id=2),
    ]  # fmt: skip
    return pathway.episode_links(harvests, injections)


@pytest.mark.parametrize(
    ("relatedness", "suspect"),
    [
        ("harvest", "Procedure/harvest-1"),
        ("procedure", "Procedure/injection-3"),  # the first injection (by date), not id 8
        # R4's suspectEntity.instance may not be a BiologicallyDerivedProduct: the injection that
        # gave the product stands in, the causality assessment ("product") says what is suspected.
        ("product", "Procedure/injection-3"),
        ("unrelated", "Procedure/episode-40"),
    ],
)
def test_adjudicated_adverse_event_names_its_suspect(
    codes: FhirCodes, relatedness: str, suspect: str
) -> None:
    record = AdverseEventRecord(1, 12, "Harvest site pain", "harvest_site", dt.date(2025, 1, 3),
                                "adjudicated", episode_id=40, ctcae_grade=4, serious=True,
                                relatedness=relatedness, expected=False, outcome="recovered_with_sequelae",
                                resolved_on=dt.date(2025, 2, 1))  # fmt: skip
    event = valid(clinical.adverse_event(record, codes, _links()))
    assert event["actuality"] == "actual" and event["date"] == "2025-01-03"
    assert event["seriousness"]["coding"][0]["code"] == "Serious"
    # CTCAE 4 (life-threatening) -> R4's 3-level severity "severe"; the grade stays exact.
    assert event["severity"]["coding"][0]["code"] == "severe" and ext(event, "ctcae-grade") == 4
    assert event["outcome"]["coding"][0]["code"] == "resolvedWithSequelae"
    entity = event["suspectEntity"][0]
    assert entity["instance"] == {"reference": suspect}
    assert entity["causality"][0]["assessment"]["coding"][0]["code"] == relatedness
    assert ext(event, "expected") is False and ext(event, "resolved-date") == "2025-02-01"


def test_pending_adverse_event_claims_no_judgement(codes: FhirCodes) -> None:
    record = AdverseEventRecord(2, 12, "Patient-reported fever", "infection", dt.date(2025, 1, 3),
                                "pending", episode_id=40)  # fmt: skip
    event = valid(clinical.adverse_event(record, codes, _links()))
    for judged in ("seriousness", "severity", "outcome", "suspectEntity"):
        assert judged not in event
    assert ext(event, "adjudication-status")["code"] == "pending"


def test_adverse_event_without_episode_keeps_relatedness_as_extension(codes: FhirCodes) -> None:
    record = AdverseEventRecord(3, 12, "Fall", "other", dt.date(2025, 1, 3), "adjudicated",
                                ctcae_grade=2, relatedness="unrelated")  # fmt: skip
    event = valid(clinical.adverse_event(record, codes, {}))
    assert "suspectEntity" not in event and ext(event, "relatedness")["code"] == "unrelated"
    assert event["severity"]["coding"][0]["code"] == "moderate"


# -------------------------------------------------------------------------------- responses


def response(instrument: str, answers: dict[str, Any], score: float | None, band: str = "",
             version: str = "1.0", rid: int = 31) -> ResponseRecord:  # fmt: skip
    return ResponseRecord(rid, 12, 40, "month_3", instrument, version, answers, score, band, AT)


def test_odi_response_and_score(codes: FhirCodes) -> None:
    answers = {"pain_intensity": 3, "personal_care": 2, "lifting": 3, "walking": 2, "sitting": 2,
               "standing": 3, "sleeping": 2, "sex_life": None, "social_life": 2, "travelling": 2}  # fmt: skip
    # 21 points over 9 answered sections: 21 / 45 x 100 = 46.7 (section 8 skipped).
    record = response("odi", answers, 46.7, "severe", "2.1a")
    qr = valid(responses.questionnaire_response(record, codes))
    assert qr["questionnaire"] == f"{BASE}/Questionnaire/odi|2.1a"
    assert qr["status"] == "completed" and qr["authored"] == "2025-10-17T12:00:00Z"
    assert [i["linkId"] for i in qr["item"]][:3] == ["pain_intensity", "personal_care", "lifting"]
    assert "sex_life" not in {i["linkId"] for i in qr["item"]}  # unanswered: left out
    assert qr["item"][0] == {
        "linkId": "pain_intensity",
        "answer": [{"valueInteger": 3}],
    }  # no licensed text
    assert ext(qr, "followup-timepoint")["code"] == "month_3"
    assert ext(qr, "treatment-episode") == {"reference": "Procedure/episode-40"}

    obs = valid(responses.score_observation(record, codes))
    assert obs["id"] == "score-31" and obs["status"] == "final"
    assert obs["category"][0]["coding"][0]["code"] == "survey"
    assert ("http://loinc.org", "97909-6") in codes_of(obs["code"])
    assert obs["valueQuantity"] == {
        "value": 46.7,
        "unit": "%",
        "system": "http://unitsofmeasure.org",
        "code": "%",
    }
    assert obs["interpretation"][0]["coding"][0]["code"] == "severe"
    assert obs["derivedFrom"] == [{"reference": "QuestionnaireResponse/response-31"}]


def test_nrs_ships_its_wording_and_back_and_leg_pain_have_distinct_codes(
    codes: FhirCodes,
) -> None:
    record = response("nrs_leg", {"pain_leg": 4}, 4.0)
    qr = valid(responses.questionnaire_response(record, codes))
    assert qr["item"][0]["text"].startswith("On average over the past 7 days")
    leg = valid(responses.score_observation(record, codes))
    back = valid(responses.score_observation(response("nrs_back", {"pain_back": 4}, 4.0), codes))
    # 72514-3 (no body site) only on back pain; leg pain has the local code alone (issue 15).
    assert codes_of(leg["code"]) == {(f"{BASE}/CodeSystem/instrument", "nrs_leg")}
    assert ("http://loinc.org", "72514-3") in codes_of(back["code"])
    assert not codes_of(leg["code"]) & codes_of(back["code"])
    assert leg["bodySite"]["coding"][0]["code"] == "leg"


def test_promis_has_no_unverified_loinc(codes: FhirCodes) -> None:
    record = response(
        "promis_pf_4a", {"pf4a_1": 3, "pf4a_2": 3, "pf4a_3": 3, "pf4a_4": 2}, 35.6, version="2.0"
    )
    obs = valid(responses.score_observation(record, codes))
    assert {s for s, _ in codes_of(obs["code"])} == {f"{BASE}/CodeSystem/instrument"}
    assert obs["valueQuantity"]["code"] == "{T-score}"


def test_unscored_response_has_no_observation(codes: FhirCodes) -> None:
    record = response("odi", {"pain_intensity": 3}, None, version="2.1a")
    assert responses.score_observation(record, codes) is None
    valid(responses.questionnaire_response(record, codes))


def test_work_status_observation_is_its_category(codes: FhirCodes) -> None:
    obs = valid(
        responses.score_observation(
            response("work_status", {"status": 4}, None, "off_work_back_pain"), codes
        )
    )
    assert obs["valueCodeableConcept"]["coding"][0]["code"] == "off_work_back_pain"
    assert "valueQuantity" not in obs


def test_opioid_use_taken_and_not_taken(codes: FhirCodes) -> None:
    taken = response(
        "opioid_use", {"current_use": 1, "opioid": "oxycodone", "daily_dose": 20}, 30.0, "opioid"
    )
    qr = valid(responses.questionnaire_response(taken, codes))
    answers = {i["linkId"]: i["answer"][0] for i in qr["item"]}
    assert answers["opioid"]["valueCoding"]["code"] == "oxycodone"
    assert answers["daily_dose"] == {"valueDecimal": 20}
    statement = valid(responses.opioid_statement(taken, codes))
    assert statement["id"] == "opioid-31" and statement["status"] == "active"
    # 20 mg/day oxycodone x 1.5 = 30 MME/day (the stored score).
    assert ext(statement, "mme-per-day")["value"] == 30.0
    assert statement["dosage"][0]["doseAndRate"][0]["rateQuantity"]["value"] == 20.0
    assert statement["derivedFrom"] == [{"reference": "QuestionnaireResponse/response-31"}]
    none = valid(
        responses.opioid_statement(
            response("opioid_use", {"current_use": 0}, 0.0, "no_opioid"), codes
        )
    )
    assert none["status"] == "not-taken" and ext(none, "mme-per-day") is None
    assert responses.opioid_statement(response("opioid_use", {}, None), codes) is None
    assert responses.opioid_statement(response("nrs_back", {"pain_back": 2}, 2.0), codes) is None
