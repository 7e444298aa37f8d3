"""The public decision aid at /decide/ and /api/v1/decision-aid: form, words, figure, payload.

The numbers come from :mod:`vertebra.core.decision` (via ``decision_selectors``); this module
only turns them into plain sentences, an accessible SVG figure and the JSON payload. Every
range is said in words ("between 30% and 39%"); nothing here ranks the arms or promises
benefit (a test runs the knowledge base's promise-word check over the rendered page).
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from django import forms

from vertebra.core.analytics import Mean, Rate
from vertebra.core.charts import icon_array
from vertebra.core.decision import (
    ArmEstimate,
    DecisionResult,
    EvidenceRow,
    EvidenceSet,
    Profile,
    conditions,
)
from vertebra.core.decision.estimate import PROFILE_LEVEL
from vertebra.core.knowledge import KnowledgeBase
from vertebra.core.responders import responder_rule
from vertebra.web import decision_selectors as selectors

__all__ = [
    "DecideForm",
    "link_from_assess",
    "page_context",
    "payload",
]

LEARN_PREFIX = "/learn/"


class DecideForm(forms.Form):
    """Condition and age (required), baseline ODI and STarT Back group (optional)."""

    condition = forms.ChoiceField(
        label="What has a doctor said is causing your back pain?",
        choices=(),
    )
    age = forms.IntegerField(
        label="Your age in years",
        min_value=18,
        max_value=120,
        widget=forms.NumberInput(attrs={"inputmode": "numeric"}),
    )
    odi = forms.DecimalField(
        label="Your ODI disability score, if a clinic measured it (0 to 100; leave empty if not)",
        required=False,
        min_value=Decimal(0),
        max_value=Decimal(100),
        decimal_places=1,
        widget=forms.NumberInput(attrs={"inputmode": "decimal", "step": "0.1"}),
    )
    startback = forms.ChoiceField(
        label="Your STarT Back group, if a clinician told you",
        required=False,
        widget=forms.RadioSelect,
        choices=(),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        rules = selectors.rules()
        condition = self.fields["condition"]
        startback = self.fields["startback"]
        assert isinstance(condition, forms.ChoiceField)
        assert isinstance(startback, forms.ChoiceField)
        condition.choices = [("", "Choose one"), *conditions()]
        startback.choices = [
            ("", "I don't know"),
            *((g, g.capitalize()) for g in rules.startback_groups),
        ]

    def profile(self) -> Profile:
        """The cleaned answers as a core Profile (call only when valid)."""
        data = self.cleaned_data
        odi = data.get("odi")
        return Profile(
            condition=str(data["condition"]),
            age=int(data["age"]),
            odi=None if odi is None else float(odi),
            startback=data.get("startback") or None,
        )


def link_from_assess(answers: Mapping[str, Mapping[str, Any]]) -> str:
    """/decide/ with the self-assessment's condition and age carried over, when answered.

    The first diagnosis ticked (in the catalogue's order) is used; the person can change it.
    Only the condition and the age travel: nothing else from the self-assessment.
    """
    pain = answers.get("your-pain", {})
    ticked = pain.get("diagnoses") or []
    params: dict[str, str] = {}
    first = next((cid for cid, _ in conditions() if cid in ticked), None)
    if first:
        params["condition"] = first
    age = pain.get("age")
    if isinstance(age, int) and not isinstance(age, bool):
        params["age"] = str(age)
    return "/decide/" + ("?" + urlencode(params) if params else "")


# ------------------------------------------------------------------------------ words


def pct(x: float | None) -> str:
    """A proportion as a whole percentage ("34%"); "–" when unknown."""
    return "–" if x is None else f"{round(x * 100):d}%"


def rate_words(r: Rate) -> str:
    """ "186 of 539 (35%; somewhere between 31% and 39%)"."""
    ci = f"; somewhere between {pct(r.ci[0])} and {pct(r.ci[1])}" if r.ci else ""
    return f"{r.numerator} of {r.denominator} ({pct(r.rate)}{ci})"


def points(x: float) -> str:
    """A signed ODI change with one decimal, a real minus sign for negatives ("−12.3")."""
    return f"{x:+.1f}".replace("-", "\u2212")


def mean_words(m: Mean) -> str:
    """ "−12.3 points (somewhere between −14.0 and −10.6), over 289 patients"."""
    if m.mean is None:
        return "not known"
    ci = f" (somewhere between {points(m.ci[0])} and {points(m.ci[1])})" if m.ci else ""
    return f"{points(m.mean)} points{ci}, over {m.n} patients"


def responder_words() -> str:
    """The responder rule in words, from responders.yaml (never restated by hand)."""
    rule = responder_rule(selectors.rules().measure)
    share = f" or {rule.percent:g}% of the starting score" if rule.percent is not None else ""
    return f"their ODI disability score fell by at least {rule.points:g} points{share}"


@dataclass(frozen=True)
class ArmView:
    """One arm on the page: its figures in words, its evidence and certainty."""

    estimate: ArmEstimate
    label: str
    learn_url: str
    sentences: tuple[str, ...]
    surgery_sentence: str
    group: str
    widened: bool
    icons: str
    table_cells: tuple[str, ...]
    evidence: tuple[tuple[EvidenceRow, int], ...]
    certainty: Mapping[str, Any] | None


def group_words(a: ArmEstimate, result: DecisionResult, condition: str) -> str:
    """Which group an arm's figures come from, in words ("people like you: aged 50 to 59,
    with sciatica" or "everyone with sciatica, any age"), from the rule set's ladder."""
    rules = result.rules
    level_id = rules.widening[0].id if a.level == PROFILE_LEVEL else a.level
    level = next(lv for lv in rules.widening if lv.id == level_id)
    words = level.describe.format(condition=condition.lower(), age_band=result.age_band.label)
    if a.level == PROFILE_LEVEL:
        extra = []
        if result.odi_band is not None:
            extra.append(f"a starting ODI score of {result.odi_band.label}")
        if result.profile.startback:
            extra.append(f"the {result.profile.startback} STarT Back group")
        words += ", " + " and ".join(extra)
    return words


def widened(a: ArmEstimate, result: DecisionResult) -> bool:
    """True when the arm's figures come from a wider group than every answer asked for."""
    narrowest = PROFILE_LEVEL if (result.odi_band or result.profile.startback) else None
    return a.level not in (narrowest or result.rules.widening[0].id,)


def _arm_sentences(a: ArmEstimate, treatment: str) -> tuple[str, ...]:
    """Plain sentences of a shown arm: each figure with its exact denominator and range.

    "Of N treated, E were due and A answered; of those with both scores (B), C improved"."""
    assert a.completeness and a.responders_completers and a.responders_all and a.mean_change
    assert a.n_pairs is not None and a.n_expected is not None
    c, b = a.responders_completers.numerator, a.n_pairs
    lo, hi = a.responders_completers.ci or (None, None)
    missing = a.n_expected - b
    return (
        f"Of {a.n_similar} such people treated with {treatment}, "
        f"{a.n_expected} were due for the 12-month questionnaire and {a.n_completed} answered "
        f"it ({pct(a.completeness.rate)}).",
        f"Of those with both a starting and a 12-month score ({b}), {c} improved "
        f"({pct(a.responders_completers.rate)}; somewhere between {pct(lo)} and {pct(hi)}), "
        f"meaning {responder_words()}.",
        f"Counting the {missing} of the {a.n_expected} due without both scores as not "
        f"improved: {rate_words(a.responders_all)} improved.",
        f"Average change in the ODI score after 12 months: {mean_words(a.mean_change)}. "
        "Below zero means less disability.",
    )


def icons(a: ArmEstimate, treatment: str) -> str:
    """The icon array (100 people) of an arm's "improved, of those with both scores"."""
    r = a.responders_completers
    assert r is not None and r.denominator
    return icon_array(
        r.numerator,
        r.denominator,
        what="improved",
        rest="did not improve",
        label=f"people with both scores after {treatment}",
    )


def _range(lo: float, hi: float, fmt: Any) -> str:
    return f"{fmt(lo)} to {fmt(hi)}"


def _rate_cell(r: Rate | None) -> str:
    """ "186 of 539: 35% (31% to 39%)" for the data table."""
    if r is None:
        return "too few to say"
    ci = f" ({_range(r.ci[0], r.ci[1], pct)})" if r.ci else ""
    return f"{r.numerator} of {r.denominator}: {pct(r.rate)}{ci}"


def _table_cells(a: ArmEstimate, group: str) -> tuple[str, ...]:
    """The data-table cells of a shown arm (the same numbers as the figure and the words)."""
    m = a.mean_change
    change = "not known"
    if m is not None and m.mean is not None:
        change = points(m.mean) + (f" ({_range(m.ci[0], m.ci[1], points)})" if m.ci else "")
    return (
        group[:1].upper() + group[1:],
        str(a.n_similar),
        _rate_cell(a.completeness),
        _rate_cell(a.responders_completers),
        _rate_cell(a.responders_all),
        change,
        _rate_cell(a.surgery),
    )


def _surgery_sentence(a: ArmEstimate, result: DecisionResult) -> str:
    """Surgery within 12 months in words, or why it is not shown."""
    what = "another back operation" if a.arm == "surgery" else "back surgery"
    if a.surgery is not None:
        return (
            f"Had {what} within 12 months: {rate_words(a.surgery)}, of those in the same group "
            "treated at least a year ago."
        )
    if not result.surgery_available:
        return "Surgery within 12 months cannot be counted from these tables."
    return (
        f"Too few people in the same group were treated at least a year ago to say how many "
        f"had {what} within 12 months."
    )


def _certainty(kb: KnowledgeBase, learn: str) -> Mapping[str, Any] | None:
    """The knowledge base's certainty of evidence for the arm's treatment page."""
    page = kb.get_page(learn)
    return page.comparison.certainty.to_dict() if page.comparison else None


def cited_sources(evidence_set: EvidenceSet) -> tuple[str, ...]:
    """Source ids in first-use order on the page: the responder rule's, the evidence, then
    the caveats'."""
    ids: dict[str, None] = {"ostelo2008": None}
    for sid in evidence_set.source_ids():
        ids.setdefault(sid)
    for caveat in selectors.rules().caveats:
        for sid in caveat.sources:
            ids.setdefault(sid)
    return tuple(ids)


def page_context(
    result: DecisionResult | None,
    evidence_set: EvidenceSet,
    kb: KnowledgeBase,
    *,
    synthetic: bool = False,
) -> dict[str, Any]:
    """Everything the template needs: arms in words, the figure, sources with numbers."""
    rules = selectors.rules()
    order = cited_sources(evidence_set)
    number = {sid: i + 1 for i, sid in enumerate(order)}
    context: dict[str, Any] = {
        "rules": rules,
        "evidence_version": evidence_set.version,
        "responder_words": responder_words(),
        "responder_source": number["ostelo2008"],
        "caveats": [
            {"text": c.text, "cites": [(number[s], s) for s in c.sources]} for c in rules.caveats
        ],
        "key_caveat": next(c.text for c in rules.caveats if c.id == "not_causal"),
        "sources": [kb.sources[sid] for sid in order],
        "result": result,
        "synthetic": synthetic,
    }
    if result is None:
        return context
    condition_label = dict(conditions())[result.profile.condition]
    arms = []
    for a in result.arms:
        treatment = a.label.lower() if a.arm != "cell_therapy" else "cell therapy"
        group = group_words(a, result, condition_label) if a.shown else ""
        arms.append(
            ArmView(
                estimate=a,
                label=a.label,
                learn_url=f"{LEARN_PREFIX}{kb.get_page(a.learn).path}/",
                sentences=_arm_sentences(a, treatment) if a.shown else (),
                group=group,
                widened=widened(a, result) if a.shown else False,
                icons=icons(a, treatment) if a.shown else "",
                surgery_sentence=_surgery_sentence(a, result) if a.shown else "",
                table_cells=_table_cells(a, group) if a.shown else (),
                evidence=tuple((row, number[row.source]) for row in evidence_set.rows[a.arm]),
                certainty=_certainty(kb, a.learn),
            )
        )
    context.update(
        {
            "arms": arms,
            "condition_label": condition_label,
            "similarity": result.similarity(),
            "figure": responder_figure(
                result.arms,
                condition_label,
                result.age_band.label,
                {arm.estimate.arm: arm.group for arm in arms},
            ),
        }
    )
    return context


def payload(
    result: DecisionResult,
    evidence_set: EvidenceSet,
    kb: KnowledgeBase,
    *,
    synthetic: bool = False,
) -> dict[str, Any]:
    """The JSON contract: the core result plus, per arm, the published evidence and the
    knowledge base's certainty, and every cited source (with its V/U status); ``synthetic``
    True when the registry was filled by the synthetic generator (the demo)."""
    data = result.to_dict()
    data["synthetic_registry"] = synthetic
    for arm, entry in zip(result.arms, data["arms"], strict=True):
        entry["published_evidence"] = [row.to_dict() for row in evidence_set.rows[arm.arm]]
        entry["certainty_of_evidence"] = _certainty(kb, arm.learn)
        entry["learn_url"] = f"{LEARN_PREFIX}{kb.get_page(arm.learn).path}/"
    data["evidence_version"] = evidence_set.version
    data["sources"] = [kb.sources[s].to_dict() for s in cited_sources(evidence_set)]
    return data


# ----------------------------------------------------------------------------- figure

_W, _LEFT, _RIGHT = 480, 16, 24  # narrow, so that a phone shows it at a readable size
_LABEL_H, _BAR_H, _GAP, _TOP, _AXIS = 20, 16, 14, 6, 22
_SERIES = (
    ("Of those with both scores", "#0072B2", "responders_completers"),
    ("Not answered = not improved", "#D55E00", "responders_all"),
)


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def responder_figure(
    arms: Sequence[ArmEstimate],
    condition: str,
    age_band: str,
    groups: Mapping[str, str] | None = None,
) -> str:
    """Horizontal bars (percent improved at 12 months) with 95 % interval whiskers, two per
    arm, in the arms' fixed order; an arm with too few patients gets words, not a bar.

    ``groups`` names, per arm id, the group its figures come from (the widening level); the
    description says it for every arm and a wider group is marked on the label.
    Each arm's name is on its own line above its bars, so the figure can be narrow enough to
    read on a phone. Inline SVG with ``role="img"``, a title and a description; styled by
    attributes and the site's stylesheet only (the CSP allows no inline style). The same
    numbers are in the table after it.
    """
    plot_w = _W - _LEFT - _RIGHT
    block = _LABEL_H + 2 * _BAR_H + 4 + _GAP
    plot_bottom = _TOP + len(arms) * block
    height = plot_bottom + _AXIS + 2 * 18

    def sx(p: float) -> float:
        return _LEFT + p * plot_w

    parts: list[str] = []
    for tick in range(0, 101, 20):
        x = sx(tick / 100)
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{_TOP}" y2="{plot_bottom}" class="grid"/>'
            f'<text x="{x:.1f}" y="{plot_bottom + 16}" text-anchor="middle">{tick}%</text>'
        )
    described = []
    y = _TOP
    for a in arms:
        name = a.label + ("" if a.level in (None, "like_you", PROFILE_LEVEL) else " (wider group)")
        parts.append(f'<text x="{_LEFT}" y="{y + 14}" class="label">{_e(name)}</text>')
        top = y + _LABEL_H
        if not a.shown:
            parts.append(
                f'<text x="{_LEFT}" y="{top + 14}" class="note">No one like you yet</text>'
            )
            described.append(f"{a.label}: no one like you yet")
        else:
            for i, (_name, colour, attr) in enumerate(_SERIES):
                r: Rate = getattr(a, attr)
                bar_top = top + i * (_BAR_H + 4)
                parts.append(
                    f'<rect x="{_LEFT}" y="{bar_top}" width="{(r.rate or 0.0) * plot_w:.1f}" '
                    f'height="{_BAR_H - 2}" fill="{colour}"/>'
                )
                if r.ci:
                    lo, hi, mid = sx(r.ci[0]), sx(r.ci[1]), bar_top + (_BAR_H - 2) / 2
                    parts.append(
                        f'<line x1="{lo:.1f}" x2="{hi:.1f}" y1="{mid}" y2="{mid}" class="ci"/>'
                        f'<line x1="{lo:.1f}" x2="{lo:.1f}" y1="{mid - 5}" y2="{mid + 5}" '
                        f'class="ci"/><line x1="{hi:.1f}" x2="{hi:.1f}" y1="{mid - 5}" '
                        f'y2="{mid + 5}" class="ci"/>'
                    )
            assert a.responders_completers is not None and a.responders_all is not None
            group = (groups or {}).get(a.arm)
            described.append(
                f"{a.label}{f' ({group})' if group else ''}: "
                f"{rate_words(a.responders_completers)} among those with both scores, "
                f"{rate_words(a.responders_all)} counting those who did not answer as not "
                "improved"
            )
        y += block
    for i, (name, colour, _) in enumerate(_SERIES):
        ly = plot_bottom + _AXIS + 12 + i * 18
        parts.append(
            f'<rect x="{_LEFT}" y="{ly - 10}" width="12" height="12" fill="{colour}"/>'
            f'<text x="{_LEFT + 18}" y="{ly}">{_e(name)} (line: 95% range)</text>'
        )
    title = (
        f"Improved at 12 months, for a person with {condition.lower()} aged {age_band}: each "
        "treatment's figure from the narrowest group large enough to show"
    )
    desc = (
        "Percent of similar patients whose disability score improved by at least the minimal "
        "important change, with 95% ranges, per treatment in a fixed order (not a ranking). "
        + "; ".join(described)
        + "."
    )
    return (
        f'<svg class="chart decide-chart" role="img" aria-labelledby="decide-fig-t decide-fig-d" '
        f'viewBox="0 0 {_W} {height}" width="{_W}" height="{height}" '
        f'xmlns="http://www.w3.org/2000/svg"><title id="decide-fig-t">{_e(title)}</title>'
        f'<desc id="decide-fig-d">{_e(desc)}</desc>{"".join(parts)}</svg>'
    )
