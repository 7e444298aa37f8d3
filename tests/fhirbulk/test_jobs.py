"""The worker's side of export jobs: exclusive claims, a failed export, a job cancelled while
it runs, and the status answers for each state."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from tests.fhirbulk.test_token_and_refusals import ASYNC, bearer, operation_outcome
from vertebra.fhirbulk import jobs
from vertebra.fhirbulk.models import ExportJob, JobStatus

pytestmark = pytest.mark.usefixtures("client_rsa")


@pytest.fixture
def kicked(clinics: list[int], rsa_key: Any, bulk_dir: Path) -> tuple[Client, dict[str, str], str]:
    http = Client()
    auth = bearer(http, rsa_key)
    answer = http.get("/fhir/$export", **ASYNC, **auth)
    assert answer.status_code == 202
    return http, auth, answer["Content-Location"]


def test_a_job_is_claimed_once(kicked: Any) -> None:
    http, auth, url = kicked
    job = jobs._claim(timezone.now(), "worker-a")
    assert job is not None and job.status == JobStatus.RUNNING and job.worker == "worker-a"
    assert jobs._claim(timezone.now(), "worker-b") is None
    answer = http.get(url, **auth)
    assert answer.status_code == 202
    assert answer["X-Progress"] == "exporting 0 patients"
    assert jobs.run_job(job, timezone.now()) == JobStatus.DONE
    assert http.get(url, **auth).status_code == 200


def test_a_failed_export_answers_500_and_leaves_no_files(
    kicked: Any, monkeypatch: pytest.MonkeyPatch, bulk_dir: Path
) -> None:
    http, auth, url = kicked

    def broken(out: Path, **_: Any) -> None:
        (out / "Patient.ndjson").parent.mkdir(parents=True, exist_ok=True)
        (out / "Patient.ndjson").write_text("{}\n")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(jobs, "export_fhir", broken)
    assert jobs.run_pending(timezone.now()) == 1
    job = ExportJob.objects.get()
    assert job.status == JobStatus.FAILED
    assert not (bulk_dir / str(job.pk)).exists()
    operation_outcome(http.get(url, **auth), 500, "exception", "No space left on device")


def test_cancelled_while_running_leaves_no_files(
    kicked: Any, monkeypatch: pytest.MonkeyPatch, bulk_dir: Path
) -> None:
    http, auth, url = kicked
    real = jobs.export_fhir

    def cancelled_meanwhile(out: Path, **kwargs: Any) -> Any:
        summary = real(out, **kwargs)
        assert http.delete(url, **auth).status_code == 202  # the client cancels mid-run
        return summary

    monkeypatch.setattr(jobs, "export_fhir", cancelled_meanwhile)
    assert jobs.run_pending(timezone.now()) == 1
    job = ExportJob.objects.get()
    assert job.status == JobStatus.CANCELLED
    assert not (bulk_dir / str(job.pk)).exists()
    operation_outcome(http.get(url, **auth), 404, "not-found", "no such export")


def test_finished_files_expire_after_the_keep_hours(
    kicked: Any, bulk_dir: Path, settings: Any
) -> None:
    import datetime as dt

    http, auth, url = kicked
    settings.FHIR_BULK_KEEP_HOURS = 24
    start = timezone.now()
    assert jobs.run_pending(start) == 1
    job = ExportJob.objects.get()
    answer = http.get(url, **auth)
    assert answer.status_code == 200
    assert answer["Expires"]  # an HTTP date: finished + 24 h
    assert jobs.expire_finished(start + dt.timedelta(hours=23)) == 0
    assert (bulk_dir / str(job.pk)).exists()
    assert jobs.run_pending(start + dt.timedelta(hours=25)) == 0  # the worker expires them
    assert not (bulk_dir / str(job.pk)).exists()
    job.refresh_from_db()
    assert job.status == JobStatus.EXPIRED
    operation_outcome(http.get(url, **auth), 404, "not-found", "expired")


def test_a_job_whose_worker_died_is_failed_after_the_keep_hours(
    kicked: Any, bulk_dir: Path, settings: Any
) -> None:
    import datetime as dt

    http, auth, url = kicked
    start = timezone.now()
    job = jobs._claim(start, "killed-worker")  # claimed, then the process is killed
    assert job is not None
    (bulk_dir / str(job.pk)).mkdir(parents=True)
    assert jobs.run_pending(start + dt.timedelta(hours=1)) == 0
    assert http.get(url, **auth).status_code == 202  # still plausibly running
    assert jobs.run_pending(start + dt.timedelta(hours=settings.FHIR_BULK_KEEP_HOURS + 1)) == 0
    assert not (bulk_dir / str(job.pk)).exists()
    operation_outcome(http.get(url, **auth), 500, "exception", "the worker stopped")
