"""Benchmark: FHIR REST searches and reads against a loaded registry (in-process test client).

Usage (a database loaded with vertebra.cohort.loader.load_cohort; see docs/fhir.md)::

    DATABASE_URL=postgres://... python bench/bench_fhir_server.py [--repeat 5]

Creates (once) a clinician at the largest clinic with an API token, then times each request
``--repeat`` times through Django's test client (no network: the server's own cost, audit
row included) and prints the median and worst wall time in ms, with the Bundle total.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.db.models import Count
    from django.test import Client

    from vertebra.registry import services
    from vertebra.registry.models import Clinic, Membership, Patient, Role
    from vertebra.registry.permissions import Actor

    clinic = Clinic.objects.annotate(n=Count("patients")).order_by("-n").first()
    assert clinic is not None, "load a cohort first"
    user, _ = User.objects.get_or_create(username="bench-fhir")
    Membership.objects.get_or_create(user=user, clinic=clinic, role=Role.CLINICIAN)
    actor = Actor.for_user(user, Role.CLINICIAN)
    token = services.issue_api_token(actor=actor)[1]
    patient = Patient.objects.filter(clinic=clinic).order_by("pk")[
        Patient.objects.filter(clinic=clinic).count() // 2
    ]
    n_patients = Patient.objects.filter(clinic=clinic).count()
    client = Client()
    auth: dict[str, Any] = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    urls = [
        f"/fhir/Patient/patient-{patient.pk}",
        "/fhir/Patient?_count=100",
        "/fhir/Observation?_count=100",
        f"/fhir/Observation?patient=Patient/patient-{patient.pk}",
        "/fhir/Observation?code=http://loinc.org|97909-6&date=ge2025-06-01&_count=100",
        "/fhir/Procedure?_count=100",
        "/fhir/QuestionnaireResponse?_count=100&_offset=50000",
        "/fhir/AdverseEvent?_count=100",
    ]
    print(f"clinic {clinic.pk}: {n_patients} patients; {args.repeat} runs each")
    for url in urls:
        times = []
        total = "-"
        for _ in range(args.repeat):
            start = time.perf_counter()
            answer = client.get(url, **auth)
            times.append((time.perf_counter() - start) * 1000)
            assert answer.status_code == 200, (url, answer.content[:200])
        total = json.loads(answer.content).get("total", "read")
        print(
            f"{statistics.median(times):8.1f} ms median {max(times):8.1f} ms worst  total={total!s:>7}  {url}"
        )


if __name__ == "__main__":
    main()
