"""The analysis snapshot (ADR 0022): its tables equal a direct read of the same data, pages
answer from it and say "as of" (and when the figures may be out of date), a change shows after
a refresh, the worker rebuilds only when the watermark moved, clinic staff see only their
clinics, and with no snapshot yet pages say the figures are being prepared. Both databases.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
import threading
import time
import types
from typing import Any

import pandas as pd
import pytest
from django.db import transaction
from django.test import Client
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.outcomes.conftest import NOW, TODAY
from tests.outcomes.test_columnar_reads import FILTERS, assert_same, fixed_pseudonyms
from tests.registry.factories import make_actor
from vertebra.cohort.loader import load_cohort
from vertebra.core.synth import Cohort, generate_cohort
from vertebra.outcomes import snapshot
from vertebra.outcomes.columnar import tables_from_frames
from vertebra.outcomes.selectors import Scope, _read_tables_orm, read_tables
from vertebra.registry.models import AuditEvent, Clinic, Role

pytestmark = pytest.mark.django_db
__all__ = ["fixed_pseudonyms"]  # the fixture, used by name

URL = "/clinic/outcomes/"


def _client_for(role: str, *clinics: Clinic) -> Client:
    client = Client()
    client.force_login(make_actor(role, *clinics).user)
    return client


def _from_snapshot(scope: Scope, flt: Any = None, **kwargs: Any) -> Any:
    """The tables of ``scope`` from the current snapshot as this process holds it, after
    checking that what it holds is what its Parquet gives back (a refresh keeps the frames it
    wrote instead of reading them back: :func:`assert_kept_is_stored`)."""
    snap = snapshot.current()
    assert snap is not None
    assert_kept_is_stored(snap)
    return tables_from_frames(snap.frames, scope.clinic_ids, scope.deidentified, flt, **kwargs)


def assert_kept_is_stored(snap: snapshot.Snapshot) -> None:
    """The frames a process holds for ``snap`` (those its refresh wrote, when it built it)
    equal, row for row and dtype for dtype, a load of its Parquet files by another process."""
    stored = snapshot._load(snap.path)
    assert stored.manifest == snap.manifest
    assert stored.frames.window == snap.frames.window
    for name in snapshot.FRAME_NAMES:
        pd.testing.assert_frame_equal(snap.frames.frames[name], stored.frames.frames[name])


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    n=st.integers(0, 30),
    seed=st.integers(0, 10_000),
    flt=FILTERS,
    deidentified=st.booleans(),
    one_clinic=st.booleans(),
)
def test_snapshot_tables_equal_the_direct_reads(
    db: Any,
    fixed_pseudonyms: None,
    n: int,
    seed: int,
    flt: Any,
    deidentified: bool,
    one_clinic: bool,
) -> None:
    """Property: for a random small registry, any filter and scope, identified or not, the
    snapshot's tables are the columnar read's and the ORM reference's, value for value."""
    with transaction.atomic():
        if n:
            load_cohort(generate_cohort(n, seed, today=TODAY), now=NOW)
        assert snapshot.refresh(force=True).outcome == "built"
        clinics = sorted(Clinic.objects.values_list("pk", flat=True))
        scope = Scope(
            clinic_ids=frozenset(clinics[:1]) if one_clinic else None, deidentified=deidentified
        )
        got = _from_snapshot(scope, flt, as_of=TODAY)
        assert_same(got, read_tables(scope, flt, as_of=TODAY))
        assert_same(got, _read_tables_orm(scope, flt, as_of=TODAY))
        transaction.set_rollback(True)


def _cohort_size(html: str) -> str:
    match = re.search(r'id="cohort-size"[^>]*><strong>([^<]+)</strong>', html)
    assert match, html[:500]
    return match.group(1)


def test_a_clinic_users_page_shows_only_its_clinics_figures(loaded: Cohort) -> None:
    """Role x page: each clinic's staff see their clinic's count (the scoped direct read's),
    a researcher sees every clinic; every page view is audited as before."""
    clinics = list(Clinic.objects.order_by("pk"))
    assert len(clinics) >= 2
    total = 0
    for clinic in clinics:
        want = len(read_tables(Scope(frozenset({clinic.pk}), False)).patients)
        total += want
        for role in (Role.CLINICIAN, Role.COORDINATOR, Role.CLINIC_ADMIN):
            html = _client_for(role, clinic).get(URL).content.decode()
            assert _cohort_size(html) == f"{want} patient{'s' if want != 1 else ''}", role
            assert "Figures as of" in html
            row = AuditEvent.objects.filter(action="read", role=role).order_by("-id").first()
            assert row is not None and row.new_values["n_patients"] == want
            assert row.new_values["deidentified"] is False and "snapshot" in row.new_values
    assert total == 120
    html = _client_for(Role.RESEARCHER).get(URL).content.decode()
    assert "Figures as of" in html
    row = AuditEvent.objects.filter(action="read", role=Role.RESEARCHER).order_by("-id").first()
    assert row is not None and row.new_values["n_patients"] == 120
    assert row.new_values["deidentified"] is True


def test_pages_say_as_of_and_label_stale_figures(
    loaded: Cohort, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.SNAPSHOT_BUILD_INLINE = False
    snapshot.refresh()
    lead = _client_for(Role.CLINICIAN, *Clinic.objects.all())
    html = lead.get(URL).content.decode()
    assert "Figures as of" in html and "refreshed every 60 s by the worker" in html
    assert 'id="snapshot-stale"' not in html
    later = timezone.now() + dt.timedelta(seconds=snapshot.stale_after() + 1)
    monkeypatch.setattr(
        snapshot, "timezone", types.SimpleNamespace(now=lambda: later, localdate=timezone.localdate)
    )
    html = lead.get(URL).content.decode()
    assert 'id="snapshot-stale"' in html and "may be out of date" in html
    assert _cohort_size(html) == "120 patients"  # still answered from the snapshot


def test_a_change_shows_after_a_refresh_and_only_then(loaded: Cohort, settings: Any) -> None:
    settings.SNAPSHOT_BUILD_INLINE = False
    assert snapshot.refresh().outcome == "built"
    load_cohort(generate_cohort(40, 99, today=TODAY), now=NOW)  # audited writes, new clinics
    lead = _client_for(Role.CLINICIAN, *Clinic.objects.all())
    assert _cohort_size(lead.get(URL).content.decode()) == "120 patients"  # not yet
    assert snapshot.refresh().outcome == "built"
    want = len(read_tables(Scope(None, False)).patients)
    assert want > 120
    assert _cohort_size(lead.get(URL).content.decode()) == f"{want} patients"


def test_the_worker_rebuilds_only_when_the_watermark_moved(loaded: Cohort, settings: Any) -> None:
    from vertebra.followup.worker import refresh_snapshot

    settings.SNAPSHOT_BUILD_INLINE = False
    assert refresh_snapshot() == "built"
    first = snapshot.current()
    assert refresh_snapshot() == "unchanged"
    # Reads (page views, the refresh's own audit rows) do not move the watermark ...
    _client_for(Role.RESEARCHER).get(URL)
    assert refresh_snapshot() == "unchanged"
    assert snapshot.current() is first
    # ... a write does.
    load_cohort(generate_cohort(3, 5, today=TODAY), now=NOW)
    assert refresh_snapshot() == "built"
    second = snapshot.current()
    assert second is not None and first is not None and second.path != first.path
    assert second.manifest["watermark"] != first.manifest["watermark"]
    assert second.manifest["schema_version"] == snapshot.SCHEMA_VERSION
    assert second.manifest["rows"]["episodes"] > first.manifest["rows"]["episodes"]


def test_between_refreshes_the_worker_serves_waiting_requests_every_poll(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`vertebra worker`'s loop: a refresh every SNAPSHOT_REFRESH_SECONDS and, in between,
    the pages' requests every SNAPSHOT_REQUEST_POLL_SECONDS (a page waits for its build, not
    for the next refresh). The jobs are recorded, not run."""
    from vertebra.followup import worker

    settings.SNAPSHOT_REQUEST_POLL_SECONDS = 1
    calls: list[tuple[str, float]] = []
    start = time.monotonic()
    monkeypatch.setattr(worker, "refresh_snapshot", lambda: calls.append(("refresh", 0.0)))
    monkeypatch.setattr(
        worker,
        "serve_snapshot_requests",
        lambda: calls.append(("serve", time.monotonic() - start)) or 0,
    )
    monkeypatch.setattr(worker, "run_once", lambda: worker.RunReport())
    stop = threading.Event()
    loop = threading.Thread(
        target=worker.run_forever, args=(600.0, stop), kwargs={"snapshot_every": 600.0}
    )
    loop.start()
    time.sleep(3.5)
    stop.set()
    loop.join(timeout=5)
    assert not loop.is_alive()
    kinds = [k for k, _ in calls]
    assert kinds[0] == "refresh" and kinds.count("refresh") == 1
    serves = [t for k, t in calls if k == "serve"]
    assert 2 <= len(serves) <= 4  # at about 1, 2 and 3 s
    assert all(b - a >= 0.9 for a, b in itertools.pairwise(serves))


def test_no_snapshot_yet_means_figures_being_prepared(loaded: Cohort, settings: Any) -> None:
    """Never a 500 and never a registry read in the request."""
    settings.SNAPSHOT_BUILD_INLINE = False
    lead = _client_for(Role.CLINICIAN, *Clinic.objects.all())
    response = lead.get(URL)
    assert response.status_code == 200
    assert "The figures are being prepared" in response.content.decode()
    report = lead.get(URL + "report.json")
    assert report.status_code == 503 and report["Retry-After"] == "60"
    assert not AuditEvent.objects.filter(actor_username="system:analysis-snapshot").exists()
    page = Client().get("/decide/?condition=sciatica&age=45")
    assert page.status_code == 200 and "The figures are being prepared" in page.content.decode()
    api = Client().get("/api/v1/decision-aid?condition=sciatica&age=45")
    assert api.status_code == 503


def test_refresh_is_audited_and_writes_a_manifest(loaded: Cohort) -> None:
    result = snapshot.refresh(force=True)
    assert result.outcome == "built" and result.manifest is not None
    assert result.manifest["rows"]["episodes"] >= 120
    assert AuditEvent.objects.filter(actor_username="system:analysis-snapshot").count() == 1
    assert AuditEvent.objects.filter(actor_username="system:decision-aid").count() == 1


def test_the_snapshot_command_refreshes_only_on_change(db_env: dict[str, str]) -> None:
    """``vertebra snapshot refresh`` (cron, operators) and ``status``, on a real registry file."""
    import json

    from tests.conftest import run_cli

    first = run_cli("snapshot", "refresh", env=db_env, timeout=300)
    assert first.returncode == 0, first.stderr
    assert "vertebra snapshot: built" in first.stdout
    again = run_cli("snapshot", "refresh", env=db_env, timeout=300)
    assert "vertebra snapshot: unchanged" in again.stdout, again.stderr
    shown = run_cli("snapshot", "status", env=db_env, timeout=300)
    assert shown.returncode == 0, shown.stderr
    manifest = json.loads(shown.stdout)
    assert manifest["schema_version"] == snapshot.SCHEMA_VERSION
    assert manifest["rows"]["episodes"] >= 60 and manifest["stale"] is False
