"""Errors raised by registry services and selectors.

Every message is plain language fit to show to the staff member who caused it: it says what was
refused and why, and never contains another clinic's data. Field-level input errors are Django's
:class:`~django.core.exceptions.ValidationError` (a dict keyed by field name), so forms can show
them next to the field.
"""

from __future__ import annotations


class RegistryError(Exception):
    """Base class of the registry's refusals."""


class PermissionDeniedError(RegistryError):
    """The actor's role may not perform this action, or the actor is not an active member.

    ``action`` names the refused action (see :mod:`vertebra.registry.permissions`).
    """

    def __init__(self, message: str, *, action: str = "") -> None:
        super().__init__(message)
        self.action = action


class NotFound(RegistryError):
    """No such object *for this actor*: it does not exist or belongs to a clinic the actor does
    not work for. The two cases are indistinguishable on purpose, so existence is never revealed.
    """

    def __init__(self, object_type: str, object_id: object) -> None:
        super().__init__(f"No {object_type.replace('_', ' ')} with id {object_id} was found.")
        self.object_type = object_type
        self.object_id = str(object_id)


class ChainOfCustodyError(RegistryError):
    """A pathway step out of order, a product for the wrong patient, an unreleased lot, a failed
    or pending sterility result, or dates out of order."""


class StaleEditError(RegistryError):
    """The record changed since the editor loaded it (optimistic locking); nothing was saved."""

    def __init__(self, object_type: str, object_id: object, expected_version: int) -> None:
        super().__init__(
            f"This {object_type.replace('_', ' ')} was changed by someone else since you opened "
            f"it (you edited version {expected_version}). Nothing was saved: reload it, check "
            "the other change and apply yours again."
        )
        self.object_type = object_type
        self.object_id = str(object_id)
        self.expected_version = expected_version


class RecordVoidedError(ChainOfCustodyError):
    """The record was voided (entered in error): it can no longer be corrected or voided again,
    and no step may build on it (so every page and route that shows a chain-of-custody refusal
    shows this one too; the correction routes answer it with 409)."""

    def __init__(self, object_type: str, object_id: object) -> None:
        super().__init__(
            f"This {object_type.replace('_', ' ')} was voided (entered in error): it can no "
            "longer be changed."
        )
        self.object_type = object_type
        self.object_id = str(object_id)


class MissingStepError(ChainOfCustodyError):
    """A step refused because something must be supplied first (a treatment consent, the
    sterility result, the lot's release, an earlier pathway step).

    ``remedy`` names what is missing, so pages and the API can link to where to supply it:
    ``treatment_consent``, ``registry_consent``, ``harvest``, ``processing``,
    ``sterility_result``, ``sterility_failed``, ``lot_release``. ``patient_id`` and
    ``episode_id`` locate it (never another clinic's: raised only after the scope check).
    """

    def __init__(
        self,
        message: str,
        *,
        remedy: str,
        patient_id: int,
        episode_id: int | None = None,
        lot_id: int | None = None,
    ) -> None:
        super().__init__(message)
        self.remedy = remedy
        self.patient_id = patient_id
        self.episode_id = episode_id
        self.lot_id = lot_id
