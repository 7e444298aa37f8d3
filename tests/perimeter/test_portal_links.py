"""Patient links: one live link per time point, revocable by staff (service, page, API),
opening only the questionnaire; tokens never in logs.

Requirement ids: issue 14 "tokens"; security-reliability.md §6 T11 (0 tokens in logs,
Referrer-Policy no-referrer on the token URL); HIPAA 164.312(b) (revocation audited).
"""

from __future__ import annotations

import datetime as dt
import json
import logging

import pytest
from django.db import IntegrityError, transaction
from django.test import Client
from django.utils import timezone

from tests.followup.helpers import make_schedule, point
from tests.registry.factories import make_actor, make_clinic, make_user
from tests.registry.web import bearer, signed_in
from vertebra.followup.errors import LinkReplaced, LinkRevoked
from vertebra.followup.models import LinkRetirement, PatientLink
from vertebra.followup.services import issue_link, open_link, revoke_links
from vertebra.followup.views import LINK_SESSION_PROGRESS_SECONDS
from vertebra.registry.errors import NotFound
from vertebra.registry.models import AuditEvent, PatientAccount, Role

pytestmark = pytest.mark.django_db


@pytest.fixture
def baseline():
    today = timezone.localdate()
    return point(make_schedule(start=today, today=today), "baseline")


def test_a_new_link_retires_the_previous_one(baseline) -> None:
    now = timezone.now()
    first = issue_link(baseline, now)
    second = issue_link(baseline, now + dt.timedelta(days=3))
    assert open_link(second, now).pk == baseline.pk
    with pytest.raises(LinkReplaced):
        open_link(first, now)
    live = PatientLink.objects.filter(used_at__isnull=True, retired_at__isnull=True)
    assert live.count() == 1
    old = PatientLink.objects.get(retired_at__isnull=False)
    assert old.retired_reason == LinkRetirement.REPLACED
    audit = AuditEvent.objects.filter(action="issue_link").order_by("id").last()
    assert audit.new_values["replaces"] == [old.pk]
    assert first not in json.dumps(audit.new_values) and second not in json.dumps(audit.new_values)


def test_the_database_refuses_two_live_links(baseline) -> None:
    issue_link(baseline, timezone.now())
    with pytest.raises(IntegrityError), transaction.atomic():
        PatientLink.objects.create(
            time_point=baseline,
            token_hash="0" * 64,
            created_at=timezone.now(),
            expires_at=timezone.now() + dt.timedelta(days=1),
        )


def test_staff_revoke_links_audited_and_scoped(baseline) -> None:
    raw = issue_link(baseline, timezone.now())
    clinic = baseline.patient.clinic
    coordinator = make_actor(Role.COORDINATOR, clinic)
    outsider = make_actor(Role.COORDINATOR, make_clinic("Elsewhere"))
    with pytest.raises(NotFound):
        revoke_links(actor=outsider, patient_id=baseline.patient_id, reason="x", now=timezone.now())
    with pytest.raises(ValueError, match="reason"):
        revoke_links(
            actor=coordinator, patient_id=baseline.patient_id, reason=" ", now=timezone.now()
        )
    count = revoke_links(
        actor=coordinator,
        patient_id=baseline.patient_id,
        reason="E-mail sent to the wrong address",
        now=timezone.now(),
    )
    assert count == 1
    with pytest.raises(LinkRevoked):
        open_link(raw, timezone.now())
    row = AuditEvent.objects.get(action="revoke_links")
    assert row.patient_id == baseline.patient_id and row.reason.startswith("E-mail sent")
    assert row.new_values["time_points"] == ["baseline"]
    assert AuditEvent.objects.filter(action="denied").count() == 1  # the outsider's attempt
    # A fresh link works again (the next reminder).
    assert open_link(issue_link(baseline, timezone.now()), timezone.now()).pk == baseline.pk


def test_revoked_and_replaced_links_answer_410_with_plain_words(client: Client, baseline):
    first = issue_link(baseline, timezone.now())
    second = issue_link(baseline, timezone.now())
    replaced = client.get(f"/p/open/?t={first}")
    assert replaced.status_code == 410 and "most recent e-mail" in replaced.content.decode()
    assert replaced["Referrer-Policy"] == "no-referrer"
    coordinator = make_actor(Role.COORDINATOR, baseline.patient.clinic)
    revoke_links(
        actor=coordinator, patient_id=baseline.patient_id, reason="lost", now=timezone.now()
    )
    revoked = client.get(f"/p/open/?t={second}")
    assert revoked.status_code == 410 and "withdrawn" in revoked.content.decode()


def test_revoke_from_the_patient_page(baseline) -> None:
    raw = issue_link(baseline, timezone.now())
    staff = signed_in(make_actor(Role.COORDINATOR, baseline.patient.clinic))
    page = staff.get(f"/clinic/patients/{baseline.patient_id}/").content.decode()
    url = f"/p/staff/patients/{baseline.patient_id}/links/revoke/"
    assert url in page
    confirm = staff.get(url)
    assert confirm.status_code == 200 and "1 questionnaire link" not in confirm.content.decode()
    assert "one questionnaire link" in confirm.content.decode()
    assert staff.post(url, {"reason": ""}).status_code == 400
    done = staff.post(url, {"reason": "Patient asked"}, follow=True)
    assert done.status_code == 200 and "1 portal link withdrawn" in done.content.decode()
    assert Client().get(f"/p/open/?t={raw}").status_code == 410
    other = signed_in(make_actor(Role.COORDINATOR, make_clinic("Far")))
    assert other.get(url).status_code == 404
    assert other.post(url, {"reason": "x"}).status_code == 404


def test_revoke_over_the_api(client: Client, baseline) -> None:
    raw = issue_link(baseline, timezone.now())
    headers = bearer(make_actor(Role.CLINICIAN, baseline.patient.clinic))
    url = f"/api/v1/followup/patients/{baseline.patient_id}/links/revoke"
    blank = client.post(url, json.dumps({"reason": "  "}), "application/json", headers=headers)
    assert blank.status_code == 422 and blank.json()["errors"][0]["field"] == "reason"
    wrong_tp = client.post(
        url,
        json.dumps({"reason": "x", "time_point": "00000000-0000-4000-8000-000000000000"}),
        "application/json",
        headers=headers,
    )
    assert wrong_tp.status_code == 404
    done = client.post(
        url,
        json.dumps({"reason": "phone lost", "time_point": str(baseline.public_id)}),
        "application/json",
        headers=headers,
    )
    assert done.status_code == 200 and done.json() == {"withdrawn": 1}
    assert Client().get(f"/p/open/?t={raw}").status_code == 410
    outsider = bearer(make_actor(Role.CLINICIAN, make_clinic("Other")))
    foreign = client.post(url, json.dumps({"reason": "x"}), "application/json", headers=outsider)
    assert foreign.status_code == 404 and foreign.json()["detail"] == "Not found."


def test_a_link_session_sees_progress_only_while_fresh(client: Client, baseline) -> None:
    raw = issue_link(baseline, timezone.now())
    assert client.get(f"/p/open/?t={raw}").status_code == 302
    assert client.get("/p/progress/").status_code == 200
    session = client.session
    state = session["fu"]
    state["at"] -= LINK_SESSION_PROGRESS_SECONDS + 1
    session["fu"] = state
    session.save()
    stale = client.get("/p/progress/")
    assert stale.status_code == 403 and "sign in" in stale.content.decode()
    assert client.get("/p/q/").status_code == 200  # the questionnaire itself still opens
    # A patient account sees its own history whatever the link session says.
    user = make_user()
    PatientAccount.objects.create(user=user, patient=baseline.patient)
    client.force_login(user)
    assert client.get("/p/progress/").status_code == 200


def test_token_pasted_into_a_path_is_not_logged(client: Client, baseline, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    raw = issue_link(baseline, timezone.now())
    for path in (f"/p/{raw}", f"/p/{raw}/", f"/p/open/{raw}/", f"/p/open/?t={raw}x"):
        assert client.get(path).status_code == 404
    text = "\n".join(r.getMessage() for r in caplog.records) + caplog.text
    assert "Not Found: /p/[redacted]" in text
    assert raw not in text and raw[:20] not in text


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_concurrent_issuers_leave_exactly_one_live_link(flushable_audit) -> None:
    """Two workers (or a resend racing a reminder) issuing links for one time point at once:
    no error, and exactly one live link afterwards (the last one issued)."""
    import threading

    from django.db import connection

    today = timezone.localdate()
    target = point(make_schedule(start=today, today=today), "baseline")
    tokens: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def issue() -> None:
        try:
            for _ in range(5):
                raw = issue_link(target, timezone.now())
                with lock:
                    tokens.append(raw)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=issue) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert PatientLink.objects.filter(time_point=target).count() == 20
    live = PatientLink.objects.filter(used_at__isnull=True, retired_at__isnull=True)
    assert live.count() == 1
    opened = [raw for raw in tokens if _opens(raw)]
    assert len(opened) == 1


def _opens(raw: str) -> bool:
    try:
        open_link(raw, timezone.now())
    except LinkReplaced:
        return False
    return True


@pytest.mark.django_db(transaction=True)
def test_migration_keeps_the_newest_live_link_of_each_time_point(flushable_audit) -> None:
    """Before 0003 each reminder added a live link; migrating keeps the newest live one per
    time point, retires the others as replaced, and leaves used links alone."""
    from django.core.management import call_command
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    today = timezone.localdate()
    schedule = make_schedule(start=today, today=today)
    first, other = point(schedule, "baseline"), point(schedule, "month_3")
    call_command("migrate", "followup", "0002_lean_indexes", verbosity=0)
    try:
        old_apps = (
            MigrationExecutor(connection)
            .loader.project_state(("followup", "0002_lean_indexes"))
            .apps
        )
        Link = old_apps.get_model("followup", "PatientLink")
        now = timezone.now()
        made = {}
        for n, (tp, used) in enumerate(
            [(first, False), (first, False), (first, True), (first, False), (other, False)]
        ):
            made[n] = Link.objects.create(
                time_point_id=tp.pk,
                token_hash=f"{n:064d}",
                created_at=now,
                expires_at=now + dt.timedelta(days=1),
                used_at=now if used else None,
            ).pk
    finally:
        call_command("migrate", "followup", verbosity=0)
    links = {link.pk: link for link in PatientLink.objects.all()}
    assert links[made[0]].retired_reason == links[made[1]].retired_reason == "replaced"
    assert links[made[2]].retired_at is None and links[made[2]].used_at is not None
    assert links[made[3]].retired_at is None and links[made[4]].retired_at is None
