"""The real commands as subprocesses: ``vertebra fhir-client add/list/revoke`` registers a
client; on PostgreSQL (where subprocesses see the live server's committed test database) a
Bulk Data export kicked off over HTTP is run by ``vertebra worker --once`` and its files equal
``vertebra export fhir --clinic <id>``'s byte for byte."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests

from tests.conftest import run_cli
from tests.fhirbulk.conftest import assertion, load_registry, public_jwks, token_form
from tests.fhirbulk.test_bulk_client import ASYNC
from tests.migrated import sqlite_database


def _jwks_file(tmp_path: Path, key: Any) -> Path:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(public_jwks(key)), encoding="utf-8")
    return path


def check_client_commands(env: dict[str, str], tmp_path: Path, key: Any, clinic: int) -> None:
    """add (clinic and research), refusals, list, revoke."""
    jwks = _jwks_file(tmp_path, key)
    done = run_cli("fhir-client", "add", "--id", "north-ehr", "--name", "North EHR",
                   "--jwks", str(jwks), "--clinic", str(clinic), env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        f"registered north-ehr (clinic {clinic}), scope system/*.read system/*.rs"
    )
    done = run_cli("fhir-client", "add", "--id", "north-ehr", "--name", "again",
                   "--jwks", str(jwks), "--clinic", str(clinic), env=env)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip() == "vertebra: error: a client 'north-ehr' is registered already"
    private = tmp_path / "private.json"
    private.write_text(json.dumps({"keys": [key.as_dict(private=True)]}), encoding="utf-8")
    done = run_cli("fhir-client", "add", "--id", "leaky", "--name", "x",
                   "--jwks", str(private), env=env)  # fmt: skip
    assert done.returncode == 2
    assert "holds a private part: register public keys" in done.stderr
    done = run_cli("fhir-client", "add", "--id", "study", "--name", "Outcomes study",
                   "--jwks", str(jwks), "--scope", "system/Patient.read", env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "research (de-identified only)" in done.stdout
    done = run_cli("fhir-client", "revoke", "study", env=env)
    assert done.returncode == 0, done.stderr
    listed = run_cli("fhir-client", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert [line.split("\t")[:4] for line in listed.stdout.splitlines()] == [
        ["north-ehr", "clinic", str(clinic), "active"],
        ["study", "research", "-", "revoked"],
    ]


@pytest.mark.sqlite
def test_client_commands_on_sqlite(tmp_path: Path, rsa_key: Any) -> None:
    env = {
        "DATABASE_URL": sqlite_database(tmp_path / "registry.sqlite3"),
        "VERTEBRA_DATA_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "vertebra.settings",
    }
    made = run_cli(
        "manage", "shell", "-c",
        "from vertebra.registry.models import Clinic; print(Clinic.objects.create(name='N').pk)",
        env=env,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    check_client_commands(env, tmp_path, rsa_key, int(made.stdout.strip().splitlines()[-1]))


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_worker_subprocess_export_equals_cli_export_on_postgresql(
    live_server: Any, settings: Any, tmp_path: Path, rsa_key: Any
) -> None:
    from django.db import connection

    clinic = load_registry(12)[1]
    s: dict[str, Any] = connection.settings_dict
    url = (
        f"postgres://{quote(str(s['USER']))}:{quote(str(s['PASSWORD']))}"
        f"@{s['HOST']}:{s['PORT']}/{s['NAME']}"
    )
    bulk = tmp_path / "bulk"
    settings.FHIR_BULK_DIR = str(bulk)
    env = {"DATABASE_URL": url, "VERTEBRA_DATA_DIR": str(tmp_path), "FHIR_BULK_DIR": str(bulk)}
    check_client_commands(env, tmp_path, rsa_key, clinic)

    base = live_server.url
    token_url = f"{base}/fhir/auth/token"
    answer = requests.post(
        token_url, data=token_form(assertion(rsa_key, "north-ehr", token_url)), timeout=10
    )
    assert answer.status_code == 200, answer.text
    auth = {"Authorization": f"Bearer {answer.json()['access_token']}"}
    kicked = requests.get(f"{base}/fhir/Group/{clinic}/$export", headers={**ASYNC, **auth},
                          timeout=10)  # fmt: skip
    assert kicked.status_code == 202, kicked.text
    status_url = kicked.headers["Content-Location"]
    waiting = requests.get(status_url, headers=auth, timeout=10)
    assert (waiting.status_code, waiting.headers["X-Progress"]) == (202, "queued")

    ran = run_cli("worker", "--once", env=env, timeout=300)
    assert ran.returncode == 0, ran.stderr
    assert "fhir exports=1" in ran.stdout
    manifest = requests.get(status_url, headers=auth, timeout=10).json()

    out = tmp_path / "cli"
    exported = run_cli("export", "fhir", "--out", str(out), "--clinic", str(clinic), env=env,
                       timeout=300)  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    cli_manifest = json.loads((out / "manifest.json").read_text())
    assert [(o["type"], o["count"]) for o in manifest["output"]] == [
        (o["type"], o["count"]) for o in cli_manifest["output"]
    ]
    for item in manifest["output"]:
        body = requests.get(item["url"], headers=auth, timeout=30).content
        assert body == (out / f"{item['type']}.ndjson").read_bytes(), item["type"]
