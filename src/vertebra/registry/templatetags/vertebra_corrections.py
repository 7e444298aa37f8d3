"""``{% record_actions obj %}``: the Correct / Void / History links of one record, only those
the page's role may use (so no link answers 403). Needs ``can`` (action name → allowed) in the
context, as the patient page has it."""

from __future__ import annotations

from typing import Any

from django import template
from django.urls import reverse

from vertebra.registry import corrections

register = template.Library()


def _allowed(can: Any, action: Any) -> bool:
    return bool(can.get(action.name.lower())) if action is not None else True


@register.inclusion_tag("registry/_record_actions.html", takes_context=True)
def record_actions(context: Any, obj: Any, correct: bool = True) -> dict[str, Any]:
    """Links for ``obj``: history always; correct (unless ``correct=False``, where the page has
    its own edit link) and void when the role may and the record is still open (not voided,
    not a patient's own answers)."""
    kind = corrections.type_of(obj)
    can = context.get("can") or {}
    args = [kind.slug, obj.pk]
    refused = kind.refusal(obj) if kind.refusal is not None else ""
    open_ = obj.voided_at is None and not refused and _allowed(can, kind.action)
    may_void = open_ and _allowed(
        can, kind.void_action(obj) if kind.void_action is not None else None
    )
    return {
        "correct_url": reverse("registry:record-correct", args=args) if open_ and correct else "",
        "void_url": reverse("registry:record-void", args=args) if may_void else "",
        "history_url": reverse("registry:record-history", args=args),
        # Names the record to a screen reader: a page holds many "Correct" links.
        "what": corrections.describe(kind, obj),
    }


@register.inclusion_tag("registry/_void_note.html")
def void_note(obj: Any) -> dict[str, Any]:
    """ "Voided <day> by <user>: <reason>" for a voided record, nothing otherwise."""
    return {"obj": obj}


@register.filter(name="record_title")
def record_title(obj: Any) -> str:
    """A record's short title in words ("Harvest of 1 Mar 2024")."""
    return corrections.describe(corrections.type_of(obj), obj)
