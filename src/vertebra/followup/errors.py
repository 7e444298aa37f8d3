"""Errors raised by follow-up services. Messages are plain language, fit to show a patient."""

from __future__ import annotations


class FollowUpError(Exception):
    """Base class of follow-up refusals."""


class LinkNotFound(FollowUpError):
    """No such link (HTTP 404). Indistinguishable from a mistyped or guessed token on purpose."""

    def __init__(self) -> None:
        super().__init__("We could not find this link. Please check that you copied all of it.")


class LinkExpired(FollowUpError):
    """The link's window has closed (HTTP 410)."""

    def __init__(self) -> None:
        super().__init__(
            "This link has expired: the time for answering this questionnaire has passed. "
            "Your care team may contact you; you do not need to do anything."
        )


class LinkUsed(FollowUpError):
    """The questionnaire behind the link was already answered (HTTP 410)."""

    def __init__(self) -> None:
        super().__init__(
            "This questionnaire has already been answered. Thank you — there is nothing more to "
            "do with this link."
        )


class LinkReplaced(FollowUpError):
    """A newer link to the same questionnaire was sent; this one no longer works (HTTP 410)."""

    def __init__(self) -> None:
        super().__init__(
            "This link has been replaced by a newer one. Please use the link in the most recent "
            "e-mail we sent you."
        )


class LinkRevoked(FollowUpError):
    """Staff withdrew the link (HTTP 410)."""

    def __init__(self) -> None:
        super().__init__(
            "This link no longer works: your care team has withdrawn it. If you still need to "
            "answer, please contact them for a new link."
        )


class WindowNotOpen(FollowUpError):
    """The time point cannot take answers now (not open yet, or closed)."""

    def __init__(self) -> None:
        super().__init__(
            "This questionnaire is not open for answers at the moment. If you think this is "
            "wrong, please contact your care team."
        )


class AlreadyCompleted(FollowUpError):
    """A second, different submission for a completed time point (HTTP 409)."""

    def __init__(self) -> None:
        super().__init__(
            "This questionnaire was already answered, so these answers were not saved. "
            "Your earlier answers are kept. If something in them was wrong, please tell your "
            "care team."
        )


class SubmissionInvalid(FollowUpError):
    """Answers missing or out of range. ``errors`` maps instrument id → message."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("Some answers are missing or not valid: " + "; ".join(errors.values()))
        self.errors = errors


class BadIdempotencyKey(FollowUpError):
    """The idempotency key is malformed (HTTP 400)."""

    def __init__(self) -> None:
        super().__init__("The form was incomplete. Please reload the page and submit again.")
