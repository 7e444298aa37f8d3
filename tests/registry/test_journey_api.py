"""Issue 12, proof: a full cell-therapy clinic day through the JSON API (``/api/v1/``).

The same story as ``tests/browser/test_journey_cell_therapy_day.py``, each step by the role
that owns it, with a token per role: the coordinator registers the patient and records the
consents, the clinician diagnoses, screens, starts the episode, records harvest, processing
(sterility pending), is refused the injection with the call that unblocks it, records the
sterility result and the injection. The patient answers the 6-week questionnaire in the portal
(the link comes from the follow-up worker's e-mail; patients hold no API token, so this part
goes through the portal's pages); the coordinator reports the hospital stay as serious; the
clinician's queue shows it first, adjudicates it, voids the patient's duplicate report, corrects
the harvest volume and reads the history. A coordinator token cannot record a harvest or
adjudicate (403 problem+json, nothing written); a stale correction is 409.

After every step the audit rows it wrote are checked: action, object, who, and the reason of
corrections and voids. Runs on both databases (not a browser test).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.core import mail
from django.test import Client
from django.utils import timezone

from tests.followup.helpers import ANSWERS
from tests.registry.factories import make_actor, make_clinic
from tests.registry.web import bearer, last_seq
from vertebra.followup.models import FollowUpTimePoint, QuestionnaireResponse, TimePointStatus
from vertebra.followup.screens import plan
from vertebra.followup.worker import run_once
from vertebra.registry.audit import verify_audit_chain
from vertebra.registry.models import (
    AdverseEvent,
    AuditEvent,
    Harvest,
    Injection,
    Patient,
    Processing,
    Role,
)

pytestmark = pytest.mark.django_db

API = "/api/v1"
#: The audit actions that are writes (reads and searches are audited too, but not compared).
WRITES = ("create", "update", "void", "denied")


def call(method: str, path: str, headers: dict[str, str], body: object = None) -> Any:
    """One API request; returns the response (``.status_code``, ``.json()``, headers)."""
    client = Client()
    if method == "GET":
        return client.get(API + path, headers=headers)
    return getattr(client, method.lower())(
        API + path, data=json.dumps(body, default=str), content_type="application/json",
        headers=headers,
    )  # fmt: skip


def written(since: int) -> list[tuple[str, str, str, str, str]]:
    """The write audit rows after ``since``: (action, object type, object id, who, reason)."""
    rows = AuditEvent.objects.filter(id__gt=since, action__in=WRITES).order_by("id")
    return [
        (row.action, row.object_type, row.object_id, row.actor_username, row.reason) for row in rows
    ]


class Step:
    """Remembers the audit trail's end so each step can be checked for the rows it wrote."""

    def __init__(self) -> None:
        self.seq = last_seq()

    def rows(self) -> list[tuple[str, str, str, str, str]]:
        """The rows written since the last call (and move the mark)."""
        rows = written(self.seq)
        self.seq = last_seq()
        return rows


def answer_in_portal(link: str, tickler: dict[str, int]) -> Client:
    """The patient opens the e-mailed link and answers every screen, then sends."""
    patient = Client()
    parts = urlsplit(link)
    opened = patient.get(f"{parts.path}?{parts.query}")
    assert opened.status_code == 302 and opened["Location"] == "/p/q/"
    point = FollowUpTimePoint.objects.get(public_id=patient.session["fu"]["tp"])
    answers = {**ANSWERS, "ae_tickler": {**ANSWERS["ae_tickler"], **tickler}}
    for screen in plan(point.instruments):
        data = {k: str(v) for k, v in answers[screen.instrument_id].items() if k in screen.item_ids}
        response = patient.post(f"/p/q/{screen.number}/", data)
        assert response.status_code == 302, (screen, response.content[:300])
    review = patient.get("/p/q/review/").content.decode()
    key = re.search(r'name="idempotency_key" value="([^"]+)"', review)
    assert key, review
    sent = patient.post("/p/q/submit/", {"idempotency_key": key.group(1)})
    assert sent.status_code == 303 and sent["Location"].startswith("/p/done/")
    return patient


def test_a_cell_therapy_day_through_the_api(settings: Any) -> None:
    settings.FOLLOWUP_PORTAL_BASE_URL = "http://testserver"
    today = timezone.localdate()
    start = today - dt.timedelta(days=28)  # the 6-week window opens today
    clinic = make_clinic("Harbour Spine Clinic")
    coordinator = make_actor(Role.COORDINATOR, clinic)
    clinician = make_actor(Role.CLINICIAN, clinic)
    coord, doc = coordinator.user.username, clinician.user.username
    coord_h, doc_h = bearer(coordinator), bearer(clinician)
    step = Step()

    # --- coordinator: register the patient, record both consents
    response = call("POST", "/patients", coord_h, {
        "clinic_id": clinic.pk, "mrn": "HS-2001", "given_name": "Dana", "family_name": "Office",
        "date_of_birth": "1973-04-12", "sex": "female", "email": "dana@example.org",
    })  # fmt: skip
    assert response.status_code == 201, response.content
    patient_id = response.json()["id"]
    assert Patient.objects.get(pk=patient_id).mrn == "HS-2001"
    assert step.rows() == [("create", "patient", str(patient_id), coord, "")]

    for kind in ("treatment", "registry"):
        response = call("POST", f"/patients/{patient_id}/consents", coord_h, {
            "kind": kind, "form_version": f"{kind}-consent v1",
            "signed_on": start - dt.timedelta(days=14),
        })  # fmt: skip
        assert response.status_code == 201 and response.json()["kind"] == kind
        assert step.rows() == [("create", "consent", str(response.json()["id"]), coord, "")]

    # --- clinician: diagnosis, screening, episode
    response = call("POST", f"/patients/{patient_id}/diagnoses", doc_h, {
        "condition": "degenerative_disc_disease", "icd10": "M51.36",
        "diagnosed_on": start - dt.timedelta(days=30), "level": "L4-L5", "pfirrmann_grade": 3,
    })  # fmt: skip
    assert response.status_code == 201 and response.json()["icd10"] == "M51.36"
    assert step.rows() == [("create", "diagnosis", str(response.json()["id"]), doc, "")]

    facts = {"red_flags": [], "age": 52, "pain_duration_months": 14}
    response = call("POST", f"/patients/{patient_id}/screenings", doc_h, {"facts": facts})
    assert response.status_code == 201, response.content
    screening = response.json()
    assert screening["verdict"] == "needs_more_information"
    assert screening["ruleset_id"] == "vertebra-screening" and screening["ruleset_version"]
    assert step.rows() == [("create", "screeningevaluation", str(screening["id"]), doc, "")]

    response = call("POST", f"/patients/{patient_id}/episodes", doc_h, {
        "arm": "cell_therapy", "start_date": start,
    })  # fmt: skip
    assert response.status_code == 201
    episode_id = response.json()["id"]
    rows = step.rows()
    assert rows[0] == ("create", "treatmentepisode", str(episode_id), doc, "")
    assert {row[1] for row in rows[1:]} == {"followup_schedule"}  # the schedule, same request

    # --- a coordinator token cannot record a harvest: 403 problem+json, nothing written
    harvest_body = {"source": "bone_marrow_iliac_crest", "harvested_on": start, "volume_ml": 60}
    refused = call("POST", f"/episodes/{episode_id}/harvest", coord_h, harvest_body)
    assert refused.status_code == 403
    assert refused["Content-Type"].startswith("application/problem+json")
    assert refused.json()["status"] == 403
    assert "Coordinators cannot record" in refused.json()["detail"]
    assert not Harvest.objects.exists()
    assert [row[0] for row in step.rows()] == ["denied"]

    # --- clinician: harvest, processing with sterility pending
    response = call("POST", f"/episodes/{episode_id}/harvest", doc_h, harvest_body)
    assert response.status_code == 201 and response.json()["volume_ml"] == 60
    harvest_id = response.json()["id"]
    assert step.rows() == [("create", "harvest", str(harvest_id), doc, "")]

    response = call("POST", f"/harvests/{harvest_id}/processing", doc_h, {
        "method": "bmac", "lab": "Harbour Cell Lab", "processed_on": start,
        "product_id": "HS-2001-BMAC-1", "tnc_per_ml": 121,
    })  # fmt: skip
    assert response.status_code == 201 and response.json()["sterility"] == "pending"
    processing_id = response.json()["id"]
    assert step.rows() == [("create", "processing", str(processing_id), doc, "")]

    # --- the injection is refused while sterility is pending, naming the call that unblocks
    injection_body = {
        "product_id": "HS-2001-BMAC-1", "levels": ["L4-L5"], "target": "intradiscal",
        "guidance": "fluoroscopy", "volume_ml": 2, "cell_dose": 240,
        "injected_on": start + dt.timedelta(days=1),
    }  # fmt: skip
    blocked = call("POST", f"/episodes/{episode_id}/injections", doc_h, injection_body)
    assert blocked.status_code == 422
    problem = blocked.json()
    assert problem["errors"][0]["type"] == "sterility_result"
    assert "sterility result is still pending" in problem["errors"][0]["msg"]
    assert f"POST /api/v1/episodes/{episode_id}/sterility" in problem["errors"][0]["msg"]
    assert not Injection.objects.exists()
    assert [row[0] for row in step.rows()] in ([], ["denied"])

    response = call("POST", f"/episodes/{episode_id}/sterility", doc_h, {"sterility": "pass"})
    assert response.status_code == 200 and response.json()["sterility"] == "pass"
    assert step.rows() == [("update", "processing", str(processing_id), doc, "")]
    sterility_row = AuditEvent.objects.filter(action="update", object_type="processing").get()
    assert sterility_row.old_values == {"sterility": "pending"}
    assert sterility_row.new_values == {"sterility": "pass"}

    response = call("POST", f"/episodes/{episode_id}/injections", doc_h, injection_body)
    assert response.status_code == 201, response.content
    injection = Injection.objects.get()
    assert injection.processing_id == processing_id and injection.operator_id == clinician.user.pk
    assert step.rows() == [("create", "injection", str(injection.pk), doc, "")]

    # --- the patient: the worker e-mails the 6-week link; the patient answers in the portal
    run_once(timezone.now())
    [invitation] = [m for m in mail.outbox if m.to == ["dana@example.org"]]
    assert invitation.subject == "Your 6 weeks back-pain questionnaire"
    link = re.search(r"http://testserver/p/open/\?t=[A-Za-z0-9_-]+", invitation.body)
    assert link
    step.rows()  # the worker's own rows (invitation sent, windows) are not this journey's
    answer_in_portal(link.group(0), {"hospital_or_er_visit": 1})
    six_weeks = FollowUpTimePoint.objects.get(patient_id=patient_id, key="week_6")
    assert six_weeks.status == TimePointStatus.COMPLETED
    assert QuestionnaireResponse.objects.get(time_point=six_weeks, instrument_id="odi").score == 40
    tickled = AdverseEvent.objects.get(patient_id=patient_id)
    assert tickled.status == "pending" and not tickled.serious
    portal_rows = step.rows()
    assert ("create", "adverseevent", str(tickled.pk), f"patient:{patient_id}", "") in portal_rows
    assert {row[3] for row in portal_rows} == {f"patient:{patient_id}"}  # the patient, no staff

    # --- the coordinator reports the hospital stay as serious
    response = call("POST", f"/patients/{patient_id}/adverse-events", coord_h, {
        "description": "Admitted 2 nights for back pain after the injection; discitis ruled out.",
        "category": "other", "onset": today - dt.timedelta(days=3), "episode_id": episode_id,
        "serious": True,
    })  # fmt: skip
    assert response.status_code == 201 and response.json()["status"] == "pending"
    serious_id = response.json()["id"]
    assert step.rows() == [("create", "adverseevent", str(serious_id), coord, "")]

    # --- the clinician's queue: the serious report first, then the patient's; adjudicated
    queue = call("GET", "/adverse-events", doc_h)
    assert queue.status_code == 200
    assert [item["event"]["id"] for item in queue.json()["items"]] == [serious_id, tickled.pk]
    assert queue.json()["serious"] == 1 and queue.json()["total"] == 2
    assert queue.json()["items"][1]["reported_by"] == "The patient (follow-up questionnaire)"
    assert call("GET", "/adverse-events", coord_h).status_code == 403
    assert [(row[0], row[3]) for row in step.rows()] == [("denied", coord)]
    adjudication = {
        "ctcae_grade": 3, "serious": True, "relatedness": "procedure", "expected": False,
        "outcome": "recovered", "resolved_on": today - dt.timedelta(days=1),
    }  # fmt: skip
    refused = call("POST", f"/adverse-events/{serious_id}/adjudicate", coord_h, adjudication)
    assert refused.status_code == 403 and refused.json()["status"] == 403, refused.content
    assert [(row[0], row[3]) for row in step.rows()] == [("denied", coord)]
    response = call("POST", f"/adverse-events/{serious_id}/adjudicate", doc_h, adjudication)
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "adjudicated" and response.json()["ctcae_grade"] == 3
    assert step.rows() == [("update", "adverseevent", str(serious_id), doc, "")]

    # --- the patient's report is the same stay: voided with a reason (kept, struck through)
    void_reason = "Same hospital stay as the coordinator's serious report"
    response = call("POST", f"/adverse-events/{tickled.pk}/void", doc_h, {
        "expected_version": 1, "reason": void_reason,
    })  # fmt: skip
    assert response.status_code == 200, response.content
    assert response.json()["voided"] is True and response.json()["void_reason"] == void_reason
    assert step.rows() == [("void", "adverseevent", str(tickled.pk), doc, void_reason)]
    assert call("GET", "/adverse-events", doc_h).json()["items"] == []

    # --- the harvest volume is corrected with a reason, and the history shows it
    reason = "Lab sheet says 55 mL; 60 was the syringe size"
    response = call("PATCH", f"/harvests/{harvest_id}", doc_h, {
        "expected_version": 1, "reason": reason, "volume_ml": 55,
    })  # fmt: skip
    assert response.status_code == 200, response.content
    assert response.json()["values"]["volume_ml"] == 55 and response.json()["version"] == 2
    assert step.rows() == [("update", "harvest", str(harvest_id), doc, reason)]
    history = call("GET", f"/harvests/{harvest_id}/history", doc_h).json()
    corrected = history["entries"][-1]
    assert corrected["reason"] == reason and corrected["action"] == "Corrected"
    assert [(c["field"], c["old"], c["new"]) for c in corrected["changes"]] == [
        ("Volume (mL)", "60", "55")
    ]

    # --- a stale correction (version 1 again) is 409 with the change it missed
    stale = call("PATCH", f"/harvests/{harvest_id}", doc_h, {
        "expected_version": 1, "reason": "Typo", "volume_ml": 50,
    })  # fmt: skip
    assert stale.status_code == 409
    assert stale.json()["current_version"] == 2
    assert stale.json()["changes"][0]["reason"] == reason
    assert Harvest.objects.get().volume_ml == 55
    assert step.rows() == []

    # --- the same race on the patient's details (the pages' stale "Edit details")
    moved = "New mobile number, told by phone"
    response = call("PATCH", f"/patients/{patient_id}", coord_h, {
        "expected_version": 1, "reason": moved, "phone": "+1 555 0199",
    })  # fmt: skip
    assert response.status_code == 200 and response.json()["version"] == 2
    assert step.rows() == [("update", "patient", str(patient_id), coord, moved)]
    stale = call("PATCH", f"/patients/{patient_id}", doc_h, {
        "expected_version": 1, "reason": "New e-mail", "email": "dana.office@example.org",
    })  # fmt: skip
    assert stale.status_code == 409
    [missed] = stale.json()["changes"]
    assert (missed["reason"], missed["role"]) == (moved, "Coordinator")
    assert [(c["old"], c["new"]) for c in missed["changes"]] == [("—", "+1 555 0199")]
    assert Patient.objects.get(pk=patient_id).email == "dana@example.org"
    assert step.rows() == []

    assert Processing.objects.get().sterility == "pass"
    assert verify_audit_chain() == []
