"""The built report is cached per (snapshot, scope, filter, day) (ADR 0022, issue 17): a
repeated view answers from memory and is still audited; another clinic's staff get their own
figures; a new snapshot, another filter or another day builds anew; the cached report holds
aggregates only (no patient's pseudonym). Both databases.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shutil
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from django.test import Client

from tests.outcomes.conftest import TODAY
from tests.registry.factories import make_actor
from vertebra.core.analytics import CohortFilter
from vertebra.core.synth import Cohort
from vertebra.outcomes import median_paths, prepared, reports, snapshot
from vertebra.outcomes.selectors import AUDIT_OBJECT_TYPE, Scope, read_tables
from vertebra.outcomes.trajectory import median_paths as paths_of
from vertebra.registry.models import AuditEvent, Clinic, Role, TreatmentEpisode

pytestmark = pytest.mark.django_db

JSON = "/clinic/outcomes/report.json"
DASHBOARD = "/clinic/outcomes/"
READY = "/clinic/outcomes/ready.json"


@pytest.fixture
def builds(loaded: Cohort, settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """A built snapshot, an empty result cache, and the list of reports built (the seam:
    ``reports.build_report`` counted)."""
    settings.SNAPSHOT_BUILD_INLINE = False
    # these tests are about a web process's own builds: the worker prepares nothing here
    settings.SNAPSHOT_PREPARE_REPORTS = False
    assert snapshot.refresh(force=True).outcome == "built"
    snapshot.results.clear()
    seen: list[Any] = []
    real = reports.build_report

    def counting(*args: Any, **kwargs: Any) -> Any:
        seen.append(args[1])  # the filter
        return real(*args, **kwargs)

    monkeypatch.setattr(reports, "build_report", counting)
    yield seen
    snapshot.results.clear()


def _client_for(role: str, *clinics: Clinic) -> Client:
    client = Client()
    client.force_login(make_actor(role, *clinics).user)
    return client


def _reads(role: str) -> list[dict[str, Any]]:
    rows = AuditEvent.objects.filter(action="read", role=role, object_type=AUDIT_OBJECT_TYPE)
    return [r.new_values for r in rows.order_by("id")]


def test_a_repeated_view_answers_from_memory_and_is_audited(builds: list[Any]) -> None:
    lead = _client_for(Role.CLINICIAN, *Clinic.objects.all())
    first = lead.get(JSON)
    second = lead.get(JSON)
    assert first.status_code == second.status_code == 200
    assert first.content == second.content
    assert len(builds) == 1  # the second view built nothing
    reads = _reads(Role.CLINICIAN)
    assert [r["cached"] for r in reads] == [False, True]  # a cached answer is still a read
    assert [r["n_patients"] for r in reads] == [120, 120]
    assert reads[0]["snapshot"] == reads[1]["snapshot"]
    # The dashboard shares the cached report (same scope, filter and day).
    assert lead.get(DASHBOARD).status_code == 200
    assert len(builds) == 1 and _reads(Role.CLINICIAN)[-1]["cached"] is True


def test_each_clinic_gets_its_own_figures(builds: list[Any]) -> None:
    """Role x clinic: every role of a clinic gets that clinic's report (the direct read's
    count), cached or not; no clinic ever gets another's; a researcher gets all, de-identified."""
    clinics = list(Clinic.objects.order_by("pk"))
    bodies: dict[int, bytes] = {}
    for clinic in clinics:
        want = len(read_tables(Scope(frozenset({clinic.pk}), False)).patients)
        for role in (Role.CLINICIAN, Role.COORDINATOR, Role.CLINIC_ADMIN):
            response = _client_for(role, clinic).get(JSON)
            assert response.status_code == 200, role
            body = json.loads(response.content)
            assert body["n_patients"] == want, (clinic.pk, role)
            assert _reads(role)[-1]["n_patients"] == want
            bodies.setdefault(clinic.pk, response.content)
            assert response.content == bodies[clinic.pk]  # same scope, same report
    assert len(set(bodies.values())) == len(clinics)  # no clinic shares another's report
    assert len(builds) == len(clinics)  # one build per clinic, the other roles from memory
    # A cached answer equals a fresh build.
    snapshot.results.clear()
    for clinic in clinics:
        assert _client_for(Role.CLINICIAN, clinic).get(JSON).content == bodies[clinic.pk]
    research = json.loads(_client_for(Role.RESEARCHER).get(JSON).content)
    assert research["as_of"] is None  # de-identified: no calendar date
    assert _reads(Role.RESEARCHER)[-1]["deidentified"] is True
    assert _reads(Role.RESEARCHER)[-1]["n_patients"] == 120  # every clinic


def test_a_new_snapshot_a_new_filter_or_a_new_day_builds_anew(builds: list[Any]) -> None:
    lead = _client_for(Role.CLINICIAN, *Clinic.objects.all())
    lead.get(JSON)
    assert lead.get(JSON + "?arm=bmac").status_code == 200
    assert len(builds) == 2 and builds[1] != builds[0]  # another filter
    lead.get(JSON + "?arm=bmac")
    assert len(builds) == 2
    assert snapshot.refresh(force=True).outcome == "built"
    lead.get(JSON)
    assert len(builds) == 3  # the new snapshot
    assert len(snapshot.results) == 1  # the old snapshot's reports are gone
    actor = make_actor(Role.CLINICIAN, *Clinic.objects.all())
    reports.report_for(actor, CohortFilter(), TODAY)
    reports.report_for(actor, CohortFilter(), TODAY)
    reports.report_for(actor, CohortFilter(), TODAY + dt.timedelta(days=1))
    assert len(builds) == 5  # one per day


def test_the_cache_is_bounded(builds: list[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(snapshot, "results", snapshot.ResultCache(2))
    actor = make_actor(Role.CLINICIAN, *Clinic.objects.all())
    for days in (0, 1, 2, 0):
        reports.report_for(actor, CohortFilter(), TODAY + dt.timedelta(days=days))
    assert len(snapshot.results) == 2 and len(builds) == 4  # day 0 was evicted, built again


def _no_patient_rows(value: Any, path: str = "report") -> None:
    """Fail if anything in ``value`` is a table or array (what could carry pseudonyms)."""
    assert not isinstance(value, pd.DataFrame | pd.Series | np.ndarray), path
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for field in dataclasses.fields(value):
            _no_patient_rows(getattr(value, field.name), f"{path}.{field.name}")
    elif isinstance(value, dict):
        for key, item in value.items():
            _no_patient_rows(item, f"{path}[{key!r}]")
    elif isinstance(value, list | tuple | set | frozenset):
        for i, item in enumerate(value):
            _no_patient_rows(item, f"{path}[{i}]")


def test_a_researchers_cached_report_holds_no_patient_rows(builds: list[Any]) -> None:
    """Only aggregates are cached: the de-identified report has no table, series or array
    (so no per-read pseudonym), and two researchers get the same figures."""
    one = make_actor(Role.RESEARCHER)
    other = make_actor(Role.RESEARCHER)
    report, _ = reports.report_for(one, CohortFilter(), TODAY)
    assert report is not None and report.time_base != "calendar"
    _no_patient_rows(report)
    again, _ = reports.report_for(other, CohortFilter(), TODAY)
    assert again is report and len(builds) == 1
    assert [r["cached"] for r in _reads(Role.RESEARCHER)] == [False, True]


def test_the_build_runs_outside_the_readers_transaction(
    builds: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A missed build reads files, not the registry: it runs with no transaction of its own
    open (at a million patients it takes seconds), and the read's audit row is written after
    it — one row per view, as before."""
    from django.db import connection

    depths: list[int] = []
    real = reports.build_report

    def watching(*args: Any, **kwargs: Any) -> Any:
        depths.append(len(connection.savepoint_ids))
        return real(*args, **kwargs)

    monkeypatch.setattr(reports, "build_report", watching)
    baseline = len(connection.savepoint_ids)  # the test's own atomic blocks, if any
    actor = make_actor(Role.CLINICIAN, *Clinic.objects.all())
    report, status = reports.report_for(actor, CohortFilter(), TODAY)
    assert report is not None and status is not None
    assert depths == [baseline]  # no savepoint of an audited transaction around the build
    assert [r["cached"] for r in _reads(Role.CLINICIAN)] == [False]


def test_a_refused_role_gets_nothing_and_leaves_a_denied_row(builds: list[Any]) -> None:
    from vertebra.registry.errors import PermissionDeniedError

    admin = make_actor(Role.REGISTRY_ADMIN)
    with pytest.raises(PermissionDeniedError):
        reports.report_for(admin, CohortFilter(), TODAY)
    assert builds == []
    denied = AuditEvent.objects.filter(action="denied", role=Role.REGISTRY_ADMIN)
    assert [row.new_values["operation"] for row in denied] == ["snapshot_scope"]


# ------------------------------------------- reports the worker prepares (amendment 8)


@pytest.fixture
def worker_builds(
    loaded: Cohort, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[list[Any]]:
    """A web process as in production (no inline build; every scope wider than the inline
    limit, so nothing is built in a request) after the worker's refresh, which prepared the
    default reports; the list of reports built after that refresh (``build_report`` counted)."""
    settings.SNAPSHOT_BUILD_INLINE = False
    settings.SNAPSHOT_PREPARE_REPORTS = True
    settings.SNAPSHOT_INLINE_MAX_PATIENTS = 0
    seen: list[Any] = []
    real = reports.build_report

    def counting(*args: Any, **kwargs: Any) -> Any:
        seen.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(reports, "build_report", counting)
    assert snapshot.refresh(force=True).outcome == "built"
    seen.clear()  # what the worker built; the tests count what the web process builds
    snapshot.results.clear()
    yield seen
    snapshot.results.clear()


def _current_path() -> Any:
    return snapshot._current_dir(snapshot._root())


def _item(scope: Scope, flt: CohortFilter | None = None) -> prepared.Prepared:
    from django.utils import timezone

    return prepared.Prepared(
        reports.default_what(), scope.clinic_ids, scope.deidentified, flt or CohortFilter(),
        timezone.localdate(),
    )  # fmt: skip


def test_the_worker_stores_the_default_report_of_every_scope(worker_builds: list[Any]) -> None:
    clinics = sorted(Clinic.objects.values_list("pk", flat=True))
    scopes = [Scope(None, True), Scope(frozenset(clinics), False)]
    scopes += [Scope(frozenset({c}), False) for c in clinics]
    path = _current_path()
    # a report per scope, the trajectory page's median paths per identified scope and the
    # public directory's figures for the de-identified one, also kept as its latest
    assert len(list((path / prepared.REPORTS_DIR).glob("*.pickle"))) == 2 * len(scopes) + 1
    for scope in scopes:
        stored = prepared.load(path, _item(scope))
        assert stored is not None, scope
        n_patients, report = stored
        tables = read_tables(scope)
        want = len(tables.patients)
        assert n_patients == want  # the audit's count: the scope's patients
        if not scope.deidentified:  # (a researcher's report leaves out arms under 11)
            assert report.n_patients == want
        _no_patient_rows(report)
        paths = prepared.load(path, dataclasses.replace(_item(scope), what=median_paths.WHAT))
        if scope.deidentified:
            assert paths is None
        else:
            assert paths is not None and paths[1] == paths_of(tables), scope
    manifest = json.loads((path / "manifest.json").read_text())
    assert sum(manifest["clinic_patients"].values()) == 120
    assert worker_builds == []  # reading them built nothing


def test_small_clinics_are_prepared_after_the_snapshot_is_published(
    loaded: Cohort, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The wide scopes' reports are stored before ``CURRENT`` names the new snapshot (a page
    would otherwise wait for the worker); a clinic a page builds itself (at most
    SNAPSHOT_INLINE_MAX_PATIENTS) is prepared after, so hundreds of clinic reports do not hold
    a change back; by the end of the refresh every scope's report is stored."""
    settings.SNAPSHOT_BUILD_INLINE = False
    settings.SNAPSHOT_PREPARE_REPORTS = True
    clinics = sorted(Clinic.objects.values_list("pk", flat=True))
    sizes = {c: len(read_tables(Scope(frozenset({c}), False)).patients) for c in clinics}
    big = max(sizes, key=lambda c: sizes[c])
    settings.SNAPSHOT_INLINE_MAX_PATIENTS = sizes[big] - 1  # the biggest clinic is "wide"
    published: dict[Any, bool] = {}
    real_store = prepared.store

    def store(folder: Any, name: str, item: prepared.Prepared, value: Any) -> None:
        current = _current_path()
        published[(item.clinic_ids, item.deidentified)] = (
            current is not None and current.name == name
        )
        real_store(folder, name, item, value)

    monkeypatch.setattr(prepared, "store", store)
    assert snapshot.refresh(force=True).outcome == "built"
    assert published[(None, True)] is False
    assert published[(frozenset(clinics), False)] is False
    assert published[(frozenset({big}), False)] is False
    small = [c for c in clinics if c != big]
    assert small and all(published[(frozenset({c}), False)] for c in small)
    path = _current_path()
    for c in clinics:
        assert prepared.load(path, _item(Scope(frozenset({c}), False))) is not None
    snapshot.results.clear()


def test_stored_reports_serve_each_clinic_its_own_figures(
    worker_builds: list[Any], settings: Any
) -> None:
    """Role x clinic on the stored path: bodies as a fresh build gives them, never another
    clinic's; nothing built in the web process; every view audited with its source."""
    clinics = list(Clinic.objects.order_by("pk"))
    bodies: dict[int, bytes] = {}
    for clinic in clinics:
        want = len(read_tables(Scope(frozenset({clinic.pk}), False)).patients)
        for role in (Role.CLINICIAN, Role.COORDINATOR, Role.CLINIC_ADMIN):
            response = _client_for(role, clinic).get(JSON)
            assert response.status_code == 200, role
            assert json.loads(response.content)["n_patients"] == want, (clinic.pk, role)
            read = _reads(role)[-1]
            assert read["n_patients"] == want and read["source"] in ("stored", "memory")
            bodies.setdefault(clinic.pk, response.content)
            assert response.content == bodies[clinic.pk]
        assert _client_for(Role.CLINICIAN, clinic).get(DASHBOARD).status_code == 200
    assert len(set(bodies.values())) == len(clinics)
    assert worker_builds == []  # the web process built no report
    assert _reads(Role.CLINICIAN)[0]["source"] == "stored"
    # equal to a fresh build in the request
    settings.SNAPSHOT_BUILD_INLINE = True
    shutil.rmtree(_current_path() / prepared.REPORTS_DIR)
    snapshot.results.clear()
    for clinic in clinics:
        assert _client_for(Role.CLINICIAN, clinic).get(JSON).content == bodies[clinic.pk]
        assert _reads(Role.CLINICIAN)[-1]["source"] == "built"
    assert _client_for(Role.RESEARCHER).get(JSON).status_code == 200
    assert _reads(Role.RESEARCHER)[-1]["n_patients"] == 120


def test_ready_json_says_whether_for_the_actors_own_scope_and_serve_waiting_builds(
    worker_builds: list[Any], settings: Any
) -> None:
    """ready.json: sign-in required; true for a stored report, false for a filter the worker
    has not built (and nothing asked, built or audited by asking); an invalid filter is a
    400 that says so. The worker's poll between refreshes (``serve_waiting``) builds what the
    dashboard asked for, and nothing when nothing waits or a refresh holds the lock."""
    assert Client().get(READY).status_code == 302  # to the sign-in page
    clinic = Clinic.objects.order_by("pk").first()
    assert clinic is not None
    staff = _client_for(Role.CLINICIAN, clinic)
    assert json.loads(staff.get(READY).content) == {"ready": True}  # the stored default
    audit_rows = AuditEvent.objects.count()
    assert json.loads(staff.get(READY + "?arm=bmac").content) == {"ready": False}
    assert AuditEvent.objects.count() == audit_rows  # asking writes nothing
    bad = staff.get(READY + "?arm=not-an-arm")
    assert bad.status_code == 400 and json.loads(bad.content)["ready"] is False
    assert prepared.pending(snapshot._root(), 10) == []  # asking is not requesting
    assert snapshot.serve_waiting() == 0
    assert staff.get(DASHBOARD + "?arm=bmac").status_code == 200  # the page asks the worker
    with snapshot._refresh_lock(snapshot._root()) as locked:  # a refresh at work
        assert locked and snapshot.serve_waiting() == 0
    assert worker_builds == []
    assert snapshot.serve_waiting() == 1 and len(worker_builds) == 1
    assert json.loads(staff.get(READY + "?arm=bmac").content) == {"ready": True}
    assert _reads(Role.CLINICIAN) == []  # no page has shown the figures yet: no read


def test_a_wide_filter_is_prepared_by_the_worker_not_the_web_process(
    worker_builds: list[Any],
) -> None:
    researcher = _client_for(Role.RESEARCHER)
    page = researcher.get(DASHBOARD + "?arm=bmac")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="filter-preparing"' in html and "being prepared by the worker" in html
    # it asks ready.json (script), or reloads after the refresh interval without script
    assert 'data-ready-url="/clinic/outcomes/ready.json?arm=bmac"' in html
    assert "wait-for-figures.js" in html
    assert '<noscript><meta http-equiv="refresh" content="60"></noscript>' in html
    assert 'class="form outcome-filters"' in html  # the filter form, no dead end
    # the summary names the filter being prepared, in the report's words
    assert '<strong id="filter-words">All clinics · All conditions · Bone marrow' in html
    pdf = researcher.get("/clinic/outcomes/report.pdf?arm=bmac")
    assert pdf.status_code == 503 and pdf["Retry-After"] == "60"
    assert researcher.get(JSON + "?arm=bmac").status_code == 503
    assert worker_builds == []  # never built in the web process
    assert _reads(Role.RESEARCHER) == []  # no figures shown, no read
    assert len(prepared.pending(snapshot._root(), 10)) == 1  # one request, asked three times
    audit_rows = AuditEvent.objects.count()
    waiting = researcher.get(READY + "?arm=bmac")
    assert waiting.status_code == 200 and json.loads(waiting.content) == {"ready": False}
    assert AuditEvent.objects.count() == audit_rows  # says whether, never what: no read
    # The worker's next pass builds it; the page then shows the figures.
    assert snapshot.refresh().outcome == "unchanged"
    assert len(worker_builds) == 1
    assert prepared.pending(snapshot._root(), 10) == []
    worker_builds.clear()
    assert json.loads(researcher.get(READY + "?arm=bmac").content) == {"ready": True}
    assert AuditEvent.objects.count() == audit_rows
    body = researcher.get(JSON + "?arm=bmac")
    assert body.status_code == 200
    page = researcher.get(DASHBOARD + "?arm=bmac").content.decode()
    assert 'id="filter-preparing"' not in page and 'id="headlines"' in page
    assert "http-equiv" not in page
    assert worker_builds == []
    assert [r["source"] for r in _reads(Role.RESEARCHER)] == ["stored", "memory"]
    # the stored report is the one a fresh build gives
    fresh = reports.report_builder(reports.default_what(), CohortFilter(arms=("bmac",)), _item(
        Scope(None, True)).as_of)(read_tables(Scope(None, True), CohortFilter(arms=("bmac",)),
        as_of=_item(Scope(None, True)).as_of))  # fmt: skip
    assert fresh is not None
    assert json.loads(body.content)["n_patients"] == fresh.n_patients


def test_a_tampered_stored_report_is_refused_and_rebuilt(
    worker_builds: list[Any], settings: Any
) -> None:
    path = _current_path()
    clinic = Clinic.objects.order_by("pk").first()
    assert clinic is not None
    item = _item(Scope(frozenset({clinic.pk}), False))
    stored = path / prepared.REPORTS_DIR / f"{item.digest()}.pickle"
    blob = bytearray(stored.read_bytes())
    blob[-5] ^= 0xFF
    stored.write_bytes(bytes(blob))
    assert prepared.load(path, item) is None and not stored.exists()  # refused, removed
    settings.SNAPSHOT_INLINE_MAX_PATIENTS = 20_000  # a clinic is small: built in the request
    response = _client_for(Role.CLINICIAN, clinic).get(JSON)
    assert response.status_code == 200 and len(worker_builds) == 1
    assert _reads(Role.CLINICIAN)[-1]["source"] == "built"


def test_a_stored_report_moved_to_another_scope_or_snapshot_is_refused(
    worker_builds: list[Any],
) -> None:
    """The MAC covers the scope's name and the snapshot's folder: clinic A's file under
    clinic B's name, or the previous snapshot's file in the new one, is never served."""
    old = _current_path()
    first, second = Clinic.objects.order_by("pk")[:2]
    a, b = (_item(Scope(frozenset({c.pk}), False)) for c in (first, second))
    folder = old / prepared.REPORTS_DIR
    shutil.copy(folder / f"{a.digest()}.pickle", folder / f"{b.digest()}.pickle")
    assert prepared.load(old, b) is None
    assert snapshot.refresh(force=True).outcome == "built"
    new = _current_path()
    assert new != old and old.exists()  # the previous snapshot is kept for readers
    shutil.copy(old / prepared.REPORTS_DIR / f"{a.digest()}.pickle", new / prepared.REPORTS_DIR)
    assert prepared.load(new, a) is None
    # the new snapshot answers with its own freshly prepared file again
    assert snapshot.refresh(force=True).outcome == "built"
    worker_builds.clear()
    response = _client_for(Role.CLINICIAN, first).get(JSON)
    assert response.status_code == 200 and worker_builds == []
    assert (
        _reads(Role.CLINICIAN)[-1]["snapshot"]
        == json.loads((_current_path() / "manifest.json").read_text())["built_at"]
    )


def test_a_clinics_own_filter_reads_only_its_rows(worker_builds: list[Any], settings: Any) -> None:
    """A small scope's new filter is built in the request from that clinic's rows only
    (Parquet filters): the tables equal those from the whole frames, and the process never
    holds every clinic's rows."""
    from pandas.testing import assert_frame_equal

    from vertebra.outcomes.columnar import tables_from_frames

    path = _current_path()
    whole = snapshot._load(path)
    flt = CohortFilter(arms=("bmac",))
    for clinic in Clinic.objects.order_by("pk"):
        scope = frozenset({clinic.pk})
        part = snapshot._load(path, scope)
        assert len(part.frames.frames["episodes"]) < len(whole.frames.frames["episodes"])
        for cohort in (CohortFilter(), flt):
            want = tables_from_frames(whole.frames, scope, False, cohort)
            got = tables_from_frames(part.frames, scope, False, cohort)
            for name in ("patients", "timepoints", "events"):
                assert_frame_equal(getattr(got, name), getattr(want, name), check_dtype=True)
            assert got.exclusions == want.exclusions
    settings.SNAPSHOT_INLINE_MAX_PATIENTS = 20_000
    snapshot._loaded.clear()
    snapshot._scoped.clear()
    clinic = Clinic.objects.order_by("pk").first()
    assert clinic is not None
    response = _client_for(Role.CLINICIAN, clinic).get(JSON + "?arm=bmac")
    assert response.status_code in (200, 404)  # 404: no bmac patient at this clinic
    assert len(worker_builds) == (1 if response.status_code == 200 else 0)
    assert _reads(Role.CLINICIAN)[-1]["source"] == "built"
    assert snapshot._loaded == {} and len(snapshot._scoped) == 1


def _report_json(report: Any) -> str:
    return json.dumps(None if report is None else report.to_dict(), sort_keys=True, default=str)


def test_an_incremental_refresh_carries_the_reports_of_unchanged_clinics(
    worker_builds: list[Any],
) -> None:
    """ADR 0022 §10: after a correction to one patient the worker builds again only the
    reports whose rows changed (the researchers', the network's, that patient's clinic's) and
    carries every other clinic's stored report into the new snapshot, signed for it; every
    stored report then equals a fresh build from the registry as it is now (the clinics' to
    the last digit; no ``fixed_pseudonyms`` here: it would fix the bootstrap's seed too)."""
    from tests.outcomes.test_snapshot_incremental import _reprice

    episode = TreatmentEpisode.objects.filter(voided_at=None).order_by("pk").first()
    assert episode is not None
    _reprice(episode)
    manifest = snapshot.refresh().manifest
    assert manifest["read"] == {**manifest["read"], "kind": "incremental", "patients_reread": 1}
    clinics = sorted(Clinic.objects.values_list("pk", flat=True))
    assert manifest["reports_carried"] == len(clinics) - 1
    assert len(worker_builds) == 3  # researchers, the network, the changed clinic
    scopes = [Scope(None, True), Scope(frozenset(clinics), False)]
    scopes += [Scope(frozenset({c}), False) for c in clinics]
    path = _current_path()
    today = snapshot._window_today()
    for scope in scopes:
        stored = prepared.load(path, _item(scope))
        assert stored is not None, scope
        tables = read_tables(scope, as_of=today)
        fresh = reports.report_builder(reports.default_what(), CohortFilter(), today)(tables)
        assert stored[0] == len(tables.patients)
        if scope.deidentified:  # new pseudonyms per read order the rows anew: float rounding
            assert stored[1].n_patients == fresh.n_patients
            continue
        assert _report_json(stored[1]) == _report_json(fresh), scope
    # nothing changed since: the next refresh builds nothing and carries nothing
    worker_builds.clear()
    assert snapshot.refresh().outcome == "unchanged" and worker_builds == []


def test_reports_are_carried_only_from_a_snapshot_this_process_built(
    worker_builds: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new release runs in a new worker process: its first refresh builds every report
    again, so no result of older code is carried into a new snapshot."""
    from tests.outcomes.test_snapshot_incremental import _reprice

    monkeypatch.setattr(snapshot, "BUILDING_PROCESS", "a-restarted-worker")
    episode = TreatmentEpisode.objects.filter(voided_at=None).order_by("pk").first()
    assert episode is not None
    _reprice(episode)
    manifest = snapshot.refresh().manifest
    assert manifest["read"]["kind"] == "incremental"
    assert manifest["reports_carried"] == 0
    assert len(worker_builds) == 2 + Clinic.objects.count()


def test_wide_pages_show_the_previous_figures_while_the_worker_builds_theirs(
    worker_builds: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """ADR 0022 §11: an incremental refresh publishes the snapshot before the wide scopes'
    reports; until each is stored, its page shows the previous snapshot's figures, labelled
    as of that snapshot and as superseded (the page reloads itself), and the read is audited
    with that snapshot and ``source: previous``. Once stored, the new figures show."""
    from tests.outcomes.test_snapshot_incremental import _reprice

    first = snapshot.current_manifest()
    assert first is not None
    researcher = _client_for(Role.RESEARCHER)
    before = json.loads(researcher.get(JSON).content)
    seen: dict[str, Any] = {}
    real_store = prepared.store

    def store(folder: Any, name: str, item: prepared.Prepared, value: Any) -> None:
        if item.clinic_ids is None and "page" not in seen:  # the researchers' report, next
            current = _current_path()
            seen["published"] = current is not None and current.name == name
            seen["page"] = researcher.get(DASHBOARD)
            seen["json"] = researcher.get(JSON)
            seen["read"] = _reads(Role.RESEARCHER)[-1]
        real_store(folder, name, item, value)

    monkeypatch.setattr(prepared, "store", store)
    episode = TreatmentEpisode.objects.filter(voided_at=None).order_by("pk").first()
    assert episode is not None
    _reprice(episode)
    manifest = snapshot.refresh().manifest
    assert manifest["read"]["kind"] == "incremental"
    assert seen["published"] is True  # published first, the researchers' report after
    page = seen["page"].content.decode()
    assert seen["page"].status_code == 200
    assert 'id="snapshot-superseded"' in page and "Newer figures are being prepared" in page
    assert '<meta http-equiv="refresh"' in page
    assert f"<strong>{before['n_patients']} patients</strong>" in page  # figures, not a wait
    assert seen["json"].status_code == 200
    assert seen["json"]["Vertebra-Figures-Superseded"] == "true"
    assert seen["json"]["Vertebra-Figures-As-Of"] == first["built_at"]
    assert json.loads(seen["json"].content)["n_patients"] == before["n_patients"]
    assert seen["read"]["snapshot"] == first["built_at"]
    assert seen["read"]["source"] == "previous"
    # the refresh is over: the current snapshot's own figures, not superseded any more
    snapshot.results.clear()
    page = researcher.get(DASHBOARD).content.decode()
    assert 'id="snapshot-superseded"' not in page and '<meta http-equiv="refresh"' not in page
    read = _reads(Role.RESEARCHER)[-1]
    assert read["snapshot"] == manifest["built_at"] and read["source"] == "stored"
    response = researcher.get(JSON)
    assert "Vertebra-Figures-Superseded" not in response
    assert response["Vertebra-Figures-As-Of"] >= manifest["built_at"]
