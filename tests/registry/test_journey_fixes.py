"""Product fixes found by the clinic-day journey (issue 12), each with its regression test:

* a stale "Edit details" (409) shows the change the editor missed (who, why, old → new) and what
  they entered, not only the values stored now, so nothing typed is silently lost;
* reporting an adverse event preselects the patient's current treatment episode.
"""

from __future__ import annotations

import datetime as dt

import pytest

from tests.registry.factories import make_actor, make_clinic, make_episode, make_patient
from tests.registry.web import signed_in
from vertebra.registry.models import Patient, Role

pytestmark = pytest.mark.django_db


def test_stale_patient_edit_shows_their_change_and_yours() -> None:
    clinic = make_clinic()
    patient = make_patient(clinic, email="dana@example.org", phone="+1 555 0101")
    coordinator = make_actor(Role.COORDINATOR, clinic)
    clinician = make_actor(Role.CLINICIAN, clinic)
    url = f"/clinic/patients/{patient.pk}/edit/"
    fields = {
        "version": "1",
        "mrn": patient.mrn,
        "given_name": patient.given_name,
        "family_name": patient.family_name,
        "date_of_birth": patient.date_of_birth.isoformat(),
        "sex": patient.sex,
        "email": "dana@example.org",
        "phone": "+1 555 0101",
    }
    first = signed_in(coordinator).post(
        url, {**fields, "phone": "+1 555 0199", "reason": "New mobile number"}
    )
    assert first.status_code == 302
    second = signed_in(clinician).post(
        url, {**fields, "email": "dana.office@example.org", "reason": "New e-mail"}
    )
    assert second.status_code == 409
    page = second.content.decode()
    theirs = page.split('id="missed-changes"')[1].split("</div>")[0]
    assert coordinator.user.username in theirs and "New mobile number" in theirs
    assert "+1 555 0101" in theirs and "+1 555 0199" in theirs
    mine = page.split('id="your-values"')[1].split("</table>")[0]
    assert "dana.office@example.org" in mine and "Your reason: <q>New e-mail</q>" in page
    stored = Patient.objects.get(pk=patient.pk)
    assert (stored.email, stored.phone, stored.version) == ("dana@example.org", "+1 555 0199", 2)


def test_adverse_event_report_preselects_the_current_episode() -> None:
    """A coordinator reporting a post-injection event left it unlinked from the treatment,
    because the form started on "Not linked to an episode"."""
    clinic = make_clinic()
    patient = make_patient(clinic)
    make_episode(patient, start_date=dt.date(2024, 1, 10))
    latest = make_episode(patient, start_date=dt.date(2024, 3, 1))
    page = signed_in(make_actor(Role.COORDINATOR, clinic)).get(
        f"/clinic/patients/{patient.pk}/adverse-events/new/"
    )
    html = page.content.decode()
    assert f'<option value="{latest.pk}" selected>Cell therapy from 1 Mar 2024</option>' in html
    assert '<option value="">Not linked to an episode</option>' in html
