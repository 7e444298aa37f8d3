"""FHIR R4 REST server at ``/fhir/``: CapabilityStatement, read and search (docs/fhir.md)."""
