"""Each role's home, navigation that never leads to a refusal, plain-language refusals, and the
adjudication queue's order (serious first, then oldest onset). Runs on both databases.

The navigation test signs in through the real login form, lands where ``LOGIN_REDIRECT_URL``
sends the role, then follows every link of the navigation and of the home page (bounded) and
asserts that none answers 403, 404 or 5xx; it also checks the home's content, not just codes.
"""

from __future__ import annotations

import re
from html import unescape
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urldefrag, urlsplit

import pytest
from django.test import Client

from tests.followup.helpers import PSFS_NAMES
from tests.registry.factories import make_user
from tests.web.worklist_world import FAST_HASHERS, PASSWORD, World, build_world
from vertebra.registry import selectors
from vertebra.registry.models import AuditEvent, PatientAccount, Role
from vertebra.registry.permissions import PERMISSIONS, Action, Actor, is_allowed, refusal_message

pytestmark = pytest.mark.django_db

HOME = "/clinic/home/"
#: Anything shaped like a permission code ("patient.read") or a snake_case id.
CODE = re.compile(r"\b[a-z]+(?:_[a-z]+)*\.[a-z_]+\b|\b[a-z]+_[a-z_]+\b")
#: The most links followed per role (navigation + home page).
MAX_LINKS = 80


class Links(HTMLParser):
    """Collect the ``href`` of every ``<a>``; remember the clinic navigation's link texts."""

    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.nav_texts: list[str] = []
        self._in_nav = False
        self._in_a = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "nav" and values.get("aria-label") == "Clinic":
            self._in_nav = True
        if tag == "a" and values.get("href"):
            self.hrefs.append(str(values["href"]))
            self._in_a = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "nav":
            self._in_nav = False
        if tag == "a":
            self._in_a = False

    def handle_data(self, data: str) -> None:
        if self._in_nav and self._in_a and data.strip():
            self.nav_texts.append(data.strip())


def parse(html: str) -> Links:
    parser = Links()
    parser.feed(html)
    return parser


def visible_text(html: str) -> str:
    """The page's text without tags, scripts or attribute values (what a person reads)."""
    html = re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.S)
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))
    return unescape(re.sub(r" ([,.;:])", r"\1", text))


def sign_in(username: str) -> tuple[Client, str]:
    """Sign in through the login form (and the code step, for roles that must use MFA);
    return the client and where it was sent."""
    from django.contrib.auth import get_user_model
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from tests.signin import enrol_totp, totp_code
    from vertebra.mfa.services import mfa_required

    user = get_user_model().objects.get(username=username)
    if mfa_required(user):
        enrol_totp(user)
    client = Client()
    response = client.post("/accounts/login/", {"username": username, "password": PASSWORD})
    assert response.status_code == 302, response.content.decode()[:500]
    location = response["Location"]
    step = client.get(location)
    if step.status_code == 302 and step["Location"].startswith("/accounts/mfa/verify/"):
        device = TOTPDevice.objects.get(user=user, confirmed=True)
        response = client.post(step["Location"], {"code": totp_code(device)})
        assert response.status_code == 302, response.content.decode()[:500]
        location = response["Location"]
    return client, location


def internal(href: str) -> str | None:
    """A same-site path to follow, or None (other sites, mail links, pure fragments)."""
    parts = urlsplit(href)
    if parts.scheme or parts.netloc or href.startswith(("mailto:", "tel:", "#")):
        return None
    path = urldefrag(href)[0]
    return path or None


@pytest.fixture
def world(settings: Any) -> World:
    settings.PASSWORD_HASHERS = FAST_HASHERS
    return build_world()


EXPECTED_NAV = {
    "clinician": [
        "My work", "Patients", "Register a patient", "Adverse events to adjudicate",
        "Follow-up", "Outcomes",
    ],
    "coordinator": ["My work", "Patients", "Register a patient", "Follow-up", "Outcomes"],
    "clinicadmin": ["My work", "Patients", "Follow-up", "Outcomes", "Clinic directory"],
    "admin": ["My work", "Administration"],
    "researcher": ["My work", "Outcomes"],
}  # fmt: skip


@pytest.mark.parametrize("username", list(EXPECTED_NAV))
def test_every_link_of_the_nav_and_home_answers_for_every_role(world: World, username: str) -> None:
    client, landing = sign_in(username)
    assert landing == HOME
    home = client.get(HOME)
    assert home.status_code == 200
    html = home.content.decode()
    links = parse(html)
    assert links.nav_texts == EXPECTED_NAV[username]
    seen: dict[str, int] = {}
    for href in links.hrefs:
        path = internal(href)
        if path is None or path in seen or len(seen) >= MAX_LINKS:
            continue
        seen[path] = client.get(path).status_code
    bad = {path: status for path, status in seen.items() if status in (403, 404) or status >= 500}
    assert not bad, f"{username}: links answering refusals or errors: {bad}"
    # The pages behind the nav carry the same navigation (none of them leads to a refusal).
    for path in ("/clinic/", "/clinic/outcomes/", "/p/staff/", "/clinic/adverse-events/"):
        if path in seen and seen[path] == 200:
            assert parse(client.get(path).content.decode()).nav_texts == EXPECTED_NAV[username]
    assert len(seen) >= len(EXPECTED_NAV[username])


def test_clinician_home_lists_serious_first_and_flagged(world: World) -> None:
    client, _ = sign_in("clinician")
    html = client.get(HOME).content.decode()
    text = visible_text(html)
    assert "3 adverse events to adjudicate, 3 serious" not in text
    assert "3 adverse events to adjudicate, 1 serious" in text
    # The queue on the home: the serious one first and flagged in words, then oldest onset.
    order = [
        html.index(f'data-event="{event.pk}"')
        for event in (world.serious_event, world.old_event, world.mid_event)
    ]
    assert order == sorted(order)
    serious_row = html[order[0] : html.index("</tr>", order[0])]
    assert 'class="badge badge-danger">Serious</span>' in serious_row
    assert "Coordinator (Coordinator)" in serious_row and "Infection" in serious_row
    # Patients with something due, most urgent first, each reason in words.
    due = html[html.index('id="patients-due"') :]
    names = ["Seriousevent", "Oldevent", "Midevent", "Sterilitypending", "Overdue", "Duesoon"]
    positions = [due.index(name) for name in names]
    assert positions == sorted(positions)
    assert "Sterility result pending for product PROD-PENDING-1" in due
    assert "6 weeks follow-up overdue by 8 days" in due and "6 weeks follow-up due" in due
    assert "6 of 6 patients with something due" in text
    assert "Stranger" not in html and "neurological" not in html.lower()
    # What was shown is on the audit trail.
    row = AuditEvent.objects.filter(action="read", object_type="worklist").latest("id")
    assert row.new_values["home"] == "clinician"
    assert world.serious_patient.pk in row.new_values["patient_ids"]
    assert world.stranger.pk not in row.new_values["patient_ids"]


def test_coordinator_home_has_call_list_due_overdue_and_reported_events(world: World) -> None:
    client, _ = sign_in("coordinator")
    html = client.get(HOME).content.decode()
    calls = html[html.index('id="calls"') : html.index('id="followups"')]
    assert "Overdue, Pat" in calls and "+1 555 0100" in calls
    assert "No answer after the last reminder" in calls
    followups = html[html.index('id="followups"') : html.index('id="reported"')]
    assert followups.index("Overdue, Pat") < followups.index("Duesoon, Pat")
    assert "Overdue</span> by 8 days" in followups and "Due, 2 days left" in followups
    reported = html[html.index('id="reported"') :]
    for name in ("Seriousevent", "Oldevent", "Midevent"):
        assert name in reported
    assert reported.count("Pending adjudication") == 3
    assert "Adjudicate" not in reported  # read-only status
    assert "3 adverse events you reported wait for a clinician" in visible_text(html)
    assert "Stranger" not in html
    # The same counts as the follow-up page (one classification, one denominator).
    text = visible_text(html)
    assert "1 follow-up overdue, 1 due" in text and "Completeness 0% (0 of 2 time points" in text
    staff_page = client.get("/p/staff/").content.decode()
    assert "Completeness: <strong>0%</strong> (0 of 2)" in staff_page


def test_clinic_admin_home_has_staff_settings_and_reports(world: World) -> None:
    client, _ = sign_in("clinicadmin")
    html = client.get(HOME).content.decode()
    text = visible_text(html)
    assert "Registered trial (NCT id, IRB and IND)" in text or "Registered trial" in text
    assert "NCT01234567" in text and "Harbour IRB 2024-17" in text and "IND 123456" in text
    staff = html[html.index('id="staff"') : html.index('id="reports"')]
    for username in ("clinician", "coordinator", "clinicadmin"):
        assert f'<td data-label="Username">{username}</td>' in staff
    assert "outsider" not in staff and ">admin</td>" not in staff
    reports = html[html.index('id="reports"') :]
    for url in ("/clinic/outcomes/", "/clinic/outcomes/report.pdf", "/clinic/outcomes/report.json"):
        assert f'href="{url}"' in reports
    assert "Register a patient" not in html and "/clinic/adverse-events/" not in html


def test_registry_admin_home_verifies_the_audit_trail(world: World) -> None:
    client, _ = sign_in("admin")
    html = client.get(HOME).content.decode()
    assert "The audit trail has never been verified." in html
    for name in ("clinic", "membership", "allogeneiclot"):
        assert f'href="/admin/registry/{name}/"' in html
    assert "Harbour Spine Clinic" in html and "Far Away Spine" in html
    assert "Seriousevent" not in html  # counts only, no patient
    # "Verify now" is a POST with CSRF: without the token it is refused.
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(world.users["admin"])
    assert strict.post("/clinic/home/verify-audit/").status_code == 403
    assert not AuditEvent.objects.filter(action="verify").exists()
    response = client.post("/clinic/home/verify-audit/")
    assert response.status_code == 302 and response["Location"] == HOME + "#audit"
    row = AuditEvent.objects.get(action="verify", object_type="audit_chain")
    assert row.actor_user_id == world.users["admin"].pk
    assert row.new_values["problems"] == [] and row.new_values["intact"] is True
    page = client.get(HOME).content.decode()
    last = page[page.index('id="last-verification"') :]
    last = last[: last.index("</div>")]
    assert "Intact" in last and "by Admin (Registry admin)" in last
    assert "The audit trail is intact" in page  # the message after the check


def test_other_roles_cannot_verify_the_audit_trail(world: World) -> None:
    client, _ = sign_in("clinicadmin")
    response = client.post("/clinic/home/verify-audit/")
    assert response.status_code == 403
    assert "Clinic administrators cannot verify the audit trail" in response.content.decode()
    assert not AuditEvent.objects.filter(action="verify").exists()


def test_researcher_home_offers_the_deidentified_dashboard(world: World) -> None:
    client, _ = sign_in("researcher")
    html = client.get(HOME).content.decode()
    assert 'href="/clinic/outcomes/">De-identified outcomes dashboard' in html
    assert "vertebra export research" in html
    # the page's text, not its random CSRF tokens (one once contained "MRN")
    text = re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"', "", html)
    assert "Seriousevent" not in text and "MRN" not in text
    assert "7 patients in 2 clinics" in visible_text(
        html
    ) and "3 of 7 with a treatment episode" in visible_text(html)


def test_switching_role_lands_on_the_new_roles_home(world: World) -> None:
    from vertebra.registry.models import Membership

    user = world.users["clinician"]
    Membership.objects.create(user=user, clinic=None, role=Role.RESEARCHER)
    client, _ = sign_in("clinician")
    html = client.get(HOME).content.decode()
    assert 'name="role"' in html and "Acting as" in html
    response = client.post("/clinic/role/", {"role": "researcher"})
    assert response.status_code == 302 and response["Location"] == HOME
    html = client.get(HOME).content.decode()
    assert parse(html).nav_texts == ["My work", "Outcomes"]
    assert "De-identified outcomes dashboard" in html and "Seriousevent" not in html


def test_a_patient_signing_in_at_the_staff_form_goes_to_the_portal(world: World) -> None:
    user = make_user("portaluser")
    user.set_password(PASSWORD)
    user.save()
    PatientAccount.objects.create(user=user, patient=world.due_patient)
    client, landing = sign_in("portaluser")
    assert landing == HOME
    response = client.get(HOME)
    assert response.status_code == 302 and response["Location"] == "/p/"
    public = client.get("/learn/").content.decode()
    assert "My work" not in public and "/clinic/" not in public


# ------------------------------------------------------------------------ plain refusals


def test_every_refusal_message_is_plain_words() -> None:
    from vertebra.core.labels import has_label

    # Every action and role has its words (a new action needs a "permission" label).
    assert [a.value for a in Action if not has_label("permission", a.value)] == []
    for kind in ("role_plural", "role_someone"):
        assert [r for r in PERMISSIONS if not has_label(kind, r)] == []
    for role in PERMISSIONS:
        for action in Action:
            if is_allowed(role, action):
                continue
            message = refusal_message(role, action)
            assert not CODE.search(message), message
            assert action.value not in message and role not in message.split()
            assert " cannot " in message and message.endswith(".")
            if any(is_allowed(other, action) for other in PERMISSIONS):
                assert "does this" in message
    assert refusal_message(Role.COORDINATOR, Action.ADVERSE_EVENT_ADJUDICATE) == (
        "Coordinators cannot adjudicate adverse events; a clinician at your clinic does this."
    )


@pytest.mark.parametrize(
    ("username", "path", "words"),
    [
        ("coordinator", "/clinic/adverse-events/",
         "Coordinators cannot adjudicate adverse events; a clinician at your clinic does this."),
        ("clinicadmin", "/clinic/patients/new/",
         "Clinic administrators cannot register patients; a clinician or a coordinator at your "
         "clinic does this."),
        ("researcher", "/clinic/",
         "Researchers cannot open identified patient records; a clinician, a coordinator or a "
         "clinic administrator at the patient's clinic does this."),
        ("admin", "/clinic/", "Registry administrators cannot open identified patient records"),
    ],
)  # fmt: skip
def test_the_403_page_speaks_plain_language_and_links_home(
    world: World, username: str, path: str, words: str
) -> None:
    client, _ = sign_in(username)
    response = client.get(path)
    assert response.status_code == 403
    html = response.content.decode()
    text = visible_text(html)
    assert words in text
    assert not CODE.search(text), CODE.search(text)
    assert f'href="{HOME}"' in html and "Go to your work list" in text


def test_the_403_page_of_a_patient_account_points_to_the_portal(world: World) -> None:
    user = make_user()
    PatientAccount.objects.create(user=user, patient=world.due_patient)
    client = Client()
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    response = client.get("/clinic/")
    assert response.status_code == 403
    html = response.content.decode()
    assert 'href="/p/"' in html and "patient portal" in html
    assert world.due_patient.family_name not in html


def test_api_refusals_carry_the_same_plain_words(world: World) -> None:
    from tests.registry.web import bearer

    actor = Actor.for_user(world.users["coordinator"], Role.COORDINATOR)
    response = Client().post(
        f"/api/v1/episodes/{world.serious_patient.pk}/injections",
        {"levels": ["L4-L5"], "target": "intradiscal", "guidance": "fluoroscopy",
         "volume_ml": 2, "injected_on": "2024-03-02", "product_id": "X"},
        content_type="application/json", headers=bearer(actor),
    )  # fmt: skip
    assert response.status_code == 403
    detail = response.json()["detail"]
    assert detail == "Coordinators cannot record injections; a clinician at your clinic does this."


# ------------------------------------------------------------------------ queue order


def test_adjudication_queue_is_serious_first_then_oldest_onset(world: World) -> None:
    clinician = Actor.for_user(world.users["clinician"], Role.CLINICIAN)
    from django.utils import timezone

    today = timezone.localdate()
    queue = selectors.adjudication_queue(actor=clinician, today=today)
    assert [item.event.pk for item in queue.items] == [
        world.serious_event.pk, world.old_event.pk, world.mid_event.pk,
    ]  # fmt: skip
    assert (queue.total, queue.serious) == (3, 1)
    first = queue.items[0]
    assert first.reported_by == "Coordinator (Coordinator)" and first.reported_on == today
    assert first.days_waiting == 0
    # The page: same order, serious flagged in words, labels not codes, dates as people read.
    client, _ = sign_in("clinician")
    html = client.get("/clinic/adverse-events/").content.decode()
    rows = [html.index(f'data-event="{e.pk}"') for e in (world.serious_event, world.old_event, world.mid_event)]  # fmt: skip
    assert rows == sorted(rows)
    assert "1 serious" in visible_text(html) and "Serious</span>" in html
    assert "Harvest-site complication" in html and "harvest_site" not in visible_text(html)
    onset = world.old_event.onset
    assert f"{onset.day} {onset:%b %Y}" in html
    assert "Since today" in html


def test_a_new_serious_event_goes_to_the_top_of_a_long_queue(world: World) -> None:
    from django.utils import timezone

    clinician = Actor.for_user(world.users["clinician"], Role.CLINICIAN)
    coordinator = Actor.for_user(world.users["coordinator"], Role.COORDINATOR)
    from vertebra.registry import services

    today = timezone.localdate()
    newest = services.record_adverse_event(
        actor=coordinator, patient_id=world.due_patient.pk, description="Sudden weakness",
        category="neurological", onset=today, serious=True,
    )  # fmt: skip
    order = [e.pk for e in selectors.pending_adverse_events(actor=clinician)]
    assert order == [world.serious_event.pk, newest.pk, world.old_event.pk, world.mid_event.pk]


def test_a_patient_reported_red_flag_comes_right_after_serious_events(world: World) -> None:
    from django.utils import timezone

    from tests.followup.helpers import answers_for
    from vertebra.followup.models import FollowUpTimePoint
    from vertebra.followup.services import submit_responses

    week_6 = FollowUpTimePoint.objects.get(patient=world.overdue_patient, key="week_6")
    tickler = {"new_bladder_or_bowel_problem": 1}
    submit_responses(
        week_6,
        answers_for(week_6, ae_tickler=tickler),
        "r" * 20,
        timezone.now(),
        psfs_names=PSFS_NAMES,
    )
    clinician = Actor.for_user(world.users["clinician"], Role.CLINICIAN)
    queue = selectors.adjudication_queue(actor=clinician, today=timezone.localdate())
    flagged = queue.items[1]
    assert [item.event.pk for item in queue.items][::2] == [
        world.serious_event.pk,
        world.old_event.pk,
    ]
    assert flagged.event.patient_id == world.overdue_patient.pk and flagged.red_flag
    assert flagged.reported_by == "The patient (follow-up questionnaire)"
    assert (queue.total, queue.serious, queue.red_flags) == (4, 1, 1)
    client, _ = sign_in("clinician")
    html = client.get(HOME).content.decode()
    row = html[html.index(f'data-event="{flagged.event.pk}"') :]
    row = row[: row.index("</tr>")]
    assert "Red flag</span>" in row and "patient-reported" in row
    text = visible_text(html)
    assert "4 adverse events to adjudicate, 1 serious, 1 red flag" in text
    due = html[html.index('id="patients-due"') :]
    assert due.index("Seriousevent") < due.index("Overdue, Pat") < due.index("Oldevent")


def test_a_trail_too_long_for_a_page_request_is_left_to_the_scheduled_check(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vertebra.web import worklist_views

    monkeypatch.setattr(worklist_views, "VERIFY_IN_REQUEST_MAX_ROWS", 3)
    client, _ = sign_in("admin")
    html = client.get(HOME).content.decode()
    assert "Verify now" not in html and 'id="verify-scheduled"' in html
    response = client.post("/clinic/home/verify-audit/", follow=True)
    assert "too many to check within a page request" in response.content.decode()
    assert not AuditEvent.objects.filter(action="verify").exists()


# ------------------------------------------------------------------------ clinic isolation


def test_homes_and_queues_show_each_account_only_its_clinics_patients(world: World) -> None:
    """Role x clinic, on response bodies: clinicians at the first clinic, at the other clinic
    and at both, and a coordinator at each. The time points and events are scoped by their own
    clinic column (ADR 0023 §12); every page shows exactly the patients of the account's
    clinics. The other clinic's patient has an open follow-up older than any of the first
    clinic's and a serious event, so an unscoped read would put them first."""
    import datetime as dt

    from django.contrib.auth.models import User
    from django.utils import timezone

    from tests.registry.factories import make_episode
    from tests.registry.web import bearer
    from tests.web.worklist_world import _user
    from vertebra.followup.services import create_schedule_for_episode
    from vertebra.registry.models import Membership

    today = timezone.localdate()
    outsider = User.objects.get(username="outsider")
    # 6-week follow-up overdue by 12 days (the first clinic's is overdue by 8)
    episode = make_episode(world.stranger, start_date=today - dt.timedelta(days=54))
    create_schedule_for_episode(episode, Actor.for_user(outsider, Role.COORDINATOR), today)
    _user("clinician-b", Role.CLINICIAN, world.other)
    both = _user("clinician-ab", Role.CLINICIAN, world.clinic)
    Membership.objects.create(user=both, clinic=world.other, role=Role.CLINICIAN)
    ours = {"Seriousevent", "Oldevent", "Midevent", "Sterilitypending", "Overdue", "Duesoon"}
    ours_events = {"Seriousevent", "Oldevent", "Midevent"}
    theirs = {"Stranger"}
    # username -> (home: shown, hidden), (queue: shown, hidden)
    clinicians = {
        "clinician": ((ours, theirs), (ours_events, theirs)),
        "clinician-b": ((theirs, ours), (theirs, ours)),
        "clinician-ab": ((ours | theirs, set()), (ours_events | theirs, set())),
    }
    patient_ids = {p.family_name: p.pk for p in (world.stranger, world.serious_patient,
                   world.old_ae_patient, world.mid_ae_patient)}  # fmt: skip
    for username, ((home_shown, home_hidden), (queue_shown, queue_hidden)) in clinicians.items():
        client, _ = sign_in(username)
        for path, shown, hidden in (
            (HOME, home_shown, home_hidden),
            ("/clinic/adverse-events/", queue_shown, queue_hidden),
        ):
            body = client.get(path).content.decode()
            assert all(f"{name}, Pat" in body for name in shown), (username, path)
            assert not any(_named(name, body) for name in hidden), (username, path)
        actor = Actor.for_user(User.objects.get(username=username), Role.CLINICIAN)
        api = client.get("/api/v1/adverse-events", headers=bearer(actor)).json()
        assert {item["event"]["patient_id"] for item in api["items"]} == {
            patient_ids[name] for name in queue_shown
        }, username
        assert api["total"] == len(queue_shown) and api["serious"] == len(
            queue_shown & {"Seriousevent", "Stranger"}
        )
    # Coordinators: the follow-up list and the call list of their own clinic only.
    for username, shown, hidden in (
        ("coordinator", {"Overdue", "Duesoon"}, theirs),
        ("outsider", theirs, {"Overdue", "Duesoon"}),
    ):
        client, _ = sign_in(username)
        body = client.get(HOME).content.decode()
        followups = body[body.index('id="followups"') : body.index('id="reported"')]
        assert all(f"{name}, Pat" in followups for name in shown), username
        assert not any(_named(name, body) for name in hidden), username


def _named(family_name: str, body: str) -> bool:
    """Whether a page names the world's patient ``family_name`` (all are "Pat <name>")."""
    return f"{family_name}, Pat" in body or f"Pat {family_name}" in body
