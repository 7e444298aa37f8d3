"""The pure SMART / Bulk Data rules (vertebra.core.fhir.smart): scopes, assertion claims,
kick-off parameters and the patient of an NDJSON line, with property tests."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vertebra.core.fhir import RESOURCE_TYPES
from vertebra.core.fhir._base import ref, resource
from vertebra.core.fhir.bulk import ndjson_line
from vertebra.core.fhir.smart import (
    AssertionRefused,
    BulkRequestError,
    Grant,
    ScopeError,
    check_claims,
    parse_kickoff,
    parse_scopes,
    patient_of_line,
)

NOW = dt.datetime(2026, 12, 6, 4, 0, tzinfo=dt.UTC)
T = int(NOW.timestamp())
URL = "https://registry.example/fhir/auth/token"
EVERY = Grant(scope="system/*.read", types=None)
types = st.sampled_from(RESOURCE_TYPES)


def claims(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {"iss": "c1", "sub": "c1", "aud": URL, "exp": T + 60, "jti": "j"}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def test_v1_and_v2_system_read_scopes() -> None:
    assert parse_scopes("system/*.read", RESOURCE_TYPES) == Grant("system/*.read", None)
    assert parse_scopes("system/*.rs", RESOURCE_TYPES).types is None
    grant = parse_scopes("system/Patient.read  system/Condition.rs", RESOURCE_TYPES)
    assert grant == Grant(
        "system/Patient.read system/Condition.rs", frozenset({"Patient", "Condition"})
    )
    assert grant.allows("Patient") and not grant.allows("Observation")


@pytest.mark.parametrize(
    "scope",
    ["", "system/*.write", "system/*.cruds", "user/*.read", "patient/*.rs", "system/Foo.read",
     "system/*.read launch", "system/Patient.s", "system/patient.read"],
)  # fmt: skip
def test_other_scopes_are_refused(scope: str) -> None:
    with pytest.raises(ScopeError):
        parse_scopes(scope, RESOURCE_TYPES)


@given(st.lists(types, min_size=1, max_size=5), st.sampled_from(["read", "rs", "r"]))
def test_a_grant_allows_exactly_the_types_named(kinds: list[str], perm: str) -> None:
    grant = parse_scopes(" ".join(f"system/{k}.{perm}" for k in kinds), RESOURCE_TYPES)
    assert {t for t in RESOURCE_TYPES if grant.allows(t)} == set(kinds)


def test_claims_accepted_and_each_rule_refused() -> None:
    header = {"alg": "RS384", "kid": "k"}
    jti, expires = check_claims(claims(), header, client_id="c1", token_url=URL, now=NOW)
    assert (jti, expires) == ("j", NOW + dt.timedelta(seconds=60))
    check_claims(claims(aud=[URL, "x"]), {"alg": "ES384"}, client_id="c1", token_url=URL, now=NOW)
    refused = [
        (claims(), {"alg": "HS256"}, "alg"),
        (claims(iss="c2"), header, "iss and sub"),
        (claims(sub="c2"), header, "iss and sub"),
        (claims(aud=URL + "/"), header, "aud"),
        (claims(exp=T), header, "expired"),
        (claims(exp=T + 301), header, "five minutes"),
        (claims(exp=None), header, "'exp'"),
        (claims(exp="soon"), header, "'exp'"),
        (claims(jti=None), header, "jti"),
        (claims(jti="x" * 256), header, "jti"),
        (claims(nbf=T + 30), header, "nbf"),
    ]
    for body, head, words in refused:
        with pytest.raises(AssertionRefused, match=words):
            check_claims(body, head, client_id="c1", token_url=URL, now=NOW)


@given(st.integers(min_value=-10_000, max_value=10_000))
def test_exp_is_accepted_only_within_the_next_five_minutes(offset: int) -> None:
    ok = 0 < offset <= 300
    try:
        check_claims(claims(exp=T + offset), {"alg": "RS384"}, client_id="c1", token_url=URL,
                     now=NOW)  # fmt: skip
    except AssertionRefused:
        assert not ok
    else:
        assert ok


def kickoff(params: dict[str, list[str]], grant: Grant = EVERY, prefer: str = "respond-async"):  # type: ignore[no-untyped-def]
    return parse_kickoff(params, prefer=prefer, accept="application/fhir+json",
                         export_types=RESOURCE_TYPES, grant=grant)  # fmt: skip


def test_kickoff_parameters() -> None:
    assert kickoff({}).types == RESOURCE_TYPES
    wanted = kickoff(
        {"_type": ["Observation,Patient", "Condition"], "_since": ["2026-01-02T03:04:05Z"]}
    )
    assert wanted.types == ("Patient", "Condition", "Observation")  # export order
    assert wanted.since == dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert kickoff({"_outputFormat": ["ndjson"]}).types == RESOURCE_TYPES
    for accept in ("", "*/*", "application/fhir+json;q=0.9, text/html", "application/json"):
        parse_kickoff({}, prefer="respond-async", accept=accept, export_types=RESOURCE_TYPES,
                      grant=EVERY)  # fmt: skip
    with pytest.raises(BulkRequestError, match="Accept"):
        parse_kickoff({}, prefer="respond-async", accept="text/html",
                      export_types=RESOURCE_TYPES, grant=EVERY)  # fmt: skip
    only = Grant("system/Patient.read", frozenset({"Patient"}))
    assert kickoff({}, only).types == ("Patient",)
    cases = [
        ({}, EVERY, "", 400, "respond-async"),
        ({"_since": ["2026-01-02"]}, EVERY, "respond-async", 400, "instant"),
        ({"_since": ["2026-01-02T00:00:00"]}, EVERY, "respond-async", 400, "instant"),
        (
            {"_type": ["Patient"]},
            Grant("x", frozenset({"Condition"})),
            "respond-async",
            403,
            "exclude",
        ),
        ({"_type": ["Basic"]}, EVERY, "respond-async", 400, "Basic"),
        ({"patient": ["Patient/1"]}, EVERY, "respond-async", 400, "patient"),
        ({"_elements": ["id"]}, EVERY, "respond-async", 400, "_elements"),
    ]
    for params, grant, prefer, status, words in cases:
        with pytest.raises(BulkRequestError, match=words) as caught:
            kickoff(params, grant, prefer)
        assert caught.value.status == status


@given(st.integers(min_value=1, max_value=10**9), st.integers(min_value=1, max_value=10**9),
       st.sampled_from(["diagnosis", "episode", "response", "score", "adverse_event", "consent"]))  # fmt: skip
def test_the_patient_of_a_line_is_the_one_it_references(patient: int, pk: int, kind: str) -> None:
    key = "patient" if kind == "consent" else "subject"
    item = resource(kind, pk, **{key: ref("patient", patient)}, note=[{"text": "Patient/x"}])
    assert patient_of_line(ndjson_line(item)) == patient
    assert patient_of_line(ndjson_line(resource("patient", patient, active=True))) == patient
    org = resource("clinic", pk, name="Patient/patient-3 clinic")
    assert patient_of_line(ndjson_line(org)) is None
    assert json.loads(ndjson_line(item))["id"].endswith(str(pk))
