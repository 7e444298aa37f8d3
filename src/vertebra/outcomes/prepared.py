"""Results built by the worker and kept beside the analysis snapshot (ADR 0022, amendment 8).

Contracts
---------
* A :class:`Prepared` names one result: what is built (the caller's name, e.g.
  ``("report", 11)``), the scope (clinic set or every clinic, identified or de-identified),
  the cohort filter and the page's day. Its :meth:`Prepared.digest` (SHA-256 of its canonical
  JSON) names its files, so the scope is part of every name: a result of clinic A is never
  looked up under clinic B's name.
* :func:`store` writes ``(patient count, result)`` to ``<snapshot>/reports/<digest>.pickle``
  atomically, **signed**: an HMAC-SHA256 over the snapshot's folder name, the digest and the
  pickle bytes, with a key kept in the data folder (:func:`signing_key`, made like the audit
  MAC key: random, mode 0600, published with ``link``). :func:`load` checks the MAC before it
  unpickles anything; a file that fails (tampered, copied from another snapshot or renamed to
  another scope) is deleted, logged and reported missing — never unpickled.
* :func:`carry` copies a verified result from the previous snapshot into a new one, signed
  again for the new folder's name: an incremental refresh keeps the results of scopes whose
  rows did not change (ADR 0022 §10) instead of building them again.
* :func:`request` writes ``<root>/requests/<digest>.json`` (the Prepared as JSON) once; the
  worker's pass (:func:`pending`, oldest first) builds and stores it, then removes it.
* The result stored must hold aggregates only (it is shared by every actor of the scope).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import pickle
import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

from vertebra.core.analytics import CohortFilter
from vertebra.registry.auditseal import write_private

__all__ = ["Prepared", "load", "pending", "request", "signing_key", "store", "stored", "waiting"]

logger = logging.getLogger(__name__)

REPORTS_DIR = "reports"
REQUESTS_DIR = "requests"
KEY_FILE_NAME = "snapshot-reports.key"
#: Written first in every stored file: a file of another format is refused, not unpickled.
MAGIC = b"VRTBRPT1"
#: A request older than this (a day's page long gone) is dropped without being built.
REQUEST_MAX_AGE_SECONDS = 86_400


@dataclass(frozen=True)
class Prepared:
    """One result a page can ask for: ``what`` is built for ``clinic_ids`` (None: every
    clinic), ``deidentified`` or not, filtered by ``flt``, on the day ``as_of``."""

    what: tuple[Any, ...]
    clinic_ids: frozenset[int] | None
    deidentified: bool
    flt: CohortFilter
    as_of: dt.date

    def to_json(self) -> str:
        """Canonical JSON (sorted keys; clinics sorted): equal Prepared, equal text."""
        clinics = None if self.clinic_ids is None else sorted(int(c) for c in self.clinic_ids)
        return json.dumps(
            {
                "what": list(self.what),
                "clinic_ids": clinics,
                "deidentified": self.deidentified,
                "filter": self.flt.to_dict(),
                "as_of": self.as_of.isoformat(),
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> Prepared:
        """The Prepared :meth:`to_json` wrote (ValueError/KeyError/TypeError when malformed)."""
        data = json.loads(text)
        flt = data["filter"]
        dates = {
            k: dt.date.fromisoformat(flt[k]) if flt[k] else None
            for k in ("treated_from", "treated_to")
        }
        cohort = CohortFilter.build(**{**flt, **dates})
        clinics = data["clinic_ids"]
        return cls(
            what=tuple(data["what"]),
            clinic_ids=None if clinics is None else frozenset(int(c) for c in clinics),
            deidentified=bool(data["deidentified"]),
            flt=cohort,
            as_of=dt.date.fromisoformat(data["as_of"]),
        )

    def digest(self) -> str:
        """The name of this result's files (hex SHA-256 of :meth:`to_json`)."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()


def _key_file() -> Path:
    return Path(settings.DATA_DIR) / KEY_FILE_NAME


_keys: dict[str, bytes] = {}


def signing_key() -> bytes:
    """The key that signs stored results: ``DATA_DIR/snapshot-reports.key`` (32 random bytes,
    hex, mode 0600), created on first use; the first of racing processes wins (``link``)."""
    path = _key_file()
    cached = _keys.get(str(path))
    if cached is not None:
        return cached
    if not path.exists():
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        write_private(temporary, secrets.token_hex(32) + "\n")
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass  # another process made it first: use theirs
        finally:
            temporary.unlink(missing_ok=True)
    key = bytes.fromhex(path.read_text().strip())
    _keys[str(path)] = key
    return key


def _mac(snapshot_name: str, digest: str, payload: bytes) -> bytes:
    """The MAC binds the bytes to this snapshot and this result's name (scope included)."""
    message = snapshot_name.encode() + b"\0" + digest.encode() + b"\0" + payload
    return hmac.new(signing_key(), message, hashlib.sha256).digest()


def store(snapshot_dir: Path, snapshot_name: str, item: Prepared, value: tuple[int, Any]) -> None:
    """Write ``value`` signed under ``snapshot_dir/reports/`` (atomically: temp + rename).
    ``snapshot_name`` is the snapshot folder's final name (the MAC covers it)."""
    payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    _write_signed(snapshot_dir, snapshot_name, item.digest(), payload)


def _write_signed(snapshot_dir: Path, snapshot_name: str, digest: str, payload: bytes) -> None:
    folder = snapshot_dir / REPORTS_DIR
    folder.mkdir(exist_ok=True)
    temp = folder / f".{digest}.{uuid.uuid4().hex}"
    temp.write_bytes(MAGIC + _mac(snapshot_name, digest, payload) + payload)
    os.replace(temp, folder / f"{digest}.pickle")


def _verified(path: Path, snapshot_name: str, digest: str) -> bytes | None:
    """The payload of the stored file ``path`` when its MAC verifies for ``snapshot_name`` and
    ``digest``; None when there is no file or it does not verify (the caller says which)."""
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        return None
    start = len(MAGIC) + 32
    head, mac, payload = blob[: len(MAGIC)], blob[len(MAGIC) : start], blob[start:]
    if head != MAGIC or not hmac.compare_digest(mac, _mac(snapshot_name, digest, payload)):
        return None
    return payload


def load(snapshot_dir: Path, item: Prepared) -> tuple[int, Any] | None:
    """The stored ``(patient count, result)`` of ``item`` in this snapshot, or None (none
    stored, or a file whose MAC does not verify: deleted and logged, never unpickled)."""
    digest = item.digest()
    path = snapshot_dir / REPORTS_DIR / f"{digest}.pickle"
    payload = _verified(path, snapshot_dir.name, digest)
    if payload is None:
        if path.exists():
            logger.warning("refused a stored result that does not verify: %s (deleted)", path)
            path.unlink(missing_ok=True)
        return None
    # only bytes this deployment signed reach pickle (the MAC above): never an unsigned file
    try:
        value: tuple[int, Any] = pickle.loads(payload)
    except Exception:  # signed by an older release whose classes no longer load
        logger.warning("could not load the stored result %s (deleted)", path)
        path.unlink(missing_ok=True)
        return None
    return value


def stored(snapshot_dir: Path, item: Prepared) -> bool:
    """Whether ``item`` has a stored file in this snapshot (not verified nor read: a cheap
    "is it ready" for a waiting page; :func:`load` checks it when the page reads it)."""
    return (snapshot_dir / REPORTS_DIR / f"{item.digest()}.pickle").is_file()


def waiting(root: Path) -> bool:
    """Whether any page's request waits for the worker (one directory listing)."""
    folder = root / REQUESTS_DIR
    return folder.is_dir() and any(folder.glob("*.json"))


def carry(old_dir: Path, new_dir: Path, new_name: str, item: Prepared) -> bool:
    """Copy ``item``'s stored result from the snapshot ``old_dir`` into ``new_dir`` (whose
    final name is ``new_name``), signed again for it; False when ``old_dir`` holds none that
    verifies. The bytes are checked, never unpickled: only the caller knows the result would
    be the same (its scope's rows did not change)."""
    digest = item.digest()
    payload = _verified(old_dir / REPORTS_DIR / f"{digest}.pickle", old_dir.name, digest)
    if payload is None:
        return False
    _write_signed(new_dir, new_name, digest, payload)
    return True


def request(root: Path, item: Prepared) -> None:
    """Ask the worker to build ``item`` (``root/requests/<digest>.json``; kept if present, so
    its age says how long it has waited)."""
    folder = root / REQUESTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{item.digest()}.json"
    if path.exists():
        return
    temp = folder / f".{path.name}.{uuid.uuid4().hex}"
    temp.write_text(item.to_json())
    os.replace(temp, path)


def pending(root: Path, limit: int) -> list[tuple[Path, Prepared]]:
    """Up to ``limit`` waiting requests, oldest first; malformed or day-old ones are removed."""
    folder = root / REQUESTS_DIR
    if not folder.is_dir():
        return []
    found: list[tuple[float, Path]] = []
    for path in folder.glob("*.json"):
        try:
            found.append((path.stat().st_mtime, path))
        except FileNotFoundError:
            continue  # served by another pass meanwhile
    out: list[tuple[Path, Prepared]] = []
    now = time.time()
    for mtime, path in sorted(found):
        if len(out) >= limit:
            break
        try:
            item = Prepared.from_json(path.read_text())
        except (OSError, ValueError, KeyError, TypeError):
            logger.warning("dropped a malformed snapshot request %s", path)
            path.unlink(missing_ok=True)
            continue
        if now - mtime > REQUEST_MAX_AGE_SECONDS:
            path.unlink(missing_ok=True)
            continue
        out.append((path, item))
    return out
