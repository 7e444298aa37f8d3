"""What a pathway step still needs: active consents and the blockers of the next step.

Contracts
---------
* :func:`active_consent` answers whether a patient holds an active consent of one kind on a
  day: signed on or before it, and not withdrawn on or before it. The services gate harvest,
  processing and injection on the *treatment* consent (on the step's date); the follow-up
  worker gates invitations on the *registry* consent (today).
* :func:`blockers` lists, for one cell-therapy episode and one step, every reason the step
  would be refused, as :class:`~vertebra.registry.errors.MissingStepError` values (not raised):
  the same messages and remedy codes the services raise, so a page can show them *before*
  the user fills in a form, with a link to where each one is supplied.
* Internal reads for a request that has already been scoped and audited (the episode was read
  through a selector); these functions return states, never patient data.
"""

from __future__ import annotations

import datetime as dt

from django.db.models import Q

from vertebra.core.labels import format_date
from vertebra.registry.errors import MissingStepError
from vertebra.registry.models import (
    Arm,
    Consent,
    ConsentKind,
    Harvest,
    Processing,
    Sterility,
    TreatmentEpisode,
)

__all__ = [
    "NEXT_STEPS",
    "active_consent",
    "already_done",
    "blockers",
    "consent_missing",
    "next_step",
    "sterility_blocker",
]

#: The steps of the cell-therapy pathway a page may offer next.
NEXT_STEPS = ("harvest", "processing", "injection")

_STEP_WORDS = {"harvest": "A harvest", "processing": "Processing", "injection": "An injection"}


def active_consent(patient_id: int, kind: str, on: dt.date) -> bool:
    """True when the patient signed a ``kind`` consent on or before ``on`` that was not
    withdrawn on or before ``on``."""
    return (
        Consent.objects.filter(patient_id=patient_id, kind=kind, signed_on__lte=on)
        .filter(Q(withdrawn_on__isnull=True) | Q(withdrawn_on__gt=on))
        .exists()
    )


def consent_missing(
    patient_id: int, on: dt.date, step: str, *, today: bool = False
) -> MissingStepError | None:
    """The refusal of ``step`` ("harvest", "processing", "injection") on day ``on`` for want of
    an active treatment consent, or None when one is on file. ``today``: ``on`` is today (a
    page asking ahead of the step), so the message names no date."""
    if active_consent(patient_id, ConsentKind.TREATMENT, on):
        return None
    withdrawn = Consent.objects.filter(
        patient_id=patient_id, kind=ConsentKind.TREATMENT, withdrawn_on__lte=on
    ).exists()
    if withdrawn:
        why = "the patient's treatment consent was withdrawn"
    elif today:
        why = "no active treatment consent is on file"
    else:
        why = f"no treatment consent signed on or before {format_date(on)} is on file"
    return MissingStepError(
        f"{_STEP_WORDS.get(step, step)} cannot be recorded: {why}. Record the patient's signed "
        "treatment consent first.",
        remedy="treatment_consent",
        patient_id=patient_id,
    )


def sterility_blocker(processing: Processing, patient_id: int) -> MissingStepError | None:
    """The refusal of injecting ``processing``'s product for its sterility result, or None."""
    episode_id = processing.harvest.episode_id
    if processing.sterility == Sterility.PENDING:
        return MissingStepError(
            f"Product {processing.product_id} cannot be injected: its sterility result is still "
            "pending. Record the result from the lab (pass or fail) first.",
            remedy="sterility_result",
            patient_id=patient_id,
            episode_id=episode_id,
        )
    if processing.sterility == Sterility.FAIL:
        return MissingStepError(
            f"Product {processing.product_id} cannot be injected: its sterility result is failed. "
            "If the result was entered in error, correct it with a reason; otherwise the product "
            "must not be used: start a new treatment episode for a new harvest.",
            remedy="sterility_failed",
            patient_id=patient_id,
            episode_id=episode_id,
        )
    return None


def _lot_blocker(processing: Processing, patient_id: int) -> MissingStepError | None:
    lot = processing.harvest.allogeneic_lot
    if lot is None or lot.released:
        return None
    return MissingStepError(
        f"Product {processing.product_id} was made from lot {lot.lot_number}, which has not been "
        "released. A registry admin releases lots (Administration, Allogeneic lots).",
        remedy="lot_release",
        patient_id=patient_id,
        episode_id=processing.harvest.episode_id,
        lot_id=lot.pk,
    )


def already_done(episode: TreatmentEpisode, step: str) -> MissingStepError | None:
    """A step recorded twice, with the way on: after a second harvest, the processing (if not
    yet recorded); after a second processing, the sterility result (if still pending). None
    when there is nothing left to do on this episode's product but inject it."""
    harvest = Harvest.objects.filter(episode_id=episode.pk).first()
    if harvest is None:
        return None
    processing = Processing.objects.filter(harvest=harvest).first()
    if step == "harvest" and processing is None:
        return MissingStepError(
            f"Episode {episode.pk} already has a harvest (one per episode): record its "
            "processing next.",
            remedy="processing",
            patient_id=episode.patient_id,
            episode_id=episode.pk,
        )
    if (
        step == "processing"
        and processing is not None
        and processing.sterility == Sterility.PENDING
    ):
        return MissingStepError(
            f"The harvest of episode {episode.pk} was already processed into product "
            f"{processing.product_id}; its sterility result is still pending: record the result "
            "instead of processing again.",
            remedy="sterility_result",
            patient_id=episode.patient_id,
            episode_id=episode.pk,
        )
    return None


def next_step(episode: TreatmentEpisode) -> str | None:
    """The pathway step a cell-therapy episode is waiting for (None for other arms).

    No harvest yet → "harvest" (a released allogeneic lot may also be injected directly); a
    harvest without processing → "processing"; otherwise → "injection" (repeat injections of
    the same product are allowed).
    """
    if episode.arm != Arm.CELL_THERAPY:
        return None
    harvest = Harvest.objects.filter(episode_id=episode.pk).first()
    if harvest is None:
        return "harvest"
    if not Processing.objects.filter(harvest=harvest).exists():
        return "processing"
    return "injection"


def blockers(episode: TreatmentEpisode, step: str, today: dt.date) -> list[MissingStepError]:
    """Every reason ``step`` on ``episode`` would be refused today, in the order to fix them."""
    if episode.arm != Arm.CELL_THERAPY or step not in NEXT_STEPS:
        return []
    found: list[MissingStepError | None] = [
        consent_missing(episode.patient_id, today, step, today=True)
    ]
    harvest = Harvest.objects.select_related("allogeneic_lot").filter(episode_id=episode.pk).first()
    if step in ("harvest", "processing"):
        found.append(already_done(episode, step))
    if step == "processing" and harvest is None:
        found.append(
            MissingStepError(
                f"Episode {episode.pk} has no harvest yet: record the harvest before processing.",
                remedy="harvest",
                patient_id=episode.patient_id,
                episode_id=episode.pk,
            )
        )
    if step == "injection" and harvest is not None:
        processing = (
            Processing.objects.select_related("harvest__allogeneic_lot")
            .filter(harvest=harvest)
            .first()
        )
        if processing is None:
            found.append(
                MissingStepError(
                    f"The harvest of episode {episode.pk} has not been processed yet: record the "
                    "processing before the injection (or inject a released allogeneic lot).",
                    remedy="processing",
                    patient_id=episode.patient_id,
                    episode_id=episode.pk,
                )
            )
        else:
            found.append(sterility_blocker(processing, episode.patient_id))
            found.append(_lot_blocker(processing, episode.patient_id))
    return [blocker for blocker in found if blocker is not None]
