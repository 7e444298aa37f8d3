"""The way forward from a blocked step: what is missing, a link to supply it, or who can.

Contracts
---------
* :func:`guidance_for` turns a :class:`~vertebra.registry.errors.MissingStepError` (raised by a
  service, or listed by :func:`vertebra.registry.pathway.blockers`) into a
  :class:`Guidance` for the acting role: the plain message, a link to the page where the missing
  piece is recorded when the role may record it, otherwise who can (never a link that would
  answer 403).
* :func:`api_next_step` is the same way forward for API clients: the method and path to call.
* :func:`episode_guidance` lists the guidance for the next step of each cell-therapy episode,
  for the patient page.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from django.urls import reverse

from vertebra.registry.errors import MissingStepError
from vertebra.registry.models import TreatmentEpisode
from vertebra.registry.pathway import blockers, next_step
from vertebra.registry.permissions import Action, Actor, is_allowed

__all__ = ["Guidance", "Link", "api_next_step", "episode_guidance", "guidance_for"]


@dataclass(frozen=True)
class Link:
    text: str
    href: str


@dataclass(frozen=True)
class Guidance:
    """A blocked step explained: ``message``, ``links`` to fix it, or ``who`` can."""

    message: str
    remedy: str
    links: tuple[Link, ...] = field(default_factory=tuple)
    who: str = ""
    #: True when the message is already shown in the form's error summary.
    in_errors: bool = False


def _consent_link(patient_id: int, kind: str) -> str:
    return f"{reverse('registry:consent-create', args=[patient_id])}?kind={kind}"


def guidance_for(blocker: MissingStepError, actor: Actor) -> Guidance:
    """The way forward from ``blocker`` for ``actor``'s role."""
    can = lambda action: is_allowed(actor.role, action)  # noqa: E731
    links: list[Link] = []
    who = ""
    code, patient, episode = blocker.remedy, blocker.patient_id, blocker.episode_id
    if code in ("treatment_consent", "registry_consent"):
        kind = "treatment" if code == "treatment_consent" else "registry"
        if can(Action.CONSENT_RECORD):
            links.append(Link(f"Record the {kind} consent", _consent_link(patient, kind)))
        else:
            who = "A coordinator or clinician of the clinic records consents."
    elif code == "harvest" and episode is not None:
        if can(Action.HARVEST_RECORD):
            links.append(
                Link("Record the harvest", reverse("registry:harvest-create", args=[episode]))
            )
        else:
            who = "A clinician records the harvest."
    elif code == "processing" and episode is not None:
        if can(Action.PROCESSING_RECORD):
            links.append(
                Link("Record the processing", reverse("registry:processing-create", args=[episode]))
            )
        else:
            who = "A clinician records the processing."
    elif code in ("sterility_result", "sterility_failed") and episode is not None:
        if can(Action.PROCESSING_RECORD):
            text = (
                "Record the sterility result"
                if code == "sterility_result"
                else "Correct the sterility result (with a reason)"
            )
            links.append(Link(text, reverse("registry:sterility-record", args=[episode])))
        else:
            who = "A clinician records the sterility result from the lab."
        if code == "sterility_failed" and can(Action.EPISODE_START):
            links.append(
                Link(
                    "Start a new treatment episode",
                    reverse("registry:episode-create", args=[patient]),
                )
            )
    elif code == "lot_release":
        if can(Action.LOT_MANAGE) and blocker.lot_id is not None:
            links.append(
                Link(
                    "Release the lot",
                    reverse("admin:registry_allogeneiclot_change", args=[blocker.lot_id]),
                )
            )
        else:
            who = (
                "A registry admin releases allogeneic lots (Administration, Allogeneic lots) "
                "once the lot's release testing is complete; ask yours."
            )
    return Guidance(str(blocker), code, tuple(links), who)


def api_next_step(blocker: MissingStepError) -> str:
    """The API call that supplies what ``blocker`` misses, in words (empty when none)."""
    base = "/api/v1"
    code, patient, episode = blocker.remedy, blocker.patient_id, blocker.episode_id
    calls = {
        "treatment_consent": f'POST {base}/patients/{patient}/consents with kind "treatment"',
        "registry_consent": f'POST {base}/patients/{patient}/consents with kind "registry"',
        "harvest": f"POST {base}/episodes/{episode}/harvest",
        "sterility_result": f"POST {base}/episodes/{episode}/sterility",
        "sterility_failed": f"POST {base}/episodes/{episode}/sterility with a reason, or start a "
        f"new episode with POST {base}/patients/{patient}/episodes",
        "lot_release": "a registry admin releases the lot in the administration site",
    }
    if code == "processing":
        return (
            "record the processing of the episode's harvest (POST /api/v1/harvests/{id}/processing)"
        )
    return calls.get(code, "")


def episode_guidance(
    episodes: list[TreatmentEpisode], actor: Actor, today: dt.date
) -> dict[int, list[Guidance]]:
    """Episode id → the guidance for its next pathway step (cell-therapy episodes only)."""
    out: dict[int, list[Guidance]] = {}
    for episode in episodes:
        step = next_step(episode)
        if step is None:
            continue
        out[episode.pk] = [guidance_for(b, actor) for b in blockers(episode, step, today)]
    return out
