"""The CapabilityStatement against what the server does: every declared type's read and
search-type, and every declared search parameter, exercised with a value taken from a served
resource (the resource must be found; a value excluding it must not find it)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from urllib.parse import quote

from tests.fhirserver.conftest import World
from vertebra.core.fhir import validate_resource

#: Where each date parameter's value lives in a resource (first present wins).
DATE_PATHS = {
    "recorded-date": ("recordedDate",),
    "date": ("performedDateTime", "performedPeriod", "effectiveDateTime", "date", "dateTime"),
    "authored": ("authored",),
    "effective": ("effectiveDateTime", "effectivePeriod"),
}


def get(client: Any, world: World, url: str) -> dict[str, Any]:
    answer = client.get(url, **world.auth("clinician"))
    assert answer.status_code == 200, (url, answer.content[:300])
    assert answer["Content-Type"].startswith("application/fhir+json")
    return json.loads(answer.content)  # type: ignore[no-any-return]


def ids(bundle: dict[str, Any]) -> list[str]:
    return [entry["resource"]["id"] for entry in bundle.get("entry", [])]


def _date_of(item: dict[str, Any], name: str) -> str | None:
    if name == "_lastUpdated":  # an instant (ms): the search value is the whole of it
        return str(item["meta"]["lastUpdated"])
    for key in DATE_PATHS[name]:
        value = item.get(key)
        if isinstance(value, dict):
            value = value.get("start")
        if value:
            return str(value)[:10]
    return None


def _value(kind: str, name: str, item: dict[str, Any]) -> str | None:
    """A value of parameter ``name`` that ``item`` matches, or None when it has none."""
    if name == "_id":
        return str(item["id"])
    if name in ("patient", "subject"):
        ref = item.get("subject") or item.get("patient")
        return None if ref is None else str(ref["reference"])
    if name == "code":
        coding = (item.get("code") or {}).get("coding")
        return None if not coding else f"{coding[0]['system']}|{coding[0]['code']}"
    if name == "questionnaire":
        return str(item["questionnaire"])
    if name == "identifier":
        first = item["identifier"][0]
        return f"{first['system']}|{first['value']}"
    if name == "url":
        return f"{item['url']}|{item['version']}"
    return _date_of(item, name)


def _excluding(name: str, value: str) -> str:
    """A value of the same parameter that the item does not match."""
    if name in ("_id",):
        return f"{value.rsplit('-', 1)[0]}-99999999"
    if name in ("patient", "subject"):
        return "Patient/patient-99999999"
    if name in ("code", "identifier"):
        return f"{value}-no-such-code"
    if name in ("questionnaire", "url"):
        return value.split("|")[0] + "|0.0-none"
    return f"lt{value}"  # before the item's own date


def test_every_declared_interaction_and_search_parameter_works(world: World, client: Any) -> None:
    statement = json.loads(client.get("/fhir/metadata").content)
    validate_resource(statement)
    assert statement["fhirVersion"] == "4.0.1"
    exercised: set[tuple[str, str]] = set()
    for entry in statement["rest"][0]["resource"]:
        kind = entry["type"]
        assert {i["code"] for i in entry["interaction"]} == {"read", "search-type"}
        page = get(client, world, f"/fhir/{kind}?_count=100")
        items = [e["resource"] for e in page["entry"]]
        read = get(client, world, f"/fhir/{kind}/{items[0]['id']}")  # interaction: read
        assert read == items[0]
        for param in entry["searchParam"]:
            name = param["name"]
            # Take a resource that has a value for this parameter (not every Procedure has a
            # code of every kind, and not every MedicationStatement a start date).
            candidates = [(i, v) for i in items if (v := _value(kind, name, i)) is not None]
            assert candidates, (kind, name)
            item, value = candidates[len(candidates) // 2]
            found = get(client, world, f"/fhir/{kind}?{name}={quote(value)}&_count=100")
            assert item["id"] in ids(found) or found["total"] > 100, (kind, name, value)
            matched_by_set = ("patient", "subject", "code", "questionnaire", "identifier")
            if name not in matched_by_set and found["total"] <= 100:
                # Every match really matches (the same rule, checked on the resources).
                for other in (e["resource"] for e in found.get("entry", [])):
                    if name == "_id" or name == "url":
                        assert _value(kind, name, other) == value
                    else:
                        assert _date_of(other, name) == value
            elif name in matched_by_set:
                for other in (e["resource"] for e in found.get("entry", [])):
                    if name == "identifier":
                        pairs = {f"{i['system']}|{i['value']}" for i in other["identifier"]}
                        assert value in pairs
                    elif name == "code":
                        pairs = {f"{c['system']}|{c['code']}" for c in other["code"]["coding"]}
                        assert value in pairs
                    else:
                        assert _value(kind, name, other) == value
            excluded = get(
                client, world, f"/fhir/{kind}?{name}={quote(_excluding(name, value))}&_count=100"
            )
            assert item["id"] not in ids(excluded), (kind, name)
            exercised.add((kind, name))
    declared = {
        (e["type"], p["name"]) for e in statement["rest"][0]["resource"] for p in e["searchParam"]
    }
    assert exercised == declared
    assert ("Observation", "code") in declared and ("Condition", "recorded-date") in declared
    served = {e["type"] for e in statement["rest"][0]["resource"]} - {"Questionnaire"}
    assert {kind for kind, name in declared if name == "_lastUpdated"} == served


def test_date_prefixes_split_the_results(world: World, client: Any) -> None:
    """lt + ge a date = all; eq the day = ge the day and lt the next day; ne = all - eq."""
    total = get(client, world, "/fhir/Observation?_count=0")["total"]
    items = [e["resource"] for e in get(client, world, "/fhir/Observation?_count=100")["entry"]]
    day = items[len(items) // 2]["effectiveDateTime"][:10]
    nxt = (dt.date.fromisoformat(day) + dt.timedelta(days=1)).isoformat()

    def count(query: str) -> int:
        return int(get(client, world, f"/fhir/Observation?{query}&_count=0")["total"])

    assert count(f"date=lt{day}") + count(f"date=ge{day}") == total
    assert count(f"date={day}") == count(f"date=ge{day}&date=lt{nxt}") > 0
    assert count(f"date=ne{day}") == total - count(f"date=eq{day}")
    assert count(f"date=le{day}") == count(f"date=lt{nxt}")
    assert count(f"date=gt{day}") == count(f"date=ge{nxt}")
    assert count(f"date={day[:7]}") >= count(f"date={day}")  # a month covers its days
    assert count(f"date=ge{day}T00:00:00Z&date=lt{nxt}T00:00:00Z") == count(f"date={day}")


def test_declared_security_and_export_operation_are_served(client: Any, world: World) -> None:
    """The SMART token URL and the $export operation the statement declares answer as the
    SMART and Bulk Data specs say (the full flow is in tests/fhirbulk)."""
    statement = json.loads(client.get("/fhir/metadata").content)
    rest = statement["rest"][0]
    (oauth,) = rest["security"]["extension"]
    token_url = oauth["extension"][0]["valueUri"]
    assert token_url.endswith("/fhir/auth/token")
    refusal = client.post(token_url, {"grant_type": "client_credentials"})
    assert refusal.status_code == 400
    assert json.loads(refusal.content)["error"] in ("invalid_request", "invalid_client")
    discovery = json.loads(client.get("/fhir/.well-known/smart-configuration").content)
    assert discovery["token_endpoint"] == token_url
    assert [op["name"] for op in rest["operation"]] == ["export"]
    kick_off = client.get("/fhir/$export", HTTP_PREFER="respond-async")
    assert kick_off.status_code == 401
    assert json.loads(kick_off.content)["resourceType"] == "OperationOutcome"
