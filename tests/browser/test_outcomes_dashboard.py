"""A clinic lead opens the outcomes dashboard in Chromium (desktop 1366×900 and a 390 px
phone): the headline numbers are above the fold, the charts draw (axes, gridlines, MCID
lines visible: checked by their bounding boxes), there are no console errors and no CSP
violations; the lead filters by arm and condition and downloads the PDF. The patient
trajectory page runs to 24 months with its MCID lines. Screenshots go to the artifacts."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from vertebra.cohort.loader import load_cohort
from vertebra.core.synth import generate_cohort
from vertebra.registry.models import Clinic, Membership, Patient, Role

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "correct horse battery staple 42"
TODAY = dt.date(2026, 11, 25)


class Console:
    """Every console error, page error and CSP violation of a page, and failed loads."""

    def __init__(self, page: Any) -> None:
        self.problems: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.problems.append(f"pageerror: {exc}"))

    def _console(self, msg: Any) -> None:
        text = msg.text
        if msg.type != "error" and "Content Security Policy" not in text:
            return
        url = (msg.location or {}).get("url", "")
        if "Failed to load resource" in text and url.endswith("/favicon.ico"):
            return  # the favicon is another part of issue 13, no part of these pages
        self.problems.append(f"{msg.type}: {text} ({url})")


def _load_and_sign_in(live_server: Any, page: Any, n: int = 120) -> Any:
    cohort = generate_cohort(n, 11, today=TODAY)
    load_cohort(cohort, now=dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.UTC))
    lead = User.objects.create_user(username="lead", password=PASSWORD)
    for clinic in Clinic.objects.all():
        Membership.objects.create(user=lead, clinic=clinic, role=Role.CLINICIAN)
    page.goto(live_server.url + "/accounts/login/?next=/clinic/outcomes/")
    page.locator("#id_username").fill("lead")
    page.locator("#id_password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/clinic/outcomes/")
    return cohort


def _visible_box(locator: Any) -> dict[str, float]:
    box = locator.bounding_box()
    assert box is not None, "element is not rendered"
    assert locator.is_visible()
    return box


LINE_BOX = """e => {
  const r = e.getBoundingClientRect(), s = getComputedStyle(e);
  const svg = e.closest('svg').getBoundingClientRect();
  return {x: r.x, y: r.y, width: r.width, height: r.height, stroke: s.stroke,
          shown: s.visibility !== 'hidden' && s.display !== 'none' && svg.width > 0
                 && s.stroke !== 'none' && parseFloat(s.strokeWidth) > 0};
}"""


def _line_box(locator: Any) -> dict[str, Any]:
    """Box of a (possibly zero-height) SVG line that is drawn with a visible stroke."""
    box: dict[str, Any] = locator.evaluate(LINE_BOX)
    assert box["shown"], box
    return box


def _assert_chart_draws(chart: Any, *, mcid: bool) -> None:
    """A visible chart with an x axis line, tick labels, gridlines and (maybe) an MCID line
    of real size, inside the chart's own box."""
    outer = _visible_box(chart)
    assert outer["width"] > 250 and outer["height"] > 150
    axis = _line_box(chart.locator("g.axis.x > line").first)
    assert axis["width"] > 0.5 * outer["width"]
    ticks = chart.locator("text.tick-label")
    assert ticks.count() >= 3
    for i in range(ticks.count()):
        box = _visible_box(ticks.nth(i))
        assert box["height"] >= 9  # readable: at least 9 px tall after scaling
        assert (
            outer["x"] - 1 <= box["x"]
            and box["x"] + box["width"] <= outer["x"] + outer["width"] + 1
        )
    assert chart.locator("g.grid line").count() >= 3
    title = _visible_box(chart.locator("text.axis-title.x").first)
    assert title["y"] + title["height"] <= outer["y"] + outer["height"] + 1
    if mcid:
        line = _line_box(chart.locator("g.ref.mcid line"))
        assert outer["y"] < line["y"] < outer["y"] + outer["height"]
        assert line["width"] > 0.5 * outer["width"]
        label = _visible_box(chart.locator("g.ref.mcid text"))
        assert label["x"] + label["width"] <= outer["x"] + outer["width"] + 1


def test_dashboard_at_desktop_reads_top_down_and_draws(
    live_server: Any, browser: Any, artifacts_dir: Path
) -> None:
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    console = Console(page)
    cohort = _load_and_sign_in(live_server, page)
    assert "120 patients" in page.locator("#cohort-size").inner_text()
    # the figures come from the analysis snapshot and say when it was current (ADR 0022)
    status = page.locator("#snapshot-status").inner_text()
    assert status.startswith("Figures as of ") and "refreshed every" in status
    assert page.locator("#snapshot-stale").count() == 0
    page.screenshot(path=str(artifacts_dir / "outcomes-dashboard-fold.png"))
    # the headline numbers, every one, above the fold
    headlines = page.locator(".headline")
    assert headlines.count() == 6
    for i in range(headlines.count()):
        box = _visible_box(headlines.nth(i))
        assert box["y"] + box["height"] <= 900, headlines.nth(i).inner_text()
    words = page.locator("#headlines").inner_text()
    for needle in (
        "Follow-up at 12 months",
        "Responders at 12 months",
        "Responders, missing = non-response",
        "Serious adverse events",
        "Surgery-free at 12 months",
        "patients due answered",
    ):
        assert needle in words
    # the charts draw: axes, ticks, gridlines, MCID lines, legends
    for key in ("trajectory-odi", "trajectory-nrs_back"):
        _assert_chart_draws(page.locator(f"#{key} .vchart-wide svg"), mcid=True)
        assert page.locator(f"#{key} .vchart-narrow svg").is_hidden()
    for key in ("responders-odi", "survival", "adverse-events", "forest", "funnel"):
        _assert_chart_draws(page.locator(f"#{key} .vchart-wide svg"), mcid=False)
    legend = page.locator("#trajectory-odi .vchart-wide g.legend text")
    assert legend.count() == cohort.patients["arm"].nunique()
    chart_box = _visible_box(page.locator("#trajectory-odi .vchart-wide svg"))
    for i in range(legend.count()):
        box = _visible_box(legend.nth(i))
        assert box["y"] + box["height"] <= chart_box["y"] + chart_box["height"] + 1
        assert box["x"] + box["width"] <= chart_box["x"] + chart_box["width"] + 1
    # the charts come before the detailed tables, which are collapsed
    first_chart = _visible_box(page.locator(".outcome-figure").first)
    tables = _visible_box(page.locator("#detailed-tables"))
    assert first_chart["y"] < 2.2 * 900 and first_chart["y"] < tables["y"]
    assert page.locator("#detailed-tables details[open]").count() == 0
    assert not page.locator("#completeness table").is_visible()
    page.locator("#completeness summary").click()
    assert page.locator("#completeness table").is_visible()
    # each figure's "The numbers" link opens its table
    page.locator("#responders-odi-caption a").click()
    assert page.locator("#responders-odi-table table").is_visible()
    # human words, no codes
    body = page.locator("main").inner_text()
    for code in ("steroid_injection", "week_6", "month_12", "physical_therapy", "clinic 1"):
        assert code not in body
    page.screenshot(path=str(artifacts_dir / "outcomes-dashboard.png"), full_page=True)
    assert console.problems == []
    context.close()


def test_dashboard_on_a_phone_draws_the_narrow_charts(
    live_server: Any, browser: Any, artifacts_dir: Path
) -> None:
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    )
    page = context.new_page()
    console = Console(page)
    _load_and_sign_in(live_server, page)
    assert _visible_box(page.locator(".headline").first)["y"] < 844
    for key in ("trajectory-odi", "responders-odi", "survival"):
        chart = page.locator(f"#{key} .vchart-narrow svg")
        _assert_chart_draws(chart, mcid=key == "trajectory-odi")
        assert page.locator(f"#{key} .vchart-wide svg").is_hidden()
        assert _visible_box(chart)["width"] <= 390
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390
    page.screenshot(path=str(artifacts_dir / "outcomes-dashboard-phone.png"), full_page=True)
    assert console.problems == []
    context.close()


def test_clinic_lead_filters_the_dashboard_and_downloads_the_pdf(
    live_server: Any, page: Any, artifacts_dir: Path
) -> None:
    console = Console(page)
    cohort = _load_and_sign_in(live_server, page)
    pairs = cohort.patients.groupby(["arm", "condition"], observed=True).size()
    (arm, condition), n_pair = pairs.idxmax(), int(pairs.max())
    size = page.locator("#cohort-size")
    caption = page.locator("#trajectory-odi-caption")
    assert "120 patients" in caption.inner_text()
    page.locator(".outcome-filters-box summary").click()
    page.get_by_label("Arm", exact=True).select_option(arm)
    page.get_by_label("Condition", exact=True).select_option(condition)
    page.get_by_role("button", name="Apply filters").click()
    page.wait_for_url(f"**arm={arm}**")
    assert f"{n_pair} patient" in size.inner_text()
    assert f"{n_pair} patients in the filtered cohort" in caption.inner_text()
    words = page.locator("#filter-words").inner_text()
    n_clinics = Clinic.objects.count()
    assert words.startswith(f"Your {n_clinics} clinics · ") and "_" not in words
    page.locator(".outcome-filters-box summary").click()
    assert page.get_by_label("Arm", exact=True).input_value() == arm
    page.screenshot(path=str(artifacts_dir / "outcomes-dashboard-filtered.png"), full_page=True)

    with page.expect_download() as info:
        page.get_by_role("link", name="Download PDF").click()
    download = info.value
    target = artifacts_dir / "outcomes-report.pdf"
    download.save_as(str(target))
    data = target.read_bytes()
    assert data.startswith(b"%PDF") and len(data) > 10_000
    assert f"arm={arm}" in download.url and f"condition={condition}" in download.url
    assert console.problems == []


def _signed_in_at_a_trajectory(
    live_server: Any, browser: Any, size: tuple[int, int], name: str
) -> tuple[Any, Any, Console, str]:
    """A browser context of ``size`` (a phone when ``name`` says so) signed in as the lead
    of a loaded 60-patient registry: (context, page, its console, Anna's trajectory URL)."""
    context = browser.new_context(
        viewport={"width": size[0], "height": size[1]}, is_mobile=name == "phone"
    )
    page = context.new_page()
    console = Console(page)
    _load_and_sign_in(live_server, page, n=60)
    anna = Patient.objects.get(given_name="Anna", family_name="Whitfield")
    return context, page, console, f"{live_server.url}/clinic/outcomes/patient/{anna.pk}/"


@pytest.mark.parametrize(
    ("size", "name"), [((1366, 900), "desktop"), ((390, 844), "phone")], ids=["desktop", "phone"]
)
def test_patient_trajectory_runs_to_24_months_with_mcid_lines(
    live_server: Any, browser: Any, artifacts_dir: Path, size: tuple[int, int], name: str
) -> None:
    context, page, console, url = _signed_in_at_a_trajectory(live_server, browser, size, name)
    page.goto(url)
    variant = "wide" if name == "desktop" else "narrow"
    for measure in ("odi", "nrs_back"):
        chart = page.locator(f"#trajectory-{measure} .vchart-{variant} svg")
        _assert_chart_draws(chart, mcid=True)
        labels = chart.locator("g.axis.x text.tick-label").all_text_contents()
        assert labels[-1] == "24" and "0" in labels
        assert "Months after treatment" in chart.locator("text.axis-title.x").text_content()
        legend = chart.locator("g.legend text").all_text_contents()
        assert legend[0] == "This patient" and legend[1].startswith("Median of ")
    assert page.evaluate("document.documentElement.scrollWidth") <= size[0]
    page.screenshot(path=str(artifacts_dir / f"outcomes-trajectory-{name}.png"), full_page=True)
    assert console.problems == []
    context.close()


def test_a_filter_the_worker_prepares_shows_being_prepared_then_its_figures(
    live_server: Any, page: Any, settings: Any, artifacts_dir: Path
) -> None:
    """Production settings (ADR 0022, amendment 8): a wide scope's filter never built is not
    built by the web process; the page says the worker is preparing it and asks ready.json
    (its own script, CSP-clean) until the worker's pass has built it, then shows the figures.
    A reader who has started changing the filters keeps their changes: a "ready" link."""
    from vertebra.outcomes import snapshot

    settings.SNAPSHOT_BUILD_INLINE = False
    settings.SNAPSHOT_INLINE_MAX_PATIENTS = 0
    settings.SNAPSHOT_REQUEST_POLL_SECONDS = 1
    console = Console(page)
    cohort = generate_cohort(120, 11, today=TODAY)
    load_cohort(cohort, now=dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.UTC))
    assert snapshot.refresh(force=True).outcome == "built"  # the worker: default reports
    lead = User.objects.create_user(username="lead", password=PASSWORD)
    for clinic in Clinic.objects.all():
        Membership.objects.create(user=lead, clinic=clinic, role=Role.CLINICIAN)
    page.goto(live_server.url + "/accounts/login/?next=/clinic/outcomes/")
    page.locator("#id_username").fill("lead")
    page.locator("#id_password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/clinic/outcomes/")
    assert "120 patients" in page.locator("#cohort-size").inner_text()  # stored default
    arm = str(cohort.patients["arm"].value_counts().idxmax())
    page.goto(live_server.url + f"/clinic/outcomes/?arm={arm}")
    notice = page.locator("#filter-preparing").inner_text()
    assert "being prepared by the worker" in notice and "shows them as soon as" in notice
    assert page.get_by_role("button", name="Apply filters").count() == 1  # no dead end
    page.screenshot(path=str(artifacts_dir / "outcomes-being-prepared.png"), full_page=True)
    page.wait_for_timeout(2_500)  # it has asked ready.json and waits on
    assert page.locator("#filter-preparing").count() == 1
    assert snapshot.serve_waiting() == 1  # the worker's poll builds the filter
    page.locator("#headlines").wait_for(timeout=15_000)  # the page reloaded itself
    assert f"arm={arm}" in page.url
    assert page.locator("#filter-preparing").count() == 0
    n_arm = int((cohort.patients["arm"] == arm).sum())
    assert f"{n_arm} patient" in page.locator("#cohort-size").inner_text()

    # Another filter; the reader starts changing the form while it is prepared.
    other = str(cohort.patients["arm"].value_counts().index[1])
    page.goto(live_server.url + f"/clinic/outcomes/?arm={other}")
    page.locator("#filter-preparing").wait_for()
    page.locator("#id_arm").select_option(arm)
    assert snapshot.serve_waiting() == 1
    ready = page.locator("#filter-ready")
    ready.wait_for(timeout=15_000)
    assert "ready" in ready.inner_text() and page.locator("#id_arm").input_value() == arm
    ready.get_by_role("link", name="Show them").click()
    page.locator("#headlines").wait_for(timeout=15_000)
    assert f"arm={other}" in page.url
    assert console.problems == []


@pytest.mark.parametrize(
    ("size", "name"), [((1366, 900), "desktop"), ((390, 844), "phone")], ids=["desktop", "phone"]
)
def test_the_trajectory_while_its_median_is_prepared_then_with_it(
    live_server: Any, browser: Any, settings: Any, artifacts_dir: Path, size: Any, name: str
) -> None:
    """Production settings, a scope wider than a page may build: before the worker prepared
    the median, the page draws the patient's own line and says the median is being prepared
    (no empty median column); after the worker's refresh, the median path and "as of"."""
    from vertebra.outcomes import snapshot

    settings.SNAPSHOT_BUILD_INLINE = False
    settings.SNAPSHOT_INLINE_MAX_PATIENTS = 0
    settings.SNAPSHOT_PREPARE_REPORTS = True
    context, page, console, url = _signed_in_at_a_trajectory(live_server, browser, size, name)
    variant = "wide" if name == "desktop" else "narrow"
    page.goto(url)
    assert "is being prepared" in page.locator("#median-preparing").inner_text()
    chart = page.locator(f"#trajectory-odi .vchart-{variant} svg")
    _assert_chart_draws(chart, mcid=True)
    assert chart.locator("g.legend text").all_text_contents()[:1] == ["This patient"]
    assert page.locator("th", has_text="Median of the treatment").count() == 0
    assert page.evaluate("document.documentElement.scrollWidth") <= size[0]
    page.screenshot(path=str(artifacts_dir / f"trajectory-preparing-{name}.png"), full_page=True)
    assert snapshot.refresh(force=True).outcome == "built"  # the worker
    snapshot.results.clear()
    page.goto(url)
    assert page.locator("#median-preparing").count() == 0
    assert "Figures as of" in page.locator("#snapshot-status").inner_text()
    legend = chart.locator("g.legend text").all_text_contents()
    assert legend[0] == "This patient" and legend[1].startswith("Median of ")
    assert console.problems == []
    context.close()
