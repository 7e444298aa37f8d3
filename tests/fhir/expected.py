"""How many resources of each type an export of the registry must hold, counted in the database
independently of the export code (``python -m tests.fhir.expected [CLINIC ...]`` prints JSON, for
the CLI tests, which run against a database the test process cannot query)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from importlib.resources import files


def expected_counts(clinic_ids: Sequence[int] = ()) -> dict[str, int]:
    """Resources per type for the patients of ``clinic_ids`` (all clinics when empty)."""
    from django.db.models import Q

    from vertebra.followup.models import QuestionnaireResponse
    from vertebra.registry import models as m

    def mine(path: str) -> Q:
        return Q(**{f"{path}__clinic_id__in": list(clinic_ids)}) if clinic_ids else Q()

    responses = QuestionnaireResponse.objects.filter(mine("time_point__patient"))
    scored = responses.exclude(instrument_id="work_status").filter(score__isnull=False).count()
    categorised = responses.filter(instrument_id="work_status").exclude(band="").count()
    opioid_answers = responses.filter(
        instrument_id="opioid_use", answers__current_use__in=[0, 1]
    ).count()
    priors = m.PriorTreatment.objects.filter(mine("patient"))
    clinics = m.Clinic.objects.filter(pk__in=list(clinic_ids)) if clinic_ids else m.Clinic.objects
    patients = {"clinic_id__in": list(clinic_ids)} if clinic_ids else {}
    return {
        "Organization": clinics.count(),
        # One Questionnaire per shipped instrument definition (data/instruments/*.yaml).
        "Questionnaire": len(
            list(files("vertebra").joinpath("data", "instruments").glob("*.yaml"))
        ),
        "Patient": m.Patient.objects.filter(**patients).count(),
        "Consent": m.Consent.objects.filter(mine("patient")).count(),
        "Condition": m.Diagnosis.objects.filter(mine("patient")).count(),
        "Procedure": m.TreatmentEpisode.objects.filter(mine("patient")).count()
        + m.Harvest.objects.filter(mine("episode__patient")).count()
        + m.Injection.objects.filter(mine("episode__patient")).count()
        + priors.exclude(kind="medication").count()
        + m.ClinicalEvent.objects.filter(mine("patient")).count(),
        "BiologicallyDerivedProduct": m.Processing.objects.filter(
            mine("harvest__episode__patient")
        ).count()
        + m.AllogeneicLot.objects.count(),
        "MedicationStatement": priors.filter(kind="medication").count() + opioid_answers,
        "QuestionnaireResponse": responses.count(),
        "Observation": scored + categorised,
        "AdverseEvent": m.AdverseEvent.objects.filter(mine("patient")).count(),
    }


if __name__ == "__main__":
    import django

    django.setup()
    print(json.dumps(expected_counts([int(a) for a in sys.argv[1:]])))
