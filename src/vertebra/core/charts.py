"""Vertebra's one charting module: accessible inline SVG that draws under a strict CSP.

Every chart of the dashboard, the patient trajectory page, the HTML/PDF report and the
patient portal is drawn here (pure: numbers in, markup out; no Django, no I/O).

Contracts
---------
* No inline style at all: no ``<style>`` element and no ``style=`` attribute. Everything is
  drawn with SVG presentation attributes (``fill``, ``stroke``, ``font-size`` ...), which the
  Content-Security-Policy ``style-src 'self'`` allows; ``charts.css`` (a static file) only
  chooses between the wide and the narrow drawing and scales them.
* Each chart is drawn twice (:class:`Chart`): ``wide`` for desktop and print, ``narrow`` for a
  390 px phone (legend below, fewer ticks, text at ~13 px after scaling). Both are complete.
* Every drawing has ``role="img"``, a ``<title>`` and a ``<desc>``, axes with ticks and
  titles, gridlines, and its legend below the plot (never clipped). Tick labels that would
  overlap are thinned. Confidence intervals and lines are clipped to the plotted scale.
* Series get a colour from Paul Tol's colour-blind-safe "muted" scheme plus black (10
  distinct colours) *and* a marker shape and dash pattern, so colour is never the only cue.
  :func:`assign_styles` gives each key (e.g. an arm) a stable, distinct style.
* Text is escaped here; the output is safe to insert as markup.
"""

from __future__ import annotations

import html
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "DASHES",
    "MARKERS",
    "MAX_CI_SERIES",
    "PALETTE",
    "Bar",
    "BarGroup",
    "Chart",
    "ForestRow",
    "FunnelPoint",
    "RefLine",
    "Series",
    "Style",
    "assign_styles",
    "bar_chart",
    "forest_plot",
    "funnel_plot",
    "line_chart",
    "month_ticks",
    "nice_ticks",
    "style_at",
    "text_width",
    "wrap",
]

#: Paul Tol's "muted" qualitative scheme (colour-blind safe, https://personal.sron.nl/~pault/)
#: reordered so that the first few are the most different, plus black as a tenth colour.
PALETTE: tuple[str, ...] = (
    "#332288",  # indigo
    "#CC6677",  # rose
    "#117733",  # green
    "#DDCC77",  # sand
    "#88CCEE",  # cyan
    "#882255",  # wine
    "#44AA99",  # teal
    "#999933",  # olive
    "#AA4499",  # purple
    "#000000",  # black
)
#: Marker shapes, cycled independently of the colours (so colour is never the only cue).
MARKERS: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "triangle-down", "cross")
#: Dash patterns ("" = solid).
DASHES: tuple[str, ...] = ("", "7 3", "2 3", "9 3 2 3", "4 2 1 2")

INK = "#1b1b1b"
MUTED = "#4a5565"
GRID = "#e3e3e3"
AXIS = "#555555"
REF = "#222222"
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif"

_ids = itertools.count(1)


@dataclass(frozen=True)
class Style:
    """How one series is drawn: colour, marker shape and dash pattern."""

    colour: str
    marker: str
    dash: str


def month_ticks(last: float) -> list[float]:
    """Ticks of a months-after-treatment axis: 0, 3, 6, 12, 18, 24 (and on, 6 by 6, to
    ``last``), so every follow-up axis runs through 24 months and the last time point."""
    ticks = [0.0, 3.0, 6.0, 12.0, 18.0, 24.0]
    while ticks[-1] < last:
        ticks.append(ticks[-1] + 6)
    return ticks


def style_at(i: int) -> Style:
    """The ``i``-th style: colours repeat after 10, (marker, dash) pairs after 30."""
    return Style(PALETTE[i % len(PALETTE)], MARKERS[i % len(MARKERS)], DASHES[i % len(DASHES)])


def assign_styles(
    keys: Sequence[str], preferred: Mapping[str, int] | None = None
) -> dict[str, Style]:
    """A distinct style per key: a key keeps its ``preferred`` slot when free, others take
    the lowest free slot in order. So an arm keeps its colour when a filter hides others."""
    preferred = preferred or {}
    slots: dict[str, int] = {}
    taken: set[int] = set()
    for key in keys:
        slot = preferred.get(key)
        if slot is not None and slot not in taken:
            slots[key] = slot
            taken.add(slot)
    free = (i for i in itertools.count() if i not in taken)
    for key in keys:
        if key not in slots:
            slots[key] = next(free)
            taken.add(slots[key])
    return {key: style_at(slots[key]) for key in keys}


@dataclass(frozen=True)
class Chart:
    """One chart drawn twice; :meth:`html` (and ``str()``) give both inside
    ``<div class="vchart">`` (templates: ``{{ chart.html|safe }}``; the text is escaped here)."""

    wide: str
    narrow: str

    def html(self) -> str:
        """Both drawings; ``charts.css`` shows the narrow one below 640 px, else the wide one."""
        return (
            f'<div class="vchart"><div class="vchart-wide">{self.wide}</div>'
            f'<div class="vchart-narrow">{self.narrow}</div></div>'
        )

    def __str__(self) -> str:
        return self.html()


# --------------------------------------------------------------------------- primitives


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _f(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".") if math.isfinite(x) else "0"


def text_width(text: str, size: float) -> float:
    """Estimated rendered width of ``text`` at font ``size`` (sans-serif; errs wide)."""
    wide = sum(1 for ch in text if ch in "MWmw%@")
    narrow = sum(1 for ch in text if ch in "il.,:;|!'()[] 1")
    return size * (0.62 * len(text) + 0.3 * wide - 0.25 * narrow)


def wrap(text: str, width: float, size: float) -> list[str]:
    """``text`` broken at spaces into lines no wider than ``width`` (a long word stays whole)."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        trial = f"{current} {word}".strip()
        if current and text_width(trial, size) > width:
            lines.append(current)
            current = word
        else:
            current = trial
    if current:
        lines.append(current)
    return lines or [""]


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values spanning [lo, hi] (the first <= lo, the last >= hi)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0, 1.0]
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    # 2.5 only for steps of 25, 250, ... (quarters of 100); 0.25 or 2.5 read badly
    mults = (1, 2, 2.5, 5, 10) if mag >= 10 else (1, 2, 5, 10)
    step = next((m * mag for m in mults if m * mag >= raw * 0.999), 10 * mag)
    start = math.floor(lo / step + 1e-9) * step
    ticks = [round(start, 10) + 0.0]
    k = 0
    while start + k * step < hi - step * 1e-9 or len(ticks) < 2:
        k += 1
        ticks.append(round(start + k * step, 10) + 0.0)
    return ticks


def _fmt_tick(t: float) -> str:
    if abs(t) < 1e-9:
        return "0"
    text = f"{t:,.2f}".rstrip("0").rstrip(".")
    return text.replace("-", "−")


def _thin(
    positions: Sequence[float], labels: Sequence[str], size: float, gap: float = 6
) -> list[bool]:
    """Which of the labels centred at ``positions`` to show so that none overlap (the first
    and the last are kept in preference)."""
    n = len(positions)
    keep = [False] * n
    if not n:
        return keep
    half = [text_width(lbl, size) / 2 for lbl in labels]
    order = [0, n - 1, *range(1, n - 1)] if n > 1 else [0]
    shown: list[int] = []
    for i in order:
        if all(abs(positions[i] - positions[j]) >= half[i] + half[j] + gap for j in shown):
            keep[i] = True
            shown.append(i)
    return keep


def marker(shape: str, x: float, y: float, r: float, colour: str, *, hollow: bool = False) -> str:
    """One marker of ``shape`` centred at (x, y) with radius ``r``."""
    fill = "#ffffff" if hollow else colour
    paint = f'fill="{fill}" stroke="{colour}" stroke-width="1.5"'
    if shape == "circle":
        return f'<circle cx="{_f(x)}" cy="{_f(y)}" r="{_f(r)}" {paint}/>'
    if shape == "square":
        s = r * 0.9
        return (
            f'<rect x="{_f(x - s)}" y="{_f(y - s)}" width="{_f(2 * s)}" height="{_f(2 * s)}" '
            f"{paint}/>"
        )
    if shape == "cross":
        s = r * 0.85
        return (
            f'<path d="M{_f(x - s)} {_f(y - s)}L{_f(x + s)} {_f(y + s)}M{_f(x - s)} {_f(y + s)}'
            f'L{_f(x + s)} {_f(y - s)}" fill="none" stroke="{colour}" stroke-width="2.5"/>'
        )
    if shape == "diamond":
        pts = [(x, y - r * 1.2), (x + r, y), (x, y + r * 1.2), (x - r, y)]
    elif shape == "triangle-down":
        pts = [(x - r, y - r * 0.8), (x + r, y - r * 0.8), (x, y + r)]
    else:  # triangle
        pts = [(x, y - r), (x + r, y + r * 0.8), (x - r, y + r * 0.8)]
    return f'<polygon points="{" ".join(f"{_f(a)},{_f(b)}" for a, b in pts)}" {paint}/>'


def _text(
    x: float,
    y: float,
    text: str,
    *,
    size: float,
    anchor: str = "start",
    fill: str = INK,
    cls: str = "",
    weight: str = "",
    halo: bool = False,
) -> str:
    extra = f' class="{cls}"' if cls else ""
    if weight:
        extra += f' font-weight="{weight}"'
    if halo:  # a white outline keeps text readable where it crosses lines
        extra += ' stroke="#ffffff" stroke-width="3" paint-order="stroke" stroke-linejoin="round"'
    return (
        f'<text x="{_f(x)}" y="{_f(y)}" font-size="{_f(size)}" text-anchor="{anchor}" '
        f'fill="{fill}"{extra}>{_e(text)}</text>'
    )


@dataclass
class _Svg:
    """An SVG document under construction (width fixed, height known at the end)."""

    width: float
    size: float
    parts: list[str] = field(default_factory=list)
    uid: int = field(default_factory=lambda: next(_ids))

    def add(self, *parts: str) -> None:
        self.parts.extend(parts)

    def render(self, height: float, title: str, desc: str, kind: str) -> str:
        t, d = f"vc{self.uid}-t", f"vc{self.uid}-d"
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" class="chart chart-{kind}" role="img" '
            f'aria-labelledby="{t} {d}" viewBox="0 0 {_f(self.width)} {_f(height)}" '
            f'width="{_f(self.width)}" height="{_f(height)}" font-family="{_e(FONT)}" '
            f'font-size="{_f(self.size)}" preserveAspectRatio="xMinYMin meet">'
            f'<title id="{t}">{_e(title)}</title><desc id="{d}">{_e(desc)}</desc>'
            f'<rect class="chart-bg" x="0" y="0" width="{_f(self.width)}" height="{_f(height)}" '
            f'fill="#ffffff"/>{"".join(self.parts)}</svg>'
        )


#: Most lines whose CIs are drawn as whiskers (``ci="auto"``).
MAX_CI_SERIES = 4
#: (width, font size, plot height) of the two drawings.
_WIDE = (800.0, 14.0, 270.0)
_NARROW = (360.0, 13.0, 230.0)
_LARGE_WIDE = (800.0, 17.0, 280.0)
_LARGE_NARROW = (360.0, 16.0, 240.0)


# --------------------------------------------------------------------------- legends


@dataclass(frozen=True)
class _LegendItem:
    label: str
    style: Style
    line: bool = True
    points: bool = True
    swatch: str = ""  # "solid" / "outline" for bar series


def _legend(svg: _Svg, items: Sequence[_LegendItem], x0: float, y0: float, width: float) -> float:
    """Legend items in as many columns as fit, from (x0, y0); returns the y below it."""
    if not items:
        return y0
    size = svg.size
    sample = 34.0
    col_w = max(text_width(i.label, size) for i in items) + sample + 16
    cols = max(1, min(len(items), int(width // col_w)))
    col_w = width / cols if cols > 1 else width
    row_h = size * 1.55
    rows = math.ceil(len(items) / cols)
    svg.add('<g class="legend">')
    for k, item in enumerate(items):
        r, c = k % rows, k // rows  # fill column by column: reads top to bottom
        x, y = x0 + c * col_w, y0 + r * row_h + row_h / 2
        s = item.style
        if item.swatch:
            hollow = item.swatch == "outline"
            svg.add(
                f'<rect x="{_f(x + 4)}" y="{_f(y - 6)}" width="24" height="12" '
                f'fill="{"#ffffff" if hollow else s.colour}" stroke="{s.colour}" '
                f'stroke-width="2"/>'
            )
        else:
            if item.line:
                dash = f' stroke-dasharray="{s.dash}"' if s.dash else ""
                svg.add(
                    f'<line x1="{_f(x)}" x2="{_f(x + 30)}" y1="{_f(y)}" y2="{_f(y)}" '
                    f'stroke="{s.colour}" stroke-width="2.5"{dash}/>'
                )
            if item.points:
                svg.add(marker(s.marker, x + 15, y, 4.5, s.colour))
        svg.add(_text(x + sample + 4, y + size * 0.35, item.label, size=size))
    svg.add("</g>")
    return y0 + rows * row_h


# --------------------------------------------------------------------------- line charts


@dataclass(frozen=True)
class Series:
    """One line: points (x, y) with optional CI (lo, hi) per point; None y = no point.

    ``step`` draws a right-continuous step curve (Kaplan–Meier); ``line``/``points`` switch
    the line and the markers; ``style`` overrides the style given by position.
    """

    name: str
    x: Sequence[float]
    y: Sequence[float | None]
    lo: Sequence[float | None] = ()
    hi: Sequence[float | None] = ()
    step: bool = False
    style: Style | None = None
    line: bool = True
    points: bool = True
    legend: bool = True


@dataclass(frozen=True)
class RefLine:
    """A horizontal reference line (e.g. the MCID) with its label."""

    value: float
    label: str
    kind: str = "mcid"


def _finite(values: Sequence[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def _y_extent(series: Sequence[Series], refs: Sequence[RefLine]) -> tuple[float, float]:
    """Range of the values and reference lines, widened for CIs by at most half the span."""
    core = _finite([v for s in series for v in s.y] + [r.value for r in refs])
    if not core:
        return 0.0, 1.0
    lo, hi = min(core), max(core)
    span = (hi - lo) or max(abs(hi), 1.0)
    cis = _finite([v for s in series for v in (*s.lo, *s.hi)])
    if cis:
        lo = max(min(lo, min(cis)), lo - span / 2)
        hi = min(max(hi, max(cis)), hi + span / 2)
    return lo, hi


def _steps(pts: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for i, (x, y) in enumerate(pts):
        if i:
            out.append((x, pts[i - 1][1]))
        out.append((x, y))
    return out


def _visible_steps(
    points: list[tuple[float, float]], sy: Callable[[float], float]
) -> list[tuple[float, float]]:
    """A step curve's points (data units, x ascending) without the steps a drawing cannot
    show: a point is kept when its drawn height (``sy``: data y -> drawn y) falls in another
    half-pixel row than the last kept point's, and the first and last points always. Every
    point left out lies within half a pixel of the level drawn at its x, so the drawing is
    the same; a Kaplan–Meier curve of thousands of small steps becomes as many points as
    half-pixel rows it descends (the researchers' dashboard drew ~50,000 points per
    request at 100,000 patients)."""
    if len(points) <= 2:
        return points
    kept = [points[0]]
    last = round(sy(points[0][1]) * 2)
    for point in points[1:-1]:
        row = round(sy(point[1]) * 2)
        if row != last:
            kept.append(point)
            last = row
    kept.append(points[-1])
    return kept


def _sample(points: list[tuple[float, float]], step: float = 4.0) -> list[tuple[float, float]]:
    """Points every ``step`` units along the polyline through ``points``."""
    out = list(points[:1])
    for (ax, ay), (bx, by) in itertools.pairwise(points):
        n = max(1, int(math.hypot(bx - ax, by - ay) // step))
        out.extend((ax + (bx - ax) * k / n, ay + (by - ay) * k / n) for k in range(1, n + 1))
    return out


def _ref_label_place(
    text: str,
    yy: float,
    size: float,
    left: float,
    right: float,
    top: float,
    bottom: float,
    ink: Sequence[tuple[float, float]],
) -> tuple[float, float, str]:
    """Where the label of a reference line at ``yy`` goes: above or below the line, at the
    right or the left end, the first place no drawn point or line crosses (else above right)."""
    w = text_width(text, size)
    above, below = yy - 5, yy + size + 3
    candidates = [(right - 4, above, "end"), (right - 4, below, "end"),
                  (left + 4, above, "start"), (left + 4, below, "start")]  # fmt: skip
    for x, y, anchor in candidates:
        if y - size < top - 2 or y > bottom + 2:
            continue
        x0 = x - w if anchor == "end" else x
        if not any(x0 - 3 <= px <= x0 + w + 3 and y - size - 2 <= py <= y + 3 for px, py in ink):
            return x, y, anchor
    return right - 4, above if above - size >= top else below, "end"


def _clip(v: float, lo: float, hi: float) -> float:
    return min(max(v, lo), hi)


def line_chart(
    series: Sequence[Series],
    *,
    title: str,
    desc: str,
    xlabel: str,
    ylabel: str,
    refs: Sequence[RefLine] = (),
    y_range: tuple[float, float] | None = None,
    x_range: tuple[float, float] | None = None,
    x_ticks: Sequence[float] | None = None,
    ci: str = "auto",
    y_percent: bool = False,
    large: bool = False,
) -> Chart:
    """Lines with markers over x (e.g. months), CIs as whiskers (``ci="bars"``, dodged so
    arms do not hide each other), a shaded band (``"band"``) or not drawn (``"none"``);
    ``"auto"`` draws whiskers for up to :data:`MAX_CI_SERIES` lines and none beyond (ten
    arms of whiskers hide the lines: the page's table has every CI).

    ``refs`` are horizontal reference lines (MCID), labelled inside the plot. ``x_range``
    and ``x_ticks`` fix the x axis (e.g. 0–24 months with ticks at 0, 3, 6, 12, 18, 24).
    ``large`` draws text a quarter larger (for patients).
    """
    wide, narrow = (_LARGE_WIDE, _LARGE_NARROW) if large else (_WIDE, _NARROW)
    return Chart(
        wide=_line_svg(
            series,
            title,
            desc,
            xlabel,
            ylabel,
            refs,
            y_range,
            x_range,
            x_ticks,
            ci,
            y_percent,
            wide,
        ),
        narrow=_line_svg(
            series,
            title,
            desc,
            xlabel,
            ylabel,
            refs,
            y_range,
            x_range,
            x_ticks,
            ci,
            y_percent,
            narrow,
        ),
    )


def _line_svg(
    series: Sequence[Series],
    title: str,
    desc: str,
    xlabel: str,
    ylabel: str,
    refs: Sequence[RefLine],
    y_range: tuple[float, float] | None,
    x_range: tuple[float, float] | None,
    x_ticks: Sequence[float] | None,
    ci: str,
    y_percent: bool,
    geometry: tuple[float, float, float],
) -> str:
    width, size, plot_h = geometry
    narrow = width < 500
    svg = _Svg(width, size)
    if ci == "auto":
        ci = "bars" if len([s for s in series if _finite(s.y)]) <= MAX_CI_SERIES else "none"
    # --- scales
    scaled = series if ci != "none" else [Series(s.name, s.x, s.y) for s in series]
    lo, hi = y_range or _y_extent(scaled, refs)
    yt = nice_ticks(lo, hi, 5 if narrow else 6)
    y0, y1 = (lo, hi) if y_range else (yt[0], yt[-1])
    yt = [t for t in yt if y0 - 1e-9 <= t <= y1 + 1e-9]
    xs = _finite([v for s in series for v in s.x])
    x0, x1 = x_range or ((min(xs), max(xs)) if xs else (0.0, 1.0))
    if x1 <= x0:
        x1 = x0 + 1
    xt = list(x_ticks) if x_ticks is not None else nice_ticks(x0, x1, 4 if narrow else 8)
    xt = [t for t in xt if x0 - 1e-9 <= t <= x1 + 1e-9]
    ylab = [_fmt_tick(t) + ("%" if y_percent else "") for t in yt]
    left = max(text_width(t, size) for t in ylab) + 16 if ylab else 30
    right = width - max(14.0, text_width(_fmt_tick(x1), size) / 2 + 4)
    ytitle = wrap(ylabel, width - 8, size)
    top = size * (1.3 * len(ytitle) + 0.9)
    bottom = top + plot_h

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * (right - left)

    def sy(y: float) -> float:
        return bottom - (y - y0) / ((y1 - y0) or 1.0) * (bottom - top)

    # --- grid, axes, ticks
    for k, title_line in enumerate(ytitle):
        svg.add(
            _text(
                4, size * (1.1 + 1.3 * k), title_line, size=size, cls="axis-title y", weight="600"
            )
        )
    svg.add('<g class="grid">')
    for t in yt:
        svg.add(
            f'<line x1="{_f(left)}" x2="{_f(right)}" y1="{_f(sy(t))}" y2="{_f(sy(t))}" '
            f'stroke="{GRID}" stroke-width="1"/>'
        )
    for t in xt:
        svg.add(
            f'<line x1="{_f(sx(t))}" x2="{_f(sx(t))}" y1="{_f(top)}" y2="{_f(bottom)}" '
            f'stroke="{GRID}" stroke-width="1"/>'
        )
    svg.add("</g>")
    svg.add('<g class="axis y">')
    svg.add(
        f'<line x1="{_f(left)}" x2="{_f(left)}" y1="{_f(top)}" y2="{_f(bottom)}" '
        f'stroke="{AXIS}" stroke-width="1"/>'
    )
    for t, lbl in zip(yt, ylab, strict=True):
        svg.add(
            f'<line class="tick" x1="{_f(left - 4)}" x2="{_f(left)}" y1="{_f(sy(t))}" '
            f'y2="{_f(sy(t))}" stroke="{AXIS}"/>',
            _text(
                left - 7,
                sy(t) + size * 0.35,
                lbl,
                size=size,
                anchor="end",
                fill=MUTED,
                cls="tick-label",
            ),
        )
    svg.add("</g>")
    svg.add('<g class="axis x">')
    svg.add(
        f'<line x1="{_f(left)}" x2="{_f(right)}" y1="{_f(bottom)}" y2="{_f(bottom)}" '
        f'stroke="{AXIS}" stroke-width="1"/>'
    )
    xlab = [_fmt_tick(t) for t in xt]
    keep = _thin([sx(t) for t in xt], xlab, size)
    for t, lbl, shown in zip(xt, xlab, keep, strict=True):
        svg.add(
            f'<line class="tick" x1="{_f(sx(t))}" x2="{_f(sx(t))}" y1="{_f(bottom)}" '
            f'y2="{_f(bottom + 4)}" stroke="{AXIS}"/>'
        )
        if shown:
            svg.add(
                _text(
                    sx(t),
                    bottom + size * 1.35,
                    lbl,
                    size=size,
                    anchor="middle",
                    fill=MUTED,
                    cls="tick-label",
                )
            )
    svg.add(
        _text(
            (left + right) / 2,
            bottom + size * 2.8,
            xlabel,
            size=size,
            anchor="middle",
            cls="axis-title x",
            weight="600",
        )
    )
    svg.add("</g>")
    # --- data, clipped to the plot area
    clip = f"vc{svg.uid}-clip"
    svg.add(
        f'<defs><clipPath id="{clip}"><rect x="{_f(left - 8)}" y="{_f(top - 6)}" '
        f'width="{_f(right - left + 16)}" height="{_f(bottom - top + 12)}"/></clipPath></defs>'
    )
    svg.add(f'<g class="data" clip-path="url(#{clip})">')
    drawn = [s for s in series if _finite(s.y)]
    ink: list[tuple[float, float]] = []  # drawn points, to keep reference labels off them
    dodge_step = min(5.0, (right - left) / 60) if ci == "bars" and len(drawn) > 1 else 0.0
    for i, s in enumerate(drawn):
        st = s.style or style_at(i)
        off = (i - (len(drawn) - 1) / 2) * dodge_step
        pts = [
            (float(x), float(y))
            for x, y in zip(s.x, s.y, strict=False)
            if y is not None and math.isfinite(float(y))
        ]
        band = [
            (float(x), _clip(float(a), y0, y1), _clip(float(b), y0, y1))
            for x, a, b in zip(s.x, s.lo, s.hi, strict=False)
            if a is not None and b is not None
        ]
        svg.add(f'<g class="series" data-name="{_e(s.name)}">')
        if band and ci == "band" and len(band) >= 2:
            upper = [(x, b) for x, _a, b in band]
            lower = [(x, a) for x, a, _b in band]
            if s.step:
                upper, lower = _steps(upper), _steps(lower)
            poly = " ".join(f"{_f(sx(x))},{_f(sy(y))}" for x, y in upper + lower[::-1])
            svg.add(
                f'<polygon class="ci" points="{poly}" fill="{st.colour}" fill-opacity="0.15" '
                f'stroke="none"/>'
            )
        if band and ci == "bars":
            for x, a, b in band:
                px = sx(x) + off
                svg.add(
                    f'<path class="ci" d="M{_f(px)} {_f(sy(a))}V{_f(sy(b))}M{_f(px - 3)} '
                    f'{_f(sy(a))}h6M{_f(px - 3)} {_f(sy(b))}h6" stroke="{st.colour}" '
                    f'stroke-width="1.5" fill="none"/>'
                )
        if s.line and len(pts) >= 2:
            line = _steps(_visible_steps(pts, sy)) if s.step else pts
            ink.extend(_sample([(sx(x) + (0 if s.step else off), sy(y)) for x, y in line]))
            path = " ".join(f"{_f(sx(x) + (0 if s.step else off))},{_f(sy(y))}" for x, y in line)
            dash = f' stroke-dasharray="{st.dash}"' if st.dash else ""
            svg.add(
                f'<polyline class="line" points="{path}" fill="none" stroke="{st.colour}" '
                f'stroke-width="2.5" stroke-linejoin="round"{dash}/>'
            )
        if s.points:
            marks = pts if not s.step else pts[:: max(1, len(pts) // 6)]
            for x, y in marks:
                ink.append((sx(x) + (0 if s.step else off), sy(y)))
                if y0 - 1e-9 <= y <= y1 + 1e-9:
                    svg.add(
                        marker(st.marker, sx(x) + (0 if s.step else off), sy(y), 4.5, st.colour)
                    )
        svg.add("</g>")
    svg.add("</g>")
    # --- reference lines (MCID) on top, labelled inside the plot
    for r in refs:
        if not y0 <= r.value <= y1:
            continue
        yy = sy(r.value)
        svg.add(
            f'<g class="ref {r.kind}"><line x1="{_f(left)}" x2="{_f(right)}" y1="{_f(yy)}" '
            f'y2="{_f(yy)}" stroke="{REF}" stroke-width="1.5" stroke-dasharray="6 4"/>'
        )
        lx, ly, anchor = _ref_label_place(r.label, yy, size * 0.95, left, right, top, bottom, ink)
        svg.add(_text(lx, ly, r.label, size=size * 0.95, anchor=anchor, halo=True), "</g>")
    # --- legend below
    items = [
        _LegendItem(s.name, s.style or style_at(i), line=s.line, points=s.points)
        for i, s in enumerate(drawn)
        if s.legend
    ]
    end = _legend(svg, items, 4, bottom + size * 3.6, width - 8) if items else bottom + size * 3.4
    return svg.render(end + 6, title, desc, "line")


# --------------------------------------------------------------------------- bar charts


@dataclass(frozen=True)
class Bar:
    """One bar: ``series`` names the kind of figure (drawn solid, outlined, ...); ``text`` is
    written at its end (e.g. "62% (122 of 197)"); value None draws no bar, only the text."""

    series: str
    value: float | None
    lo: float | None = None
    hi: float | None = None
    text: str = ""


@dataclass(frozen=True)
class BarGroup:
    """The bars of one category (e.g. one arm), drawn in the category's style."""

    label: str
    bars: Sequence[Bar]
    style: Style | None = None


def bar_chart(
    groups: Sequence[BarGroup],
    *,
    title: str,
    desc: str,
    value_label: str,
    value_max: float | None = None,
    percent: bool = False,
) -> Chart:
    """Horizontal bars, one row per bar, grouped by category (labels never collide: on the
    wide drawing they sit left of the bars, wrapped; on the narrow one above them). The
    first series is drawn solid, the second outlined, so the two are told apart without
    colour. Whiskers are CIs (clipped to the scale)."""
    return Chart(
        wide=_bar_svg(groups, title, desc, value_label, value_max, percent, _WIDE),
        narrow=_bar_svg(groups, title, desc, value_label, value_max, percent, _NARROW),
    )


def _bar_svg(
    groups: Sequence[BarGroup],
    title: str,
    desc: str,
    value_label: str,
    value_max: float | None,
    percent: bool,
    geometry: tuple[float, float, float],
) -> str:
    width, size, _plot_h = geometry
    narrow = width < 500
    svg = _Svg(width, size)
    series = list(dict.fromkeys(b.series for g in groups for b in g.bars))
    vals = _finite([v for g in groups for b in g.bars for v in (b.value, b.hi)])
    top_v = value_max if value_max is not None else (max(vals) if vals else 1.0)
    ticks = nice_ticks(0.0, max(top_v, 1e-9), 4 if narrow else 5)
    v1 = value_max if value_max is not None else ticks[-1]
    ticks = [t for t in ticks if t <= v1 + 1e-9]
    text_room = max([text_width(b.text, size * 0.92) for g in groups for b in g.bars] + [0.0])
    label_w = (
        0.0
        if narrow
        else min(230.0, max((text_width(g.label, size) for g in groups), default=0) + 12)
    )
    labels = [_fmt_tick(t) + ("%" if percent else "") for t in ticks]
    left = max(8 + label_w, text_width(labels[0], size) / 2 + 6)
    right = width - 8 - max(text_room + 6, text_width(labels[-1], size) / 2)
    bar_h, gap = (14.0, 4.0)
    label_h = size * 1.5 if narrow else 0.0
    top = size * 0.6

    def sx(v: float) -> float:
        return left + _clip(v, 0.0, v1) / (v1 or 1.0) * (right - left)

    y = top
    rows: list[str] = []
    for gi, g in enumerate(groups):
        st = g.style or style_at(gi)
        if narrow:  # the label above its bars, wrapped to the drawing's width
            for line in wrap(g.label, width - left - 8, size):
                rows.append(_text(left, y + size, line, size=size, cls="category", weight="600"))
                y += label_h
        block_h = len(g.bars) * (bar_h + gap)
        lines: list[str] = []
        if not narrow:
            lines = wrap(g.label, label_w - 12, size)[:3]
            first = y + block_h / 2 - (len(lines) - 1) * size * 0.6 + size * 0.35 - gap / 2
            for k, line in enumerate(lines):
                rows.append(
                    _text(
                        left - 8,
                        first + k * size * 1.2,
                        line,
                        size=size,
                        anchor="end",
                        cls="category",
                    )
                )
        for b in g.bars:
            kind = series.index(b.series)
            hollow = kind % 2 == 1
            if b.value is not None and math.isfinite(b.value):
                w = max(sx(b.value) - left, 0.0)
                rows.append(
                    f'<rect class="bar" x="{_f(left)}" y="{_f(y)}" width="{_f(w)}" '
                    f'height="{_f(bar_h)}" fill="{"#ffffff" if hollow else st.colour}" '
                    f'stroke="{st.colour}" stroke-width="2"/>'
                )
            end = left if b.value is None else sx(b.value)
            if b.lo is not None and b.hi is not None:
                a, c = sx(b.lo), sx(b.hi)
                mid = y + bar_h / 2
                whisker = (
                    f"M{_f(a)} {_f(mid)}H{_f(c)}M{_f(a)} {_f(mid - 4)}v8M{_f(c)} {_f(mid - 4)}v8"
                )
                rows.append(  # a white outline keeps the whisker visible on dark bars
                    f'<path d="{whisker}" stroke="#ffffff" stroke-width="3.5" fill="none"/>'
                    f'<path class="ci" d="{whisker}" stroke="{INK}" stroke-width="1.5" '
                    f'fill="none"/>'
                )
                end = max(end, c)
            if b.text:
                rows.append(_text(end + 5, y + bar_h - 3, b.text, size=size * 0.92, cls="value"))
            y += bar_h + gap
        y += max(0.0, len(lines) * size * 1.2 - block_h)  # room for a long wrapped label
        y += size * 0.6 if gi < len(groups) - 1 else 0
        if gi < len(groups) - 1 and not narrow:
            rows.append(
                f'<line x1="8" x2="{_f(right)}" y1="{_f(y - size * 0.3)}" '
                f'y2="{_f(y - size * 0.3)}" stroke="{GRID}" stroke-width="0.8"/>'
            )
    bottom = y + 2
    svg.add('<g class="grid">')
    for t in ticks:
        svg.add(
            f'<line x1="{_f(sx(t))}" x2="{_f(sx(t))}" y1="{_f(top)}" y2="{_f(bottom)}" '
            f'stroke="{GRID}" stroke-width="1"/>'
        )
    svg.add("</g>")
    svg.add(*rows)
    svg.add('<g class="axis x">')
    svg.add(
        f'<line x1="{_f(left)}" x2="{_f(right)}" y1="{_f(bottom)}" y2="{_f(bottom)}" '
        f'stroke="{AXIS}"/><line x1="{_f(left)}" x2="{_f(left)}" y1="{_f(top)}" '
        f'y2="{_f(bottom)}" stroke="{AXIS}"/>'
    )
    keep = _thin([sx(t) for t in ticks], labels, size)
    for t, lbl, shown in zip(ticks, labels, keep, strict=True):
        svg.add(
            f'<line class="tick" x1="{_f(sx(t))}" x2="{_f(sx(t))}" y1="{_f(bottom)}" '
            f'y2="{_f(bottom + 4)}" stroke="{AXIS}"/>'
        )
        if shown:
            svg.add(
                _text(
                    sx(t),
                    bottom + size * 1.35,
                    lbl,
                    size=size,
                    anchor="middle",
                    fill=MUTED,
                    cls="tick-label",
                )
            )
    svg.add(
        _text(
            (left + right) / 2,
            bottom + size * 2.8,
            value_label,
            size=size,
            anchor="middle",
            cls="axis-title x",
            weight="600",
        )
    )
    svg.add("</g>")
    neutral = Style("#4a5565", "square", "")
    items = [
        _LegendItem(name, neutral, swatch="outline" if k % 2 else "solid")
        for k, name in enumerate(series)
    ]
    end = (
        _legend(svg, items, 4, bottom + size * 3.6, width - 8)
        if len(series) > 1
        else (bottom + size * 3.4)
    )
    return svg.render(end + 6, title, desc, "bar")


# --------------------------------------------------------------------------- forest plot


@dataclass(frozen=True)
class ForestRow:
    """One estimate with its CI; ``label`` names the comparison."""

    label: str
    estimate: float | None
    lo: float | None
    hi: float | None
    style: Style | None = None
    text: str = ""


def forest_plot(
    rows: Sequence[ForestRow],
    *,
    title: str,
    desc: str,
    xlabel: str,
    ref: float = 0.0,
    ref_label: str = "no difference",
) -> Chart:
    """Point estimates with CI lines, one row each, and the reference line (no difference)."""
    return Chart(
        wide=_forest_svg(rows, title, desc, xlabel, ref, ref_label, _WIDE),
        narrow=_forest_svg(rows, title, desc, xlabel, ref, ref_label, _NARROW),
    )


def _forest_svg(
    rows: Sequence[ForestRow],
    title: str,
    desc: str,
    xlabel: str,
    ref: float,
    ref_label: str,
    geometry: tuple[float, float, float],
) -> str:
    width, size, _plot_h = geometry
    narrow = width < 500
    svg = _Svg(width, size)
    vals = _finite([v for r in rows for v in (r.estimate, r.lo, r.hi)] + [ref])
    ticks = nice_ticks(min(vals), max(vals), 4 if narrow else 6)
    x0, x1 = ticks[0], ticks[-1]
    label_w = (
        0.0 if narrow else min(260.0, max([text_width(r.label, size) for r in rows] + [0]) + 12)
    )
    labels = [_fmt_tick(t) for t in ticks]
    left = max(10 + label_w, text_width(labels[0], size) / 2 + 6)
    right = width - max(12.0, text_width(labels[-1], size) / 2 + 4)
    row_h = size * 1.9
    label_h = size * 1.4 if narrow else 0.0
    top = size * 1.8

    def sx(v: float) -> float:
        return left + (_clip(v, x0, x1) - x0) / ((x1 - x0) or 1.0) * (right - left)

    y = top
    body: list[str] = []
    for i, r in enumerate(rows):
        st = r.style or style_at(i)
        if narrow:
            body.append(_text(left, y + size, r.label, size=size, cls="category", weight="600"))
            y += label_h
        mid = y + row_h / 2
        if not narrow:
            lines = wrap(r.label, label_w - 12, size)[:2]
            first = mid - (len(lines) - 1) * size * 0.6 + size * 0.35
            for k, line in enumerate(lines):
                body.append(
                    _text(
                        left - 8,
                        first + k * size * 1.2,
                        line,
                        size=size,
                        anchor="end",
                        cls="category",
                    )
                )
        if r.lo is not None and r.hi is not None:
            body.append(
                f'<line class="ci" x1="{_f(sx(r.lo))}" x2="{_f(sx(r.hi))}" y1="{_f(mid)}" '
                f'y2="{_f(mid)}" stroke="{st.colour}" stroke-width="2.5"/>'
            )
        if r.estimate is not None:
            body.append(marker(st.marker, sx(r.estimate), mid, 6, st.colour))
        y += row_h
    bottom = y + 4
    svg.add(
        _text(sx(ref), size * 1.1, ref_label, size=size * 0.95, anchor="middle", cls="ref-label")
    )
    svg.add('<g class="grid">')
    for t in ticks:
        svg.add(
            f'<line x1="{_f(sx(t))}" x2="{_f(sx(t))}" y1="{_f(top)}" y2="{_f(bottom)}" '
            f'stroke="{GRID}"/>'
        )
    svg.add("</g>")
    svg.add(
        f'<g class="ref"><line x1="{_f(sx(ref))}" x2="{_f(sx(ref))}" y1="{_f(top - 4)}" '
        f'y2="{_f(bottom)}" stroke="{REF}" stroke-width="1.5" stroke-dasharray="6 4"/></g>'
    )
    svg.add(*body)
    svg.add(
        f'<g class="axis x"><line x1="{_f(left)}" x2="{_f(right)}" y1="{_f(bottom)}" '
        f'y2="{_f(bottom)}" stroke="{AXIS}"/>'
    )
    keep = _thin([sx(t) for t in ticks], labels, size)
    for t, lbl, shown in zip(ticks, labels, keep, strict=True):
        svg.add(
            f'<line class="tick" x1="{_f(sx(t))}" x2="{_f(sx(t))}" y1="{_f(bottom)}" '
            f'y2="{_f(bottom + 4)}" stroke="{AXIS}"/>'
        )
        if shown:
            svg.add(
                _text(
                    sx(t),
                    bottom + size * 1.35,
                    lbl,
                    size=size,
                    anchor="middle",
                    fill=MUTED,
                    cls="tick-label",
                )
            )
    lines = wrap(xlabel, right - left, size)
    for k, line in enumerate(lines):
        svg.add(
            _text(
                (left + right) / 2,
                bottom + size * (2.8 + 1.25 * k),
                line,
                size=size,
                anchor="middle",
                cls="axis-title x",
                weight="600",
            )
        )
    svg.add("</g>")
    return svg.render(bottom + size * (3.4 + 1.25 * (len(lines) - 1)), title, desc, "forest")


# --------------------------------------------------------------------------- funnel plot


@dataclass(frozen=True)
class FunnelPoint:
    """One clinic: its denominator, its (adjusted) rate in [0, 1] and its style."""

    label: str
    n: float
    rate: float | None
    style: Style | None = None


def funnel_plot(
    points: Sequence[FunnelPoint],
    *,
    limits_n: Sequence[float],
    limits_95: Sequence[tuple[float, float] | None],
    limits_998: Sequence[tuple[float, float] | None],
    overall: float | None,
    title: str,
    desc: str,
    xlabel: str,
    ylabel: str,
) -> Chart:
    """Clinics as points (x = n, y = rate in %) inside 95 % and 99.8 % control limits."""
    grey95 = Style("#555555", "circle", "6 4")
    grey998 = Style("#555555", "circle", "2 3")
    series: list[Series] = []
    for name, lims, st in (
        ("95% limits", limits_95, grey95),
        ("99.8% limits", limits_998, grey998),
    ):
        pairs = [(n, lim) for n, lim in zip(limits_n, lims, strict=False) if lim is not None]
        for k, legend in ((0, True), (1, False)):
            series.append(
                Series(
                    name,
                    [float(n) for n, _ in pairs],
                    [100 * lim[k] for _, lim in pairs],
                    style=st,
                    points=False,
                    legend=legend,
                )
            )
    for i, p in enumerate(points):
        if p.rate is not None:
            series.append(
                Series(p.label, [p.n], [100 * p.rate], style=p.style or style_at(i), line=False)
            )
    refs = (
        [RefLine(100 * overall, f"overall {100 * overall:.0f}%", kind="overall")]
        if (overall is not None)
        else []
    )
    xmax = max([p.n for p in points] + [float(n) for n in limits_n] + [1.0])
    return line_chart(
        series,
        title=title,
        desc=desc,
        xlabel=xlabel,
        ylabel=ylabel,
        refs=refs,
        y_range=(0.0, 100.0),
        x_range=(0.0, xmax),
        ci="none",
        y_percent=True,
    )


# ------------------------------------------------------------------------- icon array

#: Icon-array colours: improved (Tol muted blue-ish "indigo") and the rest (light grey, with
#: a dark outline so the two differ in fill AND outline, not by colour alone).
_ICON_ON, _ICON_OFF, _ICON_EDGE = "#332288", "#ffffff", "#4a5565"


def icon_count(numerator: int, denominator: int) -> int:
    """How many of 100 icons stand for ``numerator`` of ``denominator`` (rounded half up)."""
    if denominator <= 0:
        raise ValueError("denominator must be positive")
    return math.floor(100 * numerator / denominator + 0.5)


def icon_array(numerator: int, denominator: int, *, what: str, rest: str, label: str) -> str:
    """100 people in a 10 x 10 grid, the first :func:`icon_count` of them filled.

    ``what``/``rest`` name the two groups ("improved", "did not improve"); ``label`` says who
    the 100 stand for. Filled icons are solid, the others hollow, so colour is not the only
    cue; the exact count with its denominator is in the title and the description, and the
    ``data-filled`` attribute carries the number of filled icons (for tests). Presentation
    attributes only (no inline style), like every chart here.
    """
    filled = icon_count(numerator, denominator)
    cell, pad, size = 18.0, 4.0, 13.0
    width = 10 * cell + 2 * pad
    legend_y = 10 * cell + 2 * pad + 6
    parts: list[str] = []
    for i in range(100):
        row, col = divmod(i, 10)
        cx, top = pad + col * cell + cell / 2, pad + row * cell + 2
        on = i < filled
        fill, cls = (_ICON_ON, "icon on") if on else (_ICON_OFF, "icon off")
        parts.append(
            f'<g class="{cls}"><circle cx="{_f(cx)}" cy="{_f(top + 3)}" r="3" fill="{fill}" '
            f'stroke="{_ICON_EDGE if not on else fill}" stroke-width="1"/>'
            f'<path d="M{_f(cx - 5)} {_f(top + 15)} v-4 a5 5 0 0 1 10 0 v4 z" fill="{fill}" '
            f'stroke="{_ICON_EDGE if not on else fill}" stroke-width="1"/></g>'
        )
    for j, (on, name, n) in enumerate(((True, what, filled), (False, rest, 100 - filled))):
        y = legend_y + j * (size + 6)
        fill = _ICON_ON if on else _ICON_OFF
        parts.append(
            f'<rect x="{_f(pad)}" y="{_f(y)}" width="11" height="11" fill="{fill}" '
            f'stroke="{_ICON_EDGE}" stroke-width="1"/>'
            f'<text x="{_f(pad + 16)}" y="{_f(y + 10)}" fill="#1b1b1b">{n} {_e(name)}</text>'
        )
    height = legend_y + 2 * (size + 6)
    title = f"{filled} of 100 {label} {what}"
    desc = (
        f"An icon array of 100 people standing for {label}: {filled} filled icons {what}, "
        f"{100 - filled} hollow icons {rest}. From {numerator} of {denominator} "
        f"({100 * numerator / denominator:.0f}%), rounded to whole people."
    )
    svg = _Svg(width, size)
    svg.add(*parts)
    return svg.render(height, title, desc, "icons").replace(
        'class="chart chart-icons"', f'class="chart chart-icons" data-filled="{filled}"', 1
    )
