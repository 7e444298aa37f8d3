"""The clinic directory on the registry: consent to publish and answers (who may, audit), the
public pages (only published clinics, the others counted, figures with denominators, the
synthetic label), and the demo's living directory."""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from tests.registry.factories import make_actor, make_clinic
from tests.registry.web import last_seq, signed_in
from vertebra.cohort.loader import load_cohort
from vertebra.core.knowledge import find_promising_language
from vertebra.core.synth import generate_cohort
from vertebra.directory import figures, selectors, services
from vertebra.directory.models import ClinicAnswer, ClinicListing
from vertebra.outcomes import snapshot
from vertebra.registry.errors import NotFound, PermissionDeniedError
from vertebra.registry.models import AuditEvent, Clinic, Role
from vertebra.web.services.demo import load_demo_cohort

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_results() -> Iterator[None]:
    """Results built from the snapshot are kept per process: never carry them across tests."""
    snapshot.results.clear()
    yield
    snapshot.results.clear()


def text_of(page: bytes) -> str:
    body = page.decode().split("<main", 1)[1]
    return re.sub(r"\s+", " ", html_lib.unescape(re.sub(r"<[^>]+>", " ", body)))


# ------------------------------------------------------------------- consent and answers


def test_only_the_clinics_own_admin_publishes_and_each_switch_is_audited() -> None:
    mine, other = make_clinic("Own"), make_clinic("Other")
    admin = make_actor(Role.CLINIC_ADMIN, mine)
    before = last_seq()
    listing = services.set_published(actor=admin, clinic_id=mine.pk, published=True)
    assert listing.published and listing.published_on == timezone.localdate()
    row = AuditEvent.objects.get(id__gt=before, object_type="clinic_listing")
    assert (row.action, row.clinic_id, row.actor_user_id) == ("create", mine.pk, admin.user.pk)
    assert row.old_values == {"published": False, "published_on": None}
    assert row.new_values == {"published": True, "published_on": timezone.localdate().isoformat()}
    assert row.reason == "publish consent given"

    services.set_published(actor=admin, clinic_id=mine.pk, published=False)
    last = AuditEvent.objects.filter(object_type="clinic_listing").order_by("-id").first()
    assert last is not None and last.action == "update"
    assert last.reason == "publish consent withdrawn" and last.new_values["published"] is False
    # Same state again: nothing changes, nothing is written.
    seq = last_seq()
    services.set_published(actor=admin, clinic_id=mine.pk, published=False)
    assert last_seq() == seq

    with pytest.raises(NotFound):  # another clinic answers like a missing one
        services.set_published(actor=admin, clinic_id=other.pk, published=True)
    assert not ClinicListing.objects.filter(clinic=other).exists()
    denied = AuditEvent.objects.order_by("-id").first()
    assert denied is not None and denied.action == "denied"


@pytest.mark.parametrize("role", [Role.CLINICIAN, Role.COORDINATOR])
def test_other_roles_of_the_clinic_cannot_publish_or_answer(role: str) -> None:
    clinic = make_clinic()
    actor = make_actor(role, clinic)
    with pytest.raises(PermissionDeniedError):
        services.set_published(actor=actor, clinic_id=clinic.pk, published=True)
    with pytest.raises(PermissionDeniedError):
        services.save_answers(actor=actor, clinic_id=clinic.pk, answers={"cost": "Free."})
    assert not ClinicListing.objects.exists() and not ClinicAnswer.objects.exists()


def test_answers_are_saved_changed_and_cleared_with_audit() -> None:
    clinic = make_clinic()
    admin = make_actor(Role.CLINIC_ADMIN, clinic)
    assert (
        services.save_answers(
            actor=admin, clinic_id=clinic.pk, answers={"cost": " $4,000 in total. ", "delivery": ""}
        )
        == 1
    )
    assert selectors.answers_of(clinic.pk) == {"cost": "$4,000 in total."}
    row = AuditEvent.objects.filter(object_type="clinic_answers").get()
    assert row.old_values == {"cost": ""} and row.new_values == {"cost": "$4,000 in total."}
    assert services.save_answers(actor=admin, clinic_id=clinic.pk, answers={"cost": ""}) == 1
    assert selectors.answers_of(clinic.pk) == {}
    with pytest.raises(Exception, match="Unknown question: no-such"):
        services.save_answers(actor=admin, clinic_id=clinic.pk, answers={"no-such": "x"})


# ---------------------------------------------------------------------- staff pages


def test_staff_page_publishes_and_saves_answers_for_the_own_clinic_only() -> None:
    mine, other = make_clinic("Own clinic"), make_clinic("Other clinic")
    admin = make_actor(Role.CLINIC_ADMIN, mine)
    client = signed_in(admin)
    home = client.get("/clinic/directory/")
    assert home.status_code == 302 and home["Location"] == f"/clinic/directory/{mine.pk}/"
    page = client.get(f"/clinic/directory/{mine.pk}/")
    assert page.status_code == 200 and "Not published." in text_of(page.content)
    assert "Other clinic" not in page.content.decode()
    done = client.post(f"/clinic/directory/{mine.pk}/publish/", {"publish": "yes"}, follow=True)
    assert "Published since" in text_of(done.content)
    saved = client.post(f"/clinic/directory/{mine.pk}/", {"cost": "Self-pay."}, follow=True)
    assert "Answers saved (1 changed)." in text_of(saved.content)
    assert client.get(f"/clinic/directory/{other.pk}/").status_code == 404
    refused = client.post(f"/clinic/directory/{other.pk}/publish/", {"publish": "yes"})
    assert refused.status_code == 404 and "Other clinic" not in refused.content.decode()
    assert not ClinicListing.objects.filter(clinic=other).exists()
    clinician = signed_in(make_actor(Role.CLINICIAN, mine))
    assert clinician.get(f"/clinic/directory/{mine.pk}/").status_code == 403
    assert Client().get(f"/clinic/directory/{mine.pk}/").status_code == 302  # sign in first


# --------------------------------------------------------------------- public pages


@pytest.fixture
def registry(db: Any) -> list[Clinic]:
    """A 600-patient synthetic registry (3 clinics) with a published first and second clinic."""
    load_cohort(generate_cohort(600, 5, today=timezone.localdate()), now=timezone.now())
    clinics = list(Clinic.objects.order_by("pk"))
    for clinic in clinics[:2]:
        admin = make_actor(Role.CLINIC_ADMIN, clinic)
        services.set_published(actor=admin, clinic_id=clinic.pk, published=True)
    services.save_answers(
        actor=make_actor(Role.CLINIC_ADMIN, clinics[0]),
        clinic_id=clinics[0].pk,
        answers={"cost": "Trial participants pay nothing."},
    )
    return clinics


def test_directory_lists_published_clinics_and_counts_the_others(
    client: Client, registry: list[Clinic]
) -> None:
    page = client.get("/clinics/")
    text = text_of(page.content)
    assert page.status_code == 200
    assert registry[0].name in text and registry[1].name in text
    assert registry[2].name not in page.content.decode()
    assert "1 more clinic in the registry has not published." in text
    assert "Synthetic demo data." in text
    assert find_promising_language(text) == []
    assert client.get(f"/clinics/{registry[2].pk}/").status_code == 404
    assert client.get("/clinics/987654/").status_code == 404


def test_clinic_page_figures_match_the_selector_and_carry_denominators(
    client: Client, registry: list[Clinic]
) -> None:
    entry = selectors.clinic_entry(registry[0].pk)
    assert entry.figures is not None and entry.figures.groups
    text = text_of(client.get(f"/clinics/{registry[0].pk}/").content)
    for group in entry.figures.groups:
        assert f"{group.label} ({group.n_patients} patients)" in text
        for h in group.shown:
            assert f"{h.label} {h.value} {h.detail}" in text
            if h.value != "–" and h.key != "surgery_free":
                assert re.search(r"\d+ of \d+ patients", h.detail), h  # a denominator
        for h in group.not_shown:
            assert h.label.lower() in text
    assert "Trial participants pay nothing." in text
    assert "Synthetic demo data." in text
    assert find_promising_language(text) == []
    # the figures come from the analysis snapshot (its one audited registry read); a
    # visitor's page views read nothing more and write nothing
    assert AuditEvent.objects.filter(actor_username="system:analysis-snapshot").count() == 1
    seq = last_seq()
    client.get("/clinics/")
    client.get(f"/clinics/{registry[0].pk}/")
    assert last_seq() == seq


def test_compare_shows_published_clinics_only_in_the_order_asked(
    client: Client, registry: list[Clinic]
) -> None:
    a, b, hidden = registry
    page = client.get(f"/clinics/compare/?c={b.pk}&c={hidden.pk}&c={a.pk}&c=x")
    body = page.content.decode()
    assert page.status_code == 200 and hidden.name not in body
    assert body.index(b.name) < body.index(a.name)
    one = text_of(client.get(f"/clinics/compare/?c={a.pk}").content)
    assert "Choose at least two published clinics to compare" in one


def test_unpublishing_takes_the_clinic_off_at_once(client: Client, registry: list[Clinic]) -> None:
    client.get(f"/clinics/{registry[1].pk}/")
    admin = make_actor(Role.CLINIC_ADMIN, registry[1])
    services.set_published(actor=admin, clinic_id=registry[1].pk, published=False)
    assert client.get(f"/clinics/{registry[1].pk}/").status_code == 404
    assert "2 more clinics in the registry have not published." in text_of(
        client.get("/clinics/").content
    )


def test_a_registry_of_real_clinics_carries_no_synthetic_label(client: Client) -> None:
    clinic = make_clinic("Real clinic")
    services.set_published(
        actor=make_actor(Role.CLINIC_ADMIN, clinic), clinic_id=clinic.pk, published=True
    )
    text = text_of(client.get("/clinics/").content)
    assert "Real clinic" in text and "Synthetic" not in text


def test_the_demo_publishes_every_clinic_with_synthetic_answers(client: Client) -> None:
    now = timezone.now()
    load_demo_cohort(patients=200, seed=7, today=now.date(), now=now)
    listings = ClinicListing.objects.all()
    assert listings.count() == Clinic.objects.count() == 3
    assert all(x.published and x.published_on == timezone.localdate() for x in listings)
    rows = AuditEvent.objects.filter(
        object_type="clinic_listing", actor_username="system:demo-setup"
    )
    assert rows.count() == 3
    text = text_of(client.get("/clinics/").content)
    assert "Synthetic demo data." in text and "more clinic" not in text


def test_public_and_staff_navigation_link_the_directory(client: Client) -> None:
    assert 'href="/clinics/"' in client.get("/").content.decode()
    admin = make_actor(Role.CLINIC_ADMIN, make_clinic())
    assert 'href="/clinic/directory/"' in signed_in(admin).get("/clinic/home/").content.decode()


def test_the_worker_stores_the_figures_and_a_visitors_page_never_builds_them(
    client: Client, registry: list[Clinic], settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As in production: the worker's refresh stores the published clinics' figures; pages
    read them (no report built in a request). A clinic published after the refresh is "being
    prepared" until the worker builds the new set, while the others keep the figures built
    last (never the whole directory waiting); an unpublished clinic is gone at once and the
    others, the new one included, keep theirs."""
    settings.SNAPSHOT_PREPARE_REPORTS = True
    assert snapshot.refresh(force=True).outcome == "built"
    settings.SNAPSHOT_BUILD_INLINE = False
    settings.SNAPSHOT_INLINE_MAX_PATIENTS = 0
    snapshot.results.clear()
    built: list[Any] = []
    real = figures.figures_of_clinics

    def counting(*args: Any, **kwargs: Any) -> Any:
        built.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(figures, "figures_of_clinics", counting)
    page = text_of(client.get(f"/clinics/{registry[0].pk}/").content)
    entry = selectors.clinic_entry(registry[0].pk)
    assert entry.figures is not None and entry.figures.groups and not entry.figures_pending
    first = entry.figures

    def entries() -> dict[int, selectors.ClinicEntry]:
        return {e.id: e for e in selectors.directory().clinics}

    def same_as_first(shown: selectors.ClinicEntry) -> bool:
        got = shown.figures
        return (
            not shown.figures_pending
            and got is not None
            and (got.n_patients, [g.label for g in got.groups])
            == (first.n_patients, [g.label for g in first.groups])
        )

    assert (
        f"{entry.figures.groups[0].label} ({entry.figures.groups[0].n_patients} patients)" in page
    )
    assert "Figures as of" in page and "being prepared" not in page
    assert built == []

    admin = make_actor(Role.CLINIC_ADMIN, registry[2])
    services.set_published(actor=admin, clinic_id=registry[2].pk, published=True)
    waiting = client.get(f"/clinics/{registry[2].pk}/").content.decode()
    assert "The figures are being prepared." in text_of(waiting.encode())
    assert "<strong>Patients treated:</strong>" not in waiting  # no "0 patients" meanwhile
    listing = text_of(client.get("/clinics/").content)
    assert listing.count("Figures Being prepared") == 1  # the new clinic's only
    now = entries()
    assert same_as_first(now[registry[0].pk]) and not now[registry[1].pk].figures_pending
    assert now[registry[2].pk].figures_pending and now[registry[2].pk].figures is None
    page = text_of(client.get(f"/clinics/{registry[0].pk}/").content)
    assert "being prepared" not in page and "Figures as of" in page
    assert built == []
    assert snapshot.serve_waiting() == 1  # the worker's poll between refreshes
    assert len(built) == 1 and sorted(built[0]) == sorted(str(c.pk) for c in registry)
    snapshot.results.clear()
    ready = selectors.clinic_entry(registry[2].pk)
    assert ready.figures is not None and not ready.figures_pending
    assert "being prepared" not in text_of(client.get(f"/clinics/{registry[2].pk}/").content)

    services.set_published(
        actor=make_actor(Role.CLINIC_ADMIN, registry[1]), clinic_id=registry[1].pk, published=False
    )
    now = entries()  # the figures built last cover both clinics still published
    assert sorted(now) == sorted([registry[0].pk, registry[2].pk])
    assert same_as_first(now[registry[0].pk]) and not now[registry[2].pk].figures_pending
    assert len(built) == 1  # nothing built in a page
    assert snapshot.serve_waiting() == 1 and sorted(built[1]) == sorted(
        str(c.pk) for c in (registry[0], registry[2])
    )
