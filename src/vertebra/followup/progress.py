"""The patient's own progress: pain (NRS) and disability (ODI) over time, as plain inline SVG,
and their own work-status answers in words (`work_for_patient`).

The chart is drawn server-side by the one charting module (``vertebra.core.charts``: no
script and no inline style, which the CSP forbids; a wide and a phone drawing), with a table
of the same numbers for screen readers. It shows the patient's own scores and the change that most
people notice (the MCID, from ``vertebra/data/responders.yaml``), and never predicts or promises.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vertebra.core import charts as drawing
from vertebra.core.instruments import get_definition
from vertebra.core.psfs_activities import rating_item
from vertebra.core.responders import responder_rule
from vertebra.followup.models import PsfsActivities, QuestionnaireResponse

WIDTH, HEIGHT = 600, 260
LEFT, RIGHT, TOP, BOTTOM = 48, 16, 16, 40

#: Plain-words name of each charted instrument.
CHARTS = (("nrs_back", "Back pain (0 = none, 10 = worst)"), ("odi", "Disability (ODI, 0–100)"))


@dataclass(frozen=True)
class Point:
    """One charted score with its SVG coordinates."""

    label: str
    months: float
    score: float
    x: float
    y: float


@dataclass(frozen=True)
class Chart:
    """Everything a template needs to draw one chart and say it in words."""

    instrument_id: str
    title: str
    points: tuple[Point, ...]
    polyline: str
    y_ticks: tuple[tuple[float, float], ...]  # (value, y)
    mcid_points: float
    mcid_y: float | None  # baseline minus the MCID, when there is a baseline
    mcid_words: str
    source: str
    summary: str
    svg: drawing.Chart
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right_edge: int = WIDTH - RIGHT
    bottom_edge: int = HEIGHT - BOTTOM


def _fmt(value: float) -> str:
    return f"{value:g}"


def build_chart(instrument_id: str, title: str, rows: list[tuple[str, float, float]]) -> Chart:
    """A chart of ``rows`` = (time point label, months after treatment, score)."""
    definition = get_definition(instrument_id)
    low, high = definition.range_min, definition.range_max
    last_month = max([24.0, *[months for _, months, _ in rows]])

    def x_of(months: float) -> float:
        return LEFT + (WIDTH - LEFT - RIGHT) * (months / last_month if last_month else 0)

    def y_of(value: float) -> float:
        return TOP + (HEIGHT - TOP - BOTTOM) * (1 - (value - low) / (high - low))

    points = tuple(
        Point(label, months, value, round(x_of(months), 1), round(y_of(value), 1))
        for label, months, value in rows
    )
    rule = responder_rule(instrument_id)
    baseline = points[0].score if points and points[0].months <= 0 else None
    mcid_y = None
    if baseline is not None and baseline - rule.points >= low:
        mcid_y = round(y_of(baseline - rule.points), 1)
    unit = "points"
    words = (
        f"A change of {_fmt(rule.points)} {unit} or more is one most people notice "
        "(Ostelo et al., Spine 2008). The dashed line is your first score minus "
        f"{_fmt(rule.points)} {unit}."
    )
    ticks = tuple((tick, round(y_of(tick), 1)) for tick in _ticks(low, high))
    svg = _drawing(instrument_id, title, rows, rule.points, baseline, low, high, last_month)
    return Chart(
        instrument_id=instrument_id,
        title=title,
        points=points,
        polyline=" ".join(f"{p.x},{p.y}" for p in points),
        y_ticks=ticks,
        mcid_points=rule.points,
        mcid_y=mcid_y,
        mcid_words=words,
        source=rule.source,
        summary=_summary(points, rule.points),
        svg=svg,
    )


def _drawing(
    instrument_id: str,
    title: str,
    rows: list[tuple[str, float, float]],
    mcid: float,
    baseline: float | None,
    low: float,
    high: float,
    last_month: float,
) -> drawing.Chart:
    """The chart: the patient's scores over months after treatment (0 to 24 or later), the
    dashed line of "first score minus the change most people notice", and axes in words."""
    ticks = drawing.month_ticks(last_month)
    refs = []
    if baseline is not None and baseline - mcid >= low:
        refs.append(drawing.RefLine(baseline - mcid, f"first score − {_fmt(mcid)}"))
    series = [
        drawing.Series(
            "Your score",
            [months for _, months, _ in rows],
            [score for _, _, score in rows],
            style=drawing.Style("#0b5cad", "circle", ""),
        )
    ]
    return drawing.line_chart(
        series,
        title=title,
        desc=f"{_summary_rows(rows)} The dashed line is your first score minus "
        f"{_fmt(mcid)}, a change most people notice. Lower is better.",
        xlabel="Months after treatment",
        ylabel="Score (lower is better)",
        refs=refs,
        y_range=(low, high),
        x_range=(0.0, ticks[-1]),
        x_ticks=ticks,
        ci="none",
        large=True,
    )


def _summary_rows(rows: list[tuple[str, float, float]]) -> str:
    return " ".join(f"{name}: {_fmt(score)}." for name, _months, score in rows)


def _ticks(low: float, high: float) -> list[float]:
    step = (high - low) / 5
    return [low + step * i for i in range(6)]


def _summary(points: tuple[Point, ...], mcid: float) -> str:
    """Say the change in plain words: lower is better on both charted scales."""
    if not points:
        return "No answers yet."
    if len(points) == 1:
        return f"Your first score was {_fmt(points[0].score)}."
    change = points[-1].score - points[0].score
    size = abs(change)
    if size < 1e-9:
        trend = "the same as"
    elif change < 0:
        trend = f"{_fmt(round(size, 1))} lower than"
    else:
        trend = f"{_fmt(round(size, 1))} higher than"
    noticed = (
        " That is at least the change most people notice."
        if change < 0 and size >= mcid - 1e-9
        else ""
    )
    return (
        f"At {points[-1].label} your score was {_fmt(points[-1].score)}, {trend} your first "
        f"score ({_fmt(points[0].score)}, {points[0].label}). Lower is better.{noticed}"
    )


def charts_for_patient(patient_id: int) -> list[Chart]:
    """The patient's NRS back-pain and ODI charts, from their completed questionnaires."""
    charts = []
    for instrument_id, title in CHARTS:
        responses = (
            QuestionnaireResponse.objects.filter(
                time_point__patient_id=patient_id,
                instrument_id=instrument_id,
                score__isnull=False,
            )
            .select_related("time_point")
            .order_by("time_point__months")
        )
        rows = [(r.time_point.label, r.time_point.months, float(r.score or 0)) for r in responses]
        charts.append(build_chart(instrument_id, title, rows))
    return charts


@dataclass(frozen=True)
class WorkAnswer:
    """One work-status answer: when, and the answer in the patient's words."""

    label: str
    words: str
    band: str


@dataclass(frozen=True)
class WorkProgress:
    """The patient's work-status answers over time and one plain sentence about them."""

    answers: tuple[WorkAnswer, ...]
    summary: str


def work_for_patient(patient_id: int) -> WorkProgress:
    """The patient's own work-status answers in order, with a sentence that only describes.

    When the first answer was "off work because of my back", the sentence names the first
    later questionnaire at which the patient reported working (their own return to work).
    """
    item = get_definition("work_status").items[0]
    responses = (
        QuestionnaireResponse.objects.filter(
            time_point__patient_id=patient_id,
            instrument_id="work_status",
            voided_at__isnull=True,  # an answer entered in error is not the patient's (ADR 0009)
        )
        .select_related("time_point")
        .order_by("time_point__months")
    )
    answers = []
    for r in responses:
        code = (r.answers or {}).get(item.id) if isinstance(r.answers, dict) else None
        if code is None:
            continue
        try:
            words = item.option(code).label
        except KeyError:
            continue  # an answer the definition no longer has: not shown
        answers.append(WorkAnswer(r.time_point.label, words, r.band or ""))
    return WorkProgress(tuple(answers), _work_summary(answers))


def _work_summary(answers: list[WorkAnswer]) -> str:
    """Describe the work answers; never predict."""
    if not answers:
        return "No answers about work yet."
    first = answers[0]
    if first.band == "off_work_back_pain":
        back = next((a for a in answers[1:] if a.band == "working"), None)
        if back is not None:
            return (
                f"At {first.label} you were off work because of your back. At {back.label} "
                f"you answered “{back.words}”."
            )
    last = answers[-1]
    return f"At {last.label} you answered “{last.words}”."


@dataclass(frozen=True)
class PsfsRow:
    """One named activity and its 0-10 ratings, one per column of :class:`PsfsTable`
    (None: not rated at that questionnaire)."""

    name: str
    ratings: tuple[int | None, ...]


@dataclass(frozen=True)
class PsfsTable:
    """A patient's PSFS activities (rows) by questionnaire (columns), with each mean score and
    one sentence that only describes."""

    labels: tuple[str, ...]
    rows: tuple[PsfsRow, ...]
    scores: tuple[float | None, ...]
    summary: str

    @property
    def score_words(self) -> tuple[str, ...]:
        """Each mean score as shown ("4", "6.5"; "–" when not scored)."""
        return tuple("–" if s is None else _fmt(s) for s in self.scores)


def psfs_for_patient(patient_id: int) -> PsfsTable:
    """The patient's PSFS activities (the names of their most recent episode that has them)
    and the ratings at every answered PSFS of that episode, oldest first. Voided answers are
    left out (ADR 0009). Read by the patient's progress page and the clinic's patient page."""
    stored = (
        PsfsActivities.objects.filter(episode__patient_id=patient_id)
        .order_by("-named_at")
        .values_list("episode_id", "names")
        .first()
    )
    if stored is None:
        return PsfsTable((), (), (), "No activities named yet.")
    episode_id, names = stored
    responses = list(
        QuestionnaireResponse.objects.filter(
            time_point__schedule__episode_id=episode_id,
            instrument_id="psfs",
            voided_at__isnull=True,
        )
        .select_related("time_point")
        .order_by("time_point__months")
    )
    labels = tuple(r.time_point.label for r in responses)
    rows = tuple(
        PsfsRow(
            name,
            tuple(
                _rating(
                    (r.answers or {}).get(rating_item(k)) if isinstance(r.answers, dict) else None
                )
                for r in responses
            ),
        )
        for k, name in enumerate(names, 1)
    )
    scores = tuple(r.score for r in responses)
    return PsfsTable(labels, rows, scores, _psfs_summary(labels, scores))


def _rating(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) else None


def _psfs_summary(labels: tuple[str, ...], scores: tuple[float | None, ...]) -> str:
    """Describe the average rating at the first and latest questionnaire; never predict."""
    known = [(label, s) for label, s in zip(labels, scores, strict=True) if s is not None]
    if not known:
        return "No ratings yet."
    first_label, first = known[0]
    if len(known) == 1:
        return f"At {first_label} the average of your ratings was {_fmt(first)} out of 10."
    last_label, last = known[-1]
    return (
        f"The average of your ratings was {_fmt(first)} out of 10 at {first_label} and "
        f"{_fmt(last)} at {last_label}."
    )
