"""Staff walk the registry in Chromium: intake by a coordinator, the cell-therapy pathway by a
clinician, and the chain-of-custody refusal of another patient's product. Screenshots are saved.

This test writes audit rows inside a transactional (live-server) test, so it also proves the
SQLite flush fix in ``tests/conftest.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from tests.registry.factories import DAY0, make_actor, make_clinic, make_patient
from vertebra.registry import services
from vertebra.registry.audit import verify_audit_chain
from vertebra.registry.models import Injection, Membership, Patient, Role

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "correct horse battery staple 42"


def staff(username: str, role: str, clinic: Any) -> User:
    user = User.objects.create_user(username=username, password=PASSWORD)
    Membership.objects.create(user=user, clinic=clinic, role=role)
    return user


def sign_in(page: Any, base_url: str, username: str) -> None:
    page.goto(base_url + "/accounts/login/?next=/clinic/")
    page.locator("#id_username").fill(username)
    page.locator("#id_password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/clinic/")


def save(page: Any) -> None:
    with page.expect_navigation():
        page.get_by_role("button", name="Save").click()


def test_coordinator_intake_then_clinician_pathway(
    live_server: Any, page: Any, artifacts_dir: Path
) -> None:
    clinic = make_clinic("Harbour Spine Clinic")
    staff("coord", Role.COORDINATOR, clinic)
    staff("doc", Role.CLINICIAN, clinic)
    # Another patient of the same clinic, with a released (sterility-passed) product.
    someone = make_patient(clinic, family_name="Elsewhere")
    setup = make_actor(Role.CLINICIAN, clinic)
    episode = services.start_episode(
        actor=setup, patient_id=someone.pk, arm="cell_therapy", start_date=DAY0
    )
    services.record_harvest(actor=setup, episode_id=episode.pk, source="adipose", harvested_on=DAY0)
    services.record_processing(
        actor=setup, episode_id=episode.pk, method="svf", lab="Lab", processed_on=DAY0,
        product_id="OTHER-PRODUCT-9", sterility="pass",
    )  # fmt: skip
    base = live_server.url

    # --- the coordinator: register, diagnose, screen, start an episode
    sign_in(page, base, "coord")
    page.get_by_role("link", name="Register a patient").first.click()
    page.get_by_label("MRN").fill("HS-1001")
    page.get_by_label("Given name").fill("Dana")
    page.get_by_label("Family name").fill("Office")
    page.get_by_label("Date of birth").fill("1973-04-12")
    page.get_by_label("Sex").select_option("female")
    save(page)
    assert page.locator("h1").inner_text() == "Office, Dana"
    patient = Patient.objects.get(mrn="HS-1001")

    page.get_by_role("link", name="Record a diagnosis").click()
    page.get_by_label("Condition").select_option("degenerative_disc_disease")
    page.get_by_label("ICD-10-CM code").fill("M51.36")
    page.get_by_label("Diagnosed on").fill("2024-02-01")
    page.get_by_label("Level").select_option("L4-L5")
    page.get_by_label("Pfirrmann grade (classic, 1–5)").fill("3")
    page.get_by_label("Modified Pfirrmann grade (1–8)").fill("5")
    save(page)
    assert "Diagnosis: Degenerative disc disease (M51.36)" in page.content()

    # Consent gates treatment: the coordinator records the signed treatment consent.
    page.get_by_role("link", name="Record consent").click()
    page.get_by_label("Kind").select_option("treatment")
    page.get_by_label("Form version").fill("treatment-consent v1")
    page.get_by_label("Signed on").fill("2024-02-01")
    save(page)
    assert "Consent recorded." in page.content()

    page.get_by_role("link", name="Screening evaluation").click()
    # Two "None of these" on the one-page clinician form since rule set 3.0.0 (warning signs,
    # inflammatory back pain features): tick the warning signs' one.
    page.get_by_role("region", name="Warning signs").get_by_label("None of these").check()
    page.locator('input[name="age"]').fill("52")
    page.locator('input[name="pain_duration_months"]').fill("14")
    with page.expect_navigation():
        page.get_by_role("button", name="Evaluate and save").click()
    verdict = page.locator(".screening-verdict").first.inner_text()
    assert verdict
    assert page.locator(".ruleset-version").first.inner_text()
    page.screenshot(path=str(artifacts_dir / "clinic-1-intake-screening.png"), full_page=True)

    page.get_by_role("link", name="Start a treatment episode").click()
    page.get_by_label("Arm").select_option("cell_therapy")
    page.get_by_label("Start date").fill("2024-03-01")
    save(page)
    page.get_by_role("button", name="Sign out").click()

    # --- the clinician: harvest → processing → injection
    sign_in(page, base, "doc")
    page.get_by_label("Name or MRN").fill("HS-1001")
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name="Office, Dana").click()
    page.get_by_role("link", name="Record the harvest").click()
    page.locator("#id_source").select_option("bone_marrow_iliac_crest")
    page.get_by_label("Volume (mL)").fill("60")
    page.get_by_label("Harvested on").fill("2024-03-01")
    save(page)
    page.get_by_role("link", name="Record the processing").click()
    page.get_by_label("Method").select_option("bmac")
    page.get_by_label("Lab").fill("Harbour Cell Lab")
    page.get_by_label("Processed on").fill("2024-03-01")
    page.get_by_label("Product id").fill("HS-1001-BMAC-1")
    page.get_by_label("Viability %").fill("94")
    page.get_by_label("Sterility").select_option("pass")
    save(page)
    page.screenshot(path=str(artifacts_dir / "clinic-2-harvest-processing.png"), full_page=True)

    page.get_by_role("link", name="Record an injection").click()
    page.get_by_label("Product id (from the product label)").fill("OTHER-PRODUCT-9")
    page.get_by_label("L4–L5").check()
    page.get_by_label("Target").select_option("intradiscal")
    page.get_by_label("Guidance").select_option("fluoroscopy")
    page.get_by_label("Volume (mL)").fill("2")
    page.get_by_label("Injected on").fill("2024-03-02")
    save(page)
    alert = page.get_by_role("alert")
    assert "may be injected only into the patient it was harvested from" in alert.inner_text()
    assert "Nothing was saved" in alert.inner_text()
    assert not Injection.objects.exists()
    page.screenshot(path=str(artifacts_dir / "clinic-3-refused-other-product.png"), full_page=True)

    page.get_by_label("Product id (from the product label)").fill("HS-1001-BMAC-1")
    save(page)
    assert "Injection recorded." in page.content()
    injection = Injection.objects.get()
    assert injection.episode.patient_id == patient.pk
    assert injection.operator.username == "doc"
    page.screenshot(path=str(artifacts_dir / "clinic-4-timeline.png"), full_page=True)
    assert verify_audit_chain() == []
