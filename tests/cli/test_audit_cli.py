"""``vertebra audit verify|checkpoint|grants`` as real subprocesses, and the tamper proof.

Requirement ids: P11-11.10(a) ("the ability to discern invalid or altered records"),
P11-11.10(e), HIPAA-164.312(b)/(c)(2), T20. The tamper test is the one issue 14 asks for: with
the app's own database role, disable the triggers, edit a row and re-hash the seal chain
(ADR 0021) with the public algorithm; ``vertebra audit verify`` fails and names the first altered row; TRUNCATE is
refused; a deleted tail is detected against the last checkpoint. Then the same attempts as a
least-privilege runtime role (the production set-up, ADR 0008) are refused outright.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import DatabaseError, connection, transaction

from tests.conftest import run_cli
from tests.migrated import sqlite_database
from tests.registry.factories import make_actor, make_clinic
from tests.registry.test_audit_seal import _append, _delete_from_seal, rehash_from
from vertebra.registry.audit import record_audit, seal_pending, verify_audit_chain
from vertebra.registry.auditroles import grant_statements, role_warnings
from vertebra.registry.models import AuditEvent, AuditSeal, Role

TABLE = AuditEvent._meta.db_table
SEAL_TABLE = AuditSeal._meta.db_table


def _env() -> dict[str, str]:
    """The subprocess sees this test's database, key (same data folder) and checkpoint file."""
    s: dict[str, Any] = connection.settings_dict
    if connection.vendor == "postgresql":
        url = (
            f"postgres://{quote(str(s['USER']))}:{quote(str(s['PASSWORD']))}"
            f"@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"
        )
    else:
        url = f"sqlite:///{s['NAME']}"
    return {
        "DATABASE_URL": url,
        "AUDIT_CHECKPOINT_FILE": str(settings.AUDIT_CHECKPOINT_FILE),
        "DJANGO_SETTINGS_MODULE": "vertebra.settings",
    }


def _as_owner_disable_triggers_and(action: Any) -> None:
    """What the app's role can do while it owns the table: triggers off, act, triggers on."""
    with transaction.atomic(), connection.cursor() as cursor:
        for table in (TABLE, SEAL_TABLE):
            cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        action()
        for table in (TABLE, SEAL_TABLE):
            cursor.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_tampering_as_the_app_role_is_named_by_audit_verify() -> None:
    actor = make_actor(Role.CLINICIAN, make_clinic())
    _append(actor, 5)
    env = _env()

    done = run_cli("audit", "checkpoint", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("checkpoint: seal 6, hash ")
    done = run_cli("audit", "verify", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "audit trail intact: 6 rows, head seal 6, 1 checkpoint(s) matched" in done.stdout
    assert "is a superuser" in done.stderr  # the test role is not least-privilege: said so

    _as_owner_disable_triggers_and(lambda: rehash_from(3, {"reason": "never happened"}))
    edited = AuditEvent.objects.get(pk=AuditSeal.objects.get(seq=3).event_id)
    assert edited.reason == "never happened"

    done = run_cli("audit", "verify", env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    first = done.stdout.splitlines()[0]
    assert first == (
        "audit trail NOT intact: row 3: bad_mac: seal 3 was altered and re-hashed: "
        "its MAC does not match"
    )
    recorded = AuditEvent.objects.filter(action="verify").order_by("-id").first()
    assert recorded is not None
    assert recorded.new_values["first_problem"] == {"seq": 3, "kind": "bad_mac"}
    assert recorded.new_values["intact"] is False

    for table in (TABLE, SEAL_TABLE):
        with pytest.raises(DatabaseError, match="append-only"), connection.cursor() as cursor:
            cursor.execute(f"TRUNCATE {table}")
    assert AuditEvent.objects.count() == 8
    assert AuditSeal.objects.count() == 8


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_a_deleted_tail_is_named_by_audit_verify() -> None:
    actor = make_actor(Role.CLINICIAN, make_clinic())
    _append(actor, 4)
    env = _env()
    assert run_cli("audit", "checkpoint", env=env).returncode == 0  # seal 5
    _as_owner_disable_triggers_and(lambda: _delete_from_seal(3))
    assert verify_audit_chain() == []  # the chain alone sees nothing

    done = run_cli("audit", "verify", "--json", env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    assert '"first_problem": {\n    "seq": 3,\n    "kind": "truncated"\n  }' in done.stdout
    assert "seals 3..5 (and the rows they vouched for) were removed" in done.stdout


@pytest.mark.postgresql
@pytest.mark.django_db
def test_the_least_privilege_runtime_role_cannot_touch_the_trail() -> None:
    """As a role set up by ``vertebra audit grants``: appends work, everything else is refused
    by privilege, before any trigger is even reached. (CREATE ROLE is rolled back with the
    test's transaction.)"""
    actor = make_actor(Role.CLINICIAN, make_clinic())
    _append(actor, 2)
    assert role_warnings()  # the test connection is a superuser
    role = "vertebra_audit_rt_test"
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE ROLE {role} NOLOGIN")
        for sql in grant_statements(role):
            cursor.execute(sql)
        cursor.execute(f"SET ROLE {role}")
    try:
        assert role_warnings() == []
        with transaction.atomic():
            row = record_audit(actor=actor, action="read", object_type="patient", object_id=1)
        assert row.pk is not None and row.seq is None
        assert seal_pending(wait=True, full=True) == 1  # the runtime role seals (worker)
        attempts = [
            f"UPDATE {TABLE} SET reason = 'x' WHERE id = {row.pk}",
            f"DELETE FROM {TABLE} WHERE id = {row.pk}",
            f"TRUNCATE {TABLE}",
            f"ALTER TABLE {TABLE} DISABLE TRIGGER USER",
            f"DROP TRIGGER registry_auditevent_append_only ON {TABLE}",
            f"UPDATE {SEAL_TABLE} SET row_hash = 'x' WHERE seq = 1",
            f"DELETE FROM {SEAL_TABLE} WHERE seq = 1",
            f"TRUNCATE {SEAL_TABLE}",
            f"ALTER TABLE {SEAL_TABLE} DISABLE TRIGGER USER",
            f"DROP TRIGGER registry_auditseal_append_only ON {SEAL_TABLE}",
        ]
        for sql in attempts:
            with (
                pytest.raises(DatabaseError, match=r"permission denied|must be owner"),
                transaction.atomic(),
                connection.cursor() as cursor,
            ):
                cursor.execute(sql)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET ROLE")
    assert AuditEvent.objects.count() == 3
    assert verify_audit_chain() == []


def test_grants_prints_the_sql_and_refuses_odd_role_names() -> None:
    done = run_cli("audit", "grants", "--role", "vertebra_app")
    assert done.returncode == 0, done.stderr
    assert "GRANT SELECT, INSERT ON registry_auditevent TO vertebra_app;" in done.stdout
    assert "REVOKE ALL ON registry_auditevent FROM vertebra_app;" in done.stdout
    assert "GRANT SELECT, INSERT ON registry_auditseal TO vertebra_app;" in done.stdout
    assert "REVOKE ALL ON registry_auditseal FROM vertebra_app;" in done.stdout
    done = run_cli("audit", "grants", "--role", "app; DROP TABLE x")
    assert done.returncode == 2
    assert done.stderr.startswith("vertebra: error: --role:")
    assert "Traceback" not in done.stderr


@pytest.mark.sqlite
def test_verify_and_checkpoint_on_a_sqlite_file(tmp_path: Path) -> None:
    env = {
        "DATABASE_URL": sqlite_database(tmp_path / "registry.sqlite3"),
        "VERTEBRA_DATA_DIR": str(tmp_path),
        "AUDIT_CHECKPOINT_FILE": str(tmp_path / "checkpoints.jsonl"),
        "DJANGO_SETTINGS_MODULE": "vertebra.settings",
    }
    for _ in range(3):
        assert run_cli("audit", "checkpoint", env=env).returncode == 0
    assert (tmp_path / "audit-hmac.key").stat().st_mode & 0o777 == 0o600
    done = run_cli("audit", "verify", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "audit trail intact: 3 rows, head seal 3, 3 checkpoint(s) matched" in done.stdout

    with sqlite3.connect(tmp_path / "registry.sqlite3") as db:
        db.execute("DROP TRIGGER registry_auditevent_no_update")
        db.execute(f"UPDATE {TABLE} SET actor_username = 'someone-else' WHERE id = 2")
    done = run_cli("audit", "verify", env=env)
    assert done.returncode == 1
    assert done.stdout.startswith("audit trail NOT intact: row 2: altered:")

    missing_key = {**env, "VERTEBRA_ENV": "production", "SECRET_KEY": "x" * 60,
                   "ALLOWED_HOSTS": "registry.example.org",
                   "VERTEBRA_DATA_DIR": str(tmp_path / "elsewhere")}  # fmt: skip
    done = run_cli("audit", "verify", env=missing_key)
    assert done.returncode == 2
    assert "the audit MAC key is required in production" in done.stderr
    assert "Traceback" not in done.stderr
