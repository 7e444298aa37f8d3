"""Configuration from the environment: database URLs, booleans, and production refusals."""

from __future__ import annotations

import pytest

from tests.conftest import run_cli
from vertebra.config import (
    ConfigurationError,
    database_from_url,
    environment_name,
    read_bool,
)

GOOD_SECRET = "x" * 20 + "-production-secret-value-that-is-long-enough-0123456789"


def test_sqlite_url_gives_wal_sqlite_settings() -> None:
    choice = database_from_url("sqlite:////tmp/some/where.sqlite3")
    assert choice.settings["ENGINE"] == "django.db.backends.sqlite3"
    assert choice.settings["NAME"] == "/tmp/some/where.sqlite3"
    assert "journal_mode=WAL" in choice.settings["OPTIONS"]["init_command"]


def test_postgres_url_gives_postgres_settings_without_password_in_description() -> None:
    choice = database_from_url("postgres://alice:s3cret@db.example:6543/registry")
    assert choice.settings["ENGINE"] == "django.db.backends.postgresql"
    assert choice.settings["NAME"] == "registry"
    assert choice.settings["PORT"] == 6543
    assert "s3cret" not in choice.description
    assert "registry" in choice.description


@pytest.mark.parametrize(
    "url",
    ["", "nonsense", "mysql://u@h/db", "postgres://user@host:notaport/db", "postgres://h:5432/"],
)
def test_malformed_database_url_names_the_variable(url: str) -> None:
    with pytest.raises(ConfigurationError, match="DATABASE_URL"):
        database_from_url(url)


def test_booleans_and_environment_names() -> None:
    assert read_bool({"X": "yes"}, "X", False) is True
    assert read_bool({"X": "0"}, "X", True) is False
    assert read_bool({}, "X", True) is True
    with pytest.raises(ConfigurationError, match="X='maybe'"):
        read_bool({"X": "maybe"}, "X", False)
    assert environment_name({}) == "development"
    with pytest.raises(ConfigurationError, match="VERTEBRA_ENV"):
        environment_name({"VERTEBRA_ENV": "staging"})


def _production_env(**overrides: str) -> dict[str, str]:
    env = {
        "VERTEBRA_ENV": "production",
        "SECRET_KEY": GOOD_SECRET,
        "ALLOWED_HOSTS": "registry.example.org",
        "DATABASE_URL": "sqlite:////tmp/vertebra-prod-check.sqlite3",
        "DEBUG": "false",
        "AUDIT_HMAC_KEY": "ab" * 32,
        "TRUSTED_PROXIES": "127.0.0.1",  # the reverse proxy the README requires
    }
    env.update(overrides)
    return env


def test_production_refuses_debug_on() -> None:
    result = run_cli("manage", "check", env=_production_env(DEBUG="true"))
    assert result.returncode == 2
    assert "DEBUG must be off in production" in result.stderr
    assert "Traceback" not in result.stderr


def test_production_refuses_missing_or_default_secret() -> None:
    result = run_cli("manage", "check", env=_production_env(SECRET_KEY=""))
    assert result.returncode == 2
    assert "SECRET_KEY must be set" in result.stderr
    result = run_cli(
        "manage",
        "check",
        env=_production_env(SECRET_KEY="insecure-development-key-do-not-use-in-production"),
    )
    assert result.returncode == 2
    assert "SECRET_KEY must be set" in result.stderr


def test_malformed_database_url_is_one_clear_line_from_the_cli() -> None:
    result = run_cli("manage", "check", env={"DATABASE_URL": "postgres://user@host:notaport/db"})
    assert result.returncode == 2
    assert "DATABASE_URL is malformed" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_production_settings_pass_check_deploy() -> None:
    result = run_cli(
        "manage", "check", "--deploy", "--fail-level", "WARNING", env=_production_env()
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_check_deploy_warns_when_no_proxy_is_trusted() -> None:
    result = run_cli(
        "manage", "check", "--deploy", "--fail-level", "WARNING",
        env=_production_env(TRUSTED_PROXIES=""),
    )  # fmt: skip
    assert result.returncode != 0
    assert "perimeter.W001" in result.stdout + result.stderr


def test_a_malformed_trusted_proxy_stops_start_up_naming_it() -> None:
    result = run_cli("manage", "check", env=_production_env(TRUSTED_PROXIES="proxy.local"))
    assert result.returncode == 2 and "TRUSTED_PROXIES" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
