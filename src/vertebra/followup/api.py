"""JSON API of the follow-up app (mounted at ``/api/v1/followup``).

``POST /followup/patients/{patient_id}/links/revoke``: withdraw a patient's live portal links
(all, or one time point's), with a reason kept in the audit trail. Same bearer tokens, clinic
scoping and problem+json errors as the registry API (:mod:`vertebra.registry.api`).
"""

import uuid
from typing import Annotated, Any

from django.http import HttpRequest
from django.utils import timezone
from ninja import Field, Router, Schema
from ninja.errors import ValidationError as NinjaValidationError

from vertebra.followup.services import revoke_links
from vertebra.registry.api import ERRORS, Id, Text, TokenAuth, registry_errors

router = Router(auth=TokenAuth(), tags=["follow-up"])


class RevokeLinksIn(Schema):
    reason: Text(500, min_length=1)  # type: ignore[valid-type]
    time_point: Annotated[
        uuid.UUID | None,
        Field(None, description="Only this time point's link (its public id); default all."),
    ] = None


class RevokeLinksOut(Schema):
    withdrawn: int = Field(description="How many live links were withdrawn (0: none was live).")


@router.post(
    "/patients/{patient_id}/links/revoke",
    response={200: RevokeLinksOut, **ERRORS},
    summary="Withdraw a patient's portal links",
)
@registry_errors
def revoke_patient_links(request: HttpRequest, patient_id: Id, payload: RevokeLinksIn) -> Any:
    """Withdraw the patient's live questionnaire links; a withdrawn link answers 410. Needs the
    patient-update right at the patient's clinic (else 403/404). A blank reason → 422."""
    if not payload.reason.strip():
        raise NinjaValidationError(
            [{"loc": ["body", "reason"], "msg": "Give a reason.", "type": "value_error"}]
        )
    count = revoke_links(
        actor=request.auth,  # type: ignore[attr-defined]
        patient_id=patient_id,
        reason=payload.reason,
        now=timezone.now(),
        time_point_id=str(payload.time_point) if payload.time_point else None,
    )
    return RevokeLinksOut(withdrawn=count)
