"""A trail that someone holding the database role cannot rewrite unnoticed (issue 14, ADR 0008).

Requirement ids: P11-11.10(e) (record changes shall not obscure previous entries),
HIPAA-164.312(c)(1)-(2) (integrity, mechanism to authenticate ePHI), T20 (immutability).
The attacker here can write the trail and its seal table (triggers dropped inside the test's
transaction) and knows the public hash algorithms; they do not have the MAC key or the
checkpoint file. Since ADR 0021 the order of the trail is the seal chain: every scenario that
re-chained rows re-chains seals here.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from django.core import mail
from django.db import connection, transaction

from tests.registry.audit_tamper import drop_triggers, seal_all, seal_of
from tests.registry.factories import make_actor, make_clinic, make_user
from vertebra.followup.worker import run_once
from vertebra.registry.audit import (
    GENESIS_HASH,
    check_audit_chain,
    compute_hash,
    record_audit,
    seal_hash,
    system_actor,
    verify_audit_chain,
    verify_audit_chain_as,
    write_checkpoint,
)
from vertebra.registry.auditjob import latest_verification, open_alerts, run_scheduled_verification
from vertebra.registry.auditseal import (
    AuditKeyError,
    Checkpoint,
    append_checkpoint,
    checkpoint_file,
    key_file,
    keyring,
    read_checkpoints,
    rotate_key,
)
from vertebra.registry.models import AuditAlert, AuditEvent, AuditSeal, Role
from vertebra.registry.permissions import Actor

pytestmark = pytest.mark.django_db

TABLE = AuditEvent._meta.db_table
SEAL_TABLE = AuditSeal._meta.db_table


@pytest.fixture
def actor() -> Actor:
    return make_actor(Role.CLINICIAN, make_clinic())


def _append(actor: Actor, n: int) -> list[AuditEvent]:
    with transaction.atomic():
        rows = [
            record_audit(
                actor=actor,
                action="update",
                object_type="patient",
                object_id=i,
                patient_id=i,
                old_values={"given_name": f"Old{i}"},
                new_values={"given_name": f"New{i}"},
                reason="typo",
            )
            for i in range(n)
        ]
    seal_all()
    return rows


def _unlock() -> None:
    """The attacker's first step: remove the append-only triggers (rolled back after the test)."""
    drop_triggers()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TRIGGER registry_auditevent_no_truncate ON {TABLE}")
            cursor.execute(f"DROP TRIGGER registry_auditseal_no_truncate ON {SEAL_TABLE}")


def _delete_from_seal(seq: int) -> None:
    """Cut the trail at seal ``seq``: that seal and every later one, and the rows they sealed."""
    events = list(AuditSeal.objects.filter(seq__gte=seq).values_list("event_id", flat=True))
    AuditSeal.objects.filter(seq__gte=seq).delete()
    AuditEvent.objects.filter(pk__in=events).delete()


def rehash_from(seq: int, change: dict[str, Any], *, strip_macs: bool = False) -> None:
    """Edit the row sealed at ``seq``, re-hash it, and re-chain seal ``seq`` and every later
    seal with the public algorithm (``strip_macs``: and remove their MACs)."""
    seal = AuditSeal.objects.get(seq=seq)
    row = AuditEvent.objects.filter(pk=seal.event_id).values().get()
    row.update(change)
    row["hash"] = compute_hash(row)
    extra = {"mac": None, "mac_key": None} if strip_macs else {}
    AuditEvent.objects.filter(pk=row["id"]).update(**change, hash=row["hash"], **extra)
    prev = AuditSeal.objects.filter(seq=seq - 1).values_list("hash", flat=True).first()
    prev = prev or GENESIS_HASH
    for later in AuditSeal.objects.filter(seq__gte=seq).order_by("seq"):
        row_hash = row["hash"] if later.seq == seq else later.row_hash
        digest = seal_hash(later.seq, later.event_id, row_hash, prev)
        AuditSeal.objects.filter(pk=later.pk).update(
            row_hash=row_hash,
            prev_hash=prev,
            hash=digest,
            **({"mac": "", "mac_key": ""} if strip_macs else {}),
        )
        prev = digest


# ------------------------------------------------------------------------------ the MAC


def test_every_row_carries_a_mac_with_a_key_kept_out_of_the_database(actor: Actor) -> None:
    rows = _append(actor, 3)
    ring = keyring()
    for row in rows:
        stored = AuditEvent.objects.get(pk=row.pk)
        assert stored.mac_key == ring.current_id
        assert stored.mac == ring.row_mac(stored.hash)
        seal = seal_of(row)
        assert (seal.mac_key, seal.mac) == (ring.current_id, ring.seal_mac(seal.hash))
        assert seal.mac != ring.row_mac(seal.hash)  # its own domain: a row MAC is no seal MAC
    path = key_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key_hex = path.read_text().strip()
    dump = json.dumps([*AuditEvent.objects.values(), *AuditSeal.objects.values()], default=str)
    assert key_hex not in dump and key_hex[:16] not in dump
    assert verify_audit_chain() == []


def test_a_row_edited_and_the_chain_rehashed_is_named_by_its_mac(actor: Actor) -> None:
    _append(actor, 6)
    _unlock()
    rehash_from(3, {"reason": "nothing to see"})
    problems = verify_audit_chain()
    assert (problems[0].seq, problems[0].kind) == (3, "bad_mac")
    assert "seal 3 was altered and re-hashed" in problems[0].message
    # The edited row's own MAC, and every re-chained seal's.
    assert [(p.seq, p.kind, p.event_id is not None) for p in problems] == [
        (3, "bad_mac", True),
        (3, "bad_mac", True),
        (4, "bad_mac", True),
        (5, "bad_mac", True),
        (6, "bad_mac", True),
    ]
    assert sum("audit row" in p.message for p in problems) == 1


def test_stripping_the_macs_as_well_leaves_unsigned_rows(actor: Actor) -> None:
    _append(actor, 5)
    _unlock()
    rehash_from(4, {"reason": "forged"}, strip_macs=True)
    assert [(p.seq, p.kind) for p in verify_audit_chain()] == [
        (4, "unsigned"),  # seal 4
        (4, "unsigned"),  # the row it seals
        (5, "unsigned"),  # seal 5
    ]


def test_rewriting_every_row_without_macs_is_caught_by_the_checkpoint(actor: Actor) -> None:
    _append(actor, 4)
    write_checkpoint(actor=system_actor("test"))
    _unlock()
    rehash_from(1, {"reason": "forged"}, strip_macs=True)
    kinds = [(p.seq, p.kind) for p in verify_audit_chain(checkpoints=read_checkpoints())]
    assert (5, "checkpoint_mismatch") in kinds
    assert kinds[0] == (1, "unsigned")


def _legacy_rows(n: int, *, signed: bool) -> list[AuditEvent]:
    """Rows of the old in-row chain (before the seal chain): seq, prev_hash, chained hash."""
    prev, rows = GENESIS_HASH, []
    ring = keyring()
    for seq in range(1, n + 1):
        fields: dict[str, Any] = {
            "seq": seq,
            "occurred_at": dt.datetime(2026, 11, 1, 9, seq, tzinfo=dt.UTC),
            "actor_user_id": None,
            "actor_username": "system:legacy",
            "role": "system",
            "clinic_id": None,
            "patient_id": seq,
            "action": "read",
            "object_type": "patient",
            "object_id": str(seq),
            "old_values": None,
            "new_values": {"n": seq},
            "reason": "",
            "request_id": "",
            "prev_hash": prev,
        }
        fields["hash"] = prev = compute_hash(fields)
        mac = ring.row_mac(prev) if signed else None
        rows.append(AuditEvent(**fields, mac=mac, mac_key=ring.current_id if signed else None))
    AuditEvent.objects.bulk_create(rows)
    return rows


def test_rows_from_before_macs_are_vouched_for_by_the_first_seal(actor: Actor) -> None:
    """Rows of the old in-row chain without MACs ("written by 0007"): the first seal links to
    their last hash, so its MAC vouches for them (the documented upgrade step seals one)."""
    legacy = _legacy_rows(3, signed=False)
    assert [(p.seq, p.kind) for p in verify_audit_chain()] == [(1, "unsigned")]
    write_checkpoint(actor=system_actor("upgrade"))  # the documented upgrade step
    first = AuditSeal.objects.get(seq=1)
    assert first.prev_hash == legacy[-1].hash
    assert check_audit_chain(checkpoints=read_checkpoints()).intact


def test_the_old_in_row_chain_is_still_verified_up_to_the_first_seal(actor: Actor) -> None:
    legacy = _legacy_rows(4, signed=True)
    _append(actor, 2)
    assert AuditSeal.objects.get(seq=1).prev_hash == legacy[-1].hash
    assert verify_audit_chain() == []
    _unlock()
    AuditEvent.objects.filter(seq=2).update(reason="forged")
    AuditEvent.objects.filter(seq=3).delete()
    kinds = [(p.chain, p.seq, p.kind) for p in verify_audit_chain()]
    assert kinds == [("rows", 2, "altered"), ("rows", 4, "missing"), ("rows", 4, "broken_link")]


def test_a_checkpoint_of_the_old_chain_still_verifies_and_still_catches_a_cut(
    actor: Actor,
) -> None:
    """Checkpoint lines written before the seal chain (no ``chain`` member) keep their
    signatures and are compared with the in-row chain."""
    legacy = _legacy_rows(3, signed=True)
    ring = keyring()
    old = Checkpoint(3, legacy[-1].hash, legacy[-1].mac or "", "2026-11-02T00:00:00+00:00",
                     ring.current_id, True).signed(ring)  # fmt: skip
    append_checkpoint(old)
    assert "chain" not in checkpoint_file().read_text()
    _append(actor, 1)
    assert verify_audit_chain(checkpoints=read_checkpoints()) == []
    _unlock()
    AuditEvent.objects.filter(seq=3).delete()
    kinds = [(p.chain, p.seq, p.kind) for p in verify_audit_chain(checkpoints=read_checkpoints())]
    assert ("rows", 3, "truncated") in kinds and ("seals", 1, "broken_link") in kinds


# ------------------------------------------------------------------------------ checkpoints


def test_a_deleted_tail_is_detected_against_the_last_checkpoint(actor: Actor) -> None:
    _append(actor, 5)
    checkpoint = write_checkpoint(actor=system_actor("test"))
    assert checkpoint.seq == 6 and checkpoint.verified is False
    assert checkpoint.chain == "seals"
    line = json.loads(checkpoint_file().read_text().splitlines()[-1])
    assert line["seq"] == 6 and line["hash"] == AuditSeal.objects.get(seq=6).hash
    assert line["chain"] == "seals"
    assert check_audit_chain(checkpoints=read_checkpoints()).intact
    _unlock()
    _delete_from_seal(4)
    assert verify_audit_chain() == []  # the chain alone cannot see its end cut off
    problems = verify_audit_chain(checkpoints=read_checkpoints())
    assert [(p.seq, p.kind) for p in problems] == [(4, "truncated")]
    assert "seals 4..6 (and the rows they vouched for) were removed" in problems[0].message


def test_an_emptied_table_does_not_verify_clean(actor: Actor) -> None:
    _append(actor, 2)
    write_checkpoint(actor=system_actor("test"))
    _unlock()
    AuditSeal.objects.all().delete()
    AuditEvent.objects.all().delete()
    assert verify_audit_chain() == []
    assert [(p.seq, p.kind) for p in verify_audit_chain(checkpoints=read_checkpoints())] == [
        (1, "truncated")
    ]


def test_a_replaced_tail_differs_from_the_checkpoint(actor: Actor) -> None:
    _append(actor, 3)
    write_checkpoint(actor=system_actor("test"))  # seal 4
    _unlock()
    _delete_from_seal(3)
    _append(actor, 2)  # new rows, sealed 3 and 4, validly signed by the app
    kinds = [(p.seq, p.kind) for p in verify_audit_chain(checkpoints=read_checkpoints())]
    assert kinds == [(4, "checkpoint_mismatch")]


def test_a_forged_checkpoint_line_is_not_trusted(actor: Actor) -> None:
    _append(actor, 2)
    real = write_checkpoint(actor=system_actor("test"))
    forged = Checkpoint(**{**real.__dict__, "seq": 99})  # signature no longer matches
    append_checkpoint(forged)
    with checkpoint_file().open("a") as handle:
        handle.write("not json\n")
    problems = verify_audit_chain(checkpoints=read_checkpoints())
    assert [(p.seq, p.kind) for p in problems] == [(0, "bad_checkpoint"), (99, "bad_checkpoint")]


def test_checkpoint_file_is_private_and_logged(actor: Actor, caplog: Any) -> None:
    _append(actor, 1)
    with caplog.at_level("INFO", logger="vertebra.audit"):
        written = write_checkpoint(actor=system_actor("test"))
    assert stat.S_IMODE(checkpoint_file().stat().st_mode) == 0o600
    assert f'"hash":"{written.hash}"' in caplog.text and "audit checkpoint" in caplog.text


# ------------------------------------------------------------------------------ keys


def test_a_key_file_others_can_read_is_refused(tmp_path: Path, settings: Any) -> None:
    path = tmp_path / "audit-hmac.key"
    path.write_text("ab" * 32)
    os.chmod(path, 0o644)
    settings.AUDIT_HMAC_KEY_FILE = str(path)
    with pytest.raises(AuditKeyError, match="chmod 600"):
        keyring()


def test_production_needs_a_key(tmp_path: Path, settings: Any) -> None:
    settings.AUDIT_HMAC_KEY_FILE = str(tmp_path / "absent.key")
    settings.AUDIT_HMAC_KEY_AUTOCREATE = False
    with pytest.raises(AuditKeyError, match="no audit MAC key"):
        keyring()


def test_rotation_keeps_old_rows_verifiable(actor: Actor, tmp_path: Path, settings: Any) -> None:
    settings.AUDIT_HMAC_KEY_FILE = str(tmp_path / "audit-hmac.key")
    _append(actor, 2)
    old_id = keyring().current_id
    retired, new_id = rotate_key()
    assert retired == old_id and new_id != old_id
    _append(actor, 2)
    keys = list(AuditEvent.objects.order_by("id").values_list("mac_key", flat=True))
    assert keys == [old_id, old_id, new_id, new_id]
    seal_keys = list(AuditSeal.objects.order_by("seq").values_list("mac_key", flat=True))
    assert seal_keys == [old_id, old_id, new_id, new_id]
    assert verify_audit_chain() == []
    (tmp_path / "audit-hmac.old-keys").unlink()  # losing the retired key
    from vertebra.registry import auditseal

    auditseal._load.cache_clear()
    assert [(p.seq, p.kind) for p in verify_audit_chain()] == [
        (1, "unknown_key"),  # seal 1
        (1, "unknown_key"),  # its row
        (2, "unknown_key"),
        (2, "unknown_key"),
    ]


# ------------------------------------------------------------------------------ who verifies


def test_the_page_check_is_recorded_with_its_result(actor: Actor) -> None:
    admin = make_actor(Role.REGISTRY_ADMIN)
    _append(actor, 2)
    assert verify_audit_chain_as(actor=admin) == []
    row = AuditEvent.objects.order_by("-id").first()
    assert row is not None
    assert (row.action, row.object_type, row.actor_user_id) == (
        "verify",
        "audit_chain",
        admin.user.pk,
    )
    assert row.new_values["intact"] is True and row.new_values["problems"] == []
    assert row.new_values["rows"] == 2 and row.new_values["source"] == "page"


def test_the_worker_verifies_daily_and_alerts_the_registry_admins(
    actor: Actor, settings: Any
) -> None:
    settings.AUDIT_VERIFY_EVERY_HOURS = 24
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    admin_user = make_user("admin-on-call")
    admin_user.email = "oncall@example.org"
    admin_user.save()
    make_actor(Role.REGISTRY_ADMIN, user=admin_user)
    _append(actor, 3)
    now = dt.datetime.now(dt.UTC)

    first = run_once(now)
    assert first.audit_verified is True
    verify = AuditEvent.objects.get(action="verify")
    assert verify.actor_username == "system:audit-worker"
    assert verify.new_values["intact"] is True
    checkpoint = read_checkpoints().checkpoints[-1]
    assert (checkpoint.seq, checkpoint.verified) == (seal_of(verify).seq, True)
    assert checkpoint.hash == seal_of(verify).hash
    assert run_once(now + dt.timedelta(hours=1)).audit_verified is False  # not due yet
    assert mail.outbox == []

    _unlock()
    rehash_from(2, {"reason": "cover-up"})
    report = run_scheduled_verification(now + dt.timedelta(hours=25))
    assert report is not None and not report.intact
    alert = AuditAlert.objects.get()
    assert (alert.first_seq, alert.first_kind, alert.source) == (2, "bad_mac", "worker")
    assert alert.emailed_to == 1
    assert [m.to for m in mail.outbox] == [["oncall@example.org"]]
    assert mail.outbox[0].subject == (
        "Vertebra: the audit trail failed verification "
        "(row 2: Row changed and re-hashed without the key)"
    )
    assert "Do not change the database" in mail.outbox[0].body
    audited = AuditEvent.objects.get(object_type="audit_alert")
    assert audited.new_values["first_seq"] == 2
    last = read_checkpoints().checkpoints[-1]
    assert last.verified is False
    latest = latest_verification()
    assert latest is not None and latest.new_values["first_problem"] == {
        "seq": 2,
        "kind": "bad_mac",
    }
    assert open_alerts() == [alert]


def test_registry_admins_see_stored_alerts_and_nobody_else_does(client: Any) -> None:
    AuditAlert.objects.create(
        raised_at=dt.datetime.now(dt.UTC),
        source="worker",
        first_seq=42,
        first_kind="bad_mac",
        problem_count=3,
        message="row 42 was altered and re-hashed: its MAC does not match",
        verify_seq=50,
        emailed_to=1,
    )
    admin = make_user("registry-admin-page")
    admin.is_staff = True
    admin.save()
    make_actor(Role.REGISTRY_ADMIN, user=admin)
    client.force_login(admin)
    page = client.get("/admin/registry/auditalert/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "Row changed and re-hashed without the key" in text and "42" in text
    assert "bad_mac" not in text  # no internal code reaches a person
    clinician = make_user("clinician-page")
    clinician.is_staff = True
    clinician.save()
    make_actor(Role.CLINICIAN, make_clinic(), user=clinician)
    client.force_login(clinician)
    assert client.get("/admin/registry/auditalert/").status_code == 403


def test_processes_racing_to_create_the_key_all_use_one_key(tmp_path: Path, settings: Any) -> None:
    import threading

    from vertebra.registry.auditseal import ensure_key_file

    settings.AUDIT_HMAC_KEY_FILE = str(tmp_path / "audit-hmac.key")
    start = threading.Barrier(8)
    seen: list[str] = []

    def create() -> None:
        start.wait()
        seen.append(ensure_key_file().read_text())

    threads = [threading.Thread(target=create) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 8 and len(set(seen)) == 1 and len(seen[0].strip()) == 64
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit-hmac.key"]
