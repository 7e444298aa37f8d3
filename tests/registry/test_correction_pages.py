"""Correction, void and history pages (Django test client, checking bodies and stored rows)."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from tests.registry.corrections_world import CORRECTIONS, START, World, build_world
from tests.registry.web import signed_in
from vertebra.core.labels import format_date
from vertebra.followup.models import FollowUpTimePoint
from vertebra.registry import corrections
from vertebra.registry.models import AuditEvent, Diagnosis, Harvest, TreatmentEpisode

pytestmark = pytest.mark.django_db


@pytest.fixture
def world() -> World:
    return build_world()


def _url(kind: str, slug: str, pk: int) -> str:
    return f"/clinic/records/{slug}/{pk}/{kind}/"


def test_patient_page_offers_links_only_to_roles_allowed(world: World) -> None:
    harvest = world.records["harvests"]
    body = signed_in(world.clinician).get(f"/clinic/patients/{world.patient.pk}/").content.decode()
    assert _url("correct", "harvests", harvest.pk) in body
    assert _url("void", "harvests", harvest.pk) in body
    assert _url("history", "harvests", harvest.pk) in body
    assert _url("correct", "followup-answers", world.records["followup-answers"].pk) in body
    assert "Follow-up answers entered by staff" in body
    coordinator = signed_in(world.coordinator).get(f"/clinic/patients/{world.patient.pk}/")
    text = coordinator.content.decode()
    assert _url("history", "harvests", harvest.pk) in text
    assert _url("correct", "harvests", harvest.pk) not in text  # a clinician's act
    assert _url("correct", "diagnoses", world.records["diagnoses"].pk) in text
    event = world.records["adverse-events"]  # adjudicated: voided only by an adjudicator
    assert _url("correct", "adverse-events", event.pk) in text
    assert _url("void", "adverse-events", event.pk) not in text
    admin = signed_in(world.clinic_admin).get(f"/clinic/patients/{world.patient.pk}/")
    text = admin.content.decode()
    assert "/correct/" not in text and "/void/" not in text
    assert _url("history", "harvests", harvest.pk) in text
    # Every link offered answers (no 403) for each role.
    for actor in (world.clinician, world.coordinator, world.clinic_admin):
        client = signed_in(actor)
        page = client.get(f"/clinic/patients/{world.patient.pk}/").content.decode()
        for link in set(re.findall(r'href="(/clinic/records/[^"]+)"', page)):
            assert client.get(link).status_code == 200, (actor.role, link)


def test_a_harvest_volume_is_corrected_with_a_reason_and_shown_in_history(world: World) -> None:
    harvest = world.records["harvests"]
    client = signed_in(world.clinician)
    page = client.get(_url("correct", "harvests", harvest.pk))
    body = page.content.decode()
    assert page.status_code == 200
    assert 'name="version" value="1"' in body and 'value="60.0"' in body
    assert "typo: 0025 → 2025" in body  # the reason's hint
    data = {"source": "bone_marrow_iliac_crest", "volume_ml": "50", "harvested_on": "2024-03-01", "version": "1"}  # fmt: skip
    missing = client.post(_url("correct", "harvests", harvest.pk), data)
    assert missing.status_code == 400
    assert "Give a reason" in missing.content.decode()
    assert Harvest.objects.get(pk=harvest.pk).volume_ml == 60
    saved = client.post(
        _url("correct", "harvests", harvest.pk), {**data, "reason": "typo: 60 → 50 mL"}
    )
    assert saved.status_code == 302
    assert Harvest.objects.get(pk=harvest.pk).volume_ml == 50
    history = client.get(_url("history", "harvests", harvest.pk)).content.decode()
    assert "Corrected" in history and "typo: 60 → 50 mL" in history
    assert re.search(r"Volume \(mL\)</th><td>60</td><td>50</td>", history)
    assert "Bone marrow (iliac crest)" in history and "1 Mar 2024" in history
    assert "bone_marrow_iliac_crest" not in history and "{" not in history.split("<main")[-1]


def test_field_errors_are_shown_beside_the_field(world: World) -> None:
    harvest = world.records["harvests"]
    client = signed_in(world.clinician)
    data = {"source": "bone_marrow_iliac_crest", "volume_ml": "-5", "harvested_on": "2024-03-01", "version": "1", "reason": "typo"}  # fmt: skip
    response = client.post(_url("correct", "harvests", harvest.pk), data)
    body = response.content.decode()
    assert response.status_code == 400
    assert re.search(r'id="f-volume_ml".*?class="error" id="err-volume_ml"', body, re.S)
    later = {**data, "volume_ml": "5", "harvested_on": "2024-03-09"}
    refused = client.post(_url("correct", "harvests", harvest.pk), later).content.decode()
    assert "after the processing date" in refused


def test_a_stale_edit_is_answered_409_with_the_other_change(world: World) -> None:
    harvest = world.records["harvests"]
    first, second = signed_in(world.clinician), signed_in(world.clinician)
    base = {"source": "bone_marrow_iliac_crest", "harvested_on": "2024-03-01", "version": "1"}
    first.post(_url("correct", "harvests", harvest.pk), {**base, "volume_ml": "58", "reason": "weighed again"})  # fmt: skip
    response = second.post(_url("correct", "harvests", harvest.pk), {**base, "volume_ml": "99", "reason": "my typo fix"})  # fmt: skip
    body = response.content.decode()
    assert response.status_code == 409
    assert "changed by someone else" in body and "weighed again" in body
    assert re.search(r"Volume \(mL\)</th><td>60</td><td>58</td>", body)  # their change
    assert re.search(r"Volume \(mL\)</th><td>58</td><td>99</td>", body)  # stored vs yours
    assert 'name="version" value="2"' in body  # saving again is a deliberate act
    assert Harvest.objects.get(pk=harvest.pk).volume_ml == 58


def test_the_409_form_keeps_the_other_change_on_fields_the_user_left_alone(world: World) -> None:
    """Saving again from the 409 page never undoes the missed change: a field the stale editor
    did not touch shows the stored value; a field both changed shows the editor's value."""
    harvest = world.records["harvests"]
    first, second = signed_in(world.clinician), signed_in(world.clinician)
    base = {"source": "bone_marrow_iliac_crest", "harvested_on": "2024-03-01", "version": "1"}
    first.post(_url("correct", "harvests", harvest.pk), {**base, "volume_ml": "58", "reason": "weighed again"})  # fmt: skip
    untouched = second.post(_url("correct", "harvests", harvest.pk), {**base, "volume_ml": "60", "source": "adipose", "reason": "wrong source"})  # fmt: skip
    body = untouched.content.decode()
    assert untouched.status_code == 409
    form = body.split('id="correction-form"')[1]
    assert 'value="58.0"' in form or 'value="58"' in form  # their volume, not the stale 60
    assert 'value="2024-03-01"' in form  # changed by nobody
    assert re.search(r'<option value="adipose"[^>]*selected', form)  # the user's own change
    both = second.post(_url("correct", "harvests", harvest.pk), {**base, "volume_ml": "57", "reason": "my count"})  # fmt: skip
    mine = both.content.decode().split('id="correction-form"')[1]
    assert both.status_code == 409 and 'value="57' in mine  # changed by both: the user's value


def test_void_asks_for_a_reason_and_strikes_the_record_through(world: World) -> None:
    event = world.records["clinical-events"]
    client = signed_in(world.coordinator)
    confirm = client.get(_url("void", "clinical-events", event.pk)).content.decode()
    assert "Void this record" in confirm and 'name="reason"' in confirm
    refused = client.post(_url("void", "clinical-events", event.pk), {"version": "1", "reason": ""})
    assert refused.status_code == 400
    done = client.post(
        _url("void", "clinical-events", event.pk), {"version": "1", "reason": "wrong patient"}
    )
    assert done.status_code == 302
    page = client.get(done["Location"].split("#")[0]).content.decode()
    assert "voided. It stays on record" in page
    assert re.search(r"<del>Repeat injection</del> \(voided\)", page)
    assert "wrong patient" in page
    assert _url("correct", "clinical-events", event.pk) not in page
    assert client.get(_url("correct", "clinical-events", event.pk)).status_code == 409
    assert AuditEvent.objects.filter(action="void", object_type="clinicalevent").count() == 1


def test_pathway_void_order_is_explained(world: World) -> None:
    client = signed_in(world.clinician)
    harvest = world.records["harvests"]
    response = client.post(_url("void", "harvests", harvest.pk), {"version": "1", "reason": "x"})
    assert response.status_code == 400
    assert "void those first" in response.content.decode()


def test_correcting_the_treatment_date_says_what_moved(world: World) -> None:
    episode = world.records["episodes"]
    client = signed_in(world.clinician)
    data = {"arm": "cell_therapy", "start_date": "2024-02-29", "version": "1", "reason": "typo: 1 Mar → 29 Feb"}  # fmt: skip
    response = client.post(_url("correct", "episodes", episode.pk), data, follow=True)
    body = response.content.decode()
    assert "Follow-up schedule recomputed from the treatment date 29 Feb 2024" in body
    assert "Already answered, kept as they were: Baseline." in body
    week6 = FollowUpTimePoint.objects.get(schedule__episode=episode, key="week_6")
    moved = f"6 weeks: now {format_date(week6.opens)} – {format_date(week6.closes)} (was "
    assert moved in body
    assert week6.target == dt.date(2024, 4, 11)
    assert TreatmentEpisode.objects.get(pk=episode.pk).start_date == START - dt.timedelta(days=1)
    history = client.get(_url("history", "episodes", episode.pk)).content.decode()
    assert "Treatment date" in history and "29 Feb 2024" in history
    assert "Follow-up schedule changed" in history
    day = dt.timedelta(days=1)
    before = f"{format_date(week6.opens + day)} – {format_date(week6.closes + day)} (Missed)"
    after = f"{format_date(week6.opens)} – {format_date(week6.closes)} (Missed)"
    assert f"6 weeks</th><td>{before}</td><td>{after}</td>" in history


def test_answers_form_is_the_questionnaire(world: World) -> None:
    response = world.records["followup-answers"]
    client = signed_in(world.coordinator)
    body = client.get(_url("correct", "followup-answers", response.pk)).content.decode()
    assert 'name="answer__pain_back"' in body
    saved = client.post(
        _url("correct", "followup-answers", response.pk),
        {"answer__pain_back": "3", "version": "1", "reason": "read back from the paper form"},
    )
    assert saved.status_code == 302
    response.refresh_from_db()
    assert (response.answers, response.score) == ({"pain_back": 3}, 3)


def test_other_clinics_and_unknown_types_are_404(world: World) -> None:
    other = build_world("Far Clinic")
    client = signed_in(world.clinician)
    harvest = other.records["harvests"]
    for kind in ("correct", "void", "history"):
        assert client.get(_url(kind, "harvests", harvest.pk)).status_code == 404
        assert client.get(_url(kind, "harvests", 987654)).status_code == 404
        assert client.get(_url(kind, "no-such-type", 1)).status_code == 404
    assert other.patient.family_name not in client.get(_url("history", "harvests", harvest.pk)).content.decode()  # fmt: skip


@pytest.mark.parametrize("slug", sorted(CORRECTIONS))
def test_every_type_has_a_prefilled_correction_form(world: World, slug: str) -> None:
    record = world.records[slug]
    response = signed_in(world.clinician).get(_url("correct", slug, record.pk))
    body = response.content.decode()
    assert response.status_code == 200
    assert 'name="version" value="1"' in body and 'name="reason"' in body
    kind = corrections.get_type(slug)
    for spec in kind.fields:
        assert kind.spec(spec.name).label in body or spec.name == "answers"


def test_injection_levels_are_corrected_in_spinal_order(world: World) -> None:
    injection = world.records["injections"]
    client = signed_in(world.clinician)
    data = {
        "levels": ["L5-S1", "L4-L5"], "target": "intradiscal", "guidance": "fluoroscopy",
        "volume_ml": "2", "injected_on": "2024-03-02", "version": "1",
        "reason": "second level was injected too",
    }  # fmt: skip
    assert client.post(_url("correct", "injections", injection.pk), data).status_code == 302
    injection.refresh_from_db()
    assert injection.levels == ["L4-L5", "L5-S1"]
    history = client.get(_url("history", "injections", injection.pk)).content.decode()
    assert "Levels</th><td>L4–L5</td><td>L4–L5, L5–S1</td>" in history


def test_a_patient_registered_twice_is_voided_and_marked(world: World) -> None:
    from tests.registry.factories import make_patient

    duplicate = make_patient(world.clinic, family_name="Twice", given_name="Reg")
    client = signed_in(world.coordinator)
    response = client.post(
        _url("void", "patients", duplicate.pk), {"version": "1", "reason": "registered twice"}
    )
    assert response.status_code == 302
    page = client.get(f"/clinic/patients/{duplicate.pk}/").content.decode()
    assert "<del>Twice, Reg</del> (voided)" in page and "registered twice" in page
    listing = client.get("/clinic/?q=Twice").content.decode()
    assert "<del>Twice, Reg</del>" in listing
    # A patient with treatment episodes is voided only after them.
    refused = client.post(
        _url("void", "patients", world.patient.pk), {"version": "1", "reason": "x"}
    ).content.decode()
    assert "their treatment episodes" in refused


def test_a_stale_void_is_answered_409_with_the_other_change(world: World) -> None:
    diagnosis = world.records["diagnoses"]
    client = signed_in(world.coordinator)
    assert 'name="version" value="1"' in client.get(_url("void", "diagnoses", diagnosis.pk)).content.decode()  # fmt: skip
    corrections.correct_record(
        actor=world.clinician, record_type="diagnoses", object_id=diagnosis.pk,
        expected_version=1, changes={"level": "L5-S1"}, reason="level misread",
    )  # fmt: skip
    response = client.post(
        _url("void", "diagnoses", diagnosis.pk), {"version": "1", "reason": "dup"}
    )
    body = response.content.decode()
    assert response.status_code == 409
    assert "level misread" in body and "Level</th><td>L4–L5</td><td>L5–S1</td>" in body
    assert 'name="version" value="2"' in body
    assert Diagnosis.objects.get(pk=diagnosis.pk).voided_at is None
