"""Follow-up answers as a correctable record type (registered with the registry's one
correction mechanism, :mod:`vertebra.registry.corrections`, when the app is ready).

Only answers **entered by staff** (``Submission.entered_by_staff``: collected on paper or by
phone, or imported) may be corrected or voided by staff; what a patient answered in the portal
is the patient's own report. A corrected answer set is re-scored by the core scorer and stored
with the instrument version that scored it.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db.models import Q

from vertebra.core.instruments import InvalidAnswerError, UnknownInstrumentError, score
from vertebra.followup.models import QuestionnaireResponse
from vertebra.registry.corrections import FieldSpec, RecordType, register
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
    )
)
