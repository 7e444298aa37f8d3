"""Django-side helper of the multi-process perimeter tests, run as a subprocess on the served
database (``python -m tests.perimeter.seedtool seed``); prints one JSON line.

``seed`` makes one clinic with two patients whose baseline questionnaire is open today, a
fresh portal link for each (raw tokens in the output, as the e-mail would carry them), a
clinician with a password (for the login lockout) and an API token.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

PASSWORD = "perimeter-test-password-2026"


def seed() -> dict[str, Any]:
    from django.contrib.auth.models import User
    from django.utils import timezone

    from vertebra.followup.models import FollowUpTimePoint
    from vertebra.followup.services import create_schedule_for_episode, issue_link
    from vertebra.registry.models import Clinic, Membership, Patient, Role, TreatmentEpisode
    from vertebra.registry.permissions import Actor
    from vertebra.registry.services import issue_api_token

    today = timezone.localdate()
    stamp = f"{time.time_ns()}"
    clinic = Clinic.objects.create(name=f"Perimeter clinic {stamp}")
    user = User.objects.create_user(username=f"clin-{stamp}", password=PASSWORD)
    Membership.objects.create(user=user, clinic=clinic, role=Role.CLINICIAN)
    actor = Actor.for_user(user, Role.CLINICIAN)
    _, api_token = issue_api_token(actor=actor, name="perimeter")
    _, api_token_2 = issue_api_token(actor=actor, name="perimeter-2")
    links = []
    patients = []
    for i in range(2):
        patient = Patient.objects.create(
            clinic=clinic,
            mrn=f"P{stamp[-9:]}{i}",
            given_name="Perimeter",
            family_name=f"Patient {i}",
            date_of_birth=today.replace(year=today.year - 50),
            sex="unknown",
            email=f"perimeter{i}@example.org",
        )
        episode = TreatmentEpisode.objects.create(
            patient=patient, arm="cell_therapy", start_date=today
        )
        schedule = create_schedule_for_episode(episode, actor, today)
        point = FollowUpTimePoint.objects.get(schedule=schedule, key="baseline")
        links.append(issue_link(point, timezone.now()))
        patients.append(patient.pk)
    return {
        "username": user.username,
        "password": PASSWORD,
        "api_token": api_token,
        "api_token_2": api_token_2,
        "links": links,
        "patients": patients,
    }


def main(argv: list[str]) -> None:
    import django

    django.setup()
    if argv[:1] == ["seed"]:
        print(json.dumps(seed()))
    else:
        raise SystemExit(f"unknown command {argv!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
