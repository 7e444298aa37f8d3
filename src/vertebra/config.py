"""Read Vertebra's configuration from the environment (12-factor).

Pure helpers used by the Django settings module and by the CLI. Each reader names the
environment variable it reads in its error message, so a misconfiguration says exactly
what to fix.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The secret used only by development and test settings. Production refuses it.
INSECURE_DEFAULT_SECRET = "insecure-development-key-do-not-use-in-production"

VALID_ENVIRONMENTS = ("development", "demo", "test", "production")


#: Seconds a request may wait for the database (lock, connection) before it fails with 503.
DEFAULT_DATABASE_TIMEOUT = 3


class ConfigurationError(Exception):
    """A setting read from the environment is missing or malformed."""


@dataclass(frozen=True)
class DatabaseChoice:
    """The database Django should use, and a safe description for logs (no password)."""

    settings: dict[str, Any]
    description: str


def environment_name(env: Mapping[str, str]) -> str:
    """Return VERTEBRA_ENV (default ``development``); raise if it is not a known name."""
    name = env.get("VERTEBRA_ENV", "development").strip().lower()
    if name not in VALID_ENVIRONMENTS:
        raise ConfigurationError(
            f"VERTEBRA_ENV={name!r} is not valid; use one of {', '.join(VALID_ENVIRONMENTS)}"
        )
    return name


def read_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    """Parse a boolean variable (1/0, true/false, yes/no, on/off); raise naming it if malformed."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ConfigurationError(f"{name}={raw!r} is not a boolean; use true or false")


def read_int(env: Mapping[str, str], name: str, default: int) -> int:
    """Parse an integer variable; raise naming it if malformed."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not an integer") from None


def read_list(env: Mapping[str, str], name: str, default: list[str]) -> list[str]:
    """Parse a comma-separated list variable, ignoring blanks."""
    raw = env.get(name)
    if raw is None:
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def read_rate(env: Mapping[str, str], name: str, default: str) -> str:
    """A throttle rate such as ``20/m``, ``300/h`` or ``5/10m``; raise naming the variable if
    it is malformed (parsed again by :class:`vertebra.perimeter.throttle.Rate`)."""
    raw = env.get(name)
    value = default if raw is None or raw.strip() == "" else raw.strip()
    match = re.fullmatch(r"(\d+)/(\d*)([smhd])", value)
    if not match or int(match[1]) < 1 or (match[2] and int(match[2]) < 1):
        raise ConfigurationError(
            f"{name}={value!r} is not a rate; write it as 20/m, 300/h or 5/10m (count/period)"
        )
    return value


def check_trusted_proxies(values: list[str]) -> None:
    """Raise naming TRUSTED_PROXIES if an entry is not an IP address or CIDR block."""
    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ConfigurationError(
                f"TRUSTED_PROXIES: {value!r} is not an IP address or network (e.g. 10.0.0.5, "
                "10.0.0.0/8)"
            ) from None


def database_from_url(url: str, timeout: int = DEFAULT_DATABASE_TIMEOUT) -> DatabaseChoice:
    """Turn a DATABASE_URL into Django DATABASES['default'] settings.

    Supports ``sqlite:///absolute/path.sqlite3`` and ``postgres://user:pass@host:port/name``
    (also ``postgresql://``). Anything else raises ConfigurationError naming DATABASE_URL.

    ``timeout`` (seconds, DATABASE_TIMEOUT) bounds every wait on the database: SQLite's busy
    wait for the write lock, PostgreSQL's connect and lock waits. A request that hits it fails
    fast and the web layer answers 503 (``vertebra.web.unavailable``) instead of hanging a
    worker. Durability: SQLite runs WAL with ``synchronous=FULL``, so an acknowledged commit
    survives a power loss, not only a crash of the app (see docs/reliability.md).
    """
    import dj_database_url

    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in {"sqlite", "postgres", "postgresql", "pgsql"}:
        raise ConfigurationError(
            "DATABASE_URL is malformed: expected sqlite:///PATH or "
            "postgres://USER:PASSWORD@HOST:PORT/NAME"
        )
    try:
        parsed: dict[str, Any] = dict(dj_database_url.parse(url, conn_max_age=600))
    except Exception as exc:  # dj-database-url raises several types for bad URLs
        raise ConfigurationError(f"DATABASE_URL is malformed: {exc}") from None
    if scheme != "sqlite" and not parsed.get("NAME"):
        raise ConfigurationError("DATABASE_URL is malformed: it names no database")
    if scheme != "sqlite" and parsed.get("PORT") not in (None, ""):
        try:
            int(parsed["PORT"])
        except (TypeError, ValueError):
            raise ConfigurationError(
                "DATABASE_URL is malformed: the port is not a number"
            ) from None
    if scheme == "sqlite":
        parsed["CONN_MAX_AGE"] = 0
        parsed["OPTIONS"] = {
            "timeout": timeout,
            "transaction_mode": "IMMEDIATE",
            "init_command": (
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;"
            ),
        }
        description = f"SQLite at {parsed['NAME']}"
    else:
        parsed["CONN_HEALTH_CHECKS"] = True
        options = parsed.setdefault("OPTIONS", {})
        # Options given in the URL's query string win over these defaults.
        options.setdefault("connect_timeout", max(timeout, 2))  # libpq treats < 2 as 2
        options.setdefault("options", f"-c lock_timeout={timeout * 1000}")
        description = (
            f"PostgreSQL database {parsed['NAME']} on {parsed.get('HOST') or 'local socket'}"
            f":{parsed.get('PORT') or 5432}"
        )
    return DatabaseChoice(settings=parsed, description=description)


def default_data_dir(env: Mapping[str, str]) -> Path:
    """Return the per-user data folder (VERTEBRA_DATA_DIR overrides the platform default)."""
    override = env.get("VERTEBRA_DATA_DIR")
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("vertebra", appauthor=False))


def current_env() -> Mapping[str, str]:
    """The process environment, isolated here so callers can pass a fake one in tests."""
    return os.environ
