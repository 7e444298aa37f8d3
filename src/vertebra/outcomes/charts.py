"""Small, dependency-free inline SVG charts for the outcomes pages.

Every function takes plain numbers and returns one ``<svg>`` string with ``role="img"``, a
``<title>`` and a ``<desc>``; the page puts the same numbers in a data table right after the
figure, so nothing is conveyed by the picture alone. Text is escaped here; the output is safe
to mark safe in a template.
"""

from __future__ import annotations

import html
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = [
    "PALETTE",
    "Band",
    "Bar",
    "ForestRow",
    "FunnelPoint",
    "Series",
    "bar_chart",
    "forest_plot",
    "funnel_plot",
    "line_chart",
]

#: Okabe-Ito colours (distinguishable with the common colour-vision deficiencies).
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#8c564b")
_ids = itertools.count(1)

W, H = 720, 300
LEFT, RIGHT, TOP, BOTTOM = 60, 190, 16, 46


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _f(x: float) -> str:
    return f"{x:.1f}"


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering [lo, hi]."""
    if not math.isfinite(lo) or not math.isfinite(hi) or hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((s * mag for s in (1, 2, 2.5, 5, 10) if s * mag >= raw), default=raw)
    start = math.ceil(lo / step) * step
    out, t = [], start
    while t <= hi + step * 1e-9:
        out.append(round(t, 10))
        t += step
    return out


@dataclass
class _Frame:
    """Maps data coordinates to the SVG plot area; draws axes, grid and labels."""

    x0: float
    x1: float
    y0: float
    y1: float
    width: int = W
    height: int = H
    parts: list[str] = field(default_factory=list)

    def sx(self, x: float) -> float:
        span = (self.x1 - self.x0) or 1.0
        return LEFT + (x - self.x0) / span * (self.width - LEFT - RIGHT)

    def sy(self, y: float) -> float:
        span = (self.y1 - self.y0) or 1.0
        return self.height - BOTTOM - (y - self.y0) / span * (self.height - TOP - BOTTOM)

    def axes(self, xlabel: str, ylabel: str, *, yfmt: str = "{:g}", xticks: bool = True) -> None:
        right, bottom = self.width - RIGHT, self.height - BOTTOM
        for t in _ticks(self.y0, self.y1):
            y = self.sy(t)
            self.parts.append(
                f'<line x1="{LEFT}" x2="{right}" y1="{_f(y)}" y2="{_f(y)}" class="grid"/>'
                f'<text x="{LEFT - 6}" y="{_f(y + 4)}" text-anchor="end">'
                f"{_e(yfmt.format(t))}</text>"
            )
        if xticks:
            for t in _ticks(self.x0, self.x1, 6):
                x = self.sx(t)
                self.parts.append(
                    f'<line x1="{_f(x)}" x2="{_f(x)}" y1="{bottom}" y2="{bottom + 4}" '
                    f'class="axis"/><text x="{_f(x)}" y="{bottom + 16}" '
                    f'text-anchor="middle">{_e(f"{t:g}")}</text>'
                )
        self.parts.append(
            f'<line x1="{LEFT}" x2="{right}" y1="{bottom}" y2="{bottom}" class="axis"/>'
            f'<line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{bottom}" class="axis"/>'
            f'<text x="{(LEFT + right) / 2}" y="{self.height - 8}" text-anchor="middle">'
            f"{_e(xlabel)}</text>"
            f'<text transform="translate(14 {(TOP + bottom) / 2}) rotate(-90)" '
            f'text-anchor="middle">{_e(ylabel)}</text>'
        )

    def hline(self, y: float, label: str = "", cls: str = "ref") -> None:
        if not self.y0 <= y <= self.y1:
            return
        yy = _f(self.sy(y))
        self.parts.append(
            f'<line x1="{LEFT}" x2="{self.width - RIGHT}" y1="{yy}" y2="{yy}" class="{cls}"/>'
        )
        if label:
            self.parts.append(
                f'<text x="{self.width - RIGHT + 4}" y="{yy}" class="small">{_e(label)}</text>'
            )

    def legend(self, names: Sequence[str]) -> None:
        for i, name in enumerate(names):
            y = TOP + 8 + i * 16
            colour = PALETTE[i % len(PALETTE)]
            self.parts.append(
                f'<rect x="{self.width - RIGHT + 10}" y="{y - 8}" width="10" height="10" '
                f'fill="{colour}"/><text x="{self.width - RIGHT + 24}" y="{y + 1}">'
                f"{_e(name)}</text>"
            )

    def svg(self, title: str, desc: str) -> str:
        n = next(_ids)
        return (
            f'<svg class="chart" role="img" aria-labelledby="chart-t{n} chart-d{n}" '
            f'viewBox="0 0 {self.width} {self.height}" width="{self.width}" '
            f'height="{self.height}" xmlns="http://www.w3.org/2000/svg">'
            f'<title id="chart-t{n}">{_e(title)}</title><desc id="chart-d{n}">{_e(desc)}</desc>'
            f"<style>text{{font:11px system-ui,sans-serif;fill:#1b1b1b}}.small{{font-size:10px}}"
            f".grid{{stroke:#e3e3e3}}.axis{{stroke:#555}}.ref{{stroke:#555;stroke-dasharray:5 4}}"
            f"</style>{''.join(self.parts)}</svg>"
        )


@dataclass(frozen=True)
class Series:
    """One line: points (x, y) with optional CI (lo, hi) per point; None y = gap."""

    name: str
    x: Sequence[float]
    y: Sequence[float | None]
    lo: Sequence[float | None] = ()
    hi: Sequence[float | None] = ()
    step: bool = False


@dataclass(frozen=True)
class Band:
    """A horizontal reference line (e.g. the MCID) with its label."""

    y: float
    label: str


def _extent(values: Sequence[float | None], pad: float = 0.08) -> tuple[float, float]:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return 0.0, 1.0
    lo, hi = min(vals), max(vals)
    span = (hi - lo) or max(abs(hi), 1.0)
    return lo - span * pad, hi + span * pad


def line_chart(
    series: Sequence[Series],
    *,
    title: str,
    desc: str,
    xlabel: str,
    ylabel: str,
    bands: Sequence[Band] = (),
    y_range: tuple[float, float] | None = None,
    dashed: Sequence[str] = (),
) -> str:
    """Lines (or step curves) with shaded CI bands; ``dashed`` names series drawn dashed."""
    xs = [x for s in series for x in s.x]
    ys = [v for s in series for v in (*s.y, *s.lo, *s.hi)] + [b.y for b in bands]
    y0, y1 = y_range or _extent(ys)
    x0, x1 = (min(xs), max(xs)) if xs else (0.0, 1.0)
    fr = _Frame(x0, x1 if x1 > x0 else x0 + 1, y0, y1)
    fr.axes(xlabel, ylabel)
    for b in bands:
        fr.hline(b.y, b.label)
    for i, s in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        pts = [(x, y) for x, y in zip(s.x, s.y, strict=False) if y is not None]
        band = [
            (x, lo, hi)
            for x, lo, hi in zip(s.x, s.lo, s.hi, strict=False)
            if lo is not None and hi is not None
        ]
        if len(band) >= 2:
            upper = [(x, hi) for x, _lo, hi in band]
            lower = [(x, lo) for x, lo, _hi in reversed(band)]
            if s.step:
                upper, lower = _steps(upper), list(reversed(_steps(list(reversed(lower)))))
            poly = " ".join(f"{_f(fr.sx(x))},{_f(fr.sy(y))}" for x, y in upper + lower)
            fr.parts.append(f'<polygon points="{poly}" fill="{colour}" fill-opacity="0.14"/>')
        line = _steps(pts) if s.step else pts
        path = " ".join(f"{_f(fr.sx(x))},{_f(fr.sy(y))}" for x, y in line)
        dash = ' stroke-dasharray="6 4"' if s.name in dashed else ""
        fr.parts.append(
            f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>'
        )
        if not s.step:
            for x, y in pts:
                fr.parts.append(
                    f'<circle cx="{_f(fr.sx(x))}" cy="{_f(fr.sy(y))}" r="3" fill="{colour}"/>'
                )
    fr.legend([s.name for s in series])
    return fr.svg(title, desc)


def _steps(pts: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points of a right-continuous step function through ``pts``."""
    out: list[tuple[float, float]] = []
    for i, (x, y) in enumerate(pts):
        if i:
            out.append((x, pts[i - 1][1]))
        out.append((x, y))
    return out


@dataclass(frozen=True)
class Bar:
    """One bar of a group: value with optional CI, drawn in the colour of ``series``."""

    group: str
    series: str
    value: float | None
    lo: float | None = None
    hi: float | None = None


def bar_chart(
    bars: Sequence[Bar], *, title: str, desc: str, ylabel: str, y_max: float | None = None
) -> str:
    """Grouped vertical bars with CI whiskers; groups on x in order of first appearance."""
    groups = list(dict.fromkeys(b.group for b in bars))
    names = list(dict.fromkeys(b.series for b in bars))
    top = y_max or _extent([b.hi if b.hi is not None else b.value for b in bars], 0.1)[1]
    top = max(top, 1e-9)
    height = H + 30
    fr = _Frame(0, max(len(groups), 1), 0, top, height=height)
    fr.axes("", ylabel, xticks=False)
    slot = (W - LEFT - RIGHT) / max(len(groups), 1)
    bw = slot * 0.8 / max(len(names), 1)
    for gi, group in enumerate(groups):
        cx = LEFT + slot * (gi + 0.5)
        fr.parts.append(
            f'<text x="{_f(cx)}" y="{height - BOTTOM + 14}" text-anchor="middle" '
            f'class="small">{_e(group)}</text>'
        )
        for si, name in enumerate(names):
            bar = next((b for b in bars if b.group == group and b.series == name), None)
            if bar is None or bar.value is None:
                continue
            x = LEFT + slot * gi + slot * 0.1 + si * bw
            y = fr.sy(bar.value)
            fr.parts.append(
                f'<rect x="{_f(x)}" y="{_f(y)}" width="{_f(bw * 0.92)}" '
                f'height="{_f(fr.sy(0) - y)}" fill="{PALETTE[si % len(PALETTE)]}"/>'
            )
            if bar.lo is not None and bar.hi is not None:
                mx = _f(x + bw * 0.46)
                fr.parts.append(
                    f'<line x1="{mx}" x2="{mx}" y1="{_f(fr.sy(bar.lo))}" '
                    f'y2="{_f(fr.sy(bar.hi))}" stroke="#1b1b1b" stroke-width="1.5"/>'
                )
    fr.legend(names)
    return fr.svg(title, desc)


@dataclass(frozen=True)
class ForestRow:
    """One estimate with its CI (the label names the comparison)."""

    label: str
    estimate: float | None
    lo: float | None
    hi: float | None


def forest_plot(rows: Sequence[ForestRow], *, title: str, desc: str, xlabel: str) -> str:
    """Point estimates with CI lines, one row each, and the line of no difference at 0."""
    vals = [v for r in rows for v in (r.estimate, r.lo, r.hi)] + [0.0]
    x0, x1 = _extent(vals)
    height = TOP + BOTTOM + 34 * max(len(rows), 1)
    fr = _Frame(x0, x1, 0, max(len(rows), 1), height=height)
    fr.parts.append(
        f'<line x1="{_f(fr.sx(0))}" x2="{_f(fr.sx(0))}" y1="{TOP}" '
        f'y2="{height - BOTTOM}" class="ref"/>'
    )
    for t in _ticks(x0, x1, 6):
        x = fr.sx(t)
        fr.parts.append(
            f'<text x="{_f(x)}" y="{height - BOTTOM + 16}" text-anchor="middle">'
            f"{_e(f'{t:g}')}</text>"
        )
    fr.parts.append(
        f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{height - BOTTOM}" y2="{height - BOTTOM}" '
        f'class="axis"/><text x="{(LEFT + W - RIGHT) / 2}" y="{height - 8}" '
        f'text-anchor="middle">{_e(xlabel)}</text>'
    )
    for i, r in enumerate(rows):
        y = TOP + 17 + 34 * i
        fr.parts.append(
            f'<text x="{W - RIGHT + 6}" y="{y + 4}" class="small">{_e(r.label[:28])}</text>'
        )
        if r.lo is not None and r.hi is not None:
            fr.parts.append(
                f'<line x1="{_f(fr.sx(r.lo))}" x2="{_f(fr.sx(r.hi))}" y1="{y}" y2="{y}" '
                f'stroke="#1b1b1b" stroke-width="2"/>'
            )
        if r.estimate is not None:
            fr.parts.append(
                f'<rect x="{_f(fr.sx(r.estimate) - 5)}" y="{y - 5}" width="10" height="10" '
                f'fill="{PALETTE[0]}"/>'
            )
    return fr.svg(title, desc)


@dataclass(frozen=True)
class FunnelPoint:
    """One clinic: its denominator and adjusted rate."""

    label: str
    n: float
    rate: float | None


def funnel_plot(
    points: Sequence[FunnelPoint],
    *,
    limits_n: Sequence[float],
    limits_95: Sequence[tuple[float, float]],
    limits_998: Sequence[tuple[float, float]],
    overall: float | None,
    title: str,
    desc: str,
) -> str:
    """Clinics as points (x = n, y = rate) inside 95 % and 99.8 % control limits."""
    xs = [p.n for p in points] + list(limits_n)
    fr = _Frame(0, max(xs) if xs else 1.0, 0, 1)
    fr.axes("patients with a 12-month answer and a baseline (n)", "adjusted responder rate")
    for lims, dash in ((limits_95, "5 4"), (limits_998, "2 3")):
        for k in (0, 1):
            pts = " ".join(
                f"{_f(fr.sx(n))},{_f(fr.sy(min(max(lim[k], 0.0), 1.0)))}"
                for n, lim in zip(limits_n, lims, strict=False)
            )
            fr.parts.append(
                f'<polyline points="{pts}" fill="none" stroke="#555" stroke-dasharray="{dash}"/>'
            )
    if overall is not None:
        fr.hline(overall, "overall")
    for i, p in enumerate(points):
        if p.rate is None:
            continue
        fr.parts.append(
            f'<circle cx="{_f(fr.sx(p.n))}" cy="{_f(fr.sy(p.rate))}" r="5" '
            f'fill="{PALETTE[i % len(PALETTE)]}"/>'
        )
    fr.legend([p.label for p in points])
    return fr.svg(title, desc)
