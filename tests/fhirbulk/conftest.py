"""Fixtures for the Bulk Data tests: client keys, signed assertions, a small loaded registry."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

TODAY = dt.date(2026, 11, 25)
NOW = dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.UTC)
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@pytest.fixture(scope="session")
def rsa_key() -> RSAKey:
    """The RS384 key of the test clinic system (generated once per run, never stored)."""
    return RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})


@pytest.fixture(scope="session")
def ec_key() -> ECKey:
    """A P-384 key for ES384 assertions."""
    return ECKey.generate_key("P-384", parameters={"kid": "ec-1"})


@pytest.fixture(scope="session")
def stranger_key() -> RSAKey:
    """A key no client registered (same kid as the clinic's, to test the signature itself)."""
    return RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})


def public_jwks(*keys: Any) -> dict[str, Any]:
    """The JWKS document a client registers: public parts only."""
    return {"keys": [key.as_dict(private=False) for key in keys]}


def assertion(
    key: Any,
    client_id: str,
    aud: str,
    *,
    alg: str = "RS384",
    exp_in: int = 120,
    jti: str | None = None,
    iss: str | None = None,
) -> str:
    """A client assertion as SMART Backend Services describes it, signed with ``key``."""
    now = int(time.time())
    claims = {
        "iss": iss or client_id,
        "sub": client_id,
        "aud": aud,
        "exp": now + exp_in,
        "jti": jti or uuid.uuid4().hex,
    }
    header = {"alg": alg, "kid": key.kid, "typ": "JWT"}
    return jwt.encode(header, claims, key, algorithms=[alg])


def token_form(signed: str, scope: str = "system/*.read") -> dict[str, str]:
    """The token request body (form-encoded) of a client-credentials grant."""
    return {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": signed,
        "scope": scope,
    }


def load_registry(n_patients: int = 12) -> list[int]:
    """A small synthetic registry (seed 21); returns its clinic ids."""
    from vertebra.cohort.loader import load_cohort
    from vertebra.core.synth import generate_cohort
    from vertebra.registry.models import Clinic

    load_cohort(generate_cohort(n_patients, 21, today=TODAY), now=NOW)
    return list(Clinic.objects.order_by("pk").values_list("pk", flat=True))


@pytest.fixture
def bulk_dir(settings: Any, tmp_path: Path) -> Path:
    """Export files of this test under its own folder."""
    folder = tmp_path / "bulk"
    settings.FHIR_BULK_DIR = str(folder)
    return folder


@pytest.fixture
def clinics(db: Any) -> list[int]:
    """A registry of 6 synthetic patients; its clinic ids."""
    return load_registry(6)


@pytest.fixture
def client_rsa(clinics: list[int], rsa_key: Any, ec_key: Any) -> Any:
    """The first clinic's system client ``north-ehr`` (RS384 and ES384 keys)."""
    from django.utils import timezone

    from vertebra.fhirbulk.auth import register_client

    return register_client(
        client_id="north-ehr",
        name="North EHR",
        jwks=public_jwks(rsa_key, ec_key),
        clinic_id=clinics[0],
        now=timezone.now(),
    )
