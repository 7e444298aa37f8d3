"""Follow-up answers as a correctable record type (registered with the registry's one
correction mechanism, :mod:`vertebra.registry.corrections`, when the app is ready).

Only answers **entered by staff** (``Submission.entered_by_staff``: collected on paper or by
phone, or imported) may be corrected or voided by staff; what a patient answered in the portal
is the patient's own report. A corrected answer set is re-scored by the core scorer and stored
with the instrument version that scored it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import Q

from vertebra.core.instruments import InvalidAnswerError, UnknownInstrumentError, score
from vertebra.core.labels import format_date, label
from vertebra.followup import services
from vertebra.followup.models import FollowUpSchedule, QuestionnaireResponse
from vertebra.registry.corrections import (
    Change,
    FieldSpec,
    Outcome,
    RecordType,
    get_type,
    register,
)
from vertebra.registry.models import AuditEvent, Patient, TreatmentEpisode
from vertebra.registry.permissions import Action

SLUG = "followup-answers"


def _rescore(response: QuestionnaireResponse) -> None:
    """Score the (corrected) answers with the core scorer; keep score, band, extras, version."""
    try:
        result = score(response.instrument_id, dict(response.answers or {}))
    except (InvalidAnswerError, UnknownInstrumentError) as exc:
        raise ValidationError({"answers": str(exc)}) from None
    response.score = result.score
    response.band = result.band or ""
    response.extras = result.to_dict()["extras"]
    response.instrument_version = result.version


def _only_staff_entered(response: QuestionnaireResponse) -> str:
    if response.submission.entered_by_staff:
        return ""
    return (
        "These answers were given by the patient in the portal: they are the patient's own "
        "report and cannot be changed by staff."
    )


def _answer_set(response: QuestionnaireResponse) -> Q:
    return Q(object_type="followup_submission", object_id=str(response.submission_id))


def _answer_set_changes(row: AuditEvent) -> tuple[Change, ...]:
    """The answer set as first recorded: each instrument's score and version, in words."""
    values = row.new_values if isinstance(row.new_values, dict) else {}
    responses = values.get("responses") if row.action == "create" else None
    if not isinstance(responses, dict):
        return ()
    changes = []
    for instrument, recorded in responses.items():
        if not isinstance(recorded, dict):
            continue
        score_text = "not scorable" if recorded.get("score") is None else f"{recorded['score']:g}"
        changes.append(
            Change(
                label("instrument", instrument),
                "—",
                f"score {score_text} (version {recorded.get('version', '—')})",
            )
        )
    return tuple(changes)


def _staff_entered(patient: Patient) -> list[QuestionnaireResponse]:
    """The patient's answers entered by staff, by time point then instrument (patient page)."""
    return list(
        QuestionnaireResponse.objects.filter(
            time_point__patient=patient, submission__entered_by_staff=True
        )
        .select_related("time_point", "submission")
        .order_by("time_point__months", "instrument_id", "id")
    )


def _describe(response: QuestionnaireResponse) -> str:
    return (
        f"{label('instrument', response.instrument_id)} at "
        f"{label('timepoint', response.time_point.key)}"
    )


RESPONSES = register(
    RecordType(
        slug=SLUG,
        model=QuestionnaireResponse,
        noun="questionnaire answers",
        fields=(FieldSpec("answers", "Answer"),),
        derived=(
            FieldSpec("score", "Score"),
            FieldSpec("band", "Band"),
            FieldSpec("extras", "Details of the score"),
            FieldSpec("instrument_version", "Instrument version"),
        ),
        action=Action.EPISODE_START,
        patient_path="time_point__patient",
        derive=_rescore,
        refusal=_only_staff_entered,
        related_history=_answer_set,
        related_changes=_answer_set_changes,
        patient_items=_staff_entered,
        describe=_describe,
    )
)


# --------------------------------------------------------------------------------------------
# Episodes: a corrected treatment date moves the follow-up; a voided episode stops it
# --------------------------------------------------------------------------------------------


def _window(opens: Any, closes: Any) -> str:
    return f"{format_date(opens)} – {format_date(closes)}"


def moved_notes(correction: services.EpisodeCorrection) -> tuple[str, ...]:
    """What happened to the follow-up, in sentences: one per moved window ("6 weeks: now …
    (was …)"), one for the answered time points kept as they were."""
    if not correction.moved:
        return ()
    start = format_date(correction.episode.start_date)
    notes = [f"Follow-up schedule recomputed from the treatment date {start}."]
    kept = [label("timepoint", point.key) for point in correction.moved if point.kept]
    for point in correction.moved:
        if not point.kept:
            notes.append(
                f"{label('timepoint', point.key)}: now "
                f"{_window(point.new_opens, point.new_closes)} "
                f"(was {_window(point.old_opens, point.old_closes)})."
            )
    if kept:
        notes.append(f"Already answered, kept as they were: {', '.join(kept)}.")
    return tuple(notes)


def _correct_episode(
    *, actor: Any, object_id: int, expected_version: int, changes: Any, reason: str
) -> Outcome:
    correction = services.correct_episode_with_follow_up(
        actor=actor,
        episode_id=object_id,
        expected_version=expected_version,
        changes=changes,
        reason=reason,
    )
    return Outcome(correction.episode, moved_notes(correction))


def _void_episode(*, actor: Any, object_id: int, expected_version: int, reason: str) -> Outcome:
    episode, cancelled = services.void_episode_with_follow_up(
        actor=actor, episode_id=object_id, expected_version=expected_version, reason=reason
    )
    notes = (
        (f"Its follow-up was stopped: {cancelled} time point(s) cancelled, no more invitations.",)
        if cancelled
        else ()
    )
    return Outcome(episode, notes)


def _schedule_rows(episode: TreatmentEpisode) -> Q:
    schedule = FollowUpSchedule.objects.filter(episode=episode).values_list("pk", flat=True)
    ids = [str(pk) for pk in schedule]
    return Q(object_type="followup_schedule", object_id__in=ids)


def _window_text(value: Any) -> str:
    """A stored window ``[opens, closes, status]`` in words."""
    if not isinstance(value, list) or len(value) != 3:
        return "—"
    opens, closes, status = value
    return f"{_window(opens, closes)} ({label('timepoint_status', status)})"


def _schedule_changes(row: AuditEvent) -> tuple[Change, ...]:
    """A moved schedule's windows, old → new, in words (the creation row lists nothing)."""
    if row.object_type != "followup_schedule" or row.action != "update":
        return ()
    old = row.old_values if isinstance(row.old_values, dict) else {}
    new = row.new_values if isinstance(row.new_values, dict) else {}
    changes = []
    for key in dict.fromkeys([*old, *new]):
        before, after = old.get(key), new.get(key)
        if key == "treatment_date":
            changes.append(Change("Treatment date", format_date(before), format_date(after)))
        elif isinstance(before, str) or isinstance(after, str):  # a status only (cancelled)
            changes.append(
                Change(
                    label("timepoint", key),
                    label("timepoint_status", before),
                    label("timepoint_status", after),
                )
            )
        else:
            changes.append(
                Change(label("timepoint", key), _window_text(before), _window_text(after))
            )
    return tuple(changes)


EPISODES = register(
    dataclasses.replace(
        get_type("episodes"),
        correct_with=_correct_episode,
        void_with=_void_episode,
        related_history=_schedule_rows,
        related_changes=_schedule_changes,
    )
)
