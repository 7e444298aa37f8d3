"""The public decision aid through Django's test client and the JSON API (both databases).

Small loaded registries never reach the real minimum of 20 patients per cell, so tests that
need figures lower it through the web shell's one reading point of the rule set
(``decision_selectors.rules``); the real minimum is tested on its own.
"""

from __future__ import annotations

import dataclasses
import html as html_lib
import re
from collections.abc import Iterator
from io import StringIO
from typing import Any

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tests.conftest import run_cli
from tests.web import assess_answers as answers
from vertebra.cohort.loader import load_cohort
from vertebra.core.charts import icon_count
from vertebra.core.decision import Profile, build_cell_table, decision_rules, estimate
from vertebra.core.knowledge import find_promising_language
from vertebra.core.synth import generate_cohort
from vertebra.outcomes.selectors import system_tables
from vertebra.registry.models import AuditEvent
from vertebra.web import decision_selectors
from vertebra.web.assess import STEP_SLUGS

pytestmark = pytest.mark.django_db

DDD = "degenerative_disc_disease"
QUERY = f"/decide/?condition={DDD}&age=45"


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    """The cell table lives in the analysis snapshot (a folder per test, tests/conftest.py);
    the default cache is cleared so no page fragment is carried across tests."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def registry(db: Any) -> None:
    """120 synthetic patients in the registry, follow-up up to today."""
    load_cohort(generate_cohort(120, 11, today=timezone.localdate()), now=timezone.now())


@pytest.fixture
def low_minimum(monkeypatch: pytest.MonkeyPatch) -> int:
    """A minimum cell size of 3, so a 120-patient registry shows some figures."""
    rules = dataclasses.replace(decision_rules(), min_patients=3)
    monkeypatch.setattr(decision_selectors, "rules", lambda: rules)
    return 3


def visible_text(page: str) -> str:
    """The page's text as a reader sees it (tags removed, entities decoded)."""
    body = page.split("<main", 1)[1]
    return html_lib.unescape(re.sub(r"<[^>]+>", " ", body))


def decision_reads() -> int:
    return AuditEvent.objects.filter(actor_username="system:decision-aid").count()


def test_form_alone_reads_no_registry(client: Client, registry: None) -> None:
    response = client.get("/decide/")
    assert response.status_code == 200
    page = response.content.decode()
    for name in ("condition", "age", "odi", "startback"):
        assert f'name="{name}"' in page
    assert 'id="decide-table"' not in page
    assert "Read this before you decide" in page
    assert decision_reads() == 0
    assert "no-store" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]


def test_invalid_answers_show_errors_next_to_the_fields(client: Client) -> None:
    response = client.get("/decide/?condition=back_ache&age=12&odi=140")
    assert response.status_code == 400
    page = response.content.decode()
    for field in ("condition", "age", "odi"):
        assert f'id="err-{field}"' in page
    assert 'role="alert"' in page


def test_small_registry_widens_or_says_no_one_like_you_yet(client: Client, registry: None) -> None:
    """The real rules (at least 20 patients with both scores): in 120 patients each arm either
    shows a wider group's figures, named as wider, or says "no one like you yet" with no
    number; no figure rests on fewer than 20 people, and the evidence stays visible."""
    response = client.get(QUERY)
    assert response.status_code == 200
    page = response.content.decode()
    rules = decision_selectors.rules()
    tables = system_tables(purpose="test", deidentified=True, as_of=timezone.localdate())
    expected = estimate(
        build_cell_table(tables, timezone.localdate(), rules), Profile(DDD, 45), rules
    )
    text = " ".join(visible_text(page).split())
    for arm in expected.arms:
        section = text.split(f"{arm.label} In this registry", 1)[1].split("In published", 1)[0]
        if arm.shown:
            assert arm.level != "like_you"  # 120 patients: never 20 like a 45-year-old
            assert "these figures are from a wider group" in section
            assert f"Of {arm.n_similar} such people treated" in section
        else:
            assert "No one like you yet" in section and not re.search(r"\d+ of \d+", section)
    table = text.split("Patients like you per treatment", 1)[1].split("In this registry", 1)[0]
    assert all(int(d) >= 20 for d in re.findall(r"\d+ of (\d+)", table))
    assert "No benefit found" in page  # DREAM and the review stay visible
    assert 'href="#src-dream2025"' in page


def test_figures_match_the_core_on_deidentified_data(
    client: Client, registry: None, low_minimum: int
) -> None:
    response = client.get(QUERY)
    assert response.status_code == 200
    page = response.content.decode()
    rules = decision_selectors.rules()
    tables = system_tables(purpose="test", deidentified=True, as_of=timezone.localdate())
    expected = estimate(
        build_cell_table(tables, timezone.localdate(), rules), Profile(DDD, 45), rules
    )
    shown = [a for a in expected.arms if a.shown]
    assert shown, "the test registry should show at least one arm at a minimum of 3"
    text = " ".join(visible_text(page).split())
    for arm in shown:
        assert arm.responders_completers is not None and arm.responders_all is not None
        r = arm.responders_completers
        assert (
            f"Of those with both a starting and a 12-month score ({r.denominator}), "
            f"{r.numerator} improved" in text
        )
        a = arm.responders_all
        assert f"as not improved: {a.numerator} of {a.denominator}" in text
        assert (
            f"Of {arm.n_similar} such people treated with" in text
            and f"{arm.n_expected} were due for the 12-month questionnaire and "
            f"{arm.n_completed} answered it"
            in text
        )
        assert f'data-filled="{icon_count(r.numerator, r.denominator)}"' in page
    assert "somewhere between" in text  # ranges in words
    assert 'role="img"' in page and "<desc" in page  # the figure is described
    assert page.count("<tr>") >= len(rules.arms) + 1  # and tabulated


def test_arms_keep_their_fixed_order(client: Client, registry: None, low_minimum: int) -> None:
    page = client.get(QUERY).content.decode()
    positions = [page.index(f'id="arm-section-{a.id}"') for a in decision_selectors.rules().arms]
    assert positions == sorted(positions)
    assert "The rows are in a fixed order, not a ranking." in " ".join(visible_text(page).split())


def test_registry_read_is_cached_and_audited(
    client: Client, registry: None, low_minimum: int
) -> None:
    assert client.get(QUERY).status_code == 200
    assert decision_reads() == 1
    row = AuditEvent.objects.get(actor_username="system:decision-aid")
    assert row.action == "read" and row.object_type == "outcomes_report"
    assert row.new_values["deidentified"] is True
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/decide/?condition=sciatica&age=61&odi=44").status_code == 200
        assert client.get("/api/v1/decision-aid?condition=sciatica&age=30").status_code == 200
    touched = " ".join(q["sql"] for q in queries.captured_queries)
    assert "registry_patient" not in touched and "followup_" not in touched
    assert decision_reads() == 1


def test_json_endpoint_returns_the_same_figures(
    client: Client, registry: None, low_minimum: int
) -> None:
    response = client.get(f"/api/v1/decision-aid?condition={DDD}&age=45")
    assert response.status_code == 200
    data = response.json()
    assert data["observational"] is True and data["ranking"] is None
    assert data["min_patients"] == low_minimum
    assert [a["arm"] for a in data["arms"]] == [a.id for a in decision_selectors.rules().arms]
    page = " ".join(visible_text(client.get(QUERY).content.decode()).split())
    for arm in data["arms"]:
        assert arm["published_evidence"] and arm["certainty_of_evidence"]["level"]
        if not arm["shown"]:
            assert arm["n_similar"] is None and arm["odi_responders_completers"] is None
            continue
        r = arm["odi_responders_completers"]
        assert f"{r['numerator']} of {r['denominator']}" in page
        assert r["ci"][0] <= r["rate"] <= r["ci"][1]
    cell = next(a for a in data["arms"] if a["arm"] == "cell_therapy")
    sham = [e for e in cell["published_evidence"] if e["kind"] == "sham_controlled"]
    assert any(e["source"] == "dream2025" and e["finding"] == "no_difference" for e in sham)
    sources = {s["id"]: s for s in data["sources"]}
    assert sources["noriega2017"]["status"] == "U" and sources["dream2025"]["status"] == "V"
    assert "decision-aid" in client.get("/api/v1/openapi.json").content.decode()


@pytest.mark.parametrize(
    "query",
    [
        "condition=back_ache&age=45",
        f"condition={DDD}&age=12",
        f"condition={DDD}&age=45&odi=101",
        f"condition={DDD}&age=45&odi=nan",
        f"condition={DDD}&age=45&startback=severe",
        f"condition={DDD}&age=old",
        "age=45",
    ],
)
def test_json_endpoint_refuses_bad_input_with_422(client: Client, query: str) -> None:
    response = client.get(f"/api/v1/decision-aid?{query}")
    assert response.status_code == 422, response.content


@pytest.mark.parametrize("minimum", ["low", "real"])
def test_rendered_page_and_json_never_promise_benefit(
    client: Client, registry: None, monkeypatch: pytest.MonkeyPatch, minimum: str
) -> None:
    """The knowledge base's promise-word check over everything a reader sees."""
    if minimum == "low":
        rules = dataclasses.replace(decision_rules(), min_patients=3)
        monkeypatch.setattr(decision_selectors, "rules", lambda: rules)
    for query in (QUERY, "/decide/?condition=sciatica&age=61&odi=44&startback=high", "/decide/"):
        text = visible_text(client.get(query).content.decode())
        assert find_promising_language(text) == [], query
    data = client.get(f"/api/v1/decision-aid?condition={DDD}&age=45").content.decode()
    assert find_promising_language(data) == []


def walk(client: Client, steps: dict[str, dict[str, object]]) -> str:
    for slug in STEP_SLUGS:
        if slug not in steps:
            break
        response = client.post(f"/assess/{slug}/", steps[slug])
        if response["Location"] == "/assess/result/":
            break
    return client.get("/assess/result/").content.decode()


def test_self_assessment_carries_condition_and_age_over(client: Client) -> None:
    page = walk(client, answers.CANDIDATE)
    assert 'href="/decide/?condition=herniated_disc&amp;age=47"' in page
    client.post("/assess/restart/")
    assert 'id="decide-link"' not in walk(client, answers.REFER)  # not beside a warning sign


def test_navigation_links_the_decision_aid(client: Client) -> None:
    assert 'href="/decide/"' in client.get("/").content.decode()


def test_refresh_interval_out_of_range_stops_start_up() -> None:
    result = run_cli("manage", "check", env={"SNAPSHOT_REFRESH_SECONDS": "0"})
    assert result.returncode == 2
    assert "SNAPSHOT_REFRESH_SECONDS=0 is out of range" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_figures_come_from_the_snapshot_and_no_request_rebuilds_them(
    client: Client, registry: None, settings: Any
) -> None:
    """Out of tests and development no request rebuilds anything: a change waits for the
    worker's refresh (ADR 0022), and the page says how old its figures are."""
    from vertebra.followup.worker import refresh_snapshot

    settings.SNAPSHOT_BUILD_INLINE = False
    assert refresh_snapshot() == "built"
    assert decision_reads() == 1
    page = client.get(QUERY).content.decode()
    assert "Figures as of" in page and 'id="snapshot-stale"' not in page
    load_cohort(generate_cohort(5, 3, today=timezone.localdate()), now=timezone.now())
    assert client.get(QUERY).status_code == 200
    assert decision_reads() == 1  # answered from the current snapshot, nothing started
    assert refresh_snapshot() == "built"
    assert decision_reads() == 2


def test_refresh_command_warms_the_shared_cache(client: Client, registry: None) -> None:
    out = StringIO()
    call_command("decision_aid_refresh", stdout=out)
    assert "treated patients" in out.getvalue()
    assert "refreshed by the worker every 60 s" in out.getvalue()
    assert decision_reads() == 1
    with CaptureQueriesContext(connection) as queries:
        assert client.get(QUERY).status_code == 200
    assert "registry_patient" not in " ".join(q["sql"] for q in queries.captured_queries)
    assert decision_reads() == 1


def test_a_synthetic_registry_is_labelled_beside_the_figures(
    client: Client, registry: None, low_minimum: int
) -> None:
    """The demo's registry (loaded by the synthetic loader): the page says so above the
    figures and on every shown arm, and the JSON says so; a real registry shows no label."""
    from django.contrib.auth import get_user_model

    from vertebra.cohort.loader import LOADER_USERNAME

    page = client.get(QUERY).content.decode()
    assert 'id="synthetic-note"' in page and "Synthetic demo data" in page
    assert page.index('id="synthetic-note"') < page.index('id="decide-table"')
    assert page.count("Synthetic demo figures.") == page.count('class="icon-array"') >= 1
    api = client.get(f"/api/v1/decision-aid?condition={DDD}&age=45").json()
    assert api["synthetic_registry"] is True
    assert {a["level"] for a in api["arms"] if a["shown"]} <= {
        "profile",
        "like_you",
        "condition",
        "everyone",
    }
    get_user_model()._default_manager.filter(username=LOADER_USERNAME).delete()
    assert "synthetic-note" not in client.get(QUERY).content.decode()
    assert (
        client.get(f"/api/v1/decision-aid?condition={DDD}&age=45").json()["synthetic_registry"]
        is False
    )
