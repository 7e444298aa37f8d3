"""What makes the audit trail tamper-evident beyond the database: the MAC key and checkpoints.

The hash chain (:mod:`vertebra.registry.audit`) uses a public algorithm: whoever can write
to the table can rewrite a row and re-hash every row after it. Two things the database does
not hold close that gap (ADR 0008):

* **A keyed MAC per row**: ``mac`` = HMAC-SHA256(key, ``hash``), with ``mac_key`` naming the
  key. The key lives outside the database (``AUDIT_HMAC_KEY``, or a key file in the data
  folder with mode 0600), so holding the database role is not enough to forge a row. Because
  ``hash`` covers ``prev_hash``, a valid MAC on row *n* vouches for every row before it.
* **Signed checkpoints** of the chain head (seq, hash, MAC, time; since ADR 0021 the head of
  the seal chain), appended to a file outside
  the database and written to the log; verification compares the table with them, which is
  how a deleted tail or an emptied table is found.

Contracts
---------
* :func:`keyring` returns the current key and the retired ones (rotation keeps old rows
  verifiable). Outside production a missing key file is created (0600); in production a
  missing key is an error. A key file readable by group or others is refused.
* A key is never written to the database, the audit trail, the checkpoint file or a log.
* The checkpoint file is append-only by use (one JSON object a line, ``fsync``-ed); each line
  carries its own HMAC, so a changed line is detected, not trusted.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import json
import logging
import os
import secrets
import stat
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from django.conf import settings

logger = logging.getLogger("vertebra.audit")

KEY_FILE_NAME = "audit-hmac.key"
OLD_KEYS_FILE_NAME = "audit-hmac.old-keys"
CHECKPOINT_FILE_NAME = "audit-checkpoints.jsonl"
#: Domain separation: a row MAC can never be mistaken for a checkpoint signature.
_ROW_CONTEXT = b"vertebra-audit-row:v1:"
_SEAL_CONTEXT = b"vertebra-audit-seal:v1:"
_CHECKPOINT_CONTEXT = b"vertebra-audit-checkpoint:v1:"
_KEY_ID_CONTEXT = b"vertebra-audit-key-id:"
MIN_KEY_BYTES = 32


class AuditKeyError(RuntimeError):
    """The audit MAC key is missing, malformed or exposed (message says what to fix)."""


def key_id(key: bytes) -> str:
    """A short public name of a key (12 hex digits): stored with each row's MAC."""
    return hashlib.sha256(_KEY_ID_CONTEXT + key).hexdigest()[:12]


def _parse_key(text: str, where: str) -> bytes:
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        raise AuditKeyError(f"{where}: the audit MAC key must be hexadecimal") from None
    if len(key) < MIN_KEY_BYTES:
        raise AuditKeyError(f"{where}: the audit MAC key must be at least 32 bytes (64 hex)")
    return key


def _read_private(path: Path) -> str:
    """A secret file's text; refuses a file that group or others may read or write."""
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise AuditKeyError(
            f"{path} is readable by others (mode {stat.S_IMODE(mode):o}); run chmod 600 {path}"
        )
    return path.read_text(encoding="ascii")


def write_private(path: Path, text: str, *, exclusive: bool = True) -> None:
    """Create ``path`` with mode 0600 holding ``text`` (``exclusive``: fail if it exists)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    descriptor = os.open(path, flags, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def key_file() -> Path:
    """Where the current key is kept when AUDIT_HMAC_KEY is not set."""
    configured = getattr(settings, "AUDIT_HMAC_KEY_FILE", "")
    return Path(configured) if configured else Path(settings.DATA_DIR) / KEY_FILE_NAME


def old_keys_file() -> Path:
    """Retired keys, one hex key a line (kept so that rows they signed still verify)."""
    return key_file().with_name(OLD_KEYS_FILE_NAME)


def checkpoint_file() -> Path:
    """The append-only file of signed checkpoints (AUDIT_CHECKPOINT_FILE)."""
    configured = getattr(settings, "AUDIT_CHECKPOINT_FILE", "")
    return Path(configured) if configured else Path(settings.DATA_DIR) / CHECKPOINT_FILE_NAME


def ensure_key_file() -> Path:
    """Create a new random key file (0600) if there is none; return its path.

    The key is written to a private temporary file first and published with ``link`` (which
    fails if the name exists), so a process racing to create it never reads a half-written
    key: the first one wins and the others use its key.
    """
    path = key_file()
    if not path.exists():
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        write_private(temporary, secrets.token_hex(MIN_KEY_BYTES) + "\n")
        try:
            os.link(temporary, path)
            logger.info("created the audit MAC key file %s (mode 0600)", path)
        except FileExistsError:
            pass  # another process created it first: use theirs
        finally:
            temporary.unlink(missing_ok=True)
    return path


@dataclass(frozen=True)
class Keyring:
    """The current MAC key and the retired ones, by key id."""

    current_id: str
    keys: Mapping[str, bytes]

    @functools.cached_property
    def _row_macs(self) -> dict[str, hmac.HMAC]:
        return {kid: hmac.new(key, _ROW_CONTEXT, hashlib.sha256) for kid, key in self.keys.items()}

    def row_mac(self, row_hash: str, kid: str | None = None) -> str:
        """HMAC-SHA256 (hex) of one row's ``hash`` with key ``kid`` (default: the current)."""
        mac = self._row_macs[kid or self.current_id].copy()
        mac.update(row_hash.encode("ascii"))
        return mac.hexdigest()

    def row_mac_ok(self, row_hash: str, mac: str, kid: str) -> bool | None:
        """True if ``mac`` is right; False if wrong; None if the key ``kid`` is unknown."""
        if kid not in self.keys:
            return None
        return hmac.compare_digest(self.row_mac(row_hash, kid), mac)

    @functools.cached_property
    def _seal_macs(self) -> dict[str, hmac.HMAC]:
        return {kid: hmac.new(key, _SEAL_CONTEXT, hashlib.sha256) for kid, key in self.keys.items()}

    def seal_mac(self, seal_hash: str, kid: str | None = None) -> str:
        """HMAC-SHA256 (hex) of one seal's ``hash`` (ADR 0021; its own domain, so a row MAC
        can never pass for a seal MAC)."""
        mac = self._seal_macs[kid or self.current_id].copy()
        mac.update(seal_hash.encode("ascii"))
        return mac.hexdigest()

    def seal_mac_ok(self, seal_hash: str, mac: str, kid: str) -> bool | None:
        """True if ``mac`` is right; False if wrong; None if the key ``kid`` is unknown."""
        if kid not in self.keys:
            return None
        return hmac.compare_digest(self.seal_mac(seal_hash, kid), mac)

    def sign(self, text: str, kid: str | None = None) -> str:
        """HMAC-SHA256 (hex) of a checkpoint's canonical text."""
        key = self.keys[kid or self.current_id]
        return hmac.new(key, _CHECKPOINT_CONTEXT + text.encode(), hashlib.sha256).hexdigest()


@functools.lru_cache(maxsize=8)
def _load(configured: str, path: str, old: tuple[str, ...], create: bool) -> Keyring:
    if configured:
        current = _parse_key(configured, "AUDIT_HMAC_KEY")
    else:
        file = Path(path)
        if not file.exists():
            if not create:
                raise AuditKeyError(
                    f"no audit MAC key: set AUDIT_HMAC_KEY or create {file} (mode 0600) with "
                    "`vertebra audit keygen`; see docs/adr/0008-audit-trail-mac-checkpoints.md"
                )
            ensure_key_file()
        current = _parse_key(_read_private(file), str(file))
    keys = {key_id(current): current}
    retired = list(old)
    old_file = Path(path).with_name(OLD_KEYS_FILE_NAME)
    if old_file.exists():
        retired += [line for line in _read_private(old_file).splitlines() if line.strip()]
    for text in retired:
        key = _parse_key(text, "retired audit MAC key")
        keys.setdefault(key_id(key), key)
    return Keyring(current_id=key_id(current), keys=keys)


def keyring() -> Keyring:
    """The keyring from the settings (cached per process; a rotation needs a restart).

    Raises AuditKeyError when there is no usable key (see module docstring).
    """
    return _load(
        str(getattr(settings, "AUDIT_HMAC_KEY", "") or ""),
        str(key_file()),
        tuple(getattr(settings, "AUDIT_HMAC_OLD_KEYS", ()) or ()),
        bool(getattr(settings, "AUDIT_HMAC_KEY_AUTOCREATE", not settings.PRODUCTION)),
    )


def rotate_key() -> tuple[str, str]:
    """Retire the key file's key (appended to the old-keys file) and write a new one.

    Returns (old key id, new key id). Only for keys kept in the key file; a key given in
    AUDIT_HMAC_KEY is rotated by the operator (move it to AUDIT_HMAC_OLD_KEYS). Running
    processes sign with the old key until restarted; both verify.
    """
    if getattr(settings, "AUDIT_HMAC_KEY", ""):
        raise AuditKeyError(
            "the key comes from AUDIT_HMAC_KEY: put a new key there and the old one in "
            "AUDIT_HMAC_OLD_KEYS (comma-separated), then restart"
        )
    path = key_file()
    old = _parse_key(_read_private(path), str(path))
    old_file = old_keys_file()
    previous = _read_private(old_file) if old_file.exists() else ""
    write_private(old_file, previous + old.hex() + "\n", exclusive=False)
    new_text = secrets.token_hex(MIN_KEY_BYTES)
    temporary = path.with_name(path.name + ".new")
    temporary.unlink(missing_ok=True)
    write_private(temporary, new_text + "\n")
    os.replace(temporary, path)
    _load.cache_clear()
    return key_id(old), key_id(bytes.fromhex(new_text))


# ------------------------------------------------------------------------------ checkpoints


#: ``Checkpoint.chain``: the old in-row chain (``AuditEvent.seq``), or the seal chain.
ROWS_CHAIN = "rows"
SEALS_CHAIN = "seals"


@dataclass(frozen=True)
class Checkpoint:
    """A signed record of the chain head at one moment, kept outside the database.

    ``chain`` says which chain ``seq`` counts in: ``seals`` (the seal chain, ADR 0021) for
    every checkpoint written now, ``rows`` (the in-row chain) for those written before. Lines
    of the ``rows`` chain have no ``chain`` member, so their signatures still verify.
    """

    seq: int
    hash: str
    mac: str
    at: str  # ISO 8601 UTC
    key: str  # key id of the signature
    verified: bool  # the chain up to ``seq`` was verified intact just before
    sig: str = ""
    chain: str = ROWS_CHAIN

    def _fields(self) -> dict[str, object]:
        fields = asdict(self)
        if self.chain == ROWS_CHAIN:
            del fields["chain"]  # the line as written before the seal chain existed
        return fields

    def text(self) -> str:
        """The canonical text that ``sig`` signs (every field but ``sig``)."""
        fields = {name: value for name, value in self._fields().items() if name != "sig"}
        return json.dumps(fields, sort_keys=True, separators=(",", ":"))

    def signed(self, ring: Keyring) -> Checkpoint:
        """This checkpoint with ``key`` and ``sig`` set by the current key."""
        unsigned = Checkpoint(
            self.seq, self.hash, self.mac, self.at, ring.current_id, self.verified, "", self.chain
        )
        return Checkpoint(**{**asdict(unsigned), "sig": ring.sign(unsigned.text())})

    def signature_ok(self, ring: Keyring) -> bool | None:
        """True/False, or None when signed with a key this keyring does not have."""
        if self.key not in ring.keys:
            return None
        return hmac.compare_digest(ring.sign(self.text(), self.key), self.sig)

    @property
    def when(self) -> dt.datetime:
        return dt.datetime.fromisoformat(self.at)


def append_checkpoint(checkpoint: Checkpoint, path: Path | None = None) -> Path:
    """Append one signed checkpoint line (created 0600, ``fsync``-ed) and log it."""
    path = path or checkpoint_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(checkpoint._fields(), sort_keys=True, separators=(",", ":")) + "\n"
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(descriptor, line.encode("ascii"))
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    logger.info("audit checkpoint %s", line.strip())
    return path


@dataclass(frozen=True)
class CheckpointLog:
    """The checkpoints read from the file, and the lines that could not be read."""

    checkpoints: tuple[Checkpoint, ...]
    unreadable: tuple[int, ...]  # line numbers


def read_checkpoints(path: Path | None = None) -> CheckpointLog:
    """Every checkpoint in the file (none if there is no file yet)."""
    path = path or checkpoint_file()
    if not path.exists():
        return CheckpointLog((), ())
    found: list[Checkpoint] = []
    bad: list[int] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            found.append(
                Checkpoint(
                    seq=int(data["seq"]),
                    hash=str(data["hash"]),
                    mac=str(data["mac"]),
                    at=str(data["at"]),
                    key=str(data["key"]),
                    verified=bool(data["verified"]),
                    sig=str(data["sig"]),
                    chain=str(data.get("chain", ROWS_CHAIN)),
                )
            )
        except (ValueError, KeyError, TypeError):
            bad.append(number)
    return CheckpointLog(tuple(found), tuple(bad))
