"""The CapabilityStatement, generated from :data:`vertebra.fhirserver.resources.TYPES`: the
types, interactions and search parameters listed are exactly those the selectors implement
(``tests/fhirserver/test_capability.py`` exercises every one of them against the server)."""

from __future__ import annotations

from typing import Any

from vertebra import __version__
from vertebra.core.fhir._base import Resource
from vertebra.fhirserver.resources import TYPES
from vertebra.fhirserver.search import EXACT_UP_TO

__all__ = ["capability_statement"]

#: When this statement's content last changed (a CapabilityStatement needs a ``date``).
STATEMENT_DATE = "2026-12-06"

SMART_OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
SERVICE_SYSTEM = "http://terminology.hl7.org/CodeSystem/restful-security-service"
BULK_EXPORT_OPERATION = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"


def _resource(name: str) -> dict[str, Any]:
    spec = TYPES[name]
    entry: dict[str, Any] = {
        "type": name,
        "interaction": [{"code": "read"}, {"code": "search-type"}],
        "versioning": "no-version",
        "readHistory": False,
        "updateCreate": False,
        "conditionalCreate": False,
        "conditionalRead": "not-supported",
        "conditionalUpdate": False,
        "conditionalDelete": "not-supported",
        "searchParam": [
            {
                "name": p.name,
                "definition": p.definition,
                "type": p.type,
                "documentation": p.documentation,
            }
            for p in spec.params
        ],
    }
    if name == "Questionnaire":
        entry["documentation"] = "Public (no token): Vertebra's instruments, one per instrument."
    return entry


def capability_statement(base: str) -> Resource:
    """The server's CapabilityStatement; ``base`` is the absolute URL of ``/fhir``."""
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": STATEMENT_DATE,
        "publisher": "Vertebra",
        "kind": "instance",
        "software": {"name": "Vertebra", "version": __version__},
        "implementation": {"description": "Vertebra FHIR R4 server (read and search)", "url": base},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [
            {
                "mode": "server",
                "documentation": (
                    "Read and search. Every type but Questionnaire needs a Vertebra API token "
                    "(Authorization: Bearer) or a signed-in session of a role that reads "
                    "patients, and shows only the patients of that person's clinics. Unknown "
                    "search parameters are refused (400) unless 'Prefer: handling=lenient'. "
                    "_count (default 20, at most 100) pages; follow the Bundle's next link."
                ),
                "security": {
                    "cors": False,
                    "extension": [
                        {
                            # Where SMART Backend Services clients get their tokens (the
                            # same URL /fhir/.well-known/smart-configuration names).
                            "url": SMART_OAUTH_URIS,
                            "extension": [{"url": "token", "valueUri": f"{base}/auth/token"}],
                        }
                    ],
                    "service": [
                        {
                            "coding": [
                                {
                                    "system": SERVICE_SYSTEM,
                                    "code": "SMART-on-FHIR",
                                    "display": "SMART-on-FHIR",
                                }
                            ],
                            "text": "SMART Backend Services (system clients, Bulk Data "
                            "$export); for people, a Bearer API token (vertebra manage "
                            "issue_token) or a signed-in session",
                        }
                    ],
                },
                "operation": [
                    {
                        # Bulk Data Access IG v2 (vertebra.fhirbulk; tests/fhirbulk).
                        "name": "export",
                        "definition": BULK_EXPORT_OPERATION,
                    }
                ],
                "resource": [_resource(name) for name in TYPES],
                "searchParam": [
                    {
                        "name": "_count",
                        "type": "number",
                        "documentation": "Page size of every search (default 20, at most 100)",
                    },
                    {
                        "name": "_total",
                        "type": "token",
                        "documentation": (
                            "Bundle.total: accurate (count every match), estimate (exact up to "
                            f"{EXACT_UP_TO:,} matches, then the database planner's estimate) or "
                            f"none; by default exact up to {EXACT_UP_TO:,} matches and left out "
                            "above (follow the next link); _count=0 counts accurately"
                        ),
                    },
                ],
            }
        ],
    }
