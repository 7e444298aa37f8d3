"""The blocked paths of the cell-therapy pathway in Chromium, each showing its way forward
(issue 12): no treatment consent → the message and a link → record the consent → the harvest
proceeds; sterility pending → the injection is refused with a link → record the result → the
injection succeeds. Screenshots in test-artifacts/blocked-*.png; no console errors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from tests.registry.factories import make_clinic, make_episode, make_patient
from vertebra.registry.audit import verify_audit_chain
from vertebra.registry.models import Consent, Injection, Membership, Processing, Role

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "correct horse battery staple 42"


def staff(username: str, role: str, clinic: Any) -> User:
    user = User.objects.create_user(username=username, password=PASSWORD)
    Membership.objects.create(user=user, clinic=clinic, role=role)
    return user


def save(page: Any) -> None:
    with page.expect_navigation():
        page.get_by_role("button", name="Save").click()


def test_no_consent_and_pending_sterility_each_show_the_way_forward(
    live_server: Any, page: Any, artifacts_dir: Path
) -> None:
    clinic = make_clinic("Harbour Spine Clinic")
    staff("doc", Role.CLINICIAN, clinic)
    patient = make_patient(clinic, family_name="Waiting", given_name="Wren", consented=False)
    episode = make_episode(patient)
    errors: list[tuple[str, str]] = []
    page.on(
        "console",
        lambda m: errors.append((m.text, m.location.get("url", ""))) if m.type == "error" else None,
    )
    base = live_server.url

    page.goto(base + "/accounts/login/?next=/clinic/")
    page.locator("#id_username").fill("doc")
    page.locator("#id_password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/clinic/")
    page.goto(f"{base}/clinic/patients/{patient.pk}/")

    # --- blocked: no treatment consent. The patient page says so, with a link.
    waiting = page.locator('[data-remedy="treatment_consent"]').first
    assert "no active treatment consent is on file" in waiting.inner_text()
    page.screenshot(path=str(artifacts_dir / "blocked-1-no-consent.png"), full_page=True)

    # Trying anyway: the harvest form warns first, and the refusal links to the consent form.
    page.get_by_role("link", name="Record the harvest").click()
    assert page.get_by_role("link", name="Record the treatment consent").is_visible()
    page.locator("#id_source").select_option("bone_marrow_iliac_crest")
    page.get_by_label("Volume (mL)").fill("60")
    page.get_by_label("Harvested on").fill("2024-03-01")
    save(page)
    alert = page.get_by_role("alert")
    assert "Nothing was saved" in alert.inner_text()
    assert "no treatment consent signed on or before 1 Mar 2024" in alert.inner_text()
    page.screenshot(path=str(artifacts_dir / "blocked-2-harvest-refused.png"), full_page=True)

    page.get_by_role("link", name="Record the treatment consent").click()
    assert page.get_by_label("Kind").input_value() == "treatment"
    page.get_by_label("Form version").fill("treatment-consent v1")
    page.get_by_label("Signed on").fill("2024-02-20")
    save(page)
    assert "Consent recorded." in page.content()
    assert Consent.objects.filter(patient=patient, kind="treatment").count() == 1
    page.screenshot(path=str(artifacts_dir / "blocked-3-consent-recorded.png"), full_page=True)

    # --- proceeds: harvest and processing (sterility left pending, the form's default).
    page.get_by_role("link", name="Record the harvest").click()
    page.locator("#id_source").select_option("bone_marrow_iliac_crest")
    page.get_by_label("Volume (mL)").fill("60")
    page.get_by_label("Harvested on").fill("2024-03-01")
    save(page)
    assert "Harvest recorded." in page.content()
    page.get_by_role("link", name="Record the processing").click()
    page.get_by_label("Method").select_option("bmac")
    page.get_by_label("Lab").fill("Harbour Cell Lab")
    page.get_by_label("Processed on").fill("2024-03-01")
    page.get_by_label("Product id").fill("WW-BMAC-1")
    page.get_by_label("TNC (million cells per mL)").fill("121")
    save(page)
    assert Processing.objects.get().sterility == "pending"
    assert "its sterility result is still pending" in page.content()
    page.screenshot(path=str(artifacts_dir / "blocked-4-sterility-pending.png"), full_page=True)

    # --- blocked: the injection is refused while sterility is pending, with the way forward.
    page.get_by_role("link", name="Record an injection").click()
    page.get_by_label("Product id (from the product label)").fill("WW-BMAC-1")
    page.get_by_label("L4–L5").check()
    page.get_by_label("Target").select_option("intradiscal")
    page.get_by_label("Guidance").select_option("fluoroscopy")
    page.get_by_label("Volume (mL)").fill("2")
    page.get_by_label("Cell dose (million cells)").fill("240")
    page.get_by_label("Injected on").fill("2024-03-02")
    save(page)
    assert "sterility result is still pending" in page.get_by_role("alert").inner_text()
    assert not Injection.objects.exists()
    page.screenshot(path=str(artifacts_dir / "blocked-5-injection-refused.png"), full_page=True)

    page.get_by_role("link", name="Record the sterility result").first.click()
    page.get_by_label("Pass").check()
    save(page)
    assert "Sterility result recorded: pass." in page.content()
    page.screenshot(path=str(artifacts_dir / "blocked-6-sterility-recorded.png"), full_page=True)

    # --- proceeds: the injection is recorded.
    page.get_by_role("link", name="Record an injection").click()
    page.get_by_label("Product id (from the product label)").fill("WW-BMAC-1")
    page.get_by_label("L4–L5").check()
    page.get_by_label("Target").select_option("intradiscal")
    page.get_by_label("Guidance").select_option("fluoroscopy")
    page.get_by_label("Volume (mL)").fill("2")
    page.get_by_label("Cell dose (million cells)").fill("240")
    page.get_by_label("Injected on").fill("2024-03-02")
    save(page)
    assert "Injection recorded." in page.content()
    assert "240 million cells" in page.content()
    assert Injection.objects.get().processing.product_id == "WW-BMAC-1"
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=str(artifacts_dir / "blocked-7-injected-phone.png"), full_page=True)
    # No script error at all. Chromium logs every 4xx document as "Failed to load resource":
    # here only the two refused forms (answered 400 by design) and the test server's missing
    # favicon.
    scripts = [text for text, _ in errors if not text.startswith("Failed to load resource")]
    assert scripts == []
    failed = sorted({url.split("/", 3)[3] for text, url in errors if "status of 400" in text})
    assert failed == [
        f"clinic/episodes/{episode.pk}/harvest/",
        f"clinic/episodes/{episode.pk}/injections/new/",
    ]
    assert verify_audit_chain() == []


def test_way_forward_pages_have_no_serious_accessibility_violations(
    live_server: Any, browser: Any
) -> None:
    """axe-core (WCAG 2.1 A/AA) on the patient page with its blockers and the inline
    sterility form, the sterility page and the withdrawal page."""
    from tests.browser.test_accessibility import serious_violations
    from tests.registry.factories import make_actor
    from vertebra.registry import services

    clinic = make_clinic("Harbour Spine Clinic")
    staff("doc", Role.CLINICIAN, clinic)
    waiting = make_patient(clinic, family_name="Waiting", consented=False)
    make_episode(waiting)
    pending = make_patient(clinic, family_name="Pending")
    episode = make_episode(pending)
    setup = make_actor(Role.CLINICIAN, clinic)
    services.record_harvest(
        actor=setup, episode_id=episode.pk, source="adipose", harvested_on=episode.start_date,
        volume_ml=100,
    )  # fmt: skip
    services.record_processing(
        actor=setup, episode_id=episode.pk, method="svf", lab="Lab",
        processed_on=episode.start_date, product_id="P-1",
    )  # fmt: skip
    consent = pending.consents.first()
    assert consent is not None
    context = browser.new_context(bypass_csp=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(live_server.url + "/accounts/login/?next=/clinic/")
    page.locator("#id_username").fill("doc")
    page.locator("#id_password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/clinic/")
    for path in (
        f"/clinic/patients/{waiting.pk}/",
        f"/clinic/patients/{pending.pk}/",
        f"/clinic/episodes/{episode.pk}/sterility/",
        f"/clinic/episodes/{episode.pk}/injections/new/",
        f"/clinic/consents/{consent.pk}/withdraw/",
    ):
        page.goto(live_server.url + path)
        assert serious_violations(page) == [], path
    context.close()
