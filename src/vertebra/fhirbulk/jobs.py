"""Bulk Data export jobs: kick-off, the worker's run, status, cancel, and file access.

Contracts
---------
* :func:`kick_off` stores a queued :class:`~vertebra.fhirbulk.models.ExportJob` for the
  clinics the requester may export (a Group is one clinic: ``Group/<clinic id>``) and audits
  the request, in one transaction. It never reads patient data: the worker does.
* :func:`run_pending` (called by the follow-up worker's pass, or directly in tests) claims each
  queued job with a conditional ``UPDATE ... WHERE status='queued'`` (two workers cannot run
  one job) and runs it with the CLI's exporter (:func:`vertebra.interop.export.export_fhir`)
  into ``settings.FHIR_BULK_DIR/<job id>/``, so the files are byte for byte what
  ``vertebra export fhir --clinic <id>`` writes. The exporter audits the read, naming the
  requester. Afterwards files of types outside ``_type`` are removed, and with ``_since`` each
  file keeps only the lines of patients whose audit trail shows a write after ``_since`` (plus
  the reference data, Organization and allogeneic lots, which carry no change time).
* A job is visible only to whoever asked for it (the same system client, or the same person):
  to anyone else it does not exist (:func:`job_for`). :func:`cancel` removes the files.
* Every file download is audited (:func:`open_file`). Files of a finished export are removed
  after ``settings.FHIR_BULK_KEEP_HOURS`` (:func:`expire_finished`, run by the worker).
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import uuid
from collections.abc import Collection
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q

from vertebra.core.fhir import RESOURCE_TYPES, fhir_codes, manifest
from vertebra.core.fhir.smart import KickOff, patient_of_line
from vertebra.fhirbulk.auth import Requester, client_actor
from vertebra.fhirbulk.models import ExportJob, JobStatus
from vertebra.followup.models import QuestionnaireResponse
from vertebra.interop.export import export_fhir
from vertebra.registry.audit import record_audit
from vertebra.registry.models import (
    AdverseEvent,
    AuditEvent,
    ClinicalEvent,
    Consent,
    Diagnosis,
    Harvest,
    Injection,
    Patient,
    PriorTreatment,
    Processing,
    TreatmentEpisode,
)
from vertebra.registry.permissions import Actor

logger = logging.getLogger(__name__)

__all__ = [
    "JobRefused",
    "cancel",
    "job_for",
    "kick_off",
    "manifest_of",
    "open_file",
    "run_pending",
]

JOB_OBJECT = "fhir_bulk_export"
FILE_OBJECT = "fhir_bulk_file"
#: Audit object types whose writes change exported resources: the tables the exporter reads
#: (:mod:`vertebra.interop.selectors`, object type = model name for services, corrections and
#: the cohort loader) and a submitted questionnaire. Reminders, links and logins are not.
SINCE_SOURCES = frozenset(
    {
        str(model._meta.model_name)
        for model in (
            Patient, Consent, Diagnosis, PriorTreatment, TreatmentEpisode, Harvest, Processing,
            Injection, ClinicalEvent, AdverseEvent, QuestionnaireResponse,
        )
    }
    | {"followup_submission"}
)  # fmt: skip


class JobRefused(ValueError):
    """A kick-off or job request that cannot be served: HTTP ``status``, OperationOutcome
    issue ``code`` and a message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def bulk_root() -> Path:
    """The folder holding one sub-folder of files per export job."""
    return Path(settings.FHIR_BULK_DIR)


def job_folder(job: ExportJob) -> Path:
    """Where the files of ``job`` are written."""
    return bulk_root() / str(job.id)


def _scope(requester: Requester, level: str, group: str | None) -> list[int]:
    """The clinic ids an export at ``level`` covers for ``requester``, or JobRefused."""
    if not requester.clinic_ids:
        raise JobRefused(403, "forbidden", requester.refusal or "no clinic to export")
    if level != "group":
        return sorted(requester.clinic_ids)
    if group is None or not group.isdigit() or int(group) not in requester.clinic_ids:
        # Another clinic's Group and a Group that does not exist answer alike: no leak.
        raise JobRefused(404, "not-found", f"Group/{group} is not known")
    return [int(group)]


def kick_off(
    requester: Requester,
    *,
    level: str,
    group: str | None,
    request: KickOff,
    request_url: str,
    now: dt.datetime,
) -> ExportJob:
    """Queue an export (see module docstring); JobRefused when the requester may not."""
    clinic_ids = _scope(requester, level, group)
    with transaction.atomic():
        job = ExportJob.objects.create(
            client_id=requester.client_id, user_id=requester.user_id,
            role=requester.actor.role, level=level, clinic_ids=clinic_ids,
            types=list(request.types), since=request.since, request_url=request_url,
            created_at=now,
        )  # fmt: skip
        record_audit(
            actor=requester.actor, action="create", object_type=JOB_OBJECT, object_id=job.pk,
            clinic_id=clinic_ids[0] if len(clinic_ids) == 1 else None, occurred_at=now,
            new_values={"level": level, "clinics": clinic_ids, "types": list(request.types),
                        "since": request.since, "request": request_url},
        )  # fmt: skip
    return job


def job_for(requester: Requester, job_id: uuid.UUID) -> ExportJob | None:
    """The job ``job_id`` if ``requester`` asked for it, else None."""
    owner = (
        Q(client_id=requester.client_id)
        if requester.client_id is not None
        else Q(user_id=requester.user_id, client__isnull=True)
    )
    return ExportJob.objects.filter(owner, pk=job_id).first()


def cancel(requester: Requester, job: ExportJob, now: dt.datetime) -> None:
    """Cancel ``job`` (queued, running or done) and remove its files; JobRefused (404) for a
    job already cancelled or failed. A running job's files are removed when the worker ends."""
    with transaction.atomic():
        changed = ExportJob.objects.filter(
            pk=job.pk, status__in=[JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.DONE]
        ).update(status=JobStatus.CANCELLED, finished_at=now)
        if not changed:
            raise JobRefused(404, "not-found", "this export was cancelled or failed already")
        record_audit(
            actor=requester.actor, action="update", object_type=JOB_OBJECT, object_id=job.pk,
            old_values={"status": job.status}, new_values={"status": JobStatus.CANCELLED},
            occurred_at=now,
        )  # fmt: skip
    shutil.rmtree(job_folder(job), ignore_errors=True)


def manifest_of(job: ExportJob, file_base: str) -> dict[str, Any]:
    """The Bulk Data manifest of a finished job; ``file_base`` + ``<Type>.ndjson`` is each
    file's absolute URL. The core's manifest, with absolute URLs and a token required."""
    assert job.transaction_time is not None  # a done job has one
    document = manifest(
        transaction_time=job.transaction_time,
        request=job.request_url,
        counts=job.counts,
        codes=fhir_codes(),
        clinics=[str(c) for c in job.clinic_ids],
        n_patients=job.n_patients,
    )
    document["requiresAccessToken"] = True
    for item in document["output"]:
        item["url"] = file_base + item["url"]
    if job.since is not None:
        document["extension"]["vertebra"]["since"] = job.since.isoformat()
    return document


def open_file(requester: Requester, job: ExportJob, kind: str, now: dt.datetime) -> IO[bytes]:
    """The NDJSON file of ``kind`` of a finished job, opened for streaming; the download is
    audited first. JobRefused (404) when the job has no such file."""
    if job.status != JobStatus.DONE or not job.counts.get(kind):
        raise JobRefused(404, "not-found", f"this export has no {kind} file")
    path = job_folder(job) / f"{kind}.ndjson"
    with transaction.atomic():
        record_audit(
            actor=requester.actor, action="read", object_type=FILE_OBJECT,
            object_id=f"{job.pk}/{kind}", occurred_at=now,
            clinic_id=job.clinic_ids[0] if len(job.clinic_ids) == 1 else None,
            new_values={"resources": job.counts[kind], "identified": True},
        )  # fmt: skip
    return path.open("rb")


# --- the worker's part ------------------------------------------------------------------------


def changed_patients(clinic_ids: Collection[int], since: dt.datetime) -> set[int]:
    """Patients of ``clinic_ids`` with a write (any audited action but a read) to an exported
    record (:data:`SINCE_SOURCES`) after ``since``.

    The audit trail is the one change log every write leaves (same transaction), so it
    answers ``_since`` without a per-row timestamp on each table.
    """
    rows = (
        AuditEvent.objects.filter(
            occurred_at__gt=since, patient_id__isnull=False, object_type__in=SINCE_SOURCES
        )
        .exclude(action="read")
        .values_list("patient_id", flat=True)
        .distinct()
    )
    wanted = set(rows)
    return set(
        Patient.objects.filter(pk__in=list(wanted), clinic_id__in=list(clinic_ids)).values_list(
            "pk", flat=True
        )
    )


def _narrow(folder: Path, types: Collection[str], patients: set[int] | None) -> dict[str, int]:
    """Remove files of types outside ``types``; with ``patients``, keep only their lines
    (and reference data). Returns the lines left per type."""
    counts: dict[str, int] = {}
    for kind in RESOURCE_TYPES:
        path = folder / f"{kind}.ndjson"
        if not path.exists():
            continue
        if kind not in types:
            path.unlink()
            continue
        if patients is not None:
            kept = folder / f"{kind}.ndjson.part"
            with path.open(encoding="utf-8") as src, kept.open("w", encoding="utf-8") as dst:
                for line in src:
                    owner = patient_of_line(line)
                    if owner is None or owner in patients:
                        dst.write(line)
            kept.replace(path)
        with path.open("rb") as handle:
            n = sum(1 for _ in handle)
        if n:
            counts[kind] = n
        else:
            path.unlink()
    return counts


def _actor_of(job: ExportJob) -> Actor:
    """The audit actor the exporter names for ``job``: its client or its person."""
    if job.client is not None:
        return client_actor(job.client)
    return Actor(user=job.user, role=job.role, clinic_ids=frozenset(job.clinic_ids))


def _claim(now: dt.datetime, who: str) -> ExportJob | None:
    """The oldest queued job, claimed for this worker (None when there is none left)."""
    while True:
        job = ExportJob.objects.filter(status=JobStatus.QUEUED).order_by("created_at").first()
        if job is None:
            return None
        claimed = ExportJob.objects.filter(pk=job.pk, status=JobStatus.QUEUED).update(
            status=JobStatus.RUNNING, transaction_time=now, worker=who
        )
        if claimed:
            job.refresh_from_db()
            return job


def _started(job: ExportJob, n_patients: int) -> None:
    """Record how many patients a running job covers (its ``X-Progress``)."""
    ExportJob.objects.filter(pk=job.pk).update(n_patients=n_patients)


def run_job(job: ExportJob, now: dt.datetime) -> str:
    """Run one claimed job to its end; returns its final status."""
    folder = job_folder(job)
    try:
        summary = export_fhir(
            folder,
            clinic_ids=job.clinic_ids,
            now=now,
            request=job.request_url,
            actor=_actor_of(job),
            on_start=lambda n: _started(job, n),
        )
        patients = changed_patients(job.clinic_ids, job.since) if job.since else None
        counts = _narrow(folder, job.types, patients)
    except Exception as exc:
        logger.exception("bulk export %s failed", job.pk)
        shutil.rmtree(folder, ignore_errors=True)
        ExportJob.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(
            status=JobStatus.FAILED, error=str(exc).splitlines()[0][:500], finished_at=now
        )
        return JobStatus.FAILED
    done = ExportJob.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(
        status=JobStatus.DONE, counts=counts, n_patients=summary.n_patients,
        done_patients=summary.n_patients, finished_at=now,
    )  # fmt: skip
    if not done:  # cancelled while it ran: nothing of it may stay on disk
        shutil.rmtree(folder, ignore_errors=True)
        return JobStatus.CANCELLED
    return JobStatus.DONE


def expire_finished(now: dt.datetime) -> int:
    """Remove the files of exports finished more than ``settings.FHIR_BULK_KEEP_HOURS`` ago
    (identified data must not linger on disk); their status becomes ``expired``. A job
    running since before then is marked failed. Returns the number expired."""
    cutoff = now - dt.timedelta(hours=settings.FHIR_BULK_KEEP_HOURS)
    old = list(
        ExportJob.objects.filter(status=JobStatus.DONE, finished_at__lt=cutoff).values_list(
            "pk", flat=True
        )
    )
    expired = 0
    for pk in old:
        if ExportJob.objects.filter(pk=pk, status=JobStatus.DONE).update(status=JobStatus.EXPIRED):
            shutil.rmtree(bulk_root() / str(pk), ignore_errors=True)
            expired += 1
    # A job still "running" that long ago lost its worker (killed mid-export): it has failed.
    stuck = list(
        ExportJob.objects.filter(status=JobStatus.RUNNING, transaction_time__lt=cutoff).values_list(
            "pk", flat=True
        )
    )
    for pk in stuck:
        message = "the worker stopped during the export; start a new one"
        if ExportJob.objects.filter(pk=pk, status=JobStatus.RUNNING).update(
            status=JobStatus.FAILED, error=message, finished_at=now
        ):
            shutil.rmtree(bulk_root() / str(pk), ignore_errors=True)
    return expired


def run_pending(now: dt.datetime, who: str = "") -> int:
    """Expire old exports' files, then run every queued export, oldest first; returns how many
    ran. Safe in several workers."""
    expire_finished(now)
    ran = 0
    while (job := _claim(now, who)) is not None:
        run_job(job, now)
        ran += 1
    return ran
