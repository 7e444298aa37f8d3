"""Issue 12, proof: a full cell-therapy clinic day in Chromium, through the real server.

Each step is done by the role that owns it, signed in at ``/accounts/login/`` and starting
from its home (``/clinic/home/``) and the navigation, never by typing a clinic URL:

1. the coordinator registers Dana Office and records her registry consent;
2. the clinician finds her, records the diagnosis, the screening and the cell-therapy episode;
   the harvest is **blocked: no treatment consent**, with its way forward (the link to the
   consent form), which the clinician follows; harvest; processing with sterility pending;
   the injection is **blocked: sterility pending**, with its way forward (record the result),
   followed; the injection;
3. the follow-up worker e-mails the 6-week link; the patient answers on a phone in the portal
   (one section per screen, review, Send), ticking "hospital or emergency visit";
4. the coordinator reports the hospital stay as a serious adverse event;
5. the clinician's home lists it first (serious), above the patient's own report; the
   clinician adjudicates it, voids the patient's duplicate report with a reason (struck
   through on the record), corrects the harvest volume with a reason and reads it in History;
6. a **stale edit**: the coordinator and the clinician edit Dana's details at the same time;
   the second to save gets 409 with the other's change, and nothing is overwritten.

Screenshots of every step go to ``test-artifacts/journey/`` at desktop size, the key screens
also at phone size. Every page is watched for console errors and CSP violations.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.utils import timezone

from tests.browser.test_homes_browser import watch
from tests.followup.helpers import ANSWERS
from tests.registry.factories import make_clinic
from tests.signin import browser_sign_in
from tests.web.worklist_world import FAST_HASHERS
from vertebra.core.labels import format_date
from vertebra.followup.models import (
    FollowUpTimePoint,
    PsfsActivities,
    QuestionnaireResponse,
    TimePointStatus,
)
from vertebra.followup.worker import run_once
from vertebra.registry.audit import verify_audit_chain
from vertebra.registry.models import (
    AdverseEvent,
    AuditEvent,
    Consent,
    Harvest,
    Injection,
    Membership,
    Patient,
    Processing,
    Role,
)

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "correct horse battery staple 42"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}

#: Reports every Content-Security-Policy violation as a console error, which ``watch``
#: collects (Chromium also logs most of them itself; this catches every one, by directive).
CSP_REPORTER = """
document.addEventListener('securitypolicyviolation', (e) => {
  console.error('CSP violation: ' + e.violatedDirective + ' ' + e.blockedURI);
});
"""


class Journey:
    """The browser contexts of the day, their error watchers and numbered screenshots."""

    def __init__(self, browser: Any, base: str, folder: Path) -> None:
        self.browser, self.base, self.folder = browser, base, folder
        self.errors: dict[str, list[str]] = {}
        self.contexts: list[Any] = []
        self.shots = 0

    def person(self, name: str, *, phone: bool = False) -> Any:
        """A new browser (context) for ``name``, watched for console errors and CSP."""
        context = self.browser.new_context(
            viewport=PHONE if phone else DESKTOP, is_mobile=phone, has_touch=phone
        )
        context.add_init_script(CSP_REPORTER)
        context.set_default_timeout(10_000)
        self.contexts.append(context)
        page = context.new_page()
        self.errors[name] = watch(page)
        return page

    def shot(self, page: Any, name: str, *, phone: bool = False) -> None:
        """Screenshot ``page`` (full page) as NN-name.png; with ``phone``, also at 390×844."""
        self.shots += 1
        stem = f"{self.shots:02d}-{name}"
        page.screenshot(path=str(self.folder / f"{stem}.png"), full_page=True)
        # A full-page capture of a tall page leaves Chromium's layout stretched; setting the
        # size again restores it, so the next click lands where the page shows its target.
        page.set_viewport_size(page.viewport_size)
        page.evaluate("window.scrollTo(0, 0)")
        if phone:
            size = page.viewport_size
            page.set_viewport_size(PHONE)
            assert fits(page), f"{name} scrolls sideways on a phone"
            page.screenshot(path=str(self.folder / f"{stem}-phone.png"), full_page=True)
            page.set_viewport_size(size)

    def close(self) -> None:
        for n, context in enumerate(self.contexts):
            for page in context.pages:  # where each person stopped (a failure's last screen)
                page.screenshot(path=str(self.folder / f"zz-last-{n}.png"), full_page=True)
            context.close()


@pytest.fixture
def journey(
    live_server: Any, browser: Any, artifacts_dir: Path, settings: Any
) -> Iterator[Journey]:
    settings.PASSWORD_HASHERS = FAST_HASHERS
    settings.FOLLOWUP_PORTAL_BASE_URL = live_server.url
    folder = artifacts_dir / "journey"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):  # this run's pictures only
        old.unlink()
    day = Journey(browser, live_server.url, folder)
    yield day
    day.close()


def fits(page: Any) -> bool:
    """No sideways scrolling: the page is no wider than the viewport."""
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"))


def staff(username: str, role: str, clinic: Any, first: str, last: str) -> User:
    user = User.objects.create_user(
        username=username, password=PASSWORD, first_name=first, last_name=last
    )
    Membership.objects.create(user=user, clinic=clinic, role=role)
    return user


def sign_in(page: Any, base: str, username: str) -> None:
    """Password at /accounts/login/ (and the code when owed), landing on the role's home."""
    browser_sign_in(page, base, username, PASSWORD, next_url="/clinic/home/")
    page.wait_for_url("**/clinic/home/")
    assert page.get_by_role("heading", level=1).inner_text() == "My work"


def nav(page: Any, name: str) -> None:
    """Follow a link of the clinic navigation."""
    with page.expect_navigation():
        page.get_by_role("navigation", name="Clinic").get_by_role("link", name=name).click()


def save(page: Any, name: Any = "Save") -> Any:
    """Press the form's button and wait for the answer; returns its response."""
    with page.expect_navigation() as answer:
        page.get_by_role("button", name=name).click()
    return answer.value


def open_patient(page: Any, mrn: str, name: str) -> None:
    """Patients (navigation) → search by MRN → the patient's page."""
    nav(page, "Patients")
    page.get_by_label("Name or MRN").fill(mrn)
    page.get_by_role("button", name="Search").click()
    with page.expect_navigation():
        page.get_by_role("link", name=name).click()
    assert page.locator("h1").inner_text() == name


def fill_injection(page: Any, product_id: str, day: dt.date) -> None:
    page.get_by_label("Product id (from the product label)").fill(product_id)
    page.get_by_label("L4–L5").check()
    page.get_by_label("Target").select_option("intradiscal")
    page.get_by_label("Guidance").select_option("fluoroscopy")
    page.get_by_label("Volume (mL)").fill("2")
    page.get_by_label("Cell dose (million cells)").fill("240")
    page.get_by_label("Injected on").fill(day.isoformat())


def answer_screen(page: Any, answers: dict[str, int]) -> None:
    """Tick this screen's answers (the questions it shows, by name), then Next; questions
    that follow up a "yes" (which opioid, what dose) stay unanswered after a "no"."""
    names = page.evaluate(
        "() => [...new Set([...document.querySelectorAll('form.portal-form input[type=radio]')]"
        ".map((i) => i.name))]"
    )
    for name in (name for name in names if name in answers):  # follow-up questions left
        page.locator(f'input[name="{name}"][value="{answers[name]}"]').check()
    # The PSFS screen: activity boxes (when the activities are named here) and 0-10 lists.
    for box in page.locator("form.portal-form input[type=text]").all():
        name = box.get_attribute("name")
        if name in answers:
            box.fill(str(answers[name]))
    for select in page.locator("form.portal-form select").all():
        name = select.get_attribute("name")
        if name in answers:
            select.select_option(str(answers[name]))
    with page.expect_navigation():
        page.locator("form.portal-form button[type=submit]").click()


def test_a_cell_therapy_day_end_to_end(journey: Journey) -> None:
    base = journey.base
    today = timezone.localdate()
    start = today - dt.timedelta(days=28)  # the 6-week window opens today
    clinic = make_clinic("Harbour Spine Clinic")
    staff("coord", Role.COORDINATOR, clinic, "Casey", "Coordinator")
    staff("doc", Role.CLINICIAN, clinic, "Drew", "Clinician")

    # ------------------------------------------------------------------ 1. the coordinator
    coord = journey.person("coordinator")
    sign_in(coord, base, "coord")
    # The watcher sees a CSP violation (an inline style attribute), then starts afresh.
    coord.evaluate("document.body.setAttribute('style', 'color: red')")
    coord.wait_for_function("() => true")
    assert any("CSP violation: style-src" in e for e in journey.errors["coordinator"])
    journey.errors["coordinator"].clear()
    journey.shot(coord, "coordinator-home")
    nav(coord, "Register a patient")
    coord.get_by_label("MRN").fill("HS-1001")
    coord.get_by_label("Given name").fill("Dana")
    coord.get_by_label("Family name").fill("Office")
    coord.get_by_label("Date of birth").fill("1973-04-12")
    coord.get_by_label("Sex").select_option("female")
    coord.get_by_label("Email").fill("dana@example.org")
    coord.get_by_label("Phone").fill("+1 555 0101")
    journey.shot(coord, "coordinator-register-form", phone=True)
    save(coord)
    assert coord.locator("h1").inner_text() == "Office, Dana"
    patient = Patient.objects.get(mrn="HS-1001")
    assert (patient.email, patient.clinic_id) == ("dana@example.org", clinic.pk)

    coord.get_by_role("link", name="Record consent").click()
    coord.get_by_label("Kind").select_option("registry")
    coord.get_by_label("Form version").fill("registry-consent v3")
    coord.get_by_label("Signed on").fill((start - dt.timedelta(days=14)).isoformat())
    save(coord)
    assert "Consent recorded." in coord.content()
    assert list(Consent.objects.values_list("kind", "recorded_by__username")) == [
        ("registry", "coord")
    ]
    journey.shot(coord, "coordinator-registry-consent", phone=True)

    # ------------------------------------------------------------------ 2. the clinician
    doc = journey.person("clinician")
    sign_in(doc, base, "doc")
    journey.shot(doc, "clinician-home")
    open_patient(doc, "HS-1001", "Office, Dana")

    doc.get_by_role("link", name="Record a diagnosis").click()
    doc.get_by_label("Condition").select_option("degenerative_disc_disease")
    doc.get_by_label("ICD-10-CM code").fill("M51.36")
    doc.get_by_label("Diagnosed on").fill((start - dt.timedelta(days=30)).isoformat())
    doc.get_by_label("Level").select_option("L4-L5")
    doc.get_by_label("Pfirrmann grade (classic, 1–5)").fill("3")
    save(doc)
    assert "Diagnosis: Degenerative disc disease (M51.36)" in doc.content()
    journey.shot(doc, "clinician-diagnosis")

    doc.get_by_role("link", name="Screening evaluation").click()
    # The one-page form has two "None of these" since rule set 3.0.0: the warning signs' one.
    doc.get_by_role("region", name="Warning signs").get_by_label("None of these").check()
    doc.locator('input[name="age"]').fill("52")
    doc.locator('input[name="pain_duration_months"]').fill("14")
    journey.shot(doc, "clinician-screening-form")
    save(doc, "Evaluate and save")
    assert doc.locator(".screening-verdict").first.inner_text() == "We need more information"
    assert doc.locator(".ruleset-version").first.inner_text() == "3.0.0"
    journey.shot(doc, "clinician-screening-verdict")

    doc.get_by_role("link", name="Start a treatment episode").click()
    doc.get_by_label("Arm").select_option("cell_therapy")
    doc.get_by_label("Start date").fill(start.isoformat())
    save(doc)
    episode = patient.episodes.get()
    assert (episode.arm, episode.start_date) == ("cell_therapy", start)
    journey.shot(doc, "clinician-episode-started")

    # Blocked: no treatment consent. The harvest form says so before it is filled in ...
    doc.get_by_role("link", name="Record the harvest").click()
    assert doc.get_by_role("link", name="Record the treatment consent").is_visible()
    doc.locator("#id_source").select_option("bone_marrow_iliac_crest")
    doc.get_by_label("Volume (mL)").fill("60")
    doc.get_by_label("Harvested on").fill(start.isoformat())
    save(doc)
    # ... and, tried anyway, refuses with the way forward; nothing is saved.
    alert = doc.get_by_role("alert").inner_text()
    assert "Nothing was saved" in alert
    assert f"no treatment consent signed on or before {format_date(start)}" in alert
    assert not Harvest.objects.exists()
    journey.shot(doc, "blocked-no-treatment-consent", phone=True)
    doc.get_by_role("link", name="Record the treatment consent").first.click()
    assert doc.get_by_label("Kind").input_value() == "treatment"
    doc.get_by_label("Form version").fill("treatment-consent v2")
    doc.get_by_label("Signed on").fill((start - dt.timedelta(days=7)).isoformat())
    save(doc)
    assert "Consent recorded." in doc.content()
    journey.shot(doc, "clinician-treatment-consent")

    doc.get_by_role("link", name="Record the harvest").click()
    doc.locator("#id_source").select_option("bone_marrow_iliac_crest")
    doc.get_by_label("Volume (mL)").fill("60")
    doc.get_by_label("Harvested on").fill(start.isoformat())
    save(doc)
    assert "Harvest recorded." in doc.content()
    journey.shot(doc, "clinician-harvest")
    doc.get_by_role("link", name="Record the processing").click()
    doc.get_by_label("Method").select_option("bmac")
    doc.get_by_label("Lab").fill("Harbour Cell Lab")
    doc.get_by_label("Processed on").fill(start.isoformat())
    doc.get_by_label("Product id").fill("HS-1001-BMAC-1")
    doc.get_by_label("TNC (million cells per mL)").fill("121")
    save(doc)  # sterility left pending, the form's default: the lab has not reported yet
    assert Processing.objects.get().sterility == "pending"
    assert "its sterility result is still pending" in doc.content()
    journey.shot(doc, "clinician-sterility-pending")

    # Blocked: sterility pending. The injection is refused with the way forward.
    doc.get_by_role("link", name="Record an injection").click()
    fill_injection(doc, "HS-1001-BMAC-1", start + dt.timedelta(days=1))
    save(doc)
    assert "sterility result is still pending" in doc.get_by_role("alert").inner_text()
    assert not Injection.objects.exists()
    journey.shot(doc, "blocked-sterility-pending", phone=True)
    doc.get_by_role("link", name="Record the sterility result").first.click()
    doc.get_by_label("Pass").check()
    save(doc)
    assert "Sterility result recorded: pass." in doc.content()
    assert Processing.objects.get().sterility == "pass"
    journey.shot(doc, "clinician-sterility-pass")

    doc.get_by_role("link", name="Record an injection").click()
    fill_injection(doc, "HS-1001-BMAC-1", start + dt.timedelta(days=1))
    save(doc)
    assert "Injection recorded." in doc.content()
    assert "240 million cells" in doc.content()
    injection = Injection.objects.get()
    assert (injection.processing.product_id, injection.operator.username) == (
        "HS-1001-BMAC-1",
        "doc",
    )
    journey.shot(doc, "clinician-injected", phone=True)

    # ------------------------------------------------------------------ 3. the patient
    run_once(timezone.now())  # the follow-up worker's pass: opens the window, e-mails a link
    [invitation] = [m for m in mail.outbox if m.to == ["dana@example.org"]]
    assert invitation.subject == "Your 6 weeks back-pain questionnaire"
    link = re.search(r"http://[^\s]+/p/open/\?t=[A-Za-z0-9_-]+", invitation.body)
    assert link and link.group(0).startswith(base)
    dana = journey.person("patient", phone=True)
    dana.goto(link.group(0))
    assert dana.url == f"{base}/p/q/"  # the token is swapped for a session at once
    journey.shot(dana, "patient-start")
    dana.get_by_role("link", name="Start").click()
    answers = {name: value for items in ANSWERS.values() for name, value in items.items()}
    answers["hospital_or_er_visit"] = 1
    screens = 0
    while "/p/q/review/" not in dana.url:
        screens += 1
        assert dana.locator(".progress").inner_text().startswith("Part ")
        journey.shot(dana, f"patient-screen-{screens:02d}")
        answer_screen(dana, answers)
        assert screens < 40, "the questionnaire does not end"
    point = FollowUpTimePoint.objects.get(patient=patient, key="week_6")
    assert screens == len(point.instruments) - 1 + 10  # the ODI: one section per screen
    assert dana.locator('[data-item="hospital_or_er_visit"] dd.answer').inner_text() == "Yes"
    assert not QuestionnaireResponse.objects.exists()  # nothing stored before Send
    journey.shot(dana, "patient-review")
    dana.locator("#send").click()
    dana.wait_for_url("**/p/done/**")
    assert PsfsActivities.objects.get(episode__patient=patient).names == [
        ANSWERS["psfs"]["name_1"],
        ANSWERS["psfs"]["name_2"],
    ]  # first PSFS of the episode: Dana names the activities at 6 weeks
    point.refresh_from_db()
    assert point.status == TimePointStatus.COMPLETED
    assert QuestionnaireResponse.objects.get(time_point=point, instrument_id="odi").score == 40
    journey.shot(dana, "patient-done")
    tickled = AdverseEvent.objects.get(patient=patient)
    assert (tickled.status, tickled.serious) == ("pending", False)

    # ------------------------------------------------------------------ 4. the coordinator
    coord.get_by_role("navigation", name="Clinic").get_by_role("link", name="My work").click()
    open_patient(coord, "HS-1001", "Office, Dana")
    coord.get_by_role("link", name="Report an adverse event").click()
    coord.get_by_label("Description").fill(
        "Admitted 2 nights for severe back pain after the injection; discitis ruled out."
    )
    coord.get_by_label("Category").select_option("other")
    coord.get_by_label("Onset").fill((today - dt.timedelta(days=3)).isoformat())
    coord.get_by_label("Serious").check()
    episode_choice = coord.get_by_label("Episode").locator("option:checked").inner_text()
    assert episode_choice == f"Cell therapy from {format_date(start)}"
    journey.shot(coord, "coordinator-report-serious-ae", phone=True)
    save(coord)
    serious = AdverseEvent.objects.get(serious=True)
    assert (serious.status, serious.episode_id) == ("pending", episode.pk)  # preselected
    with coord.expect_navigation():
        coord.get_by_role("navigation", name="Clinic").get_by_role("link", name="My work").click()
    journey.shot(coord, "coordinator-home-reported", phone=True)

    # ------------------------------------------------------------------ 5. the clinician
    with doc.expect_navigation():
        doc.get_by_role("navigation", name="Clinic").get_by_role("link", name="My work").click()
    rows = doc.locator("table.ae-queue tbody tr")
    assert rows.count() == 2
    assert "Serious" in rows.nth(0).inner_text() and "Coordinator" in rows.nth(0).inner_text()
    assert "The patient" in rows.nth(1).inner_text()
    journey.shot(doc, "clinician-queue-serious-first", phone=True)
    with doc.expect_navigation():
        rows.nth(0).get_by_role("link", name="Adjudicate").click()
    doc.get_by_label("Grade 3").check()
    doc.get_by_label("Serious adverse event").check()
    doc.get_by_label("Related to the injection procedure").check()
    doc.get_by_label("Unexpected").check()
    doc.get_by_label("Outcome").select_option("recovered")
    doc.get_by_label("Resolved on").fill((today - dt.timedelta(days=1)).isoformat())
    journey.shot(doc, "clinician-adjudicate")
    save(doc)
    serious.refresh_from_db()
    assert (serious.status, serious.ctcae_grade, serious.relatedness) == (
        "adjudicated",
        3,
        "procedure",
    )
    assert "CTCAE grade 3" in doc.locator(f"#adverseevent-{serious.pk}").inner_text()
    journey.shot(doc, "clinician-adjudicated")

    # The patient's report is the same hospital stay: voided with a reason, struck through.
    item = doc.locator(f"#adverseevent-{tickled.pk}")
    item.get_by_role("link", name="Void").click()
    void_reason = "Same hospital stay as the coordinator's serious report"
    doc.get_by_label("Reason").fill(void_reason)
    journey.shot(doc, "clinician-void-confirm")
    with doc.expect_navigation():
        doc.get_by_role("button", name=re.compile("^Void")).click()
    assert "voided. It stays on record, struck through." in doc.content()
    item = doc.locator(f"#adverseevent-{tickled.pk}")
    assert item.locator("del").first.is_visible()
    assert void_reason in item.inner_text()
    assert item.get_by_role("link", name="Adjudicate").count() == 0  # nothing left to do
    tickled.refresh_from_db()
    assert tickled.voided_at is not None and tickled.void_reason == void_reason
    journey.shot(doc, "clinician-voided-struck-through", phone=True)

    # The harvest volume is corrected with a reason and read in the record's History.
    harvest = Harvest.objects.get()
    doc.locator(f"#harvest-{harvest.pk}").get_by_role("link", name="Correct").click()
    doc.get_by_label("Volume (mL)").fill("55")
    reason = "Lab sheet says 55 mL; 60 was the syringe size"
    doc.get_by_label("Reason").fill(reason)
    journey.shot(doc, "clinician-correct-harvest")
    save(doc, re.compile("^Save"))
    assert "correction saved" in doc.content()
    harvest.refresh_from_db()
    assert (harvest.volume_ml, harvest.version) == (55, 2)
    with doc.expect_navigation():
        doc.locator(f"#harvest-{harvest.pk}").get_by_role("link", name="History").click()
    history = doc.locator("main").inner_text()
    assert reason in history and "Corrected" in history
    assert re.search(r"Corrected .*Volume \(mL\)\s+60\s+55", history, re.S), history
    journey.shot(doc, "clinician-harvest-history", phone=True)

    # ------------------------------------------------------------------ 6. a stale edit
    doc.go_back()
    open_patient(doc, "HS-1001", "Office, Dana")
    open_patient(coord, "HS-1001", "Office, Dana")
    for page in (doc, coord):
        with page.expect_navigation():
            page.get_by_role("link", name="Edit details").click()
    coord.get_by_label("Phone").fill("+1 555 0199")
    coord.get_by_label("Reason").fill("New mobile number, told by phone")
    save(coord)
    assert Patient.objects.get(pk=patient.pk).phone == "+1 555 0199"
    doc.get_by_label("Email").fill("dana.office@example.org")
    doc.get_by_label("Reason").fill("Patient gave a new e-mail at the visit")
    with doc.expect_response(lambda r: r.request.method == "POST") as answer:
        save(doc)
    assert answer.value.status == 409
    theirs = doc.locator("#missed-changes").inner_text()
    assert "Casey Coordinator" in theirs or "coord" in theirs
    assert "New mobile number, told by phone" in theirs and "+1 555 0199" in theirs
    mine = doc.locator("#your-values").inner_text()
    assert "dana.office@example.org" in mine
    assert "+1 555 0101" in mine  # the old number their form still held: not saved either
    assert Patient.objects.get(pk=patient.pk).email == "dana@example.org"  # nothing overwritten
    journey.shot(doc, "stale-edit-409", phone=True)
    # The form under it holds this user's change on top of the current record: the phone
    # they did not touch shows the coordinator's new number, so saving again undoes nothing.
    assert doc.get_by_label("Phone").input_value() == "+1 555 0199"
    assert doc.get_by_label("Email").input_value() == "dana.office@example.org"
    assert doc.get_by_label("Reason").input_value() == "Patient gave a new e-mail at the visit"
    save(doc, "Save my correction")
    assert "correction saved" in doc.content()
    journey.shot(doc, "stale-edit-saved-again")
    stored = Patient.objects.get(pk=patient.pk)
    assert (stored.email, stored.phone, stored.version) == (
        "dana.office@example.org",
        "+1 555 0199",
        3,
    )

    # ------------------------------------------------------------------ the trail
    writes = AuditEvent.objects.filter(action__in=("create", "update", "void")).order_by("id")
    by = [(row.actor_username, row.action, row.object_type) for row in writes]
    assert ("coord", "create", "patient") in by and ("coord", "create", "adverseevent") in by
    for kind in ("diagnosis", "screeningevaluation", "treatmentepisode", "harvest", "injection"):
        assert ("doc", "create", kind) in by, kind
    assert ("doc", "void", "adverseevent") in by
    corrected = writes.get(action="update", object_type="harvest")
    assert (corrected.reason, corrected.old_values, corrected.new_values) == (
        reason,
        {"volume_ml": 60.0, "version": 1},
        {"volume_ml": 55.0, "version": 2},
    )
    assert verify_audit_chain() == []
    assert journey.errors == {name: [] for name in journey.errors}
