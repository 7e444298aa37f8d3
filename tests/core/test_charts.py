"""The one charting module: well-formed SVG, no inline style, a distinct style per arm,
CIs clipped to the scale, axes with ticks and titles, MCID lines, legends that fit."""

from __future__ import annotations

import itertools
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vertebra.core import charts

NS = "{http://www.w3.org/2000/svg}"
ARMS = [
    "Adipose-derived cells",
    "Adipose-derived cells + PRP",
    "Allogeneic cells",
    "Allogeneic cells + PRP",
    "Bone marrow concentrate (BMAC)",
    "BMAC + PRP",
    "Medication",
    "Physical therapy",
    "Steroid injection",
    "Surgery",
]


def _trajectory(n_arms: int = 10, wild_ci: bool = False) -> charts.Chart:
    styles = charts.assign_styles(ARMS[:n_arms])
    series = [
        charts.Series(
            arm,
            [0, 1.5, 3, 6, 12, 24],
            [0, -6 - i, -9, -11, -12 + i / 2, -10],
            [None, -12, -15, -16, -300 if wild_ci else -18, -17],
            [None, -1, -3, -6, 250 if wild_ci else -5, -2],
            style=styles[arm],
        )
        for i, arm in enumerate(ARMS[:n_arms])
    ]
    return charts.line_chart(
        series,
        title="Mean change in ODI",
        desc="Lines with CIs",
        xlabel="Months after treatment",
        ylabel="Change in ODI (points)",
        refs=[charts.RefLine(-10, "MCID: 10 points better")],
        x_range=(0, 24),
        x_ticks=[0, 3, 6, 12, 18, 24],
    )


def _svgs(chart: charts.Chart) -> Iterator[ET.Element]:
    for text in (chart.wide, chart.narrow):
        yield ET.fromstring(text)  # raises on malformed XML


def _all_charts() -> list[charts.Chart]:
    bars = charts.bar_chart(
        [
            charts.BarGroup(
                arm,
                [
                    charts.Bar("among those who answered", 55, 40, 70, "55% (11 of 20)"),
                    charts.Bar("missing counted as non-response", None, text="fewer than 11"),
                ],
            )
            for arm in ARMS
        ],
        title="Responders",
        desc="Bars",
        value_label="Responders (%)",
        value_max=100,
        percent=True,
    )
    forest = charts.forest_plot(
        [charts.ForestRow(f"vs {arm}", -3.0, -8.0, 2.0) for arm in ARMS[6:]],
        title="Adjusted comparisons",
        desc="Differences",
        xlabel="Difference in ODI change (points)",
    )
    funnel = charts.funnel_plot(
        [charts.FunnelPoint(f"Clinic {c}", n, r) for c, n, r in (("A", 40, 0.5), ("B", 80, 0.6))],
        limits_n=[5, 40, 80],
        limits_95=[(0.1, 0.9), (0.35, 0.65), None],
        limits_998=[(0.0, 1.0), (0.3, 0.7), (0.35, 0.65)],
        overall=0.5,
        title="Funnel",
        desc="Clinics",
        xlabel="Patients",
        ylabel="Adjusted responder rate",
    )
    return [_trajectory(), bars, forest, funnel]


@pytest.mark.parametrize("chart", _all_charts(), ids=["line", "bar", "forest", "funnel"])
def test_every_drawing_is_well_formed_accessible_svg_without_inline_style(
    chart: charts.Chart,
) -> None:
    for svg in _svgs(chart):
        assert svg.tag == f"{NS}svg" and svg.get("role") == "img"
        assert svg.get("viewBox")
        title, desc = svg.find(f"{NS}title"), svg.find(f"{NS}desc")
        assert title is not None and title.text and desc is not None and desc.text
        labelled = (svg.get("aria-labelledby") or "").split()
        assert labelled == [title.get("id"), desc.get("id")]
        for el in svg.iter():
            assert el.tag != f"{NS}style"
            assert "style" not in el.attrib
        assert svg.find(f".//{NS}g[@class='axis x']") is not None
        ticks = svg.findall(f".//{NS}text[@class='tick-label']")
        assert len(ticks) >= 3 and all((t.text or "").strip() for t in ticks)
        assert svg.findall(f".//{NS}text[@class='axis-title x']")
    html = chart.html()
    assert "<style" not in html and "style=" not in html
    assert html.count('role="img"') == 2


def test_ten_arms_get_ten_distinct_colours_and_distinct_marker_dash_pairs() -> None:
    styles = charts.assign_styles(ARMS)
    colours = [s.colour for s in styles.values()]
    assert len(set(colours)) == 10
    assert len({(s.marker, s.dash) for s in styles.values()}) == 10
    svg = ET.fromstring(_trajectory().wide)
    lines = svg.findall(f".//{NS}polyline[@class='line']")
    assert len({line.get("stroke") for line in lines}) == 10


def test_preferred_slots_keep_an_arm_s_colour_when_others_are_filtered_out() -> None:
    preferred = {arm: i for i, arm in enumerate(ARMS)}
    everyone = charts.assign_styles(ARMS, preferred)
    only_two = charts.assign_styles([ARMS[7], ARMS[2]], preferred)
    assert only_two[ARMS[7]] == everyone[ARMS[7]] and only_two[ARMS[2]] == everyone[ARMS[2]]
    clash = charts.assign_styles(["x", "y"], {"x": 0, "y": 0})
    assert clash["x"] != clash["y"]


def _plot_box(svg: ET.Element) -> tuple[float, float]:
    """Top and bottom of the plot area: the y axis line."""
    axis = svg.find(f".//{NS}g[@class='axis y']/{NS}line")
    assert axis is not None
    return float(axis.get("y1", 0)), float(axis.get("y2", 0))


def _path_ys(d: str) -> list[float]:
    """The y coordinates of the M (x y) and V (y) commands of a path."""
    ys = []
    for cmd, a, b in re.findall(r"([MVh])(-?[\d.]+)(?: (-?[\d.]+))?", d):
        if cmd == "M":
            ys.append(float(b))
        elif cmd == "V":
            ys.append(float(a))
    return ys


def test_confidence_intervals_are_clipped_to_the_scale() -> None:
    chart = _trajectory(3, wild_ci=True)
    for svg in _svgs(chart):
        top, bottom = _plot_box(svg)
        whiskers = svg.findall(f".//{NS}path[@class='ci']")
        assert whiskers
        for w in whiskers:
            for y in _path_ys(w.get("d", "")):
                assert top - 0.01 <= y <= bottom + 0.01
        data = svg.find(f".//{NS}g[@class='data']")
        assert data is not None and data.get("clip-path", "").startswith("url(#")


def test_mcid_line_is_drawn_and_labelled_from_the_value_given() -> None:
    svg = ET.fromstring(_trajectory().wide)
    ref = svg.find(f".//{NS}g[@class='ref mcid']")
    assert ref is not None
    line, label = ref.find(f"{NS}line"), ref.find(f"{NS}text")
    assert line is not None and line.get("stroke-dasharray")
    assert label is not None and label.text == "MCID: 10 points better"
    top, bottom = _plot_box(svg)
    assert top < float(line.get("y1", 0)) < bottom


def test_legend_has_every_series_and_fits_inside_the_drawing() -> None:
    for text, width in ((_trajectory().wide, 800), (_trajectory().narrow, 360)):
        svg = ET.fromstring(text)
        legend = svg.find(f".//{NS}g[@class='legend']")
        assert legend is not None
        labels = [t.text for t in legend.findall(f"{NS}text")]
        assert labels == ARMS or sorted(labels) == sorted(ARMS)
        height = float(svg.get("viewBox", "").split()[3])
        for t in legend.findall(f"{NS}text"):
            x, y = float(t.get("x", 0)), float(t.get("y", 0))
            assert y < height
            assert x + charts.text_width(t.text or "", 13) <= width + 1


def test_x_tick_labels_do_not_overlap_on_the_phone_drawing() -> None:
    chart = charts.line_chart(
        [charts.Series("a", [0, 1.5, 3, 6, 12, 24], [1, 2, 3, 4, 5, 6])],
        title="t",
        desc="d",
        xlabel="Months",
        ylabel="Score",
        x_range=(0, 24),
        x_ticks=[0, 1.5, 3, 6, 9, 12, 15, 18, 21, 24],
    )
    svg = ET.fromstring(chart.narrow)
    xs = [
        (float(t.get("x", 0)), t.text or "")
        for t in svg.findall(f".//{NS}g[@class='axis x']/{NS}text[@class='tick-label']")
    ]
    assert xs[0][1] == "0" and xs[-1][1] == "24"
    for (x1, a), (x2, b) in itertools.pairwise(xs):
        assert x2 - x1 >= (charts.text_width(a, 13) + charts.text_width(b, 13)) / 2


@given(
    lo=st.floats(-1e4, 1e4, allow_nan=False),
    span=st.floats(1e-3, 1e5, allow_nan=False),
    n=st.integers(2, 10),
)
@settings(max_examples=200, deadline=None)
def test_nice_ticks_cover_the_range_in_even_steps(lo: float, span: float, n: int) -> None:
    hi = lo + span
    ticks = charts.nice_ticks(lo, hi, n)
    assert ticks[0] <= lo + 1e-6 * span and ticks[-1] >= hi - 1e-6 * span
    steps = {round(b - a, 6) for a, b in itertools.pairwise(ticks)}
    assert len(ticks) <= 3 * n + 2 and len(steps) <= 2  # equal up to rounding


def test_text_is_escaped() -> None:
    chart = charts.line_chart(
        [charts.Series("<b>arm</b> & co", [0, 1], [1, 2])],
        title="a < b",
        desc='"quoted"',
        xlabel="x",
        ylabel="y",
    )
    for svg in _svgs(chart):
        assert svg.find(f".//{NS}b") is None
    assert "&lt;b&gt;arm&lt;/b&gt; &amp; co" in chart.wide


def test_reference_label_moves_off_a_line_that_would_cross_it() -> None:
    """A series running just above the MCID line all the way across pushes its label below."""
    chart = charts.line_chart(
        [charts.Series("flat", [0, 24], [-9.0, -9.0]), charts.Series("low", [0, 24], [-30, -30])],
        title="t",
        desc="d",
        xlabel="Months",
        ylabel="Change",
        refs=[charts.RefLine(-10, "MCID: 10 points better")],
        y_range=(-40, 10),
        x_range=(0, 24),
    )
    svg = ET.fromstring(chart.wide)
    ref = svg.find(f".//{NS}g[@class='ref mcid']")
    assert ref is not None
    line, label = ref.find(f"{NS}line"), ref.find(f"{NS}text")
    assert line is not None and label is not None
    assert float(label.get("y", 0)) > float(line.get("y1", 0))  # below the line


def test_empty_inputs_draw_empty_axes_not_a_crash() -> None:
    for chart in (
        charts.line_chart([], title="t", desc="d", xlabel="x", ylabel="y"),
        charts.line_chart(
            [charts.Series("a", [0], [None])], title="t", desc="d", xlabel="x", ylabel="y"
        ),
        charts.bar_chart([], title="t", desc="d", value_label="v"),
        charts.forest_plot([], title="t", desc="d", xlabel="x"),
        charts.funnel_plot(
            [],
            limits_n=[],
            limits_95=[],
            limits_998=[],
            overall=None,
            title="t",
            desc="d",
            xlabel="x",
            ylabel="y",
        ),
    ):
        for svg in _svgs(chart):
            assert svg.find(f".//{NS}g[@class='axis x']") is not None


@pytest.mark.parametrize("chart", _all_charts(), ids=["line", "bar", "forest", "funnel"])
def test_no_text_runs_outside_the_drawing(chart: charts.Chart) -> None:
    for svg in _svgs(chart):
        _, _, width, height = (float(v) for v in svg.get("viewBox", "").split())
        for t in svg.iter(f"{NS}text"):
            size = float(t.get("font-size", 13))
            w = charts.text_width(t.text or "", size)
            x, y = float(t.get("x", 0)), float(t.get("y", 0))
            start = {"start": x, "middle": x - w / 2, "end": x - w}[t.get("text-anchor", "start")]
            assert start >= -1 and start + w <= width + 1, t.text
            assert size * 0.7 <= y <= height + 1, t.text


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(st.tuples(st.floats(0, 0.2), st.floats(0, 100)), min_size=1, max_size=300),
    scale=st.floats(0.1, 50),
)
def test_a_step_curve_keeps_every_step_a_drawing_shows(
    steps: list[tuple[float, float]], scale: float
) -> None:
    """The first and last points stay, the order stays, and every point left out is drawn
    within half a pixel of the level the kept points draw at its x."""
    x, points = 0.0, []
    for dx, y in steps:
        x += dx
        points.append((x, y))

    def sy(v: float) -> float:
        return 300 - v * scale

    kept = charts._visible_steps(points, sy)
    assert kept[0] is points[0] and kept[-1] is points[-1]
    positions = [next(i for i, p in enumerate(points) if p is k) for k in kept]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    level = points[0][1]
    kept_at = set(positions)
    for i, (_x, y) in enumerate(points):
        if i in kept_at:
            level = y
        else:
            assert abs(sy(y) - sy(level)) <= 0.5 + 1e-9


def test_a_long_survival_curve_draws_a_few_hundred_points() -> None:
    months = [k / 30.4 for k in range(1, 3_000)]
    share = [100 * (1 - k / 4_000) for k in range(1, 3_000)]
    chart = charts.line_chart(
        [charts.Series("arm", [0.0, *months], [100.0, *share], step=True)],
        title="t", desc="d", xlabel="x", ylabel="y",
    )  # fmt: skip
    polyline = re.search(r'<polyline class="line" points="([^"]+)"', chart.wide)
    assert polyline is not None
    assert 200 < len(polyline.group(1).split()) < 2_000  # not the 6,000 of every step
