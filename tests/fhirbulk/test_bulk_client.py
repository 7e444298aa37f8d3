"""A Bulk Data client scripted to the IG against a live server (pytest-django ``live_server``,
``requests`` over HTTP): discover the token endpoint, sign an RS384 assertion, get a token,
kick off, poll, download, and compare with what the CLI's exporter writes for the same clinic.
Also ``_type``, ``_since`` and cancel. The worker's pass runs the jobs
(:func:`vertebra.followup.worker.run_once`), as in production."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from django.utils import timezone

from tests.fhirbulk.conftest import assertion, load_registry, public_jwks, token_form
from vertebra.fhirbulk.auth import register_client
from vertebra.fhirbulk.models import ExportJob, JobStatus
from vertebra.followup import worker
from vertebra.interop.export import export_fhir
from vertebra.registry.models import AuditEvent

pytestmark = pytest.mark.django_db(transaction=True)
ASYNC = {"Prefer": "respond-async", "Accept": "application/fhir+json"}


class BulkClient:
    """What an integrator's Bulk Data client does, step by step (docs/fhir-bulk.md)."""

    def __init__(self, base: str, client_id: str, key: Any) -> None:
        self.base = base
        self.client_id = client_id
        self.key = key
        self.token = ""

    def authorize(self, scope: str = "system/*.read") -> None:
        """Discover the token endpoint, sign an assertion for it, exchange it for a token."""
        config = requests.get(f"{self.base}/fhir/.well-known/smart-configuration", timeout=10)
        token_url = config.json()["token_endpoint"]
        signed = assertion(self.key, self.client_id, token_url)
        answer = requests.post(token_url, data=token_form(signed, scope), timeout=10)
        assert answer.status_code == 200, answer.text
        self.token = answer.json()["access_token"]

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def kick_off(self, path: str, **params: str) -> str:
        """Kick off an export; returns the status URL."""
        answer = requests.get(
            f"{self.base}/fhir/{path}", params=params, headers={**ASYNC, **self.auth}, timeout=10
        )
        assert answer.status_code == 202, answer.text
        return answer.headers["Content-Location"]

    def poll(self, status_url: str, run_worker: bool = True) -> dict[str, Any]:
        """Poll until the manifest arrives (the worker's pass runs between polls)."""
        for _ in range(5):
            answer = requests.get(status_url, headers=self.auth, timeout=10)
            if answer.status_code == 200:
                return dict(answer.json())
            assert answer.status_code == 202, answer.text
            assert answer.headers["X-Progress"]
            assert int(answer.headers["Retry-After"]) > 0
            if run_worker:
                worker.run_once()
            else:
                time.sleep(0.1)
        raise AssertionError("the export never finished")

    def download(self, url: str) -> list[dict[str, Any]]:
        answer = requests.get(url, headers=self.auth, timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.headers["Content-Type"] == "application/fhir+ndjson"
        return [json.loads(line) for line in answer.text.splitlines()]


@pytest.fixture
def registry(live_server: Any, bulk_dir: Path, rsa_key: Any) -> dict[str, Any]:
    clinics = load_registry(12)
    register_client(
        client_id="north-ehr", name="North EHR", jwks=public_jwks(rsa_key),
        clinic_id=clinics[0], now=timezone.now(),
    )  # fmt: skip
    client = BulkClient(live_server.url, "north-ehr", rsa_key)
    client.authorize()
    return {"clinics": clinics, "client": client, "base": live_server.url}


def cli_files(tmp_path: Path, clinic: int) -> dict[str, bytes]:
    """What ``vertebra export fhir --clinic <clinic>`` writes (its exporter, in process)."""
    out = tmp_path / "cli"
    export_fhir(out, clinic_ids=[clinic], now=timezone.now())
    return {p.stem: p.read_bytes() for p in out.glob("*.ndjson")}


def test_a_complete_export_equals_the_cli_export(registry: dict[str, Any], tmp_path: Path) -> None:
    client, clinic = registry["client"], registry["clinics"][0]
    status_url = client.kick_off("$export", _outputFormat="application/fhir+ndjson")
    manifest = client.poll(status_url)
    assert manifest["requiresAccessToken"] is True
    assert manifest["request"] == f"{registry['base']}/fhir/$export?_outputFormat=" + (
        "application%2Ffhir%2Bndjson"
    )
    assert manifest["transactionTime"].endswith("Z") or "+00:00" in manifest["transactionTime"]
    assert manifest["error"] == []
    expected = cli_files(tmp_path, clinic)
    assert {item["type"] for item in manifest["output"]} == set(expected)
    for item in manifest["output"]:
        assert item["url"].startswith(f"{registry['base']}/fhir/bulk-files/")
        resources = client.download(item["url"])
        assert len(resources) == item["count"]
        assert all(r["resourceType"] == item["type"] for r in resources)
        raw = requests.get(item["url"], headers=client.auth, timeout=30).content
        assert raw == expected[item["type"]], item["type"]  # byte for byte the CLI's file
    counts = {item["type"]: item["count"] for item in manifest["output"]}
    assert counts["Patient"] == len(expected["Patient"].splitlines()) > 0
    assert counts["Organization"] == 1  # the client's own clinic only
    # Audited: the kick-off, the exporter's read (naming the client) and every download.
    trail = AuditEvent.objects.filter(actor_username="fhir-client:north-ehr")
    kinds = list(trail.values_list("object_type", flat=True))
    assert kinds.count("fhir_bulk_export") == 1
    assert kinds.count("fhir_export") == 1
    assert kinds.count("fhir_bulk_file") == 2 * len(manifest["output"])
    # Files need the token.
    first = manifest["output"][0]["url"]
    assert requests.get(first, timeout=10).status_code == 401


def test_group_and_patient_level_exports_hold_the_same_files(registry: dict[str, Any]) -> None:
    client, clinic = registry["client"], registry["clinics"][0]
    by_group = client.poll(client.kick_off(f"Group/{clinic}/$export"))
    by_patient = client.poll(client.kick_off("Patient/$export"))
    assert [(o["type"], o["count"]) for o in by_group["output"]] == [
        (o["type"], o["count"]) for o in by_patient["output"]
    ]


def test_type_filter(registry: dict[str, Any], tmp_path: Path) -> None:
    client, clinic = registry["client"], registry["clinics"][0]
    manifest = client.poll(client.kick_off("$export", _type="Patient,Condition"))
    expected = cli_files(tmp_path, clinic)
    assert [o["type"] for o in manifest["output"]] == ["Patient", "Condition"]
    for item in manifest["output"]:
        raw = requests.get(item["url"], headers=client.auth, timeout=30).content
        assert raw == expected[item["type"]]


def test_since_keeps_only_patients_changed_after_it(registry: dict[str, Any]) -> None:
    """The cohort was loaded (and audited) on 2026-11-25; one patient is corrected now.
    ``_since`` after the load holds that patient's resources only (plus the clinic)."""
    from tests.registry.factories import make_actor
    from vertebra.registry.models import Clinic, Patient, Role
    from vertebra.registry.services import update_patient

    client, clinic_id = registry["client"], registry["clinics"][0]
    clinic = Clinic.objects.get(pk=clinic_id)
    patient = Patient.objects.filter(clinic=clinic).order_by("pk").first()
    assert patient is not None
    update_patient(
        actor=make_actor(Role.CLINIC_ADMIN, clinic), patient_id=patient.pk,
        expected_version=patient.version, changes={"family_name": "Corrected"},
        reason="typo in the family name",
    )  # fmt: skip
    manifest = client.poll(client.kick_off("$export", _since="2026-12-01T00:00:00Z"))
    files = {o["type"]: client.download(o["url"]) for o in manifest["output"]}
    assert [p["id"] for p in files["Patient"]] == [f"patient-{patient.pk}"]
    assert files["Patient"][0]["name"][0]["family"] == "Corrected"
    ref = f"Patient/patient-{patient.pk}"
    for kind, resources in files.items():
        if kind not in ("Patient", "Organization", "BiologicallyDerivedProduct", "Questionnaire"):
            assert all(ref in json.dumps(r) for r in resources), kind
    everything = client.poll(client.kick_off("$export", _since="2026-11-01T00:00:00Z"))
    assert sum(o["count"] for o in everything["output"]) > sum(
        o["count"] for o in manifest["output"]
    )
    assert manifest["extension"]["vertebra"]["since"].startswith("2026-12-01T00:00:00")


def test_cancel_removes_the_files(registry: dict[str, Any], bulk_dir: Path) -> None:
    client = registry["client"]
    status_url = client.kick_off("$export")
    manifest = client.poll(status_url)
    job = ExportJob.objects.get()
    assert (bulk_dir / str(job.pk) / "Patient.ndjson").exists()
    answer = requests.delete(status_url, headers=client.auth, timeout=10)
    assert answer.status_code == 202
    assert not (bulk_dir / str(job.pk)).exists()
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    gone = requests.get(status_url, headers=client.auth, timeout=10)
    assert gone.status_code == 404
    assert gone.json()["resourceType"] == "OperationOutcome"
    assert (
        requests.get(manifest["output"][0]["url"], headers=client.auth, timeout=10).status_code
        == 404
    )
    # A queued job cancelled before the worker runs it is never exported.
    queued = client.kick_off("$export")
    assert requests.delete(queued, headers=client.auth, timeout=10).status_code == 202
    assert worker.run_once().exports == 0
